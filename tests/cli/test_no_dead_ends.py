"""A first week without dead ends: every refusal names the option or command that gets past
it, and train, export and retrain end with one plain line (fine to run or not, why, next)."""

from __future__ import annotations

import dataclasses
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from inspection.cli import app
from inspection.cli.operating import train_verdict
from inspection.core.errors import BundleError, InspectionError
from inspection.core.metrics import EvaluationMetrics, SubsetMetrics
from inspection.core.registry import Registry
from tests.conftest import TrainedProduct

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port another server holds on 127.0.0.1."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


@pytest.mark.parametrize(
    "command",
    [
        ["serve", "--config", str(REPO / "configs" / "station.yaml")],
        ["dashboard"],
        ["registry", "serve"],
    ],
)
def test_a_busy_port_is_named_before_anything_loads(busy_port: int, command: list[str]) -> None:
    """``serve`` loaded every model, then printed uvicorn's raw ``Errno 98``."""
    args = [*command, "--host", "127.0.0.1", "--port", str(busy_port)]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "300"})
    said = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert f"port {busy_port} on 127.0.0.1 is not free" in said
    assert f"--port {busy_port + 1}" in said


def test_a_missing_registry_token_names_the_token_file_option() -> None:
    from inspection.distribution.sync import HttpSource

    with pytest.raises(InspectionError, match="pass --token-file FILE"):
        HttpSource("http://127.0.0.1:9", "")


def _registry_copy(trained: TrainedProduct, fp32_bundle: Path, root: Path) -> Registry:
    assert fp32_bundle.is_dir()
    shutil.copytree(trained.registry.root, root)
    return Registry(root)


@pytest.mark.slow
def test_an_existing_bundle_names_promote_and_version(
    trained_patchcore: TrainedProduct, fp32_bundle: Path, tmp_path: Path
) -> None:
    """ "bundle brick/v0004-int8 already exists" had no way on; ``promote`` now makes an
    exported, gate-passed bundle live."""
    from inspection.training.export import ExportOptions
    from inspection.training.registry_export import RegistryExport, export_bundle

    registry = _registry_copy(trained_patchcore, fp32_bundle, tmp_path / "registry")
    with pytest.raises(BundleError) as exists:
        export_bundle(registry, "brick", ExportOptions(precision="fp32"), RegistryExport("v0001"))
    assert "make it live with `inspection promote brick v0001-fp32`" in str(exists.value)
    assert "or export another version with --version (latest: v0001)" in str(exists.value)

    site = tmp_path / "site.yaml"
    site.write_text(f"registry_dir: {registry.root}\n")
    args = ["promote", "brick", "v0001-fp32", "--actor", "qa", "--site", str(site)]
    refused = CliRunner().invoke(app, args)  # 3 held-out images a kind show no miss bound
    assert refused.exit_code != 0 and registry.journal.live("brick") is None
    assert "is NOT LINE-READY (misses 2 of 2 scratch" in str(refused.exception)
    assert "not promoted. To serve it anyway, for a trial: add --promote-not-ready" in str(
        refused.exception
    )
    assert "NOT LINE-READY brick/v0001-fp32: " in refused.output
    result = CliRunner().invoke(app, [*args, "--promote-not-ready"])
    assert result.exit_code == 0, result.output
    live = registry.journal.live("brick")
    assert (live.bundle_id, live.actor) == ("v0001-fp32", "qa")
    assert "; promoted NOT LINE-READY (" in live.reason


def _metrics(n_good: int, frr: float, n_defective: int, miss: float) -> EvaluationMetrics:
    overall = SubsetMetrics(
        n_good=n_good, n_defective=n_defective, false_reject_rate=frr, miss_rate=miss
    )
    return EvaluationMetrics(overall=overall)


@pytest.mark.parametrize(
    ("metrics", "said"),
    [
        (_metrics(40, 0.0, 40, 0.0), "LINE-READY brick/v0002: rejects 0 of 40 good held-out "
         "parts, misses 0 of 40 defects (defects 0/40). Next: inspection export --product brick "
         "--version v0002"),
        (_metrics(20, 0.0, 30, 0.2), "NOT LINE-READY brick/v0002: misses 6 of 30 defects (20%; "
         "up to 39% at 95 %, the bound is 10%). Next: to miss fewer defects: label more"),
        (_metrics(20, 0.05, 0, 0.0), "NOT LINE-READY brick/v0002: nothing shows what it misses: "
         "no defective parts held out. Next: hold out at least 36 images of each defect kind"),
        (None, "NOT LINE-READY brick/v0002: no held-out good parts: its false alarms are not "
         "measured; nothing shows what it misses"),
    ],
)  # fmt: skip
def test_train_ends_with_the_verdict_and_what_next(
    metrics: EvaluationMetrics | None, said: str
) -> None:
    assert train_verdict("brick", "v0002", metrics).startswith(said)


def test_the_summary_says_when_the_mixed_head_was_dropped(
    trained_patchcore: TrainedProduct, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from inspection.cli.train import _closing_rows, _print_metrics
    from inspection.core.config import SiteConfig

    reason = "head off: 3 labelled defects, at least 8 needed to calibrate apart"
    supervised = {"kept": False, "reason": reason}
    record = dataclasses.replace(
        trained_patchcore.record, extra={**trained_patchcore.record.extra, "supervised": supervised}
    )
    _print_metrics([(record, record.evaluation())])
    said = " ".join(capsys.readouterr().out.split())
    assert f"brick/v0001: mixed model's head dropped, scored as PatchCore: {reason}" in said
    rows = dict(_closing_rows(SiteConfig(reports_dir=tmp_path), None, [record]))
    assert rows["next"] == "inspection export --product brick --version v0001"


@pytest.mark.parametrize(
    ("status", "bundle", "details", "said"),
    [
        ("kept", "", {"nothing_new": True}, "NOTHING NEW: brick keeps v0002-fp32, no version "
         "registered. Next: review parts on the dashboard, then retrain"),
        ("promoted", "v0003-fp32", {}, "PROMOTED brick/v0003-fp32: passed the gate against "
         "v0002-fp32, live now. Next: inspection station status gives its LINE-READY verdict; "
         "watch its first parts on the dashboard"),
        ("kept", "v0003-fp32", {"data": {"left_out": {"a1": "copies held-out test image x"}}},
         "KEPT brick/v0002-fp32: the challenger was worse at the gate. 1 image(s) left "
         "out, see the report. Next: review more parts, then retrain"),
    ],
)  # fmt: skip
def test_retrain_ends_with_plain_words(status: str, bundle: str, details: dict, said: str) -> None:
    from inspection.cli.retrain import retrain_advice
    from inspection.retrain.gate import Decision
    from inspection.retrain.pipeline import RetrainResult

    result = RetrainResult(
        "brick", "r1", status, bundle, "v0002-fp32", Decision(False, []), None, details
    )
    assert retrain_advice(result) == said

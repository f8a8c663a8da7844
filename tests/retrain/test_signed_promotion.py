"""Retraining never promotes a bundle the site's stations would refuse, nor prunes a live
version's training set; ``keys init --site`` puts the key pair where export looks for it."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from inspection.cli import app
from inspection.core.bundle import SIGNATURE_FILE
from inspection.core.signing import PRIVATE_KEY_FILE, init_keys, site_keys_dir
from inspection.retrain.gate import Decision
from inspection.retrain.pipeline import _prune_run_dirs, unsigned_refusal
from inspection.station.config import trust_path

REPO = Path(__file__).resolve().parents[2]
PASSED = Decision(promote=True, reasons=["image_auroc: 0.99 vs 0.98"])


def _bundle(root: Path, name: str, *, signed: bool) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    if signed:
        (folder / SIGNATURE_FILE).write_text("{}", encoding="utf-8")
    return folder


def test_an_unsigned_challenger_after_a_signed_champion_keeps_the_champion(tmp_path: Path) -> None:
    bundles = {
        "champion": _bundle(tmp_path, "v0001-int8", signed=True),
        "challenger": _bundle(tmp_path, "v0002-int8", signed=False),
    }
    decision = unsigned_refusal(PASSED, bundles, tmp_path / "registry")
    assert not decision.promote
    assert decision.reasons[0] == PASSED.reasons[0]
    assert "challenger is unsigned" in decision.reasons[-1]
    assert str(site_keys_dir(tmp_path / "registry")) in decision.reasons[-1]


def test_a_site_with_a_public_key_but_no_private_key_promotes_nothing_unsigned(
    tmp_path: Path,
) -> None:
    """The plant layout where the key pair is not where export looks: refused, not live."""
    registry = tmp_path / "registry"
    keys = init_keys(site_keys_dir(registry))
    keys.private.unlink()
    bundles = {"challenger": _bundle(tmp_path, "v0001-int8", signed=False)}
    assert not unsigned_refusal(PASSED, bundles, registry).promote


def test_signed_or_unsigned_sites_decide_as_the_gate_said(tmp_path: Path) -> None:
    signed = {"challenger": _bundle(tmp_path, "a", signed=True)}
    unsigned = {"challenger": _bundle(tmp_path, "b", signed=False)}
    assert unsigned_refusal(PASSED, signed, tmp_path / "registry") is PASSED
    assert unsigned_refusal(PASSED, unsigned, tmp_path / "registry") is PASSED  # no keys at all
    kept = Decision(promote=False, reasons=["worse"])
    assert unsigned_refusal(kept, unsigned, tmp_path / "registry") is kept


def test_pruning_never_removes_the_newest_run(tmp_path: Path) -> None:
    for run in ("20261125T070000Z", "20261125T080000Z"):
        (tmp_path / run).mkdir()
    _prune_run_dirs(tmp_path, keep=0)
    assert [p.name for p in tmp_path.iterdir()] == ["20261125T080000Z"]


def test_keys_init_writes_beside_the_site_registry(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(f"registry_dir: {tmp_path / 'srv' / 'registry'}\n", encoding="utf-8")
    station = tmp_path / "station.yaml"
    station.write_text((REPO / "configs" / "station.yaml").read_text(), encoding="utf-8")
    args = ["keys", "init", "--site", str(site), "-c", str(station)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "srv" / "keys" / PRIVATE_KEY_FILE).is_file()
    assert str(tmp_path / "srv" / "keys" / "site-signing.pub") in trust_path(station).read_text()


@pytest.mark.parametrize("gate_passed", [True, False])
def test_a_challenger_its_export_gate_refused_is_never_promoted(
    tmp_path: Path, gate_passed: bool
) -> None:
    """Retraining exported its INT8 challenger forced and promoted it on the champion/challenger
    gate alone; a station refuses such a bundle without a signed force record. The run now
    keeps the champion when the station would refuse the challenger, and only then."""
    from inspection.core.export_gate import BundleFigures, ExportRecord, GateRecord
    from inspection.core.registry import Registry
    from inspection.retrain.adapters import export_gate_refusal
    from inspection.station.trust import Trust
    from tests.mean_bundle import write_mean_bundle

    fp32 = BundleFigures(0.0, 0.0, 1.0, None, None, None, 0, n_good=6, n_defective=6)
    int8 = BundleFigures(0.0, 0.5, 0.8, None, None, None, 0, n_good=6, n_defective=6)
    failures = () if gate_passed else ("miss_rate 0.500 vs FP32 0.000 (tolerance 0.05)",)
    gate = GateRecord(gate_passed, int8, fp32, failures=failures, forced=not gate_passed)
    bundle = write_mean_bundle(
        tmp_path / "challenger", input_size=(32, 32), product="brick",
        metrics=ExportRecord(gate=gate).to_mapping(),
    )  # fmt: skip
    registry = Registry(tmp_path / "registry")
    registry.add_bundle("brick", bundle, "v0001-fp32")
    station = Trust(registry, public_key=None).refusal_before_load("brick", "v0001-fp32")

    decision = export_gate_refusal(PASSED, registry.bundle_dir("brick", "v0001-fp32"))

    assert decision.promote is gate_passed is (station is None)
    if not gate_passed:
        assert decision.reasons[0] == PASSED.reasons[0]
        assert decision.reasons[-1] == (
            "challenger refused by its export gate: miss_rate 0.500 vs FP32 0.000 (tolerance "
            "0.05); keeping the champion"
        )
        assert "refused by its export gate" in station

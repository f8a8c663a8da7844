"""Retraining never promotes a bundle the site's stations would refuse, nor prunes a live
version's training set; ``keys init --site`` puts the key pair where export looks for it."""

from __future__ import annotations

from pathlib import Path

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

"""Export end to end on the session's tiny PatchCore (fixtures in tests/runtime/conftest.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from inspection.core.bundle import verify_bundle

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_fp32_bundle_is_registered_verified_and_complete(fp32_bundle, trained_patchcore) -> None:
    tp = trained_patchcore
    assert "v0001-fp32" in tp.registry.bundles.bundle_ids("brick")
    meta = verify_bundle(fp32_bundle)
    assert meta.model_version == "brick/v0001" and meta.model_kind == "patchcore"
    assert meta.preprocessing.input_size == (64, 64) and meta.preprocessing.color_order == "RGB"
    assert meta.normalization.image_max > meta.normalization.image_min
    assert meta.source_dataset["sha256"] == tp.record.dataset["sha256"]
    # the bundle's metrics are its own, measured on the version's held-out test split
    overall = meta.metrics["overall"]
    assert overall["n_good"] + overall["n_defective"] == tp.record.metrics["test_images"]
    assert overall["image_auroc"] == pytest.approx(
        tp.record.metrics["overall"]["image_auroc"], abs=0.02
    )
    assert meta.quantization_set is None
    # calibrated on its own validation outputs, gated (NG always with a region)
    assert meta.output_calibration is not None and meta.export_record().gate.passed
    assert meta.normalization == meta.output_calibration.normalization


def test_cli_export_refuses_an_unknown_tolerance(tmp_path) -> None:
    """The old ``--tolerance 0.01`` (image AUROC only) is gone: every figure is named."""
    site = tmp_path / "site.yaml"
    site.write_text(f"registry_dir: {tmp_path / 'registry'}\n")
    result = subprocess.run(
        [sys.executable, "-m", "inspection", "export", "--product", "brick",
         "--precision", "int8", "--tolerance", "0.01", "--site", str(site)],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert "unknown figure '0.01'" in result.stdout + result.stderr


@pytest.mark.slow
def test_int8_bundle_is_calibrated_on_its_own_outputs(fp32_bundle, trained_patchcore) -> None:
    """INT8 scores differ from FP32's: its thresholds and normalisation are its own."""
    tp = trained_patchcore
    result = tp.export("int8", force=True)
    int8, fp32 = verify_bundle(result.bundle_dir), verify_bundle(fp32_bundle)
    assert int8.output_calibration is not None and fp32.output_calibration is not None
    assert int8.normalization == int8.output_calibration.normalization
    assert int8.normalization != fp32.normalization
    assert int8.quantization_set is not None and int8.quantization_set.seven_bit_weights
    assert int8.preprocessing.in_graph and fp32.preprocessing.in_graph  # the decoded image in
    assert int8.output_calibration.n_good + int8.output_calibration.n_defective == len(
        tp.record.extra["splits"]["validation"]
    )
    record = int8.export_record()
    gate = record.gate
    assert gate == result.gate and gate.figures.ng_without_region == 0
    assert gate.reference_fp32.n_good == gate.figures.n_good > 0
    assert gate.passed or gate.forced
    assert record.reference_fp32 is not None
    assert record.image_auroc_drop == pytest.approx(
        record.reference_fp32.image_auroc - int8.evaluation().image_auroc
    )


@pytest.mark.slow
def test_export_refuses_an_existing_bundle(fp32_bundle, trained_patchcore) -> None:
    from inspection.core.errors import BundleError

    with pytest.raises(BundleError, match="already exists"):
        trained_patchcore.export("fp32")
    assert json.loads((fp32_bundle / "metadata.json").read_text())["precision"] == "fp32"


def test_bundle_ships_checksummed_validation_scores(fp32_bundle: Path) -> None:
    """The dashboard's threshold trade-offs start from the bundle's own labelled scores."""
    from inspection.core.bundle import VALIDATION_SCORES_FILE, verify_bundle
    from inspection.dashboard.thresholds import read_validation_scores

    metadata = verify_bundle(fp32_bundle)
    assert VALIDATION_SCORES_FILE in metadata.files
    raw = json.loads((fp32_bundle / VALIDATION_SCORES_FILE).read_text())
    assert len(raw["scores"]) == len(raw["labels"]) == len(raw["names"]) > 0
    assert set(raw["labels"]) == {0, 1}
    scores = read_validation_scores(fp32_bundle)
    assert scores is not None and scores.has_both_classes
    assert float(scores.scores.min()) >= 0.0 and float(scores.scores.max()) <= 1.0


def test_cli_export_refuses_to_promote_without_a_site_key(tmp_path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(f"registry_dir: {tmp_path / 'var' / 'registry'}\n")
    result = subprocess.run(
        [sys.executable, "-m", "inspection", "export", "--product", "brick", "--promote",
         "--site", str(site)],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )  # fmt: skip
    said = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 2, said[-2000:]
    assert "this site has no signing key" in said and "--allow-unsigned" in said


def test_cli_export_checks_its_arguments_before_loading_torch(tmp_path) -> None:
    """A refused --promote answers at once: torch, OpenVINO and anomalib are not loaded."""
    site = tmp_path / "site.yaml"
    site.write_text(f"registry_dir: {tmp_path / 'registry'}\n")
    probe = (
        "import sys; from typer.testing import CliRunner; from inspection.cli import app; "
        "r = CliRunner().invoke(app, ['export', '--product', 'brick', '--promote', '--site', "
        f"{str(site)!r}]); "
        "print(r.exit_code, [m for m in ('torch', 'openvino', 'anomalib') if m in sys.modules])"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert result.stdout.split("\n")[-2] == "2 []", result.stdout[-2000:] + result.stderr[-2000:]


@pytest.mark.slow
def test_export_signs_with_the_site_key_before_promoting(trained_patchcore, tmp_path) -> None:
    """A site holding its key (``keys/`` beside the registry) gets signed bundles only."""
    import shutil

    from inspection.core.registry import Registry
    from inspection.core.signing import (
        bundle_digest,
        init_keys,
        load_public_key,
        verify_signed_bundle,
    )
    from inspection.training.export import ExportOptions
    from inspection.training.registry_export import RegistryExport, export_bundle

    tp = trained_patchcore
    root = tmp_path / "var" / "registry"
    shutil.copytree(tp.registry.root / tp.product / "versions", root / tp.product / "versions")
    registry = Registry(root)
    keys = init_keys(tmp_path / "var" / "keys")
    result = export_bundle(
        registry,
        tp.product,
        ExportOptions(precision="fp32"),
        RegistryExport(version=tp.record.version, promote=True),
    )
    digest = verify_signed_bundle(result.bundle_dir, load_public_key(keys.public))
    assert registry.journal.live(tp.product).digest == digest == bundle_digest(result.bundle_dir)


@pytest.mark.slow
def test_cli_int8_export_records_its_weights_and_its_forcing_admin(
    trained_patchcore, tmp_path, monkeypatch
) -> None:
    """An INT8 export through the CLI records its 7-bit weights. Forced by the site's admin,
    logged in: a refused bundle's signed force record names that admin."""
    import shutil

    from typer.testing import CliRunner

    from inspection.cli import app
    from inspection.cli.users import ADMIN_PASSWORD_ENV
    from inspection.core.decisions import refusal
    from inspection.core.registry import Registry
    from inspection.core.signing import init_keys, load_public_key
    from inspection.store.store import Store
    from inspection.store.users import add_user

    registry = tmp_path / "var" / "registry"
    product = trained_patchcore.registry.root / "brick"
    shutil.copytree(product, registry / "brick", ignore=shutil.ignore_patterns("bundles"))
    keys = init_keys(tmp_path / "var" / "keys")
    db = f"sqlite:///{tmp_path / 'site.db'}"
    add_user(Store.migrated(db, tmp_path / "blobs"), "qa-admin", "admin", "correct horse battery")
    site = tmp_path / "site.yaml"
    site.write_text(f"registry_dir: {registry}\nstore_url: {db}\nblob_dir: {tmp_path / 'blobs'}\n")
    monkeypatch.setenv(ADMIN_PASSWORD_ENV, "correct horse battery")
    result = CliRunner().invoke(app, [
        "export", "--product", "brick", "--precision", "int8",
        "--force", "--actor", "qa-admin", "--reason", "int8 export test", "--site", str(site),
        "--verbose",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output[-2000:]
    meta = verify_bundle(registry / "brick" / "bundles" / "v0001-int8")
    assert meta.quantization_set is not None
    assert meta.quantization_set.seven_bit_weights is True
    # the operating point is printed in raw scores; inspect and stations show 0.5 for it
    said = " ".join(result.output.split())
    assert "(raw scores; 0.5 on the normalised scale that inspect" in said
    forced = Registry(registry).journal.decisions("brick", "force")
    gate = meta.export_record().gate
    assert gate is not None and len(forced) == (0 if gate.passed else 1), said
    for decision in forced:
        assert (decision.actor, decision.bundle_id) == ("qa-admin", "v0001-int8")
        assert refusal(decision, load_public_key(keys.public)) is None

"""``inspection operating certify``: the live bundle's threshold from its confirmed audit parts, or
one line saying why not (the bundle of ``tests/core/test_certificate.py``, files stand-ins)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from inspection.cli import app
from inspection.core.bundle import write_bundle_metadata
from inspection.core.certificate import CertificationError
from inspection.core.config import load_site_config
from inspection.core.registry import Registry
from inspection.core.validation_scores import write_validation_scores
from inspection.store.store import Store
from tests.core.test_certificate import BUNDLE, HELD_OUT, N_GOOD, _bundle
from tests.dashboard.scripts import load_script

PRODUCT = "widget"


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A site whose live bundle is ``_bundle()``, with audit parts reviewed in its store:
    ``AUDITED`` confirmed good, one defect, and one good part another bundle scored."""
    path = load_script("seed_dashboard").write_site(tmp_path / "site", [PRODUCT])
    config = load_site_config(path)
    folder = tmp_path / "bundle"
    folder.mkdir()
    for name in ("model.xml", "model.bin"):  # never loaded: certifying reads scores only
        (folder / name).write_bytes(name.encode())
    write_validation_scores(folder, HELD_OUT)
    write_bundle_metadata(folder, _bundle())
    registry = Registry(config.registry_dir)
    registry.bundles.add_bundle(PRODUCT, folder, BUNDLE)
    registry.journal.promote(PRODUCT, BUNDLE, actor="qa", reason="first")
    store = Store.migrated(config.store_url, config.blob_dir)
    parts = [(BUNDLE, s, "good") for s in np.linspace(0.1, 0.4, 30)]
    parts += [(BUNDLE, 0.9, "defect"), ("v0002-int8", 0.2, "good")]
    for index, (bundle, score, label) in enumerate(parts):
        row = store.add_inspection(
            product=PRODUCT, station_id="st-1", score=float(score), threshold=0.5,
            verdict="NG" if score >= 0.5 else "OK", model_version=f"{PRODUCT}/v0001",
            bundle_id=bundle, latency_ms=1.0, width=8, height=8, image_sha=f"{index:064d}",
            audit_sample=True, audit_rate=500, score_scale=_bundle().normalization.fingerprint,
        )  # fmt: skip
        store.add_review(row.id, label=label, reviewer="qa")
    store.engine.dispose()
    return path


def _certify(site: Path, product: str = PRODUCT):
    return CliRunner().invoke(
        app, ["operating", "certify", "--product", product, "--actor", "qa", "--site", str(site)]
    )


def test_the_command_records_the_certified_threshold_of_the_bundles_own_parts(site: Path) -> None:
    result = _certify(site)
    assert result.exit_code == 0, result.output
    version = Registry(load_site_config(site).registry_dir).journal.current_threshold(PRODUCT)
    certificate = version.certificate
    assert (certificate.n_good, certificate.n_audited) == (N_GOOD + 30, 30)  # not v0002's
    assert (version.bundle_id, version.budget) == (BUNDLE, certificate.budget)
    assert f"{PRODUCT}: threshold v1 = {version.value:.4f}" in result.output
    text = " ".join(result.output.split())  # rich wraps long lines
    assert "on average over calibration sets, below" in text and "with 95% probability" in text
    assert "audit parts reviewed by verdict: NG 1/1 (100%), OK 30/30 (100%)" in text
    assert "1 left out: scored by another bundle" in text
    assert "on average over calibration sets" in version.reason  # the journal's record too


def test_a_product_without_a_live_bundle_is_refused_with_the_reason(site: Path) -> None:
    result = _certify(site, "gadget")
    assert isinstance(result.exception, CertificationError)
    assert "product 'gadget' has no live bundle to certify" in str(result.exception)

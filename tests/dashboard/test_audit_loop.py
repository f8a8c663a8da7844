"""#81's loop end to end: the line certifies its own operating point.

A station pinning the site key serves the session's FP32 bundle (``fp32_bundle``, signed here)
with every part drawn into the random audit sample (``audit_rate: 1``). It inspects
``AUDITED`` good parts and ``DEFECTS`` defective ones of a new seeded stream. Reviewers confirm
them: one in real Chromium (an admin signs in, opens ``review?show=audit`` and clicks *Good
part*), the others through ``review.submit``, the function that button calls. On the
Thresholds page the admin clicks *Certify* (``inspection operating certify`` runs the same
function after it): the threshold is derived again, without retraining, from the bundle's calibration scores and the confirmed goods, signed, and the
station picks it up. The certificate changes where the dashboard and ``inspection station
status`` show it, and ``HELD`` further good parts of the stream are rejected no more often
than the new bound makes plausible (one-sided binomial test, ``within_budget``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from bench._shared import copy_bundle
from inspection.core.bundle import read_bundle_metadata
from inspection.core.certificate import bundle_certificate
from inspection.core.config import load_site_config, to_mapping
from inspection.core.operating_point import within_budget
from inspection.core.registry import Registry
from inspection.core.signing import (
    init_keys,
    load_private_key,
    pin_file,
    sign_bundle,
    site_keys_dir,
)
from inspection.service.config import load_station_config
from inspection.store.store import Store
from tests.dashboard.test_browser import (
    _button,
    _no_exception,
    _settle,
    _signed_in,
    _stored_review,
    _wait_text,
    serving,
)
from tests.service.helpers import serve

pytestmark = [pytest.mark.browser, pytest.mark.slow]
PRODUCT, BUNDLE = "brick", "v0001-fp32"
AUDITED, DEFECTS, HELD = 90, 2, 40


def _station_yaml(root: Path, public_key: Path) -> Path:
    """A serve config over ``root`` (the site's registry, store and blobs) pinning the site
    key, with every part drawn into the audit sample (its ``retention.yaml`` beside it)."""
    (root / "retention.yaml").write_text("audit_rate: 1\n")
    core = {
        "products": [PRODUCT], "store_url": f"sqlite:///{root / 'inspection.db'}",
        "blob_dir": str(root / "blobs"), "registry_dir": str(root / "registry"),
        "registry_poll_seconds": 3600.0, "tune_on_load": False,
        "signing_keys": [to_mapping(pin_file(public_key))],
    }  # fmt: skip
    path = root / "station.yaml"
    path.write_text(yaml.safe_dump({"core": core, "workers": 1}))
    return path


@pytest.fixture
def site(seed, fp32_bundle: Path, tmp_path: Path) -> tuple[Path, Path]:
    """(site YAML, station YAML): the session's FP32 bundle signed with the site key, live."""
    path = seed.write_site(tmp_path / "site", [PRODUCT])
    registry = Registry(load_site_config(path).registry_dir)
    keys = init_keys(site_keys_dir(registry.root))
    bundle = copy_bundle(fp32_bundle, tmp_path / "bundle", BUNDLE)
    sign_bundle(bundle, load_private_key(keys.private))
    registry.bundles.add_bundle(PRODUCT, bundle, BUNDLE)
    registry.journal.promote(PRODUCT, BUNDLE, actor="qa", reason="first")
    return path, _station_yaml(path.parent, keys.public)


def _line_parts(root: Path) -> tuple[list[Path], list[Path], list[Path]]:
    """(audited good, defective, held-out good) images of a new seeded stream."""
    from inspection.data.demo import write_demo_product

    line = write_demo_product(
        root, PRODUCT, seed=11, n_train=1, n_test_good=AUDITED + HELD, n_test_per_defect=1,
        size=128,
    )  # fmt: skip
    good = sorted((line / "test" / "good").glob("*.png"))
    defects = sorted(p for p in (line / "test").rglob("*.png") if p.parent.name != "good")
    return good[:AUDITED], defects[:DEFECTS], good[AUDITED:]


def _status(station_yaml: Path) -> str:
    from inspection.cli import app

    result = CliRunner().invoke(app, ["station", "status", "--config", str(station_yaml)])
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())  # rich wraps long lines


def _review_in_chromium(driver, url: str, store: Store) -> None:
    """An admin opens the audit queue, whose one unreviewed part is good, and confirms it."""
    _signed_in(driver, f"{url}/review?show=audit", store, "auditor", "admin", "Review queue")
    assert _stored_review(driver, store, "Good part", "auditor").label == "good"


def _certify_in_chromium(driver, url: str, before: str) -> None:
    """The Thresholds page shows the certificate ``before`` and the waiting parts; *Certify*."""
    driver.get(f"{url}/thresholds?product={PRODUCT}")
    _wait_text(driver, "h1", "Thresholds")
    _settle(driver)
    _wait_text(driver, '[data-testid="stMarkdown"]', before)
    _wait_text(driver, '[data-testid="stMarkdown"]', f"{AUDITED} confirmed audit parts")
    _button(driver, f"Certify {PRODUCT}").click()
    _wait_text(driver, '[data-testid="stAlert"]', "Certified: threshold version 1")
    _wait_text(driver, '[data-testid="stMarkdown"]', f"({AUDITED} audited)")
    _no_exception(driver)


def test_audited_parts_confirmed_in_the_dashboard_certify_the_live_bundle(
    browser, site: tuple[Path, Path], tmp_path: Path
) -> None:
    from inspection.dashboard import review

    site_yaml, station_yaml = site
    audited, defects, held = _line_parts(tmp_path / "line")
    registry = Registry(load_site_config(site_yaml).registry_dir)
    exported = bundle_certificate(
        read_bundle_metadata(registry.bundles.bundle_dir(PRODUCT, BUNDLE))
    )
    assert exported is not None and exported.n_audited == 0
    with serve(load_station_config(station_yaml)) as station:
        rows = [station.inspect(p.read_bytes()).json() for p in [*audited, *defects]]
        store = station.station.store
        stored = [store.get_inspection(r["id"]) for r in rows]
        assert all(row.audit_sample and row.audit_rate == 1 for row in stored)
        signed = read_bundle_metadata(registry.bundles.bundle_dir(PRODUCT, BUNDLE))
        assert {row.score_scale for row in stored} == {signed.normalization.fingerprint}
        first, *others = rows
        for row, image in zip(others, [*audited, *defects][1:], strict=True):
            label = "good" if image.parent.name == "good" else "defect"
            review.submit(store, row["id"], label=label, reviewer="qa")
        shown = exported.describe().split(";")[0]
        assert shown in _status(station_yaml)  # as exported, nothing audited yet
        with serving(site_yaml) as url:
            _review_in_chromium(browser, url, store)
            assert store.get_inspection(first["id"]).review_label == "good"
            _certify_in_chromium(browser, url, shown)

        version = registry.journal.current_threshold(PRODUCT)
        assert version.signature and version.bundle_id == BUNDLE
        certificate = version.certificate
        assert (certificate.n_good, certificate.n_audited) == (exported.n_good + AUDITED, AUDITED)
        assert certificate.false_reject_bound < exported.false_reject_bound
        again = _certify_command(site_yaml)  # the command runs what the button ran: same parts
        assert f"{PRODUCT}: threshold v2 = {version.value:.4f}" in again, again
        assert registry.journal.current_threshold(PRODUCT).certificate == certificate
        status = _status(station_yaml)
        assert f"{certificate.describe()} (threshold v2)" in status, status

        station.station.models.refresh()  # as its poller does
        served = station.station.models.get(PRODUCT)
        assert (served.threshold, served.threshold_number) == (version.value, 2)
        verdicts = [station.inspect(p.read_bytes()).json() for p in held]
        assert {v["threshold"] for v in verdicts} == {version.value}
        rejected = sum(v["verdict"] == "NG" for v in verdicts)
        assert within_budget(rejected, HELD, certificate.false_reject_bound), rejected
    # The held parts were audited too and nobody reviewed them: their window stays open, so
    # certifying now rests on the complete windows only, and says what waits.
    waiting = _certify_command(site_yaml)
    assert "wait in open windows (unreviewed or unsure)" in waiting, waiting


def _certify_command(site_yaml: Path) -> str:
    from inspection.cli import app

    result = CliRunner().invoke(
        app,
        ["operating", "certify", "--product", PRODUCT, "--actor", "qa", "--site", str(site_yaml)],
    )
    assert result.exit_code == 0, result.output
    return result.output

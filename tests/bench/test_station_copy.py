"""The benches' scratch station (bench/_station.py) on a signed site, as `make demo` leaves it:
the copied live pointer and thresholds keep the site's signatures, so a station pinning the
site key serves them (a pointer the bench signed itself, or not at all, would be refused)."""

from __future__ import annotations

from pathlib import Path

from inspection.core.registry import Registry
from inspection.core.signing import init_keys, load_public_key, site_keys_dir, verify_record
from tests.bench import bench_module


def test_a_scratch_copy_keeps_the_sites_signed_records(fp32_bundle: Path, tmp_path: Path) -> None:
    station = bench_module("_station")
    serve_live_copy, signature_policy = station.serve_live_copy, station.signature_policy
    site = Registry(tmp_path / "site" / "registry")
    keys = init_keys(site_keys_dir(site.root))
    site.bundles.add_bundle("brick", fp32_bundle, fp32_bundle.name)
    site.journal.promote("brick", fp32_bundle.name, actor="demo", reason="first")
    site.journal.set_threshold("brick", 0.6, actor="alice", reason="line trial")

    serve_live_copy(site.root, "brick", tmp_path / "scratch", "test")

    scratch = Registry(tmp_path / "scratch")
    public = load_public_key(keys.public)
    live, threshold = scratch.journal.live("brick"), scratch.journal.current_threshold("brick")
    assert live is not None and live.row() == site.journal.live("brick").row()  # type: ignore[union-attr]
    verify_record(live.row(), public, "live pointer")
    assert threshold is not None and threshold.value == 0.6
    verify_record(threshold.row(), public, "threshold")
    assert "signing_keys" in signature_policy(site.root)  # the station pins the site key

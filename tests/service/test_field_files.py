"""The station with files as plants make them (#90 items 2, 4 and 12): a blob folder on storage
without hard links, a watched file whose name is not UTF-8, and limits below the live bundle's
training images. Each is stored, or answered with a 4xx/503 that names the file or the key to
change; never a 500. Item 3, an image smaller than a tile: ``test_tiled_station.py``."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from inspection.cli import app
from inspection.core.bundle import read_bundle_metadata
from inspection.service.config import WatchConfig
from tests.exfat import exfat_mount

from .helpers import PRODUCT, Bundles, serve, serving_registry, station_config, watching

pytestmark = pytest.mark.slow


# ------------------------------------------------------------ storage without links (item 4)
def test_a_station_stores_its_results_on_exfat(
    tmp_path: Path, bundles: Bundles, sample_images: dict[str, bytes]
) -> None:
    """Every POST answered 500 (``PermissionError`` from ``os.link``) with blobs on exFAT."""
    serving_registry(tmp_path / "registry", bundles)
    with (
        exfat_mount(tmp_path / "exfat") as mounted,
        serve(station_config(tmp_path, blob_dir=mounted / "blobs")) as served,
    ):
        response = served.inspect(sample_images["good0"])
        assert response.status_code == 201, response.text
        image = served.client.get(response.json()["links"]["image"], headers=served.headers)
        assert image.content == sample_images["good0"]
        assert served.ops("/healthz").json()["blobs"] == {"ok": True, "problem": None}


def test_a_blob_folder_that_cannot_hold_files_fails_healthz_and_is_named(
    served, sample_images: dict[str, bytes]
) -> None:
    blob_dir = served.config.core.blob_dir
    shutil.rmtree(blob_dir, ignore_errors=True)
    blob_dir.write_text("the share is gone")  # unmounted, or a path mistyped
    health = served.ops("/healthz")
    assert health.status_code == 503 and health.json()["status"] == "degraded"
    problem = health.json()["blobs"]["problem"]
    assert problem.startswith(f"core.blob_dir {blob_dir}: ") and "nothing can be stored" in problem
    response = served.inspect(sample_images["good0"])
    assert response.status_code == 503
    assert f"cannot store the result: core.blob_dir {blob_dir}: " in response.json()["detail"]


# ----------------------------------------------------------- a name not in UTF-8 (item 2)
def test_a_watched_file_named_in_latin_1_is_inspected_and_shown_with_u_fffd(
    tmp_path: Path, bundles: Bundles, sample_images: dict[str, bytes]
) -> None:
    """It was parked in failed/ as "internal error" (UnicodeEncodeError in the request id)."""
    serving_registry(tmp_path / "registry", bundles)
    watch = WatchConfig(root=tmp_path / "watch", station_id="cam-1", default_product=PRODUCT,
                        settle_seconds=0)  # fmt: skip
    with watching(station_config(tmp_path, watch=watch)) as watcher:
        incoming = os.fsencode(watcher.incoming)
        Path(os.fsdecode(os.path.join(incoming, b"Pr\xfcfteil_000.png"))).write_bytes(
            sample_images["good0"]
        )
        [outcome] = watcher.scan_once()
        assert (outcome.name, outcome.status) == ("Pr\ufffdfteil_000.png", "done")
        [row] = watcher.pipeline.store.list_inspections(limit=10)
        assert row.source_name == "Pr\ufffdfteil_000.png"
        assert os.listdir(os.fsencode(watcher.done)) == [b"Pr\xfcfteil_000.png"]  # its own bytes


# -------------------------------------------------- limits below the training images (item 12)
def test_limits_below_the_bundles_images_warn_at_start_and_name_their_keys(
    tmp_path: Path,
    bundles: Bundles,
    sample_images: dict[str, bytes],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """128x128 training images (16384 pixels); the station takes 10000 pixels and 1000 bytes."""
    serving_registry(tmp_path / "registry", bundles)
    domain = read_bundle_metadata(bundles.v1).input_domain
    config = station_config(tmp_path, max_pixels=10_000, max_upload_bytes=1_000)
    with caplog.at_level(logging.WARNING), serve(config) as served:
        warned = [r.getMessage() for r in caplog.records if "live bundle" not in r.getMessage()]
        assert (
            "brick: bundle v0001-fp32: its training images reach 16384 pixels, above "
            "core.max_pixels 10000: such images are refused; raise core.max_pixels to at least "
            "16384 in the station config"
        ) in warned
        assert (
            f"brick: bundle v0001-fp32: its largest training image file is "
            f"{domain.largest_file_bytes} bytes, above max_upload_bytes 1000: such uploads get "
            f"413; raise max_upload_bytes to at least {domain.largest_file_bytes} in the station "
            "config"
        ) in warned
        too_big = served.inspect(sample_images["good0"])
        assert too_big.status_code == 413
        assert too_big.json()["detail"] == (
            "upload too large: the limit is 1000 bytes; raise max_upload_bytes in the station "
            "config to accept larger images"
        )
    serving_registry(tmp_path / "b" / "registry", bundles)
    with serve(station_config(tmp_path / "b", max_pixels=10_000)) as served:
        too_many = served.inspect(sample_images["good0"])
        assert too_many.status_code == 400
        assert too_many.json()["detail"] == (
            "upload: image is 128x128 = 16384 pixels, above the limit of 10000; raise "
            "core.max_pixels in the station config"
        )


def test_station_status_warns_of_limits_below_the_live_bundles_images(
    tmp_path: Path, bundles: Bundles, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    serving_registry(tmp_path / "registry", bundles)
    (tmp_path / "station.yaml").write_text(
        "core:\n  products: [brick]\n  registry_dir: registry\n  max_pixels: 10000\n"
        "  allow_unsigned_bundles: true\nmax_upload_bytes: 1000\n",
        encoding="utf-8",
    )
    status = CliRunner().invoke(app, ["station", "status", "-c", "station.yaml"],
                                terminal_width=400)  # fmt: skip
    said = " ".join(status.output.split())
    assert status.exit_code == 0, said
    assert "brick: warning: live bundle v0001-fp32: its training images reach 16384 pixels, " \
        "above core.max_pixels 10000" in said  # fmt: skip
    assert "above max_upload_bytes 1000: such uploads get 413; raise max_upload_bytes" in said

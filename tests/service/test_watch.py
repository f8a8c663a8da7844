"""Watch folder: every dropped file is inspected exactly once, across crashes and restarts."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from inspection.service.config import StationConfig, WatchConfig
from inspection.service.watch import WatchError, WatchFolder, watch_request_id

from .helpers import PRODUCT, Bundles, serving_registry, station_config, watching

pytestmark = pytest.mark.slow


def _config(root: Path, settle: float = 0.0) -> StationConfig:
    watch = WatchConfig(
        root=root / "watch", station_id="cam-1", default_product=PRODUCT, settle_seconds=settle
    )
    return station_config(root, watch=watch)


def _watch_rows(watcher: WatchFolder) -> list:
    rows = watcher.pipeline.store.list_inspections(limit=100)
    return [row for row in rows if row.source == "watch"]


def test_exactly_once_across_a_crash_and_restart(
    tmp_path: Path, bundles: Bundles, sample_images: dict[str, bytes]
) -> None:
    serving_registry(tmp_path / "registry", bundles)
    config = _config(tmp_path)
    incoming = config.watch.root / "incoming"
    with watching(config) as watcher:
        (incoming / PRODUCT).mkdir()
        (incoming / "a.png").write_bytes(sample_images["good0"])
        (incoming / PRODUCT / "b.png").write_bytes(sample_images["defect0"])
        (incoming / "junk.png").write_bytes(b"this is not an image")
        (incoming / "c.png.part").write_bytes(sample_images["good1"][:100])  # still copying
        (incoming / "other").mkdir()
        (incoming / "other" / "d.png").write_bytes(sample_images["good1"])
        # crash: d.png's result was committed, then the process died before moving the file
        crashed = watcher.pipeline.run(
            sample_images["good0"],
            product=PRODUCT,
            station_id="cam-1",
            request_id=watch_request_id(sample_images["good0"], "a.png"),
            source="watch",
            source_name="a.png",
        )
    with watching(config) as watcher:  # restart
        outcomes = {o.name: o for o in watcher.scan_once()}
        assert outcomes["a.png"].status == "replayed"
        assert outcomes["a.png"].detail == crashed.row.id
        assert outcomes[f"{PRODUCT}/b.png"].status == "done"
        assert outcomes["junk.png"].status == "failed"
        assert outcomes["other/d.png"].status == "failed"
        assert "c.png.part" not in outcomes
        assert watcher.scan_once() == []  # nothing left to do
    with watching(config) as watcher:  # the camera drops the same file again, and a new one
        (incoming / "a.png").write_bytes(sample_images["good0"])
        (incoming / "e.png").write_bytes(sample_images["defect1"])
        statuses = {o.name: o.status for o in watcher.scan_once()}
        assert statuses == {"a.png": "replayed", "e.png": "done"}
        rows = _watch_rows(watcher)
    assert sorted(row.source_name for row in rows) == ["a.png", f"{PRODUCT}/b.png", "e.png"]
    assert {row.station_id for row in rows} == {"cam-1"}
    assert {row.product for row in rows} == {PRODUCT}
    done = config.watch.root / "done"
    assert (done / "a.png").is_file() and (done / PRODUCT / "b.png").is_file()
    assert len(list(done.glob("a-*.png"))) == 1  # the second drop, kept beside the first
    failed = config.watch.root / "failed"
    reason = (failed / "junk.png.reason.txt").read_text()
    assert "not an image" in reason
    assert (failed / "junk.png").read_bytes() == b"this is not an image"
    assert "product 'other' is not served here" in (failed / "other/d.png.reason.txt").read_text()
    assert sorted(p.name for p in incoming.rglob("*") if p.is_file()) == ["c.png.part"]


def test_a_file_still_being_written_is_read_only_once_stable(
    tmp_path: Path, bundles: Bundles, sample_images: dict[str, bytes]
) -> None:
    serving_registry(tmp_path / "registry", bundles)
    config = _config(tmp_path, settle=0.3)
    data = sample_images["defect1"]
    target = config.watch.root / "incoming" / "slow.png"
    with watching(config) as watcher:
        target.write_bytes(data[: len(data) // 2])
        assert watcher.scan_once() == []  # first sight
        with target.open("ab") as handle:
            handle.write(data[len(data) // 2 :])
        assert watcher.scan_once() == []  # size changed since the last look
        time.sleep(0.35)
        outcomes = watcher.scan_once()
        assert [(o.name, o.status) for o in outcomes] == [("slow.png", "done")]
        (row,) = _watch_rows(watcher)
    assert (row.width, row.height) == (128, 128)
    assert row.request_id == f"cam-1/{watch_request_id(data, 'slow.png')}"


def test_a_second_watcher_on_the_same_folder_is_refused(tmp_path: Path, bundles: Bundles):
    serving_registry(tmp_path / "registry", bundles)
    config = _config(tmp_path)
    with watching(config), pytest.raises(WatchError, match="already watched by another process"):
        WatchFolder(config.watch, pipeline=None).acquire()  # type: ignore[arg-type]


def test_serve_runs_the_watch_folder_in_the_background(
    tmp_path: Path, bundles: Bundles, sample_images: dict[str, bytes]
) -> None:
    from inspection.store.tokens import create_token

    from .helpers import serve

    serving_registry(tmp_path / "registry", bundles)
    watch = WatchConfig(
        enabled=True, root=tmp_path / "watch", station_id="cam-2", default_product=PRODUCT,
        poll_seconds=0.05, settle_seconds=0.0,
    )  # fmt: skip
    with serve(station_config(tmp_path, watch=watch)) as served:
        # settle_seconds 0 takes a file as soon as it is seen: the writer moves it in whole
        (tmp_path / "x.png").write_bytes(sample_images["good1"])
        (tmp_path / "x.png").replace(watch.root / "incoming" / "x.png")
        deadline = time.monotonic() + 30
        while not (watch.root / "done" / "x.png").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        token, _ = create_token(served.station.store, "alice", role="reviewer")
        listing = served.client.get(
            "/v1/inspections",
            params={"station_id": "cam-2"},
            headers={"Authorization": f"Bearer {token}"},
        ).json()
        assert listing["total"] == 1 and listing["items"][0]["source"] == "watch"
        assert served.ops("/healthz").json()["watch"]["files"]["done"] == 1
        assert 'inspection_watch_files_total{outcome="done"} 1.0' in served.ops("/metrics").text

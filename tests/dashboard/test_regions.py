"""Painted defect regions: canvas drawing in, mask blob out, saved with a defect review."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from inspection.core.images import defect_pixels, mask_levels
from inspection.dashboard import regions, review
from inspection.store.store import Store

SHAPE = (60, 80, 3)  # an image of 60 x 80 pixels


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.migrated(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path / "blobs")


def _inspection(store: Store, mask: np.ndarray | None = None) -> str:
    mask_sha = None if mask is None else store.blobs.put(regions.encode_region(mask), ".png")
    row = store.add_inspection(
        product="p", station_id="s1", score=0.9, threshold=0.5, verdict="NG",
        model_version="p/v0001", bundle_id="v0001-int8", latency_ms=1.0, width=80, height=60,
        image_sha="0" * 64, mask_sha=mask_sha,
    )  # fmt: skip
    return row.id


def _box(top: int, left: int, bottom: int, right: int, shape=SHAPE[:2]) -> np.ndarray:
    region = np.zeros(shape, dtype=bool)
    region[top:bottom, left:right] = True
    return region


def test_the_canvas_keeps_the_images_aspect() -> None:
    assert regions.canvas_size(SHAPE) == (512, 384)
    assert regions.canvas_size((1000, 10), width=100) == (100, 10000)


def test_the_initial_drawing_outlines_each_blob_of_the_region() -> None:
    region = _box(10, 10, 30, 40) | _box(45, 60, 55, 75)
    size = regions.canvas_size(SHAPE, width=160)  # twice the image's size
    drawing = regions.initial_drawing(region, size)
    assert len(drawing["objects"]) == 2
    drawn = np.zeros((size[1], size[0]), dtype=np.uint8)
    for polygon in drawing["objects"]:
        points = np.array([[p["x"], p["y"]] for p in polygon["points"]], dtype=np.int32)
        cv2.fillPoly(drawn, [points], 1)
    expected = cv2.resize(region.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
    overlap = (drawn & expected).sum() / (drawn | expected).sum()
    assert overlap > 0.95
    assert regions.initial_drawing(None, size)["objects"] == []
    assert regions.initial_drawing(np.zeros((6, 8), bool), size)["objects"] == []


def test_the_painted_region_is_what_the_canvas_shows_at_the_images_size() -> None:
    drawn = np.zeros((120, 160, 4), dtype=np.uint8)  # the canvas at twice the image's size
    drawn[20:60, 40:100, 3] = 127  # painted at half opacity
    drawn[100:110, 0:10, 3] = 20  # an anti-aliased fringe, not paint
    painted = regions.painted_region(drawn, _box(0, 0, 5, 5), SHAPE)
    assert painted.shape == SHAPE[:2] and painted.dtype == bool
    assert np.array_equal(painted, _box(10, 20, 30, 50))
    # never sent (untouched): the starting region as drawn; nothing at all: an empty region
    assert np.array_equal(regions.painted_region(None, _box(0, 0, 3, 4, (6, 8)), SHAPE),
                          _box(0, 0, 30, 40))  # fmt: skip
    assert not regions.painted_region(None, None, SHAPE).any()
    with pytest.raises(ValueError, match=r"must be \(h, w, 4\) RGBA, got shape \(4, 4\)"):
        regions.painted_region(np.zeros((4, 4), np.uint8), None, SHAPE)


def test_a_region_is_stored_as_a_binary_mask_png(store: Store) -> None:
    region = _box(10, 20, 30, 50)
    sha = regions.store_region(store, region)
    assert sha is not None and store.blobs.path(sha).suffix == ".png"
    levels = mask_levels(store.blobs.get(sha))
    assert set(np.unique(levels)) == {0, 255}
    assert np.array_equal(defect_pixels(levels), region)
    assert regions.store_region(store, np.zeros((4, 4), bool)) is None
    with pytest.raises(ValueError, match=r"a region is \(H, W\) bool, got uint8"):
        regions.encode_region(np.zeros((4, 4), np.uint8))


def test_a_defect_review_saves_the_painted_region_and_the_canvas_restarts_from_it(
    store: Store,
) -> None:
    model_mask = _box(0, 0, 10, 10)
    inspection = _inspection(store, model_mask)
    assert regions.starting_region(store, inspection, None) is None  # no mask stored
    first = regions.starting_region(store, inspection, store.get_inspection(inspection).mask_sha)
    assert np.array_equal(first, model_mask)  # not yet reviewed: the model's region
    painted = _box(20, 30, 40, 60)
    saved = review.submit(store, inspection, label="defect", reviewer="ann", region=painted)
    assert saved.region_sha == store.get_inspection(inspection).review_region_sha
    again = regions.starting_region(store, inspection, store.get_inspection(inspection).mask_sha)
    assert np.array_equal(again, painted)
    audit = review.audit_frame(store, inspection)
    assert audit["region"].tolist() == [saved.region_sha[:12]]
    # another label marks no region; an empty painting is an image-level defect
    alarm = review.submit(store, inspection, label="false_alarm", reviewer="ann", region=painted)
    empty = review.submit(store, inspection, label="defect", reviewer="ann",
                          region=np.zeros(SHAPE[:2], bool))  # fmt: skip
    assert alarm.region_sha is None and empty.region_sha is None

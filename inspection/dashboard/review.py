"""Review queue: paging NG and borderline inspections, their pictures, and writing labels."""

from __future__ import annotations

import io
from dataclasses import dataclass

import cv2
import numpy as np
import pandas as pd

from inspection.core.errors import ImageDecodeError, RegistryError
from inspection.core.images import DEFAULT_SOURCE_BITS, decode_image
from inspection.core.model_record import VersionRef
from inspection.core.registry import Registry
from inspection.dashboard import regions
from inspection.store import queries
from inspection.store.models import REVIEW_CONFLICT, Review
from inspection.store.store import SeenLabel, Store, StoreError

LABELS: dict[str, str] = {
    "defect": "True defect",
    "false_alarm": "False alarm",
    "good": "Good part",
    "unsure": "Unsure",
}
"""Review labels (as stored) and the words the queue shows for them."""
SHOWN = {**LABELS, REVIEW_CONFLICT: "Conflict (an admin settles)"}
"""What the queue shows for an inspection's stored label: a label, or reviewers disagreeing."""
OUTLINE_RGB = (255, 40, 40)


@dataclass(frozen=True)
class QueuePage:
    """Page ``page`` (0-based) of the queue, ``total`` counted up to ``QUEUE_COUNT_CAP``."""

    rows: list[queries.QueueRow]
    total: int
    page: int
    page_size: int
    next: queries.QueueCursor | None = None

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.page_size))

    @property
    def counted_all(self) -> bool:
        return self.total < queries.QUEUE_COUNT_CAP

    def describe(self) -> str:
        """'1,234 inspections · page 3 of 62' (or 'more than 10,000 ...')."""
        if self.counted_all:
            return f"{self.total:,} inspections · page {self.page + 1} of {self.pages}"
        return f"more than {self.total:,} inspections · page {self.page + 1}"


def queue_page(
    store: Store,
    query: queries.QueueQuery,
    *,
    page_size: int,
    after: queries.QueueCursor | None = None,
    page: int = 0,
    total: int | None = None,
) -> QueuePage:
    """The ``page_size`` rows after cursor ``after`` (keyset paging); ``page``: the number
    shown; ``total``: the queue's count when the caller has it, else counted here."""
    if page_size < 1:
        raise StoreError(f"page size must be at least 1, got {page_size}")
    rows = queries.review_queue(store, query, limit=page_size + 1, after=after)
    more = len(rows) > page_size
    rows = rows[:page_size]
    following = queries.cursor_after(rows[-1], query.order) if more else None
    total = queries.count_review_queue(store, query) if total is None else total
    return QueuePage(rows, total, page, page_size, following)


def page_start(
    store: Store, query: queries.QueueQuery, page: int, page_size: int
) -> queries.QueueCursor | None:
    """The cursor where page ``page`` starts (``None``: the first page or past the end)."""
    if page < 1:
        return None
    return queries.queue_anchor(store, query, page * page_size - 1)


BLIND_COLUMNS = ("score", "threshold", "verdict")
"""What the audit view never shows: a reviewer who sees them reviews by them (docs/statistics.md)."""


def page_frame(page: QueuePage, *, blind: bool = False) -> pd.DataFrame:
    """The page's rows as a table; ``blind`` (the audit sample): without ``BLIND_COLUMNS``."""
    columns = ["time", "product", "station", "part", "score", "threshold", "verdict", "label", "id"]
    rows = [
        (r.created_at, r.product, r.station_id, r.part, r.score, r.threshold, r.verdict,
         SHOWN.get(r.review_label or "", ""), r.id)
        for r in page.rows
    ]  # fmt: skip
    frame = pd.DataFrame(rows, columns=columns)
    return frame.drop(columns=list(BLIND_COLUMNS)) if blind else frame


@dataclass(frozen=True)
class Views:
    """What the reviewer sees, each (H, W, 3) uint8 RGB or None when the blob is absent."""

    image: np.ndarray | None
    overlay: np.ndarray | None
    mask: np.ndarray | None
    missing: tuple[str, ...]


def load_views(
    store: Store, row: queries.QueueRow, registry: Registry | None = None, *, blind: bool = False
) -> Views:
    """The inspected image (at its model's bit depth: a 12-bit upload would show near black
    at the default), its anomaly overlay and mask outline; ``blind`` (the audit sample): the
    image alone, the same artefacts for every part whatever its verdict."""
    missing: list[str] = []
    reading = image_reading(registry, row.model_version) if registry is not None else None
    image = _blob_image(store, row.image_sha, "image", missing, *(reading or ()))
    if blind:
        return Views(image, None, None, tuple(missing))
    overlay = _blob_image(store, row.overlay_sha, "overlay", missing)
    if overlay is None and image is not None and row.map_sha:
        anomaly_map = _blob_map(store, row.map_sha, missing)
        overlay = heat_overlay(image, anomaly_map) if anomaly_map is not None else None
    mask = None
    if image is not None and row.mask_sha:
        mask_image = _blob_image(store, row.mask_sha, "mask", missing)
        mask = outline(image, mask_image[..., 0] > 127) if mask_image is not None else None
    elif not row.mask_sha:
        missing.append("mask")
    return Views(image, overlay, mask, tuple(missing))


def image_reading(registry: Registry, model_version: str) -> tuple[int, tuple[float, float] | None]:
    """(``image_bits``, ``image_range``) of ``<product>/<version>`` (the defaults, 16 and None,
    when unreadable)."""
    try:
        ref = VersionRef.parse(model_version)
        prep = registry.bundles.version(ref.product, ref.version).preprocessing()
    except (RegistryError, ValueError, OSError):
        return DEFAULT_SOURCE_BITS, None
    return prep.source_bits, prep.source_range


def _blob_image(
    store: Store,
    sha: str | None,
    what: str,
    missing: list[str],
    bits: int = DEFAULT_SOURCE_BITS,
    value_range: tuple[float, float] | None = None,
) -> np.ndarray | None:
    if not sha:
        missing.append(what)
        return None
    try:
        name = f"{what} blob {sha[:12]}"
        return decode_image(store.blobs.get(sha), name=name, bits=bits, value_range=value_range)
    except (FileNotFoundError, ImageDecodeError):
        missing.append(what)
        return None


def _blob_map(store: Store, sha: str, missing: list[str]) -> np.ndarray | None:
    try:
        path = store.blobs.checked_path(sha)
        if path.suffix == ".npy":
            data = np.load(io.BytesIO(path.read_bytes()), allow_pickle=False)
            return np.clip(np.squeeze(data).astype(np.float32), 0.0, 1.0)
        return decode_image(path.read_bytes())[..., 0].astype(np.float32) / 255.0
    except (FileNotFoundError, ImageDecodeError, ValueError):
        missing.append("anomaly map")
        return None


def heat_overlay(image: np.ndarray, anomaly_map: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend a (h, w) float map in [0, 1] as a JET heat map onto an (H, W, 3) uint8 RGB image."""
    height, width = image.shape[:2]
    resized = cv2.resize(anomaly_map.astype(np.float32), (width, height))
    heat = cv2.applyColorMap(np.uint8(np.clip(resized, 0, 1) * 255), cv2.COLORMAP_JET)
    heat = cv2.cvtColor(heat, cv2.COLOR_BGR2RGB)
    return cv2.addWeighted(image, 1.0 - alpha, heat, alpha, 0.0)


def outline(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The (H, W, 3) uint8 image with the (h, w) bool mask's contours drawn in red."""
    height, width = image.shape[:2]
    mask = cv2.resize(mask.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    drawn = image.copy()
    thickness = max(1, round(min(height, width) / 160))
    cv2.drawContours(drawn, contours, -1, OUTLINE_RGB, thickness)
    return drawn


def submit(
    store: Store,
    inspection_id: str,
    *,
    label: str,
    reviewer: str,
    defect_type: str | None = None,
    note: str | None = None,
    region: np.ndarray | None = None,
    shown: queries.QueueRow | None = None,
    settles: bool = False,
) -> Review:
    """Store a review label with the reviewer's name; ``region``, the painted (H, W) bool
    defect region, is kept with a ``defect`` label only. ``shown``: the queue row the reviewer
    labelled (``ReviewConflict`` when someone labelled it since); ``settles``: an admin's label,
    which settles reviewers' conflict (``Store.add_review``)."""
    defect_type = (defect_type or "").strip() or None
    return store.add_review(
        inspection_id,
        label=label,
        reviewer=reviewer,
        defect_type=defect_type,
        note=(note or "").strip() or None,
        region_sha=regions.store_region(store, region) if label == "defect" else None,
        seen=None if shown is None else SeenLabel(shown.review_label, shown.reviewed_by),
        settles=settles,
    )


def audit_frame(store: Store, inspection_id: str) -> pd.DataFrame:
    """Every review of one inspection, oldest first, with its painted region's blob prefix."""
    rows = [
        (r.created_at, r.reviewer, LABELS.get(r.label, r.label), r.defect_type or "",
         r.note or "", (r.region_sha or "")[:12])
        for r in store.reviews_of(inspection_id)
    ]  # fmt: skip
    columns = ["at", "reviewer", "label", "defect type", "note", "region"]
    return pd.DataFrame(rows, columns=columns)


def part_frame(store: Store, row: queries.QueueRow) -> pd.DataFrame:
    """Every view of ``row``'s part (same part id and station); empty without another view."""
    found = (
        queries.part_views(store, row.station_id, row.part_id, row.created_at)
        if row.part_id
        else []
    )
    rows = [
        ((request_id or "").split("/", 1)[-1], v.product, v.verdict, v.score, v.threshold, v.id)
        for request_id, v in (found if len(found) > 1 else [])
    ]
    return pd.DataFrame(rows, columns=["view", "product", "verdict", "score", "threshold", "id"])

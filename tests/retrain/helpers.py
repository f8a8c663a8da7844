"""Shared by the retrain tests: a scratch site, and reviewed inspections in its store."""

from __future__ import annotations

from pathlib import Path

from inspection.core.config import SiteConfig
from inspection.retrain.config import ChallengerExport
from inspection.store.store import Store

FP32 = ChallengerExport(precisions=("fp32",))
"""A champion that is trained and exported but never compared or served at length: FP32 only,
no INT8 quantisation and calibration. (A champion a gate evaluates and a station serves is
cheaper in INT8: ``test_pipeline.py`` keeps the shipped INT8-first export.)"""


def scratch_site(root: Path, datasets: Path) -> SiteConfig:
    """A site whose registry, SQLite store, blobs and reports all live under ``root``."""
    return SiteConfig(
        registry_dir=root / "registry",
        store_url=f"sqlite:///{root / 'inspection.db'}",
        blob_dir=root / "blobs",
        reports_dir=root / "reports",
        datasets_dir=datasets,
    )


def reviewed_inspection(
    store: Store,
    image: Path,
    label: str | None,
    defect_type: str | None = None,
    *,
    reviewer: str = "alice",
    inspection_id: str | None = None,
    region: Path | None = None,
) -> str:
    """Store an NG inspection of ``image`` (bytes in the blob store), review it unless
    ``label`` is None, and return its id (``inspection_id``: a chosen one); ``region``: a
    mask file stored as the region its reviewer painted."""
    sha = store.blobs.put(image.read_bytes(), ".png")
    region_sha = store.blobs.put(region.read_bytes(), ".png") if region is not None else None
    chosen = {"id": inspection_id} if inspection_id else {}
    row = store.add_inspection(
        **chosen,
        product="brick",
        station_id="st-1",
        score=0.7,
        threshold=0.5,
        verdict="NG",
        model_version="brick/v0001",
        bundle_id="v0001-int8",
        latency_ms=10.0,
        width=128,
        height=128,
        image_sha=sha,
    )
    if label is not None:
        store.add_review(
            row.id, label=label, reviewer=reviewer, defect_type=defect_type, region_sha=region_sha
        )
    return row.id


def split_ids(prefix: str, teaching: bool, count: int) -> list[str]:
    """``count`` inspection ids that ``teaches`` puts on the training (or evaluation) side."""
    from itertools import count as counter
    from itertools import islice

    from inspection.retrain.assemble import teaches

    found = (f"{prefix}{n:04d}" for n in counter())
    return list(islice((i for i in found if teaches(i) == teaching), count))

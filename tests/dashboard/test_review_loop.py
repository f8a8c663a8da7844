"""#67's loop end to end: NG parts reviewed with painted regions in the dashboard, then
``inspection retrain``; the gate promotes the challenger trained on them, and it misses fewer
held-out parts of that kind than the champion did.

The site: a small demo product (``PRODUCT``) with a live PatchCore champion trained on good
parts only, and ``TEACH + HELD`` parts with a ``KIND`` defect from their own seeded stream,
stored as NG inspections (a station's score and verdict, given here, not computed). Their ids
are chosen so that ``assemble.teaches`` puts ``TEACH`` of them in training and the rest in the
evaluation set. One teaching part is reviewed in real Chromium: a reviewer signs in, paints a
stroke across the defect on the review page's canvas and clicks *True defect*. The others are
reviewed through ``review.submit``, the function that button calls, with the part's true mask
as the painted region. Then ``inspection retrain`` runs (the CLI, in process) with the shipped
settings: ``supervised: auto`` keeps the head only where, out of fold, it misses fewer defects
at the false-reject budget (``training.models.mixed.keep``); the gate is
``configs/retrain.yaml``'s, AUPRO included, with latency tolerance 100 % (shared cores, as in
``tests/retrain``). Both bundles are FP32: whether INT8 passes its export gate depends on the
CPU (``test_pipeline.py`` covers that path), and it would move either side's threshold.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from inspection.core.config import load_site_config
from inspection.core.registry import Registry
from inspection.core.retrain_report import ModelEvaluation, read_retrain_report
from inspection.retrain.assemble import REVIEWED_DEFECT
from inspection.store.store import Store
from tests.dashboard.test_browser import (
    _open_page,
    _settle,
    _signed_in,
    _stored_review,
    paint,
    serving,
)
from tests.retrain.helpers import FP32, split_ids

pytestmark = [pytest.mark.browser, pytest.mark.slow]
PRODUCT, KIND, SIZE = "part", "burr", 256
TEACH, HELD = 12, 12
OVERRIDES = [
    f"image_size=[{SIZE}, {SIZE}]",
    "coreset_sampling_ratio=0.05",
    "operating_point.policy=f1",
]
GATE = {
    **yaml.safe_load((Path(__file__).parents[2] / "configs" / "retrain.yaml").read_text())["gate"],
    "latency_tolerance": 1.0,
}
"""``configs/retrain.yaml``'s gate (AUPRO included); latency: shared cores."""


@pytest.fixture
def site(seed, tmp_path: Path) -> Path:
    """A site YAML (``seed_dashboard.write_site``): the demo product in its datasets folder
    and its live champion, trained on good parts only."""
    from inspection.core.product_config import load_model_config
    from inspection.core.signing import init_keys, site_keys_dir
    from inspection.data.demo import write_demo_product
    from inspection.retrain.demo import train_champion

    path = seed.write_site(tmp_path / "site", [PRODUCT])
    config = load_site_config(path)
    data = write_demo_product(
        config.datasets_dir, PRODUCT, seed=0, n_train=20, n_test_good=20, n_test_per_defect=10,
        size=SIZE,
    )  # fmt: skip
    init_keys(site_keys_dir(config.registry_dir))
    model = load_model_config("patchcore", overrides=OVERRIDES)
    registry = Registry(config.registry_dir)
    train_champion(model, data, product=PRODUCT, registry=registry, actor="t", export=FP32)
    return path


def _line_parts(store: Store, tmp_path: Path) -> dict[str, tuple[Path, Path]]:
    """``TEACH + HELD`` NG inspections of ``KIND`` parts from their own seeded stream,
    unreviewed; by inspection id (teaching ids first): (image, true mask)."""
    from inspection.data.demo import write_demo_product

    line = write_demo_product(
        tmp_path / "line", PRODUCT, seed=7, n_train=1, n_test_good=1,
        n_test_per_defect=TEACH + HELD, size=SIZE, only_kinds=[KIND],
    )  # fmt: skip
    images = sorted((line / "test" / KIND).glob("*.png"))
    ids = split_ids("line-", True, TEACH) + split_ids("line-", False, HELD)
    parts = {}
    for inspection_id, image in zip(ids, images, strict=True):
        store.add_inspection(
            id=inspection_id, product=PRODUCT, station_id="st-1", score=0.9, threshold=0.5,
            verdict="NG", model_version=f"{PRODUCT}/v0001", bundle_id="v0001-int8",
            latency_ms=10.0, width=SIZE, height=SIZE,
            image_sha=store.blobs.put(image.read_bytes(), ".png"),
        )  # fmt: skip
        parts[inspection_id] = (image, line / "ground_truth" / KIND / f"{image.stem}_mask.png")
    return parts


def _pixels(png: bytes) -> np.ndarray:
    from inspection.core.images import defect_pixels, mask_levels

    return defect_pixels(mask_levels(png))


def _review_in_chromium(driver, url: str, store: Store, truth: np.ndarray) -> str:
    """Sign in as a reviewer, paint a stroke across the defect (through the middle row of the
    true mask's bounding box, side to side), confirm NG; the stored review's inspection id."""
    _signed_in(driver, url, store, "painter", "reviewer")
    _open_page(driver, "Review queue")
    rows, columns = np.nonzero(truth)
    middle = (rows.min() + rows.max() + 1) / 2 / SIZE
    paint(driver, [(columns.min() / SIZE, middle), ((columns.max() + 1) / SIZE, middle)])
    _settle(driver)
    saved = _stored_review(driver, store, "True defect", "painter")
    assert saved.label == "defect" and saved.region_sha, saved
    return saved.inspection_id


def _review(browser, site: Path, tmp_path: Path) -> dict[str, tuple[Path, Path]]:
    """The line parts, all reviewed as defects with a painted region: the first teaching one
    in Chromium, the others as the page's button stores them."""
    from inspection.dashboard import review

    config = load_site_config(site)
    store = Store.migrated(config.store_url, config.blob_dir)
    parts = _line_parts(store, tmp_path)
    first, *others = parts
    for inspection_id in others:
        truth = _pixels(parts[inspection_id][1].read_bytes())
        review.submit(store, inspection_id, label="defect", reviewer="qa", region=truth)
    truth = _pixels(parts[first][1].read_bytes())
    with serving(site) as url:  # the queue holds one unreviewed NG part: ``first``
        assert _review_in_chromium(browser, url, store, truth) == first
    painted = _pixels(store.blobs.get(store.get_inspection(first).review_region_sha))
    assert painted.shape == truth.shape and (painted & truth).any()  # across the defect
    store.engine.dispose()
    return parts


def _retrain(site: Path, tmp_path: Path) -> None:
    """``inspection retrain`` as shipped (``supervised: auto``), ``GATE``, FP32 only."""
    from inspection.cli import app

    settings = {"work_dir": str(tmp_path / "work"), "warmup": 1, "export": {"precisions": ["fp32"]},
                "gate": GATE}  # fmt: skip
    (tmp_path / "retrain.yaml").write_text(yaml.safe_dump(settings))
    result = CliRunner().invoke(
        app, ["retrain", "--product", PRODUCT, "--site", str(site),
              "--config", str(tmp_path / "retrain.yaml"), "--actor", "qa"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output


def test_reviews_painted_in_the_dashboard_teach_a_challenger_the_gate_promotes(
    browser, site: Path, tmp_path: Path
) -> None:
    registry = Registry(load_site_config(site).registry_dir)
    champion = registry.journal.live(PRODUCT).bundle_id
    parts = _review(browser, site, tmp_path)
    _retrain(site, tmp_path)

    event = registry.journal.events(PRODUCT)[-1]
    assert (event["action"], event["decision"]) == ("retrain", "promote"), event
    assert registry.journal.live(PRODUCT).bundle_id == event["challenger"] != champion
    report = read_retrain_report(Path(event["report"]) / "report.json")
    data = report.data
    teaching, held = list(parts)[:TEACH], list(parts)[TEACH:]
    assert sorted(data["train_reviewed_defect_ids"]) == sorted(teaching)
    assert data["train_reviewed_defect_painted"] == TEACH  # the browser's region among them
    assert sorted(data["reviewed_defect_ids"]) == sorted(held)
    trained = {_sha(p) for p in (Path(data["train_root"]) / "train").rglob("*.png")}
    assert {_sha(parts[i][0]) for i in teaching} <= trained
    assert not trained & {_sha(parts[i][0]) for i in held}  # no held-out part taught
    supervised = registry.bundles.version(PRODUCT, event["challenger_version"]).extra["supervised"]
    assert supervised["kept"] and supervised["labelled"] == {REVIEWED_DEFECT: TEACH}, supervised

    missed = {"champion": _held_miss_rate(report.champion),
              "challenger": _held_miss_rate(report.challenger)}  # fmt: skip
    assert missed["challenger"] < missed["champion"], missed


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _held_miss_rate(side: ModelEvaluation | None) -> float:
    """Miss rate at the bundle's own threshold on the held-out reviewed parts: the only
    evaluation items of defect type ``REVIEWED_DEFECT`` (no reviewer gave a type)."""
    assert side is not None
    held = side.full_metrics["per_defect"][REVIEWED_DEFECT]
    assert held["n_defective"] == HELD, held
    return held["miss_rate"]

"""Fast checks of a retrain run's guards: no training, a registry written by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from inspection.core.errors import ConfigError
from inspection.core.registry import Registry
from inspection.retrain.assemble import assemble_run_data
from inspection.retrain.config import retrain_config_from_mapping
from inspection.retrain.pipeline import _since, _skipped_last_run, retrain_product
from inspection.store.models import Inspection
from inspection.store.store import Store

from .helpers import reviewed_inspection, scratch_site


def _trained(registry: Registry, product: str = "brick") -> None:
    registry.bundles.create_version(
        product, model_kind="patchcore", config={}, dataset={}, metrics={}, packages={}
    )


def test_an_unknown_product_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    """A typo (or a product with reviews but no model) made a registry folder holding a
    failed event, which ``retrain --all`` then retrained, and failed, every time."""
    site = scratch_site(tmp_path, tmp_path / "datasets")
    registry = Registry(site.registry_dir)
    _trained(registry)
    config = retrain_config_from_mapping({"work_dir": str(tmp_path / "work")})
    with pytest.raises(ConfigError, match=r"'brcik' has no trained model .*trained there: brick"):
        retrain_product("brcik", site=site, config=config)
    assert registry.bundles.products() == ["brick"]
    assert not (tmp_path / "work").exists()


def test_a_review_recorded_while_a_run_trained_is_new_to_the_next_run(tmp_path: Path) -> None:
    """Reviewed-good since the champion meant: since its version was made. A review recorded
    after its run read the reviews but before that was in no training set, ever."""
    site = scratch_site(tmp_path, tmp_path / "datasets")
    registry = Registry(site.registry_dir)
    _trained(registry)
    champion = registry.bundles.version("brick", "v0001")
    read = datetime.fromisoformat(champion.created_at) - timedelta(minutes=30)
    registry.journal.record_event(
        "brick", "retrain", actor="t", reason="", status="promoted", challenger="v0001-int8",
        challenger_version="v0001", reviews_until=read.isoformat(),
    )  # fmt: skip
    store = Store.migrated(site.store_url, site.blob_dir)
    (tmp_path / "part.png").write_bytes(b"png")
    late = reviewed_inspection(store, tmp_path / "part.png", "good")
    with store.session() as session:
        session.get(Inspection, late).reviewed_at = read + timedelta(minutes=10)
    config = retrain_config_from_mapping({"work_dir": str(tmp_path / "work")})

    since = _since(registry, "brick", config, champion)
    assert since == read
    assert [row.id for row in store.reviewed("brick", ["good"], since=since)] == [late]
    _trained(registry)  # made by hand (inspection train): no run read reviews for it
    newest = registry.bundles.version("brick", "v0002")
    latest = retrain_config_from_mapping({"reviewed_since": "latest_version"})
    assert _since(registry, "brick", latest, None) == datetime.fromisoformat(newest.created_at)


def test_a_review_left_out_for_its_missing_image_is_tried_again_by_the_next_run(
    tmp_path: Path, tiny_product: Path
) -> None:
    """A reviewed-good image missing from the blob store was left out with a log line, and the
    cut-off then moved past it: restored, it never reached training."""
    from inspection.data.dataset import load_dataset

    site = scratch_site(tmp_path, tmp_path / "datasets")
    registry = Registry(site.registry_dir)
    store = Store.migrated(site.store_url, site.blob_dir)
    dataset = load_dataset(tiny_product)
    image = dataset.train_samples[0].path  # never a held-out one: left out
    review = reviewed_inspection(store, image, "good")
    blob = store.blobs.path(store.get_inspection(review).image_sha)
    blob.unlink()
    first = assemble_run_data(dataset, store, "brick", tmp_path / "run1")
    assert list(first.skipped) == [review] and first.reviewed_good == ()
    registry.journal.record_event(
        "brick", "retrain", actor="t", reason="", status="kept",
        skipped_review_ids=list(first.skipped),
    )  # fmt: skip
    assert _skipped_last_run(registry, "brick") == [review]

    blob.write_bytes(image.read_bytes())  # restored
    later = datetime.now(UTC) + timedelta(days=1)  # a cut-off past the review
    second = assemble_run_data(
        dataset, store, "brick", tmp_path / "run2", since=later,
        carry_over=_skipped_last_run(registry, "brick"),
    )  # fmt: skip
    assert second.reviewed_good == (review,) and second.skipped == {}

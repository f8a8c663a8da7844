"""A reproducible retraining demo (``python -m inspection.retrain.demo --out DIR --reports DIR``):
train and promote an INT8 champion on a demo product with few images, inspect fresh "line"
images with it into a SQLite store, review them from the known ground truth, and run
``retrain_product``, whose report lands under ``<reports>/retrain/<product>/<run>``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from inspection.core.config import SiteConfig
from inspection.core.images import read_image
from inspection.core.product_config import load_model_config
from inspection.core.registry import Registry
from inspection.data.dataset import load_dataset
from inspection.data.demo import write_demo_product
from inspection.retrain.config import load_retrain_config
from inspection.retrain.pipeline import RetrainResult, retrain_product
from inspection.store.store import Store

if TYPE_CHECKING:
    from inspection.core.product_config import ModelConfig

log = logging.getLogger(__name__)


def train_champion(
    config: ModelConfig, data: Path, *, product: str, registry: Registry, actor: str
) -> str:
    """Train ``config`` on the dataset at ``data`` and promote its INT8 bundle as the live
    champion (export gate forced: a demo or test champion need not be good). Its bundle id."""
    # deferred: torch (the training side)
    from inspection.training.export import ExportOptions
    from inspection.training.registry_export import RegistryExport, export_bundle
    from inspection.training.train import train

    train(config, load_dataset(data), product=product, registry=registry, progress=False)
    return export_bundle(
        registry,
        product,
        ExportOptions(precision="int8", force=True),
        RegistryExport(promote=True, actor=actor),
    ).bundle_id


def run_demo(
    out: Path,
    reports: Path,
    *,
    product: str = "brick",
    size: int = 128,
    n_train: int = 16,
    n_line_good: int = 32,
    n_line_defect: int = 2,
    config_file: Path | None = None,
) -> tuple[RetrainResult, dict]:
    """Run the whole demo under ``out``; returns the retrain result and timings/counts."""
    site = SiteConfig(
        registry_dir=out / "registry",
        store_url=f"sqlite:///{out / 'inspection.db'}",
        blob_dir=out / "blobs",
        reports_dir=reports,
        datasets_dir=out / "datasets",
    )
    facts: dict = {"product": product, "image_size": size}
    started = time.perf_counter()
    data = write_demo_product(
        site.datasets_dir, product, seed=0, n_train=n_train, n_test_good=8, n_test_per_defect=4,
        size=size,
    )  # fmt: skip
    registry = Registry(site.registry_dir)
    model_config = load_model_config(
        "patchcore", product=product, overrides=[f"image_size=[{size}, {size}]"]
    )
    train_champion(model_config, data, product=product, registry=registry, actor="demo")
    facts["champion_seconds"] = round(time.perf_counter() - started, 1)

    facts["reviews"] = _inspect_and_review(
        site, registry, product, size, n_line_good, n_line_defect
    )
    config = load_retrain_config(config_file, {"work_dir": str(out / "work")})
    started = time.perf_counter()
    result = retrain_product(product, site=site, config=config, actor="demo", progress=log.info)
    facts["retrain_seconds"] = round(time.perf_counter() - started, 1)
    return result, facts


def _inspect_and_review(
    site: SiteConfig, registry: Registry, product: str, size: int, n_good: int, n_defect: int
) -> dict[str, int]:
    """Inspect fresh line images with the live bundle, store them, review from ground truth."""
    # deferred: openvino
    from inspection.runtime.predictor import load_inspector

    line = write_demo_product(
        site.datasets_dir.parent / "line", product, seed=1, n_train=n_good, n_test_good=0,
        n_test_per_defect=n_defect, size=size,
    )  # fmt: skip
    inspector = load_inspector(registry.live_bundle_dir(product))
    store = Store.migrated(site.store_url, site.blob_dir)
    counts: dict[str, int] = {}
    paths = sorted((line / "train" / "good").glob("*.png"))
    paths += sorted(p for p in (line / "test").rglob("*.png") if p.parent.name != "good")
    for index, path in enumerate(paths):
        result = inspector.inspect(read_image(path))
        row = store.add_inspection(
            product=product, station_id="line-1", score=result.score, threshold=result.threshold,
            verdict=result.verdict, model_version=result.model_version,
            bundle_id=inspector.metadata.bundle_id, latency_ms=result.latency_ms,
            width=size, height=size, image_sha=store.blobs.put(path.read_bytes(), ".png"),
        )  # fmt: skip
        defective = path.parent.name != "good"
        if index % 11 == 5:
            label = "unsure"
        elif defective:
            label = "defect"
        else:
            label = "false_alarm" if result.verdict == "NG" else "good"
        defect_type = path.parent.name if label == "defect" else None
        store.add_review(row.id, label=label, reviewer="demo-qa", defect_type=defect_type)
        counts[label] = counts.get(label, 0) + 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("var/retrain-demo"))
    parser.add_argument("--reports", type=Path, default=Path("reports"))
    parser.add_argument("--config", type=Path, default=None, help="retrain YAML")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.out.exists():
        raise SystemExit(f"{args.out} exists; remove it or pick another --out")
    result, facts = run_demo(args.out, args.reports, config_file=args.config)
    print(result.summary())
    print(json.dumps(facts, indent=2))


if __name__ == "__main__":
    main()

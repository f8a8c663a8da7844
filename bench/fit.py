"""PatchCore fit speed: coreset samplers, fit time vs training images, incremental update.

    python bench/fit.py --parts samplers,scaling,incremental [--products brick,grass,gravel,weave]
        [--sizes 60,120,300,1000] [--budget 540] [--added 50] [--data datasets] [--out reports/bench]

- ``samplers``: per product, the training patch embeddings are extracted once (the product's
  PatchCore config); anomalib's ``KCenterGreedy`` and ours (``training.coreset``) pick the same
  k under the same seed. Recorded: selection seconds, coverage radius (largest distance from any
  training patch to its nearest kept patch, original feature space), test image AUROC, pixel
  AUROC and AUPRO of the resulting bank (raw scores: no threshold involved).
- ``scaling``: ``train.fit`` (patch extraction + coreset, as ``inspection train`` times it) on
  the first N of max(sizes) freshly generated brick training images (demo generator, seed 1000,
  cached under ``var/bench-data``); a size whose fit would overrun ``--budget`` seconds
  (extrapolated from the growth of the previous two) is recorded as not run; with
  the bank rows and the kNN step per image (one image's patches against the bank, torch, all
  threads; the part of station latency that grows with the bank).
- ``incremental``: a PatchCore trained on the demo brick set, then ``--added`` new good brick
  images (seed 2000) added by ``training.incremental.update_patchcore`` vs a full refit on the
  union; update seconds (until registered, and without the test-split evaluation that every
  version records) and held-out test figures of both.

Each part replaces its own rows in ``<out>/fit.json`` (samplers: the products run) and
rewrites ``<out>/fit.md``; the load average before and after each part is recorded with it.
"""

from __future__ import annotations

# isort: off
import inspection  # noqa: F401  (first: sets OMP_WAIT_POLICY before torch loads OpenMP)

# isort: on
import argparse
import math
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning
import numpy as np
import torch
from _report import previous_report, save_report

from inspection.core.metrics import aupro, image_auroc, pixel_auroc
from inspection.core.product_config import load_model_config
from inspection.core.registry import Registry
from inspection.data.dataset import load_dataset
from inspection.training.backbones import resolve_weights
from inspection.training.coreset import coverage_radius, select_coreset
from inspection.training.evaluate import predict
from inspection.training.train import (
    build_model,
    evaluation_splits,
    fit,
    make_loader,
    train_model,
)

GENERATED = Path("var/bench-data")


# ------------------------------------------------------------------------------ samplers
def anomalib_indices(embedding: torch.Tensor, ratio: float) -> torch.Tensor:
    from anomalib.models.components import KCenterGreedy

    return torch.tensor(
        KCenterGreedy(embedding=embedding, sampling_ratio=ratio).select_coreset_idxs()
    )


def ours_indices(embedding: torch.Tensor, ratio: float) -> torch.Tensor:
    return select_coreset(embedding, ratio).indices


SAMPLERS = {"anomalib": anomalib_indices, "ours": ours_indices}


def embeddings(model: Any, samples: list, config: Any) -> torch.Tensor:
    """(patches, channels) training embeddings, as PatchCore's training epoch collects them."""
    model.model.train()
    with torch.no_grad():
        for batch in make_loader(samples, config):
            model.model(model.pre_processor(batch.image))
    embedding = torch.vstack(model.model.embedding_store)
    model.model.embedding_store.clear()
    model.model.eval()
    return embedding


def raw_figures(predictions: Any) -> dict[str, float | None]:
    """Threshold-free figures of raw outputs (pixel ones on images with known masks)."""
    known = predictions.mask_known
    return {
        "image_auroc": image_auroc(predictions.scores, predictions.labels),
        "pixel_auroc": pixel_auroc(predictions.maps[known], predictions.gt_masks[known]),
        "aupro": aupro(predictions.maps[known], predictions.gt_masks[known]),
    }


def compare_samplers(data: Path, product: str) -> list[dict[str, Any]]:
    dataset = load_dataset(data / product)
    config = load_model_config("patchcore", product=product)
    weights = resolve_weights(
        config.backbone.name, config.backbone.weights, config.backbone.weights_file
    )
    model = build_model(config, weights)
    _, test = evaluation_splits(config, dataset)
    embedding = embeddings(model, list(dataset.train_samples), config)
    rows = []
    for name, sampler in SAMPLERS.items():
        lightning.seed_everything(config.seed, verbose=False)
        started = time.perf_counter()
        indices = sampler(embedding, config.coreset_sampling_ratio)
        seconds = time.perf_counter() - started
        model.model.memory_bank = embedding[indices].contiguous()
        figures = raw_figures(predict(model, test, image_size=config.image_size))
        rows.append(
            {
                "product": product,
                "sampler": name,
                "patches": embedding.shape[0],
                "k": len(indices),
                "seconds": round(seconds, 3),
                "radius": round(coverage_radius(embedding, embedding[indices]), 4),
                **{k: round(v, 4) if v is not None else None for k, v in figures.items()},
            }
        )
        print(rows[-1], flush=True)
    return rows


# ------------------------------------------------------------------------------- scaling
def generated(
    name: str, seed: int, n_train: int, n_test_good: int = 1, per_defect: int = 1
) -> Path:
    """A brick set from the demo generator (cached under ``var/bench-data``)."""
    from inspection.data.demo import write_demo_product

    root = GENERATED / f"{name}-{n_train}"  # a larger request never reuses a smaller set
    if not (root / "brick" / "train").is_dir():
        write_demo_product(
            root, "brick", seed=seed, n_train=n_train, n_test_good=n_test_good,
            n_test_per_defect=per_defect, size=256,
        )  # fmt: skip
    return root / "brick"


def _extrapolate(done: list[dict[str, Any]], n: int) -> float:
    """Seconds a fit of ``n`` images should take: the growth exponent of the last two sizes
    fitted (clipped to [1, 2]; 2 with one size, 0 s with none)."""
    if not done:
        return 0.0
    last = done[-1]
    exponent = 2.0
    if len(done) > 1:
        before = done[-2]
        ratio = math.log(last["fit_seconds"] / before["fit_seconds"])
        exponent = min(
            2.0, max(1.0, ratio / math.log(last["train_images"] / before["train_images"]))
        )
    return last["fit_seconds"] * (n / last["train_images"]) ** exponent


def knn_ms(model: Any, bank: torch.Tensor, image: torch.Tensor, repeats: int = 20) -> float:
    """Median ms of one image's patch-to-bank nearest-neighbour search (anomalib's own)."""
    model.model.train()
    with torch.no_grad():
        model.model(model.pre_processor(image[None]))
    patches = model.model.embedding_store.pop()
    model.model.embedding_store.clear()
    model.model.eval()
    inner = model.model
    times = []
    with torch.no_grad():
        for _ in range(repeats):
            started = time.perf_counter()
            inner.nearest_neighbors(patches, n_neighbors=1)
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def scaling(data: Path, sizes: list[int], budget: float) -> list[dict[str, Any]]:
    """Fit time vs training images; a size whose fit (``_extrapolate``) would not end within
    ``budget`` seconds of fitting is recorded as not run."""
    del data
    source = load_dataset(generated("scaling", 1000, max(sizes)))
    started = time.perf_counter()  # the budget counts fits, not the one-off data generation
    config = load_model_config("patchcore", product="brick")
    weights = resolve_weights(
        config.backbone.name, config.backbone.weights, config.backbone.weights_file
    )
    validation = list(source.test_samples)
    rows: list[dict[str, Any]] = []
    for n in sorted(sizes):
        estimate = _extrapolate([r for r in rows if r.get("fit_seconds") is not None], n)
        if time.perf_counter() - started + estimate > budget:
            rows.append({"train_images": n, "fit_seconds": None, "estimate_seconds": estimate})
            print(f"{n} images not run: ~{estimate:.0f} s estimated, over the budget", flush=True)
            continue
        samples = list(source.train_samples[:n])
        model, seconds = fit(config, samples, validation, weights, progress=False)
        bank = model.model.memory_bank
        image = make_loader(samples[:1], config).dataset[0].image
        rows.append(
            {
                "train_images": n,
                "fit_seconds": round(seconds, 1),
                "bank_rows": int(bank.shape[0]),
                "bank_mb": round(bank.numel() * bank.element_size() / 2**20, 1),
                "knn_ms": round(knn_ms(model, bank, image), 2),
            }
        )
        print(rows[-1], flush=True)
    return rows


# --------------------------------------------------------------------------- incremental
def incremental(data: Path, added: int) -> list[dict[str, Any]]:
    from inspection.training.incremental import update_patchcore

    base = load_dataset(data / "brick")
    new = sorted(load_dataset(generated("added", 2000, added)).train_samples, key=str)[:added]
    config = load_model_config("patchcore", product="brick")
    work = Path(tempfile.mkdtemp(prefix="bench-fit-"))
    try:
        registry = Registry(work / "registry")
        parent = train_model(config, base, product="brick", registry=registry, progress=False)
        update = update_patchcore(registry, "brick", [s.path for s in new], dataset=base)
        union = _union(base.root, [s.path for s in new], work / "union")
        full = train_model(config, union, product="brick", registry=registry, progress=False)
        rows = []
        for name, record in (
            ("parent (60 images)", parent.record),
            (f"incremental +{added}", update.record),
            (f"full refit {len(union.train_samples)}", full.record),
        ):
            overall, fit = record.evaluation().overall, record.fit_figures()
            lineage = record.lineage()
            stages = fit.update_stage_seconds or {}
            # the update's own clock runs until it is registered
            seconds = round(update.seconds, 2) if record is update.record else fit.fit_seconds
            rows.append(
                {
                    "model": name,
                    "seconds": seconds,
                    # what an update costs without its test report (evaluate: test split)
                    "update_seconds": round(seconds - stages["evaluate"], 2) if stages else None,
                    "evaluate_seconds": stages.get("evaluate"),
                    "bank_rows": lineage.bank_rows_after if lineage else None,
                    **{k: getattr(overall, k) for k in ("image_auroc", "pixel_auroc", "aupro")},
                    **{k: getattr(overall, k) for k in ("false_reject_rate", "miss_rate")},
                    "stages": fit.update_stage_seconds,
                }
            )
            print(rows[-1], flush=True)
        return rows
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _union(root: Path, extra: list[Path], target: Path) -> Any:
    """``root``'s MVTec tree plus ``extra`` good training images (same test split)."""
    shutil.copytree(root, target)
    for index, path in enumerate(extra):
        shutil.copyfile(path, target / "train" / "good" / f"added-{index:04d}{path.suffix}")
    return load_dataset(target)


# -------------------------------------------------------------------------------- output
PARTS = {"samplers": compare_samplers, "scaling": scaling, "incremental": incremental}


def markdown(result: dict[str, Any]) -> str:
    lines = ["# PatchCore fit speed (bench/fit.py)", ""]
    for part, entry in result.get("parts", {}).items():
        load = entry["load_before"]
        lines += [
            f"## {part}",
            "",
            f"Run {entry['at']}, {entry['threads']} torch threads; load average before "
            f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}, after {entry['load_after'][0]:.2f} "
            f"(1-min). {entry.get('note', '')}",
            "",
            *TABLES[part](entry["rows"]),
            "",
        ]
    return "\n".join(lines)


def _sampler_table(rows: list[dict[str, Any]]) -> list[str]:
    out = [
        "| product | sampler | patches | k | seconds | speed-up | radius | radius ratio "
        "| image AUROC | pixel AUROC | AUPRO |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    reference = {r["product"]: r for r in rows if r["sampler"] == "anomalib"}
    for r in rows:
        ref = reference[r["product"]]
        out.append(
            f"| {r['product']} | {r['sampler']} | {r['patches']} | {r['k']} | {r['seconds']:.2f} "
            f"| {ref['seconds'] / r['seconds']:.1f}x | {r['radius']:.3f} "
            f"| {r['radius'] / ref['radius']:.4f} | {fmt(r['image_auroc'])} "
            f"| {fmt(r['pixel_auroc'])} | {fmt(r['aupro'])} |"
        )
    return out


def _scaling_table(rows: list[dict[str, Any]]) -> list[str]:
    out = [
        "| train images | fit s | bank rows | bank MB | kNN ms/image |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r["fit_seconds"] is None:
            estimate = f"not run (~{r['estimate_seconds']:.0f} s estimated, over --budget)"
            out.append(f"| {r['train_images']} | {estimate} | | | |")
            continue
        out.append(
            f"| {r['train_images']} | {r['fit_seconds']:.1f} | {r['bank_rows']} | {r['bank_mb']} "
            f"| {r['knn_ms']:.2f} |"
        )
    return out


def _incremental_table(rows: list[dict[str, Any]]) -> list[str]:
    out = [
        "| model | seconds | update w/o test eval s | test eval s | image AUROC | pixel AUROC "
        "| AUPRO | false-reject | miss |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    out += [
        f"| {r['model']} | {r['seconds']:.1f} | {_seconds(r.get('update_seconds'))} "
        f"| {_seconds(r.get('evaluate_seconds'))} | {fmt(r['image_auroc'])} "
        f"| {fmt(r['pixel_auroc'])} | {fmt(r['aupro'])} | {fmt(r['false_reject_rate'])} "
        f"| {fmt(r['miss_rate'])} |"
        for r in rows
    ]
    stages = [r for r in rows if r.get("stages")]
    out += [f"\nIncremental update stages (s): {r['stages']}" for r in stages]
    return out


TABLES = {"samplers": _sampler_table, "scaling": _scaling_table, "incremental": _incremental_table}


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def run_part(part: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    if part == "samplers":
        return [row for p in args.products.split(",") for row in compare_samplers(args.data, p)]
    if part == "scaling":
        return scaling(args.data, [int(n) for n in args.sizes.split(",")], args.budget)
    return incremental(args.data, args.added)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("datasets"))
    parser.add_argument("--out", type=Path, default=Path("reports/bench"))
    parser.add_argument("--parts", default="samplers,scaling,incremental")
    parser.add_argument("--products", default="brick,grass,gravel,weave")
    parser.add_argument("--sizes", default="60,120,300,1000")
    parser.add_argument("--added", type=int, default=50)
    parser.add_argument(
        "--budget", type=float, default=540.0, help="Seconds the scaling part may take."
    )
    parser.add_argument("--note", default="", help="Recorded with each part run.")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    result = previous_report(args.out, "fit")
    for part in args.parts.split(","):
        if part not in PARTS:
            raise SystemExit(f"unknown part {part!r}; valid: {', '.join(PARTS)}")
        load = os.getloadavg()
        rows = run_part(part, args)
        if part == "samplers":  # rows of products not run this time are kept
            done = {row["product"] for row in rows}
            old = result.get("parts", {}).get(part, {}).get("rows", [])
            rows = [r for r in old if r["product"] not in done] + rows
        result.setdefault("parts", {})[part] = {
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "threads": torch.get_num_threads(),
            "load_before": [round(x, 2) for x in load],
            "load_after": [round(x, 2) for x in os.getloadavg()],
            "note": args.note,
            "rows": rows,
        }
        save_report(args.out, "fit", result, markdown(result), default=_json)
    print(markdown(result))


def _json(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else str(value)


if __name__ == "__main__":
    main()

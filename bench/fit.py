"""anomalib's k-center-greedy sampler vs ours on the same PatchCore features, per demo product.

    python bench/fit.py [--data datasets] [--products brick,grass,gravel,weave] [--out reports/bench]

For each product: the training patch embeddings are extracted once (the product's PatchCore
config), then each sampler picks the same k from them under the same seeds. Recorded: selection
time, coverage radius (largest distance from any training patch to its nearest kept patch, in
the original feature space) and test image AUROC, pixel AUROC and AUPRO of the resulting bank.
Writes ``<out>/fit.json`` and ``<out>/fit.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import lightning
import torch

from inspection.core.metrics import aupro, image_auroc, pixel_auroc
from inspection.data.dataset import load_dataset
from inspection.training.backbones import resolve_weights
from inspection.training.config import load_model_config
from inspection.training.coreset import coverage_radius, select_coreset
from inspection.training.evaluate import predict
from inspection.training.train import build_model, evaluation_splits, make_loader


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
    return embedding


def compare(data: Path, product: str) -> list[dict[str, Any]]:
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
        predictions = predict(model, test, image_size=config.image_size)
        known = predictions.mask_known  # threshold-free figures: no calibration needed
        maps, masks = predictions.maps[known], predictions.gt_masks[known]
        rows.append(
            {
                "product": product,
                "sampler": name,
                "patches": embedding.shape[0],
                "k": len(indices),
                "seconds": round(seconds, 3),
                "radius": round(coverage_radius(embedding, embedding[indices]), 4),
                "image_auroc": image_auroc(predictions.scores, predictions.labels),
                "pixel_auroc": pixel_auroc(maps, masks),
                "aupro": aupro(maps, masks),
            }
        )
        print(rows[-1], flush=True)
    return rows


def markdown(rows: list[dict[str, Any]], load: tuple[float, ...]) -> str:
    lines = [
        "# PatchCore coreset: anomalib's KCenterGreedy vs ours (same features, same k, same seed)",
        "",
        f"Load average at start: {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1/5/15 min).",
        "",
        "| product | sampler | patches | k | seconds | speed-up | radius | radius ratio "
        "| image AUROC | pixel AUROC | AUPRO |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    reference = {r["product"]: r for r in rows if r["sampler"] == "anomalib"}
    for r in rows:
        ref = reference[r["product"]]
        lines.append(
            f"| {r['product']} | {r['sampler']} | {r['patches']} | {r['k']} | {r['seconds']:.2f} "
            f"| {ref['seconds'] / r['seconds']:.1f}x | {r['radius']:.3f} "
            f"| {r['radius'] / ref['radius']:.4f} | {fmt(r['image_auroc'])} "
            f"| {fmt(r['pixel_auroc'])} | {fmt(r['aupro'])} |"
        )
    return "\n".join(lines) + "\n"


def fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("datasets"))
    parser.add_argument("--out", type=Path, default=Path("reports/bench"))
    parser.add_argument("--products", default="brick,grass,gravel,weave")
    args = parser.parse_args()
    load = os.getloadavg()
    rows = [row for product in args.products.split(",") for row in compare(args.data, product)]
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"load_average": list(load), "threads": torch.get_num_threads(), "samplers": rows}
    (args.out / "fit.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "fit.md").write_text(markdown(rows, load))
    print(markdown(rows, load))


if __name__ == "__main__":
    main()

"""Probe: does a discriminative head trained on synthetic feature noise beat PatchCore on hard surfaces?

    python bench/supersimplenet.py [--products grass,gravel,weave,tissue,brick]
                                   [--epochs 60] [--scale 1] [--out reports/hard_surfaces]

PatchCore asks how far each patch is from its nearest good patch; on grass and gravel the
offline ImageNet Lite0 features put cracks no farther than good texture. anomalib's
SuperSimpleNet learns instead: a 1x1 feature adaptor and a segmentation-detection head are
trained to tell good features from the same features with Gaussian noise added inside
Perlin-shaped regions (anomalib's ``AnomalyGenerator``, ``SSNLoss``, optimiser and schedule of
its Lightning module). The backbone is frozen, so its upscaled, pooled features
(``UpscalingFeatureExtractor``) are computed once per image and the head is trained on them.

The model is anomalib's ``SupersimplenetModel`` with the offline Lite0 weights (blocks.2+4)
in place of its WideResNet50. Nothing here is chosen on held-out data: the epoch count is
fixed in advance, and the only choice (image score = the head's score or the map's peak) is
made on the validation split. Held-out figures with bootstrap intervals (``_hard_metrics``),
beside the product's PatchCore default (``reports/image_score``). Not a test; not in the product.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from _hard_levers import NATIVE, masks_of  # noqa: E402
from _hard_metrics import figures, per_kind  # noqa: E402
from _product_ab import dataset_root, family  # noqa: E402
from _report import cpu_description, load_average, previous_report, save_report  # noqa: E402

from inspection.core.metrics import image_auroc  # noqa: E402
from inspection.data.dataset import Sample, load_dataset  # noqa: E402
from inspection.training.backbones import (  # noqa: E402
    apply_weights,
    no_pretrained_download,
    resolve_weights,
)
from inspection.training.config import load_model_config  # noqa: E402
from inspection.training.samples import load_image  # noqa: E402
from inspection.training.train import evaluation_splits  # noqa: E402

BACKBONE = "tf_efficientnet_lite0"
LAYERS = ["blocks.2", "blocks.4"]
BATCH = 16
GRID_STRIDE = 8
"""Input pixels per feature cell. anomalib upscales to twice blocks.2's grid (stride 4); its
5x5 classification conv then costs ~10 s per epoch of 60 images on 2 cores, so the probe
averages back to blocks.2's own stride-8 grid (4x cheaper; no detail is lost that the
backbone had: the upscaling is bilinear)."""


def build_model(seed: int) -> Any:
    from anomalib.models.image.supersimplenet.torch_model import SupersimplenetModel

    torch.manual_seed(seed)
    with no_pretrained_download():
        model = SupersimplenetModel(backbone=BACKBONE, layers=LAYERS)
    timm_extractor = model.feature_extractor.feature_extractor
    apply_weights(timm_extractor.feature_extractor, resolve_weights(BACKBONE))
    return model


def features_of(model: Any, samples: list[Sample], size: int) -> torch.Tensor:
    """(N, C, 2h, 2w) upscaled, pooled backbone features (the frozen part of the model)."""
    weights = resolve_weights(BACKBONE)
    mean = torch.tensor(weights.mean).view(1, 3, 1, 1)
    std = torch.tensor(weights.std).view(1, 3, 1, 1)
    out = []
    with torch.no_grad():
        for start in range(0, len(samples), 8):
            batch = np.stack([load_image(s.path, (size, size)) for s in samples[start : start + 8]])
            images = torch.from_numpy(batch).permute(0, 3, 1, 2)
            feats = model.feature_extractor((images - mean) / std)
            out.append(F.avg_pool2d(feats, GRID_STRIDE // 4))  # anomalib's stride 4 -> 8
    return torch.cat(out)


def train_head(model: Any, features: torch.Tensor, epochs: int, seed: int) -> list[float]:
    """Train adaptor + segdec on ``features`` (good only) as anomalib's Lightning module does;
    returns the mean loss per epoch."""
    from anomalib.models.image.supersimplenet.loss import SSNLoss
    from torch.optim import AdamW
    from torch.optim.lr_scheduler import MultiStepLR

    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    np.random.seed(seed)  # anomalib's Perlin noise draws from numpy
    optimiser = AdamW([
        {"params": model.adaptor.parameters(), "lr": 1e-4},
        {"params": model.segdec.parameters(), "lr": 2e-4, "weight_decay": 1e-5},
    ])  # fmt: skip
    schedule = MultiStepLR(optimiser, [int(epochs * 0.8), int(epochs * 0.9)], gamma=0.4)
    loss_fn = SSNLoss()
    model.train()
    model.feature_extractor.eval()
    losses = []
    for _ in range(epochs):
        order = torch.randperm(len(features), generator=generator)
        total = 0.0
        for start in range(0, len(order), BATCH):
            feats = features[order[start : start + BATCH]]
            b, _, h, w = feats.shape
            masks = torch.zeros((b, 1, h, w))
            labels = torch.zeros(b)
            noised_feat, noised_adapt, masks, labels = model.anomaly_generator(
                input_features=feats, adapted_features=model.adaptor(feats), masks=masks,
                labels=labels,
            )  # fmt: skip
            anomaly_map, score = model.segdec(seg_features=noised_adapt, cls_features=noised_feat)
            loss = loss_fn(anomaly_map, score, masks, labels)
            optimiser.zero_grad()
            loss.backward()
            # unsupervised SuperSimpleNet: no gradient clipping (anomalib's norm_clip_val 0)
            optimiser.step()
            total += float(loss.detach()) * b
        schedule.step()
        losses.append(round(total / len(features), 4))
    model.eval()
    return losses


def score(model: Any, features: torch.Tensor, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(head scores (N,), maps (N, NATIVE, NATIVE)) of cached features, as the model infers."""
    scores, maps = [], []
    with torch.no_grad():
        for start in range(0, len(features), BATCH):
            feats = features[start : start + BATCH]
            anomaly_map, head = model.segdec(seg_features=model.adaptor(feats), cls_features=feats)
            anomaly_map = model.anomaly_map_generator(anomaly_map, final_size=(size, size))
            anomaly_map = F.interpolate(anomaly_map, size=(NATIVE, NATIVE), mode="bilinear")
            scores.append(head.sigmoid())
            maps.append(anomaly_map.sigmoid()[:, 0])
    return torch.cat(scores).numpy(), torch.cat(maps).numpy()


def standardised(features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Features z-scored per channel on the training split. Lite0's ReLU6 features have a std
    of ~3-4, so anomalib's noise (std 0.015, set for WideResNet50) would be invisible on them;
    on standardised features the noise std is in units of each channel's own spread."""
    train = features["train"]
    mean = train.mean(dim=(0, 2, 3), keepdim=True)
    std = train.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    return {split: (f - mean) / std for split, f in features.items()}


def fit_and_score(
    features: dict[str, torch.Tensor], noise: float, epochs: int, seed: int, size: int
) -> dict[str, Any]:
    """Train a fresh head with ``noise`` (std, standardised units) and score val and test."""
    started = time.perf_counter()
    model = build_model(seed)
    model.anomaly_generator.noise_std = noise
    losses = train_head(model, features["train"], epochs, seed)
    train_s = time.perf_counter() - started
    out: dict[str, Any] = {"noise": noise, "losses": losses[:: max(1, epochs // 10)] + losses[-1:]}
    for split in ("val", "test"):
        scored = time.perf_counter()
        head, maps = score(model, features[split], size)
        out[split] = {"head": head, "map peak": maps.reshape(len(maps), -1).max(1), "maps": maps}
        out[f"{split}_score_ms"] = 1e3 * (time.perf_counter() - scored) / len(maps)
    out["train_s"] = train_s
    return out


def evaluate(
    product: str, data: Path, generated: Path, epochs: int, scale: float, noises: list[float]
) -> dict:
    root = dataset_root(product, data, generated)
    dataset = load_dataset(root)
    config = load_model_config("patchcore", product=product)
    validation, test = evaluation_splits(config, dataset)
    size = int(round(NATIVE * scale / 32) * 32)
    load = load_average()
    started = time.perf_counter()
    extractor = build_model(config.seed)
    splits = {"train": list(dataset.train_samples), "val": validation, "test": test}
    timings = {}
    raw = {}
    for split, samples in splits.items():
        began = time.perf_counter()
        raw[split] = features_of(extractor, samples, size)
        timings[split] = time.perf_counter() - began
    features = standardised(raw)
    val_labels = np.asarray([s.label for s in validation])
    labels = np.asarray([s.label for s in test])
    runs = []
    for noise in noises:
        print(f"  {product}: noise {noise}, {epochs} epochs", flush=True)
        run = fit_and_score(features, noise, epochs, config.seed, size)
        run["validation_auroc"] = {
            name: round(float(image_auroc(run["val"][name], val_labels)), 4)
            for name in ("head", "map peak")
        }
        run["test_auroc"] = {
            name: round(float(image_auroc(run["test"][name], labels)), 4)
            for name in ("head", "map peak")
        }
        runs.append(run)
    best, chosen = max(
        ((run, name) for run in runs for name in ("head", "map peak")),
        key=lambda pair: pair[0]["validation_auroc"][pair[1]],
    )
    test_scores = best["test"][chosen]
    ms_per_image = 1e3 * timings["test"] / len(test) + best["test_score_ms"]
    return {
        "family": family(product),
        "cpu": cpu_description(),
        "load": [load, load_average()],
        "size": size,
        "epochs": epochs,
        "train_images": len(dataset.train_samples),
        "runs": [
            {k: run[k] for k in ("noise", "losses", "validation_auroc", "test_auroc")}
            | {"train_s": round(run["train_s"], 1)}
            for run in runs
        ],
        "noise": best["noise"],
        "image_score": chosen,
        "validation_auroc": best["validation_auroc"][chosen],
        "test": figures(test_scores, best["test"]["maps"], labels, masks_of(test)),
        "test_per_kind": per_kind(test_scores, labels, [s.defect_type for s in test]),
        "fit_s": round(timings["train"] + best["train_s"], 1),
        "score_ms_per_image": round(ms_per_image, 2),
        "seconds": round(time.perf_counter() - started, 1),
    }


def patchcore_default(product: str) -> dict | None:
    """The product's default PatchCore (``bench/image_score.py``, role ``peak+blur``; same
    held-out split): its image AUROC with a bootstrap interval, if that bench ran."""
    from inspection.core.bootstrap import auroc_interval

    path = ROOT / "reports" / "image_score" / "results.json"
    row = json.loads(path.read_text()).get(f"{product}/peak+blur") if path.is_file() else None
    if row is None:
        return None
    scores, labels = np.asarray(row["test_scores"]), np.asarray(row["test_labels"])
    return {"image_auroc": auroc_interval(scores, labels).to_dict(), "fit_s": row["fit_s"],
            "cpu": row["cpu"]}  # fmt: skip


def _cell(fig: dict) -> str:
    low = fig.get("low")
    return f"{fig['value']:.3f}" + ("" if low is None else f" [{low:.3f}, {fig['high']:.3f}]")


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# SuperSimpleNet head on offline Lite0 features vs the PatchCore default",
        "",
        "`bench/supersimplenet.py`: anomalib's `SupersimplenetModel` (feature adaptor + "
        "segmentation-detection head, trained on Perlin-shaped feature noise) on the frozen "
        f"offline `{BACKBONE}` ({'+'.join(LAYERS)}), trained for a fixed number of epochs; "
        "the image score (head or map peak) is chosen on validation. Held-out split, bootstrap "
        "95 % intervals. "
        "`fit s` = feature extraction + training; `score ms/img` = backbone + head, torch, "
        "on the loaded CPU of the row. PatchCore: the product's 256 px default "
        "(`reports/image_score`, map-peak score, local statistics where kept), image AUROC only.",
        "",
        "| product | family | model | val AUROC | image AUROC | pixel AUROC | AUPRO | fit s | "
        "score ms/img | CPU, load |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for product, row in report["products"].items():
        base = patchcore_default(product)
        if base:
            lines.append(
                f"| {product} | {row['family']} | PatchCore, product default | - | "
                f"{_cell(base['image_auroc'])} | - | - | {base['fit_s']} | - | {base['cpu']} |"
            )
        t = row["test"]
        val = row["validation_auroc"]
        lines.append(
            f"| {product} | {row['family']} | SuperSimpleNet, {row['epochs']} epochs, "
            f"{row['size']} px, noise {row['noise']}, {row['image_score']} | {val:.3f} | {_cell(t['image_auroc'])} | "
            f"{_cell(t['pixel_auroc'])} | {_cell(t['aupro'])} | {row['fit_s']} | "
            f"{row['score_ms_per_image']} | {row['cpu']}, {row['load'][0]}-{row['load'][1]} |"
        )
    lines += [
        "",
        "Every noise level trained (features z-scored per channel; validation chooses the row "
        "and the score):",
        "",
        "| product | noise std | val AUROC head / map peak | held-out head / map peak | "
        "loss first -> last | train s |",
        "|---|---|---|---|---|---|",
    ]
    for product, row in report["products"].items():
        for run in row["runs"]:
            val, test = run["validation_auroc"], run["test_auroc"]
            lines.append(
                f"| {product} | {run['noise']} | {val['head']} / {val['map peak']} | "
                f"{test['head']} / {test['map peak']} | {run['losses'][0]} -> "
                f"{run['losses'][-1]} | {run['train_s']} |"
            )
    lines += ["", "Per defect kind (held out, SuperSimpleNet's chosen score):", ""]
    for product, row in report["products"].items():
        kinds = ", ".join(f"{k} {v}" for k, v in row["test_per_kind"].items())
        lines.append(f"- {product}: {kinds}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", default="grass,gravel,weave,tissue,brick")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument(
        "--noises", default="0.015,0.1,0.3",
        help="noise stds (standardised feature units) to train; validation chooses",
    )  # fmt: skip
    parser.add_argument("--data", type=Path, default=ROOT / "datasets")
    parser.add_argument("--generated", type=Path, default=ROOT / "var" / "bench" / "data")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "hard_surfaces")
    args = parser.parse_args()
    name = "supersimplenet" if args.scale == 1 else f"supersimplenet_{args.scale:g}x"
    report = previous_report(args.out, name) or {"products": {}}
    for product in args.products.split(","):
        print(f"{product}: training {args.epochs} epochs", flush=True)
        report["products"][product] = evaluate(
            product, args.data, args.generated, args.epochs, args.scale,
            [float(n) for n in args.noises.split(",")],
        )  # fmt: skip
        save_report(args.out, name, report, markdown(report))
        print(markdown(report), flush=True)


if __name__ == "__main__":
    main()

"""#58 probe, measurement only: stride-4 patch kNN maps against the cached stride-8 maps on the
held-out parts the bundle judged NG (``var/bench-masks/<product>.npz``, ``_mask_strategies.load``).

Features: tf_efficientnet_lite0 with the bundled offline weights (``training.backbones``), each
layer 3x3 average-pooled, deeper layers upsampled to the finest and concatenated (PatchCore's
patch features). stride4 = blocks.1 + blocks.2 (24 + 40 ch, 64x64 patches at 256 px); stride8
(a control from the same probe) = blocks.2 + blocks.4 (the project's layers, 32x32). Bank: greedy
k-center coreset (2 % of rows) of the patches of 30 good training images. Map: nearest-bank
distance, bilinear to 256 px, Gaussian blur sigma (stride4: 2 and 4 px; stride8: 4 px).
Level: one raw threshold per map kind from a quantile grid, chosen on VALIDATION (pooled pixel F1
over its defective parts with masks, the project's rule) or in hindsight on the test parts.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import timm
import torch
import torch.nn.functional as F
from _mask_strategies import THIN, load
from _report import cpu_description, load_average

from inspection.core.calibration import normalize_maps, normalize_scores
from inspection.core.verdict import judge
from inspection.training.backbones import apply_weights, resolve_weights

WORK = Path("var/bench-masks")
FAMILY = {"brick": "demo", "grass": "demo", "gravel": "demo",
          "part": "evaluation", "tissue": "evaluation", "weave": "evaluation"}  # fmt: skip
VARIANTS = {"stride4": (0, 1), "stride8": (1, 2)}  # indices into out_indices (1, 2, 3)
MAPS = {"stride4_s2": ("stride4", 2.0), "stride4_s4": ("stride4", 4.0), "stride8_s4": ("stride8", 4.0)}  # fmt: skip
QUANTILES = np.unique(np.r_[np.linspace(0.0, 0.99, 100), 1 - np.logspace(-4, -2, 20)])
TRAIN, RATIO, RESAMPLES = 30, 0.02, 1000
torch.set_num_threads(1)


def extractor() -> torch.nn.Module:
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, features_only=True, out_indices=(1, 2, 3))  # fmt: skip
    apply_weights(model, resolve_weights("tf_efficientnet_lite0", "bundled"))
    return model.eval()


@torch.no_grad()
def patches(model: torch.nn.Module, images: np.ndarray) -> dict[str, torch.Tensor]:
    """(N, C, h, w) patch features per variant of uint8 (N, 256, 256, 3) images (mean/std 0.5)."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    feats = [F.avg_pool2d(f, 3, 1, 1) for f in model(x)]
    out = {}
    for name, (a, b) in VARIANTS.items():
        size = feats[a].shape[-2:]
        out[name] = torch.cat([feats[a], F.interpolate(feats[b], size, mode="bilinear")], 1)
    return out


def coreset(rows: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """Greedy k-center selection of ``n`` rows (as anomalib's, without the projection)."""
    idx = [int(torch.randint(len(rows), (1,), generator=torch.Generator().manual_seed(seed)))]
    dist = torch.cdist(rows, rows[idx[0]][None]).squeeze(1)
    for _ in range(n - 1):
        idx.append(int(dist.argmax()))
        dist = torch.minimum(dist, torch.cdist(rows, rows[idx[-1]][None]).squeeze(1))
    return rows[idx]


def score(feat: torch.Tensor, bank: torch.Tensor) -> np.ndarray:
    """(h, w) nearest-bank distance of one image's (C, h, w) patch features."""
    c, h, w = feat.shape
    rows = feat.reshape(c, -1).T
    return torch.cdist(rows, bank).min(1).values.reshape(h, w).numpy()


def upsampled(dist: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(cv2.resize(dist, (256, 256), interpolation=cv2.INTER_LINEAR), (0, 0), sigma)  # fmt: skip


def probe_maps(model, banks, images: np.ndarray):
    """Maps per kind for ``images`` and ms per image of the stride-4 pass (sigma 2)."""
    out: dict[str, list[np.ndarray]] = {k: [] for k in MAPS}
    ms = []
    for image in images:
        t0 = time.perf_counter()
        f4 = patches(model, image[None])
        d4 = score(f4["stride4"][0], banks["stride4"])
        out["stride4_s2"].append(upsampled(d4, 2.0))
        ms.append((time.perf_counter() - t0) * 1000)
        out["stride4_s4"].append(upsampled(d4, 4.0))
        out["stride8_s4"].append(upsampled(score(f4["stride8"][0], banks["stride8"]), 4.0))
    return {k: np.stack(v) for k, v in out.items()}, ms


def counts(maps: np.ndarray, masks: np.ndarray, level: float) -> np.ndarray:
    """(N, 3) tp, predicted, true pixels per image at ``level``."""
    pred = maps >= level
    return np.stack([(pred & masks).sum((1, 2)), pred.sum((1, 2)), masks.sum((1, 2))], 1)


def f1(c: np.ndarray) -> float:
    return float(2 * c[:, 0].sum() / max(c[:, 1].sum() + c[:, 2].sum(), 1))


def best_level(maps: np.ndarray, masks: np.ndarray, pool: np.ndarray) -> tuple[float, float]:
    levels = np.quantile(pool[:: max(1, pool.size // 200_000)], QUANTILES)
    scored = [(f1(counts(maps, masks, lv)), float(lv)) for lv in levels]
    return max(scored)[1], max(scored)[0]


def delta(a: np.ndarray, b: np.ndarray) -> list[float] | None:
    """95 % paired bootstrap interval of pooled F1 a - b over the same resampled parts."""
    rng, n = np.random.default_rng(0), len(a)
    draws = [f1(a[i]) - f1(b[i]) for i in (rng.choice(n, n) for _ in range(RESAMPLES if n else 0))]
    return [float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))] if draws else None


def product(model, name: str) -> dict:
    val, test, norm, seg = load(WORK, name)
    train = sorted((WORK / "datasets" / name / "train" / "good").glob("*.png"))
    pick = np.random.default_rng(0).choice(len(train), TRAIN, replace=False)
    imgs = np.stack([np.asarray(cv2.cvtColor(cv2.imread(str(train[i])), cv2.COLOR_BGR2RGB)) for i in sorted(pick)])  # fmt: skip
    feats = patches(model, imgs)
    banks = {}
    for k, f in feats.items():
        rows = f.permute(0, 2, 3, 1).reshape(-1, f.shape[1])
        banks[k] = coreset(rows, int(RATIO * len(rows)))
    scores = normalize_scores(test.scores, norm)
    nmaps = normalize_maps(test.maps, norm)
    ng = np.array([judge(float(s), 0.5, m, seg).verdict == "NG" for s, m in zip(scores, nmaps, strict=True)])  # fmt: skip
    sel = ng & (test.labels == 1) & test.known
    vsel = (val.labels == 1) & val.known
    vmaps, _ = probe_maps(model, banks, val.images)
    tmaps, ms = probe_maps(model, banks, test.images[sel])
    vmaps["cached"], tmaps["cached"] = val.maps, test.maps[sel]
    masks, types = test.masks[sel], test.types[sel]
    thin = np.array([any(t in k for t in THIN) for k in types])
    rows, per_image = {}, {}
    for k in ("cached", *MAPS):
        level, vf1 = best_level(vmaps[k][vsel], val.masks[vsel], vmaps[k])
        c = counts(tmaps[k], masks, level)
        per_image[k] = c
        hind = max(best_level(tmaps[k], masks, tmaps[k])[1], f1(c))  # grid + validation's level
        kinds = {t: f1(c[types == t]) for t in sorted(set(types))}
        rows[k] = {"validation_f1": vf1, "test_f1": f1(c), "hindsight_f1": hind,
                   "thin_f1": f1(c[thin]) if thin.any() else None, "kinds": kinds}  # fmt: skip
    deltas = {f"{a}-{b}": delta(per_image[a], per_image[b]) for a in ("stride4_s2", "stride4_s4") for b in ("cached", "stride8_s4")}  # fmt: skip
    return {"family": FAMILY[name], "judged_ng_parts": int(sel.sum()), "thin_parts": int(thin.sum()),
            "validation_defective": int(vsel.sum()), "bank_rows": {k: len(b) for k, b in banks.items()},
            "maps": rows, "delta_f1_95": deltas,
            "ms_per_ng_part_p50": float(np.median(ms)) if ms else None}  # fmt: skip


def main() -> None:
    model = extractor()
    env = {"cpu": cpu_description(), "load_before": load_average(), "torch_threads": 1}
    results = {name: product(model, name) for name in (sys.argv[1:] or FAMILY)}
    env["load_after"] = load_average()
    out = Path("reports/masks/stride4.json")
    out.write_text(json.dumps({"env": env, "products": results}, indent=1) + "\n")
    out.with_suffix(".md").write_text(table(env, results))


def _cell(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def table(env: dict, results: dict) -> str:
    """Markdown rows: per product and map kind, then the family means."""
    head = "| product | family | judged-NG parts (thin) | map | F1 validation level (val F1) | hindsight F1 | thin F1 | kinds | ms/NG part |"
    lines = [f"CPU {env['cpu']}; load {env['load_before']} -> {env['load_after']}; torch 1 thread.", "",
             head, "|" + " --- |" * 9]  # fmt: skip
    for name, r in results.items():
        for k, m in r["maps"].items():
            kinds = ", ".join(f"{t} {v:.2f}" for t, v in m["kinds"].items())
            ms = _cell(r["ms_per_ng_part_p50"]) if k == "stride4_s2" else ""
            lines.append(f"| {name} | {r['family']} | {r['judged_ng_parts']} ({r['thin_parts']}) | {k} | "
                         f"{_cell(m['test_f1'])} ({_cell(m['validation_f1'])}) | {_cell(m['hindsight_f1'])} | "
                         f"{_cell(m['thin_f1'])} | {kinds} | {ms} |")  # fmt: skip
    lines += [
        "",
        "| family | map | mean F1 validation level | mean hindsight F1 |",
        "| --- | --- | --- | --- |",
    ]
    for fam in ("demo", "evaluation"):
        rs = [r for r in results.values() if r["family"] == fam and r["judged_ng_parts"]]
        for k in rs[0]["maps"] if rs else ():
            t, h = (np.mean([r["maps"][k][x] for r in rs]) for x in ("test_f1", "hindsight_f1"))
            lines.append(f"| {fam} | {k} | {t:.3f} | {h:.3f} |")
    lines += ["", "Paired bootstrap 95 % of the F1 difference at the validation levels (judged-NG parts):", "",
              "| product | " + " | ".join(next(iter(results.values()))["delta_f1_95"]) + " |", "|" + " --- |" * 5]  # fmt: skip
    for name, r in results.items():
        cells = [f"[{d[0]:+.3f}, {d[1]:+.3f}]" if d else "-" for d in r["delta_f1_95"].values()]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

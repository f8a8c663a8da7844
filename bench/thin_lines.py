"""Probe: do thin dark or bright lines tell the defects that PatchCore misses from good texture?

    python bench/thin_lines.py [--products grass,gravel,weave,tissue,part,brick]
                               [--out reports/hard_surfaces]

Cracks stay 100 % missed at the operating point on grass and gravel: the map peak of
ImageNet features at stride 8 is no higher on a 1-2 px crack than on good texture. This probe
scores each test image by one classical, training-free feature: the peak, over 16 px windows,
of the mean morphological top-hat of the grey image (3 px square: closing minus image for dark
lines, image minus opening for bright ones). It reports the image AUROC of each defect kind
against the good test images, next to PatchCore's for the same kind
(``reports/image_score/results.json``, role ``peak+blur``: the default head).

The PatchCore figures are on the held-out part of the test split, the probe's on the whole test
folder, so the two columns differ in sample as well as in method. The probe has no training
and no threshold, so it says whether the signal exists, not what a station would do. Not a test.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from _product_ab import dataset_root, family  # noqa: E402
from _report import cpu_description, load_average, save_report  # noqa: E402

LINE_WIDTH = 3
"""Square structuring element (px): structures thinner than this survive the top-hat."""
WINDOW = 16
PATCHCORE_ROLE = "peak+blur"


def line_scores(path: Path) -> tuple[float, float]:
    """(dark, bright) thin-line score of one image: peak window mean of each top-hat."""
    from PIL import Image
    from scipy import ndimage

    grey = np.asarray(Image.open(path).convert("L"), np.float32) / 255.0
    size = (LINE_WIDTH, LINE_WIDTH)
    dark = ndimage.grey_closing(grey, size=size) - grey
    bright = grey - ndimage.grey_opening(grey, size=size)
    return tuple(float(ndimage.uniform_filter(t, WINDOW).max()) for t in (dark, bright))


def kind_aurocs(root: Path) -> dict[str, dict[str, float]]:
    """{kind: {"dark": AUROC, "bright": AUROC, "n": count}} against ``test/good``."""
    from sklearn.metrics import roc_auc_score

    good = [line_scores(p) for p in sorted((root / "test" / "good").glob("*.png"))]
    out = {}
    for folder in sorted(p for p in (root / "test").iterdir() if p.name != "good"):
        bad = [line_scores(p) for p in sorted(folder.glob("*.png"))]
        labels = [0] * len(good) + [1] * len(bad)
        out[folder.name] = {
            name: round(float(roc_auc_score(labels, [s[i] for s in good + bad])), 3)
            for i, name in enumerate(("dark", "bright"))
        } | {"n": len(bad)}
    return out


def patchcore_aurocs(product: str) -> dict[str, float]:
    """PatchCore's held-out image AUROC per kind from the image-score bench, if it ran."""
    from sklearn.metrics import roc_auc_score

    path = ROOT / "reports" / "image_score" / "results.json"
    row = (
        json.loads(path.read_text()).get(f"{product}/{PATCHCORE_ROLE}") if path.is_file() else None
    )
    if row is None:
        return {}
    scores, kinds = np.asarray(row["test_scores"]), np.asarray(row["test_kinds"])
    good = kinds == "good"
    return {
        kind: round(float(roc_auc_score(
            np.r_[np.zeros(good.sum()), np.ones((kinds == kind).sum())],
            np.r_[scores[good], scores[kinds == kind]],
        )), 3)
        for kind in sorted(set(kinds) - {"good"})
    }  # fmt: skip


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Thin lines: a training-free top-hat probe vs PatchCore, per defect kind",
        "",
        f"`bench/thin_lines.py`; CPU {report['cpu']}; load {report['load']}. Image AUROC of each "
        f"defect kind against the good test images. Probe: peak {WINDOW} px window mean of a "
        f"{LINE_WIDTH} px top-hat of the grey image (dark: closing - image; bright: image - "
        "opening), whole test folder. PatchCore: the default head, held-out split "
        "(`reports/image_score`). Grass and gravel are where the question came from; weave, "
        "tissue, part and brick were looked at only after the probe was written.",
        "",
        "| product | family | defect kind | n | PatchCore | dark lines | bright lines |",
        "|---|---|---|---|---|---|---|",
    ]
    for product, row in report["products"].items():
        for kind, probe in row["probe"].items():
            patchcore = row["patchcore"].get(kind)
            lines.append(
                f"| {product} | {row['family']} | {kind} | {probe['n']} | "
                f"{'-' if patchcore is None else patchcore} | {probe['dark']} | {probe['bright']} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", default="grass,gravel,weave,tissue,part,brick")
    parser.add_argument("--data", type=Path, default=ROOT / "datasets")
    parser.add_argument("--generated", type=Path, default=ROOT / "var" / "bench" / "data")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "hard_surfaces")
    args = parser.parse_args()
    products = {}
    for product in args.products.split(","):
        root = dataset_root(product, args.data, args.generated)
        products[product] = {
            "family": family(product),
            "probe": kind_aurocs(root),
            "patchcore": patchcore_aurocs(product),
        }
    report = {"cpu": cpu_description(), "load": load_average(), "products": products}
    save_report(args.out, "thin_lines", report, markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()

"""Dataset summaries for reports: counts, mask coverage and trivial baselines, the image AUROC
of one global statistic (near 0.5: defects need local structure to be found)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from inspection.core.errors import ImageDecodeError
from inspection.core.images import DEFAULT_SOURCE_BITS, read_image
from inspection.core.metrics import image_auroc
from inspection.data.check import check_dataset
from inspection.data.dataset import Dataset

BASELINES: dict[str, Callable[[np.ndarray], float]] = {
    "mean_brightness": lambda image: float(image.mean()),
    "brightness_std": lambda image: float(image.std()),
}


def baseline_aurocs(
    dataset: Dataset,
    bits: int = DEFAULT_SOURCE_BITS,
    value_range: tuple[float, float] | None = None,
) -> dict[str, float]:
    """Image-level AUROC of each trivial baseline on the test split (unreadable images skipped);
    ``bits``: the significant bits 16-bit images are read at (the product's ``image_bits``),
    ``value_range``: the range signed and float ones are (its ``image_range``)."""
    scores: dict[str, list[float]] = {k: [] for k in BASELINES}
    labels: list[int] = []
    for sample in dataset.test_samples:
        try:
            image = read_image(sample.path, bits=bits, value_range=value_range)
        except ImageDecodeError:
            continue
        labels.append(sample.label)
        for name, score in BASELINES.items():
            scores[name].append(score(image))
    aurocs = {name: image_auroc(np.asarray(s), np.asarray(labels)) for name, s in scores.items()}
    return {name: float("nan") if value is None else value for name, value in aurocs.items()}


def summarise(
    datasets: Sequence[Dataset],
    image_bits: Mapping[str, int] | None = None,
    image_ranges: Mapping[str, tuple[float, float]] | None = None,
) -> dict:
    """``{name: {"check": <CheckReport.to_dict()>, "baselines": {...}}}`` for each dataset,
    with each product's declared ``image_bits`` and ``image_range`` by name (none: the
    defaults)."""
    bits, ranges = image_bits or {}, image_ranges or {}
    return {
        d.name: {
            "check": check_dataset(
                d, image_bits=bits.get(d.name), image_range=ranges.get(d.name)
            ).to_dict(),
            "baselines": baseline_aurocs(
                d, bits.get(d.name, DEFAULT_SOURCE_BITS), ranges.get(d.name)
            ),
        }
        for d in datasets
    }


def summary_markdown(summary: dict) -> str:
    """A short markdown table per aspect (counts, coverage, baselines, problems)."""
    lines = ["| product | train good | test good | test defective | defect types | problems |"]
    lines.append("|---|---:|---:|---:|---|---:|")
    for name, entry in summary.items():
        counts = entry["check"]["counts"]
        test = counts["test"]
        defective = sum(n for k, n in test.items() if k != "good")
        types = ", ".join(f"{k} {n}" for k, n in test.items() if k != "good")
        lines.append(
            f"| {name} | {counts['train'].get('good', 0)} | {test.get('good', 0)} | {defective} "
            f"| {types} | {len(entry['check']['problems'])} |"
        )
    lines += ["", "Mask coverage (mean fraction of image pixels marked defective):", ""]
    kinds = sorted({k for e in summary.values() for k in e["check"]["coverage"]})
    lines.append("| product | " + " | ".join(kinds) + " |")
    lines.append("|---|" + "---:|" * len(kinds))
    for name, entry in summary.items():
        cov = entry["check"]["coverage"]
        cells = [f"{cov[k]['mean']:.2%}" if k in cov else "-" for k in kinds]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Trivial baselines (image AUROC of one global statistic; 0.5 = chance):", ""]
    lines.append("| product | " + " | ".join(BASELINES) + " |")
    lines.append("|---|" + "---:|" * len(BASELINES))
    for name, entry in summary.items():
        cells = [f"{entry['baselines'][k]:.3f}" for k in BASELINES]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"

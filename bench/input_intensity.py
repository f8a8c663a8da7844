"""The input domain's intensity check (``core.input_domain.IntensityReference``) on demo
products: held-out images refused (must be none), captures at another gain or in BGR refused,
and its cost per image at the station.

    python bench/input_intensity.py --data DIR [--products brick,...] [--out reports/runtime]

``DIR`` holds the products (``inspection data demo --out DIR``). The reference is measured as
export measures it: up to ``COLOUR_SAMPLE`` training images, evenly picked. Writes
``<out>/input_intensity.{json,md}``; run it under ``/work/tools/alone`` for the timings.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
from _report import recorded, save_report, table

from inspection.core.images import read_image
from inspection.core.input_domain import COLOUR_SAMPLE, InputDomain, evenly, measure_input_domain
from inspection.data.dataset import load_dataset

GAINS = (0.5, 0.6, 0.7, 0.8, 1.25, 1.4, 1.5)
SIDES = (256, 1024, 2048)
ROUNDS, CALLS = 5, 500


def product_row(root: Path) -> dict:
    """Held-out refusals per kind, the swapped and gain-changed first held-out image."""
    dataset = load_dataset(root)
    train = evenly([s.path for s in dataset.train_samples], COLOUR_SAMPLE)
    domain = measure_input_domain(train, train, training=train)
    refused: dict[str, list[int]] = {}
    for sample in dataset.test_samples:
        counts = refused.setdefault(sample.defect_type, [0, 0])
        counts[0] += _refused(domain, read_image(sample.path))
        counts[1] += 1
    image = read_image(dataset.test_samples[0].path)
    gains = {g: _refused(domain, np.clip(image * g, 0, 255).astype(np.uint8)) for g in GAINS}
    assert domain.intensity is not None
    return {
        "colour": domain.colour,
        "spread": domain.intensity.spread,
        "held_out_refused": refused,
        "bgr_refused": _refused(domain, image[..., ::-1]),
        "gain_refused": gains,
        "cost_us": _cost(domain, image),
    }


def _refused(domain: InputDomain, image: np.ndarray) -> bool:
    assert domain.intensity is not None
    return domain.intensity.problem(image, domain.tolerance.histogram_margin) is not None


def _cost(domain: InputDomain, image: np.ndarray) -> dict[int, list[float]]:
    """Microseconds per check of a square frame of each side, ``ROUNDS`` rounds."""
    timings: dict[int, list[float]] = {}
    for side in SIDES:
        frame = cv2.resize(image, (side, side))
        for _ in range(50):
            _refused(domain, frame)
        for _ in range(ROUNDS):
            start = time.perf_counter()
            for _ in range(CALLS):
                _refused(domain, frame)
            timings.setdefault(side, []).append((time.perf_counter() - start) / CALLS * 1e6)
    return timings


def markdown(rows: dict[str, dict], env: dict[str, str]) -> str:
    cells = []
    for name, row in rows.items():
        counts = row["held_out_refused"]
        good = counts.get("good", [0, 0])
        bad = [sum(c[i] for k, c in counts.items() if k != "good") for i in (0, 1)]
        gains = ", ".join(f"{g:g}" for g, hit in row["gain_refused"].items() if hit) or "none"
        cost = " / ".join(f"{min(t):.0f}-{max(t):.0f}" for t in row["cost_us"].values())
        cells.append([name, row["colour"], f"{good[0]} of {good[1]}", f"{bad[0]} of {bad[1]}",
                      "yes" if row["bgr_refused"] else "NO",
                      f"{gains} (of {', '.join(map(str, GAINS))})", cost])  # fmt: skip
    lines = [
        "# Input domain: intensities (gain, exposure, channel order)",
        "",
        f"`{env['command']}` at {env['commit']}; CPU {env['cpu']}; load {env['load_before']} "
        f"-> {env['load_after']}.",
        "",
        *table(["product", "colour", "held-out good refused", "held-out defective refused",
                "BGR refused", "gains refused", "µs per check (256² / 1024² / 2048²)"], cells),
    ]  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--products", default="brick,grass,gravel,weave,tissue,part")
    parser.add_argument("--out", type=Path, default=Path("reports/runtime"))
    args = parser.parse_args()
    with recorded() as env:
        rows = {name: product_row(args.data / name) for name in args.products.split(",")}
    report = {"env": env, "products": rows}
    save_report(args.out, "input_intensity", report, markdown(rows, env))


if __name__ == "__main__":
    main()

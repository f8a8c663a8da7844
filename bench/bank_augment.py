"""Flipped and rotated training views in PatchCore's memory bank, through the product path.

    /work/bin/heavy python bench/bank_augment.py run [--products grass,gravel,weave,tissue,part,brick]
    /work/bin/bench python bench/bank_augment.py latency
    python bench/bank_augment.py report

Two roles per product, each on the product's PatchCore config (``local_statistics: auto``,
``image_score: map_peak``, ``image_score_blur: auto``): ``as-is`` (the training images as they
are) and ``views`` (``bank_augment: [hflip, vflip, rot90]``: each training image's mirrored and
turned views join the patches the coreset is chosen from, ``training.augment``). Trained and
exported as ``inspection train`` / ``export`` do (``_product_ab``); the figures are the FP32
bundles' own at their own 1 % operating point on the held-out split.
"""

from __future__ import annotations

from pathlib import Path

from _product_ab import ABBench, ab_main, image_score_choice

HEADER = [
    "# Flipped and rotated training views in PatchCore's memory bank, through the product path",
    "",
    "Produced by `bench/bank_augment.py` (`run` under `/work/bin/heavy`, `latency` under",
    "`/work/bin/bench`, `report`). Every figure is an exported FP32 bundle's own, on the",
    "held-out test split, at the bundle's own operating point (1 % false-reject budget).",
    "`as-is`: the bank from the training images as they are; `views`: each training image's",
    "horizontal and vertical mirror and 90-degree turn join the patches the coreset is chosen",
    "from (the coreset keeps 1 % of them, so the bank holds 4x the rows). Both on the product's",
    "PatchCore config. The lever was found on validation *and* test maps of grass, gravel, weave",
    "and tissue (a study before this bench, with the augmentation done on disk); `part` and",
    "`brick` were looked at once before it was built. Intervals: stratified bootstrap, 2000",
    "resamples; gains are paired. `fit s` is the training epoch alone.",
    "",
]


def _rows(row: dict) -> str:
    return str(row.get("bank", "-"))


BENCH = ABBench(
    out=Path("reports/bank_augment"),
    registry=Path("var/bank_augment/registry"),
    roles={"as-is": ("bank_augment=[]",), "views": ("bank_augment=[hflip,vflip,rot90]",)},
    header=HEADER,
    record_extra=image_score_choice,
    column=("bank rows", _rows),
)


def main() -> None:
    ab_main(__doc__, BENCH)


if __name__ == "__main__":
    main()

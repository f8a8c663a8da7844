"""The keep rule of ``supervised: auto``: keep the head only where it misses fewer defects.

The rule judges on every defect the run knows, each scored by a head it did not teach:
- the labelled defects, out of fold: ``FOLDS`` heads, each taught (as the model's head is) by
  the other folds' labelled defects and good images, score the fold left out;
- the validation defects, scored by the model's head (no validation image teaches it).
Against every good image the run can score out of fold on both sides: the good validation
images (the model's head), the good training images that teach the head (the fold heads) and
all the other good training images (the model's head, which they did not teach); training
images with their kNN distances without their own bank rows. At a 1 % budget the threshold sits
at the good images' largest peaks, so the more good images, the more of the head's tail of false
alarms on good parts shows (judged on the validation and teaching images alone, a head that
raised held-out misses was kept). Both
sides are the maps' peaks after anomalib's blur: PatchCore's of the kNN distance, the mixed
model's of the fused cells, each fused with the local statistics where the product without the
head would fuse them (the score it would ship: ``mixed._Judge.as_shipped``). Each
side is judged at its own operating point, the threshold the config's ``operating_point`` sets
on these peaks (``choose_threshold``: at the false-reject budget, the split-conformal rank of
the good peaks), counting defects missed plus good images rejected (at the budget, misses).

Over draws of the good images, not at the one sample: at a 1 % budget with fewer than ~200
good peaks the threshold sits above the largest, so one image per side would decide. Which good
image sets a product's threshold is chance, so both sides are judged on the same ``DRAWS``
bootstrap resamples of the good images (``scipy.stats.bootstrap``), each at its own operating
point on the draw, every defect judged (one image's outlier sets the threshold in about 63 % of
the draws). The head is kept where its change in errors is
below zero at the draws' one-sided 95 % bound: a saving that rests on which good image sets the
threshold is not shown, and a head that does not lower the errors only adds its own false
alarms to the good parts' tail (a mean change alone kept heads that raised held-out misses:
``reports/learning``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import bootstrap

from inspection.core.metrics import image_auroc
from inspection.core.operating_point import OperatingPoint, choose_threshold

FOLDS = 3
"""Cross-fitted heads that score the labelled defects (and the good images that teach)."""
DRAWS = 1000
"""Bootstrap resamples of the good images each side's errors are averaged over (seeded)."""


@dataclass(frozen=True)
class Peaks:
    """(G,) good and (D,) defect map peaks of one model, each scored by a head it did not
    teach."""

    good: np.ndarray
    defect: np.ndarray


def joined(parts: Iterable[Peaks | None]) -> Peaks | None:
    """The ``parts``' good and defect peaks, each concatenated in order (None if any is)."""
    parts = list(parts)
    if any(part is None for part in parts):
        return None
    return Peaks(np.concatenate([p.good for p in parts]), np.concatenate([p.defect for p in parts]))


def fold_ids(kinds: Sequence[str], folds: int = FOLDS) -> np.ndarray:
    """(N,) int fold of each of N images, round robin within each kind (every fold holds
    each kind's share)."""
    ids = np.zeros(len(kinds), dtype=np.int64)
    for kind in set(kinds):
        rows = [i for i, k in enumerate(kinds) if k == kind]
        ids[rows] = np.arange(len(rows)) % folds
    return ids


def errors(peaks: Peaks, point: OperatingPoint) -> tuple[int, int]:
    """(defects missed, good images rejected) at the threshold ``point`` sets on ``peaks``."""
    threshold = choose_threshold(peaks.good, point, defect_scores=peaks.defect).threshold
    return int((peaks.defect < threshold).sum()), int((peaks.good >= threshold).sum())


def decide(
    patchcore: Peaks, mixed: Peaks, point: OperatingPoint, labelled: int
) -> tuple[bool, str, dict[str, float]]:
    """(kept, reason, evidence): the head is kept where ``mixed`` makes fewer errors than
    ``patchcore`` at ``point`` at the one-sided 95 % bound over draws of the good images
    (module docstring)."""
    if not len(patchcore.defect) or not len(patchcore.good):
        return True, f"learned from {labelled} labelled defects (no defects to judge it on)", {}
    evidence = _evidence({"patchcore": patchcore, "mixed": mixed}, point)
    figures = (
        f"cross-fitted at the {point.policy} operating point: missed "
        f"{evidence['patchcore_missed']:.0f} -> {evidence['mixed_missed']:.0f} of "
        f"{len(patchcore.defect)} defects, rejected {evidence['patchcore_rejected']:.0f} -> "
        f"{evidence['mixed_rejected']:.0f} of {len(patchcore.good)} good; over {DRAWS} draws "
        f"of the good images, errors expected {evidence['patchcore_expected']:.1f} -> "
        f"{evidence['mixed_expected']:.1f} (change {evidence['error_change']:+.1f}, 95 % bound "
        f"{evidence['error_change_bound']:+.0f}); AUROC "
        f"{evidence['patchcore_auroc']:.3f} -> {evidence['mixed_auroc']:.3f}"
    )
    if evidence["error_change_bound"] < 0:
        return True, f"learned from {labelled} labelled defects: {figures}", evidence
    return (
        False,
        f"off: learned from {labelled} labelled defects, fewer errors not shown ({figures})",
        evidence,
    )


def unbeatable(
    patchcore: Peaks, point: OperatingPoint, labelled: int
) -> tuple[bool, str, dict[str, float]] | None:
    """``decide``'s (off, reason, evidence) whatever the head, known before one is taught: where
    ``patchcore`` makes no errors at ``point`` on any draw, no head is expected to make fewer.
    None where a head could be kept (or nothing is judged)."""
    if not len(patchcore.defect) or not len(patchcore.good) or any(errors(patchcore, point)):
        return None  # errors at the sample: no need to draw
    evidence = _evidence({"patchcore": patchcore}, point)
    if evidence["patchcore_expected"]:
        return None
    return (
        False,
        f"off: PatchCore makes no errors at the {point.policy} operating point (missed 0 of "
        f"{len(patchcore.defect)} defects, rejected 0 of {len(patchcore.good)} good, none on "
        f"any of {DRAWS} draws of the good images; AUROC {evidence['patchcore_auroc']:.3f}), so "
        f"no head can make fewer: none taught ({labelled} labelled defects)",
        evidence,
    )


def _evidence(sides: dict[str, Peaks], point: OperatingPoint) -> dict[str, float]:
    """Images judged, and per side ``<name>_auroc``, ``_missed`` and ``_rejected`` at ``point``
    and ``_expected`` over the draws (``_drawn``); with two sides, the second's
    ``error_change`` on the first's and its one-sided 95 % upper bound (``_bound``)."""
    first = next(iter(sides.values()))
    evidence = {"defects": float(len(first.defect)), "good": float(len(first.good))}
    for name, peaks in sides.items():
        missed, rejected = errors(peaks, point)
        labels = np.r_[np.zeros(len(peaks.good)), np.ones(len(peaks.defect))]
        evidence[f"{name}_auroc"] = round(image_auroc(np.r_[peaks.good, peaks.defect], labels), 4)
        evidence[f"{name}_missed"], evidence[f"{name}_rejected"] = float(missed), float(rejected)
    mean, bound = _drawn(list(sides.values()), point)
    for index, name in enumerate(sides):
        evidence[f"{name}_expected"] = round(float(mean[index]), 3)
    if len(sides) == 2:
        evidence["error_change"] = round(float(mean[2]), 3)
        evidence["error_change_bound"] = float(bound[2])
    return evidence


def _drawn(sides: list[Peaks], point: OperatingPoint) -> tuple[np.ndarray, ...]:
    """(mean, one-sided 95 % upper bound) over ``scipy.stats.bootstrap``'s ``DRAWS`` resamples
    of the good images (the same for every side, seeded) of each side's errors at the threshold
    ``point`` sets on the draw's good peaks, every defect judged, and (two sides) the second's
    minus the first's. One good image is its only draw. A draw's errors depend on which
    images it holds, not on their order (each threshold is set on the sorted peaks), so each
    distinct draw is scored once: with few good images most draws repeat one (4 images: 35
    distinct of the 1,000)."""
    scored: dict[bytes, np.ndarray] = {}

    def statistic(rows: np.ndarray) -> np.ndarray:
        drawn = np.sort(rows)
        key = drawn.tobytes()
        if key not in scored:
            counts = [sum(errors(Peaks(side.good[drawn], side.defect), point)) for side in sides]
            scored[key] = np.array(
                counts + ([counts[1] - counts[0]] if len(sides) == 2 else []), float
            )
        return scored[key]

    rows = np.arange(len(sides[0].good))
    if len(rows) < 2:
        once = statistic(rows)
        return once, once
    drawn = bootstrap(
        (rows,), statistic, vectorized=False, n_resamples=DRAWS, method="percentile",
        alternative="less", rng=0,
    )  # fmt: skip
    return drawn.bootstrap_distribution.mean(axis=-1), drawn.confidence_interval.high


FoldPeaks = tuple[np.ndarray, np.ndarray]
Run = Callable[[Callable[[int], FoldPeaks], Iterable[int]], Iterator[FoldPeaks]]


def cross_fitted(
    teach_and_score: Callable[[np.ndarray, np.ndarray], FoldPeaks],
    n_good: int,
    kinds: Sequence[str],
    run: Run = map,
) -> FoldPeaks | None:
    """((n_good,) good, (len(kinds),) defect) peaks, each scored out of fold:
    ``teach_and_score(teach_good, teach_defect)`` (bool masks of the images that teach) trains
    a head and returns its peaks of the images left out (in order); ``run`` maps it over the
    folds (``map``, or a thread pool's: the folds are independent). None with fewer than
    ``FOLDS`` labelled defects or good images."""
    if not crossed(n_good, len(kinds)):
        return None
    good_fold, defect_fold = np.arange(n_good) % FOLDS, fold_ids(kinds)

    def fold(index: int) -> FoldPeaks:
        return teach_and_score(good_fold != index, defect_fold != index)

    good, defect = np.zeros(n_good), np.zeros(len(kinds))
    for index, (held_good, held_defect) in enumerate(run(fold, range(FOLDS))):
        good[good_fold == index], defect[defect_fold == index] = held_good, held_defect
    return good, defect


def crossed(n_good: int, n_labelled: int) -> bool:
    """Whether ``cross_fitted`` scores the teaching images (``FOLDS`` good and labelled ones)."""
    return n_labelled >= FOLDS and n_good >= FOLDS

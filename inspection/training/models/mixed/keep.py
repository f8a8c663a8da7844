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
alarms on good parts shows (judged on the ~30 validation and teaching images alone, grass with 5
labelled defects per kind kept a head that raised held-out misses: ``reports/learning``). Both
sides are the maps' peaks after anomalib's blur: PatchCore's of the kNN distance, the mixed
model's of the fused cells, each fused with the local statistics where the product without the
head would fuse them (the score it would ship: ``mixed._Judge.as_shipped``). Each
side is judged at its own operating point, the threshold the config's ``operating_point`` sets
on these peaks (``choose_threshold``: at the false-reject budget, the split-conformal rank of
the good peaks), and the head is kept where the mixed model makes strictly fewer errors there
(defects missed plus good images rejected; at the budget, misses): a head that does not lower
them at the operating point only adds its own false alarms to the good parts' tail.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from inspection.core.metrics import image_auroc
from inspection.core.operating_point import OperatingPoint, choose_threshold

FOLDS = 3
"""Cross-fitted heads that score the labelled defects (and the good images that teach)."""


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
    ``patchcore`` at ``point`` (module docstring)."""
    if not len(patchcore.defect) or not len(patchcore.good):
        return True, f"learned from {labelled} labelled defects (no defects to judge it on)", {}
    evidence = _evidence({"patchcore": patchcore, "mixed": mixed}, point)
    before, after = (
        evidence[f"{n}_missed"] + evidence[f"{n}_rejected"] for n in ("patchcore", "mixed")
    )
    figures = (
        f"cross-fitted at the {point.policy} operating point: missed "
        f"{evidence['patchcore_missed']:.0f} -> {evidence['mixed_missed']:.0f} of "
        f"{len(patchcore.defect)} defects, rejected {evidence['patchcore_rejected']:.0f} -> "
        f"{evidence['mixed_rejected']:.0f} of {len(patchcore.good)} good; AUROC "
        f"{evidence['patchcore_auroc']:.3f} -> {evidence['mixed_auroc']:.3f}"
    )
    if after < before:
        return True, f"learned from {labelled} labelled defects: {figures}", evidence
    return (
        False,
        f"off: learned from {labelled} labelled defects, no fewer errors ({figures})",
        evidence,
    )


def unbeatable(
    patchcore: Peaks, point: OperatingPoint, labelled: int
) -> tuple[bool, str, dict[str, float]] | None:
    """``decide``'s (off, reason, evidence) whatever the head, known before one is taught: where
    ``patchcore`` already makes no errors at ``point``, no head makes strictly fewer. None where
    a head could be kept (or nothing is judged)."""
    if not len(patchcore.defect) or not len(patchcore.good) or any(errors(patchcore, point)):
        return None
    evidence = _evidence({"patchcore": patchcore}, point)
    return (
        False,
        f"off: PatchCore makes no errors at the {point.policy} operating point (missed 0 of "
        f"{len(patchcore.defect)} defects, rejected 0 of {len(patchcore.good)} good; AUROC "
        f"{evidence['patchcore_auroc']:.3f}), so no head can make fewer: none taught "
        f"({labelled} labelled defects)",
        evidence,
    )


def _evidence(sides: dict[str, Peaks], point: OperatingPoint) -> dict[str, float]:
    """Images judged, and per side ``<name>_auroc``, ``_missed`` and ``_rejected`` at ``point``."""
    first = next(iter(sides.values()))
    evidence = {"defects": float(len(first.defect)), "good": float(len(first.good))}
    for name, peaks in sides.items():
        missed, rejected = errors(peaks, point)
        labels = np.r_[np.zeros(len(peaks.good)), np.ones(len(peaks.defect))]
        evidence[f"{name}_auroc"] = round(image_auroc(np.r_[peaks.good, peaks.defect], labels), 4)
        evidence[f"{name}_missed"], evidence[f"{name}_rejected"] = float(missed), float(rejected)
    return evidence


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

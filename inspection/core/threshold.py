"""The threshold rule, the one home of the OK/NG decision on a score: NG exactly when ``score
>= threshold`` (``is_ng``), with a minimum defect area also when the largest region reaches it
(``verdict_of``). The ground floor of ``core``: it imports nothing of the package.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Verdict = Literal["OK", "NG"]
VERDICTS: tuple[str, ...] = ("OK", "NG")


def check_threshold(value: float) -> float:
    """An image threshold must lie strictly between 0 and 1 (normalised score space)."""
    value = float(value)
    if not 0.0 < value < 1.0:
        raise ValueError(f"threshold must be between 0 and 1 (exclusive), got {value}")
    return value


def is_ng(score: float | np.ndarray, threshold: float) -> bool | np.ndarray:
    """NG exactly when ``score >= threshold`` (works on a float or an array of scores)."""
    if isinstance(score, np.ndarray):
        return score >= threshold
    return bool(score >= threshold)


def verdict_of(
    score: float,
    threshold: float,
    largest_area: float | None = None,
    min_area: float | None = None,
) -> Verdict:
    """NG when ``score >= threshold`` and (with a ``min_area``) the largest region reaches it."""
    if not is_ng(score, threshold):
        return "OK"
    if min_area is not None and (largest_area or 0) < min_area:
        return "OK"
    return "NG"

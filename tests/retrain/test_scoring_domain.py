"""Retrain scoring judges every evaluation image with every bundle, inside its input domain
or not: a reviewed image the champion would refuse must not abort the comparison."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from bench._shared import write_mean_bundle
from inspection.core.input_domain import InputDomain
from inspection.retrain.assemble import EvalItem
from inspection.retrain.scoring import evaluate_bundles

COLOUR = InputDomain("colour", (20.0, 40.0), (64, 64), (64, 64), (1.0, 1.0), 4, 4)


def test_a_reviewed_image_outside_the_champions_domain_is_scored(tmp_path: Path) -> None:
    """A station with ``input_check: warn`` stores grey frames under a colour bundle; once
    reviewed they are evaluation items, and scoring raised InputDomainError on them."""
    champion = write_mean_bundle(
        tmp_path / "champion", input_size=(32, 32), product="p", input_domain=COLOUR
    )
    challenger = write_mean_bundle(tmp_path / "challenger", input_size=(32, 32), product="p")
    colour = np.dstack([np.full((64, 64), level, np.uint8) for level in (200, 100, 50)])
    grey = np.full((64, 64, 3), 160, np.uint8)
    items = []
    for index, image in enumerate((colour, grey)):
        path = tmp_path / f"{index}.png"
        Image.fromarray(image).save(path)
        items.append(EvalItem(path, index, "crack" if index else "good", None, "review"))
    scored = evaluate_bundles({"champion": champion, "challenger": challenger}, items, warmup=0)
    for evaluation in scored.values():
        assert np.allclose(evaluation.scores, [350 / 3 / 255, 160 / 255], atol=1e-3)

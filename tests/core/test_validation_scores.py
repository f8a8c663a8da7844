"""validation_scores.json: the labelled scores export writes and the dashboard reads."""

from __future__ import annotations

import pytest

from inspection.core.errors import BundleError
from inspection.core.validation_scores import (
    ValidationScores,
    read_validation_scores,
    write_validation_scores,
)


def test_written_scores_read_back(tmp_path) -> None:
    scores = ValidationScores(
        (0.1, 0.9), (0, 1), split="test", defect_types=("good", "crack"), names=("a", "b")
    )
    write_validation_scores(tmp_path, scores)
    assert read_validation_scores(tmp_path) == scores
    assert read_validation_scores(tmp_path / "none") is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"scores": [0.1], "labels": [0], "names": ["a", "b"]}', "names: expected 1 entries"),
        ('{"scores": [0.1], "labels": [0], "split": 3}', ".split: expected a string"),
        ('{"scores": [0.1], "labels": [0], "extra": 1}', "unknown key(s) 'extra'"),
        ('{"samples": [{"score": 0.1}]}', "every sample needs 'label'"),
        ("[0.1, 0.2]", "not a JSON object"),
    ],
)
def test_bad_scores_files_name_the_problem(tmp_path, content: str, message: str) -> None:
    (tmp_path / "validation_scores.json").write_text(content)
    with pytest.raises(BundleError) as info:
        read_validation_scores(tmp_path)
    assert message in str(info.value)

"""``train --auto``: a bounded search chosen on validation, reported, winner registered."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from inspection.core.config import deep_merge
from inspection.core.product_config import ModelConfig, model_config_from_mapping, parse_override
from inspection.core.registry import Registry
from inspection.training.auto import (
    GLOBAL,
    TIE_MARGIN,
    Candidate,
    CandidateResult,
    choose,
    search,
    train_winner,
    write_search_report,
)
from tests.conftest import TINY_PATCHCORE

GRID = (
    Candidate("tiny", "patchcore"),
    Candidate("tiny + global", "patchcore", (GLOBAL,)),
    Candidate("tiny layers 4+6", "patchcore", ("backbone.layers=[blocks.4,blocks.6]",)),
)


def tiny(candidate: Candidate) -> ModelConfig:
    data = dict(TINY_PATCHCORE)
    for item in candidate.overrides:
        data = deep_merge(data, parse_override(item))
    return model_config_from_mapping(data, where=f"test {candidate.name}")


def done(name: str, auroc: float, gain_low: float | None = 0.01) -> CandidateResult:
    gain = None if gain_low is None else {"value": gain_low + 0.05, "low": gain_low, "high": 0.2}
    return CandidateResult(
        name, "patchcore", (), "done", validation_auroc=auroc, validation_gain=gain
    )


def test_choose_by_validation_with_ties_to_the_earliest() -> None:
    assert choose([done("a", 0.90, None), done("b", 0.95)]) == "b"
    assert choose([done("a", 0.95 - TIE_MARGIN / 2, None), done("b", 0.95)]) == "a"
    assert choose([done("a", 0.8, None), done("b", 0.95), done("c", 0.95 - TIE_MARGIN / 2)]) == "b"
    skipped = CandidateResult("c", "stfpm", (), "skipped")
    assert choose([skipped, done("b", 0.5)]) == "b"
    with pytest.raises(ValueError, match="no candidate"):
        choose([skipped])


def test_the_default_stays_unless_the_gain_is_beyond_validation_noise() -> None:
    # the leader's paired interval of gain over the default reaches 0 (or is unknown): default
    assert choose([done("default", 0.80, None), done("b", 0.90, gain_low=-0.02)]) == "default"
    assert choose([done("default", 0.80, None), done("b", 0.90, gain_low=0.0)]) == "default"
    assert choose([done("default", 0.80, None), done("b", 0.90, gain_low=None)]) == "default"
    # only the validation leader may replace the default, and only beyond noise
    assert choose([done("default", 0.8, None), done("b", 0.85), done("c", 0.9, -0.01)]) == (
        "default"
    )
    assert choose([done("default", 0.80, None), done("b", 0.90, gain_low=0.03)]) == "b"


def test_search_reports_every_candidate_and_registers_the_winner(
    tiny_product: Path, tmp_path: Path
) -> None:
    from inspection.data.dataset import load_dataset

    dataset = load_dataset(tiny_product)
    result = search("brick", dataset, budget_s=600, grid=GRID[:2], configure=tiny)
    assert [r.status for r in result.candidates] == ["done"] * 2
    assert result.winner == choose(result.candidates)
    # the gain over the default is measured on the same validation images, paired
    first, second = result.candidates
    assert first.validation_gain is None
    gain = second.validation_gain
    assert gain["low"] <= gain["value"] <= gain["high"]
    assert gain["value"] == pytest.approx(
        second.validation_auroc - first.validation_auroc, abs=2e-4
    )
    # held out: the default and any candidate that could win, after the choice; never the rest
    tested = [r for r in result.candidates if r.test_auroc is not None]
    assert tested[0] is first and result.winner in {r.name for r in tested}
    assert all(0.0 <= r.test_auroc["low"] <= r.test_auroc["high"] <= 1.0 for r in tested)
    best = max(r.validation_auroc for r in result.candidates)
    assert all(r.validation_auroc >= best - TIE_MARGIN for r in tested[1:])
    summary = write_search_report(tmp_path / "auto", result)
    assert all(r.name in summary.read_text() for r in result.candidates)
    assert (tmp_path / "auto" / "search.png").stat().st_size > 0
    outcome = train_winner(result, dataset, Registry(tmp_path / "registry"), progress=False)
    lineage = outcome.record.extra["auto_search"]
    assert lineage["winner"] == result.winner and len(lineage["candidates"]) == 2
    assert outcome.record.config == result.winner_config


def test_the_budget_skips_what_does_not_fit(tiny_product: Path) -> None:
    from inspection.data.dataset import load_dataset

    result = search(
        "brick", load_dataset(tiny_product), budget_s=0.01, grid=GRID[::2], configure=tiny
    )
    assert [r.status for r in result.candidates] == ["done", "skipped"]
    assert "budget" in result.candidates[1].note and result.winner == "tiny"
    with pytest.raises(ValueError, match="budget"):
        search("brick", load_dataset(tiny_product), budget_s=0, grid=GRID, configure=tiny)


def test_the_budget_estimate_follows_the_input_area() -> None:
    from inspection.training.auto import _estimate

    one = CandidateResult("1x", "patchcore", (), "done", validation_auroc=0.5, seconds=30.0)
    two = Candidate("2x", "patchcore", scale=2.0)
    assert _estimate([], two) == 0.0
    assert _estimate([one], two) == pytest.approx(120.0)  # 4x the pixels
    big = CandidateResult("2x", "patchcore", (), "done", validation_auroc=0.5, seconds=150.0)
    assert _estimate([one, replace(big, scale=2.0)], Candidate("1x", "patchcore")) == 37.5
    assert _estimate([one], Candidate("s", "stfpm")) == 30.0  # no STFPM yet: any kind's


def test_cli_auto_refuses_a_hand_set_config() -> None:
    from typer.testing import CliRunner

    from inspection.cli import app

    result = CliRunner().invoke(
        app, ["train", "--product", "brick", "--auto", "--set", "max_epochs=1"]
    )
    assert result.exit_code != 0 and "--auto chooses the config" in result.output


def test_scale_candidates_multiply_the_configured_input_in_steps_of_32() -> None:
    from inspection.training.auto import DEFAULT_GRID, MAX_INPUT_SIDE, scaled

    base = tiny(Candidate("tiny", "patchcore"))
    assert scaled(base, 1.0) is base
    side = base.image_size[0]
    two = scaled(base, 2.0)
    assert two.image_size == (2 * side, 2 * side) and two.backbone == base.backbone
    assert scaled(base, 1.5).image_size[0] % 32 == 0
    with pytest.raises(ValueError, match=f"above {MAX_INPUT_SIDE}"):
        scaled(base, MAX_INPUT_SIDE / side * 2)
    # the default config first, then what paid most in reports/hard_surfaces (2x input with
    # layers 2+4+6, served with the rank-128 kNN head), the bank's views, then the scales alone
    assert [c.scale for c in DEFAULT_GRID[:5]] == [1.0, 2.0, 1.0, 1.5, 2.0]
    assert tiny(DEFAULT_GRID[2]).bank_augment == ("hflip", "vflip", "rot90")
    assert DEFAULT_GRID[0].overrides == ()
    deep = tiny(DEFAULT_GRID[1])
    assert deep.backbone.layers == ("blocks.2", "blocks.4", "blocks.6") and deep.knn_rank == 128


def test_a_candidate_is_judged_as_train_would_register_it(
    tiny_product: Path, tmp_path: Path
) -> None:
    """The search fits what ``train`` fits: here the fused local statistics too."""
    from inspection.core.metrics import image_auroc
    from inspection.data.dataset import load_dataset
    from inspection.training.auto import evaluate_candidate
    from inspection.training.train import train_model

    dataset = load_dataset(tiny_product)
    config = replace(tiny(GRID[0]), local_statistics=True)
    evaluation = evaluate_candidate(config, dataset)
    outcome = train_model(config, dataset, product="brick", registry=Registry(tmp_path),
                          progress=False)  # fmt: skip
    assert outcome.model.model.local_stats.enabled
    held_out = image_auroc(outcome.predictions.scores, outcome.predictions.labels)
    assert evaluation.held_out()["value"] == pytest.approx(held_out, abs=1e-4)  # rounded


def test_candidates_share_backbone_outputs_and_score_as_alone(tiny_product: Path) -> None:
    """A second candidate on the same backbone and inputs reads the first one's backbone
    outputs (``SharedFeatures``) and is judged exactly as without them."""
    from inspection.data.dataset import load_dataset
    from inspection.training.auto import SharedFeatures, evaluate_candidate

    dataset = load_dataset(tiny_product)
    config = tiny(GRID[0])
    alone = evaluate_candidate(config, dataset)
    shared = SharedFeatures()
    first = evaluate_candidate(config, dataset, shared=shared)
    batches = shared.hits  # those one candidate runs twice (none without local statistics)
    second = evaluate_candidate(config, dataset, shared=shared)
    assert shared.hits > batches  # the second one's training and validation batches
    for evaluation in (first, second):
        np.testing.assert_allclose(evaluation.validation[1], alone.validation[1], rtol=1e-6)
    none_kept = SharedFeatures(limit=0)
    evaluate_candidate(config, dataset, shared=none_kept)
    assert none_kept.hits == 0 and none_kept.size == 0

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction

import numpy as np
import pytest

from inspection.core.config import from_mapping, to_mapping
from inspection.core.errors import ConfigError
from inspection.core.operating_point import (
    BUDGET_TEST_LEVEL,
    MAX_TRANSFER_RESIDUAL,
    OperatingPoint,
    ScoreTransfer,
    ThresholdChoice,
    choose_threshold,
    confident_n_needed,
    confident_rank,
    conformal_bound,
    conformal_rank,
    convolved,
    defects_needed,
    good_map_threshold,
    lacking_kinds,
    miss_at,
    miss_by_kind,
    n_needed,
    operating_curve,
)


@pytest.mark.parametrize(
    ("n", "budget", "rank"),
    [(99, 0.01, 99), (199, 0.01, 198), (50, 0.01, 51), (19, 0.05, 19), (0, 0.01, 1)],
)
def test_conformal_rank(n: int, budget: float, rank: int) -> None:
    assert conformal_rank(n, budget) == rank


@pytest.mark.parametrize(("budget", "needed"), [(0.01, 99), (0.05, 19), (0.005, 199), (0.02, 49)])
def test_n_needed_is_the_smallest_sufficient_n(budget: float, needed: int) -> None:
    assert n_needed(budget) == needed
    assert conformal_rank(needed, budget) <= needed
    assert conformal_rank(needed - 1, budget) > needed - 1


def test_budget_threshold_sits_between_the_kth_and_next_good_score() -> None:
    good = np.random.default_rng(0).normal(size=299)
    choice = choose_threshold(good, OperatingPoint(budget=0.01))
    ordered = np.sort(good)
    assert choice.rank == 297
    assert ordered[296] < choice.threshold < ordered[297]
    assert choice.calibration_false_reject == pytest.approx(2 / 299, abs=1e-6)
    assert choice.false_reject_bound == pytest.approx(3 / 300)
    assert choice.sufficient and choice.n_needed is None


def test_the_budget_holds_on_new_good_parts_on_average() -> None:
    rng = np.random.default_rng(1)
    rates = []
    for _ in range(400):
        choice = choose_threshold(rng.gamma(2.0, size=149), OperatingPoint(budget=0.02))
        rates.append((rng.gamma(2.0, size=2000) >= choice.threshold).mean())
    # k = ceil(150 * 0.98) = 147: exact marginal rate (150 - 147) / 150 = 0.02
    assert 0.016 < float(np.mean(rates)) <= 0.0215


def test_too_few_good_scores_say_how_many_are_needed() -> None:
    good = np.linspace(0.0, 1.0, 20)
    choice = choose_threshold(good, OperatingPoint(budget=0.01))
    assert not choice.sufficient
    assert choice.n_needed == 99
    assert choice.threshold > good.max()
    assert choice.false_reject_bound == pytest.approx(1 / 21, abs=1e-6)
    assert "99 needed" in choice.describe()


@pytest.mark.parametrize(
    ("n", "budget", "below"), [(20, 0.01, 199), (150, 0.01, 199), (199, 0.01, None), (60, 0.02, 99)]
)
def test_a_threshold_above_the_largest_good_score_says_what_more_good_images_buy(
    n: int, budget: float, below: int | None
) -> None:
    good, bad = np.linspace(0.0, 1.0, n), np.linspace(0.5, 2.0, 40)
    choice = choose_threshold(good, OperatingPoint(budget=budget), defect_scores=bad)
    assert choice.n_below_largest == below
    if choice.n_below_largest is None:  # the threshold already leaves good scores above it
        assert choice.threshold < good.max() and "below the largest" not in choice.describe()
        return
    assert choice.threshold > good.max() and choice.miss_below_largest is not None
    # the k / (N + 1) quantile of these scores: below the largest, so fewer misses
    assert choice.miss_below_largest < choice.calibration_miss
    assert f"{choice.n_below_largest} good images would put it below" in choice.describe()
    assert from_mapping(ThresholdChoice, to_mapping(choice)) == choice


def test_f1_and_max_miss_need_defects() -> None:
    for policy in ("f1", "max_miss"):
        with pytest.raises(ConfigError, match="needs defect images"):
            choose_threshold(np.arange(10.0), OperatingPoint(policy=policy))


def test_max_miss_is_the_highest_threshold_within_the_target() -> None:
    good = np.arange(10.0)
    bad = np.arange(5.0, 25.0)  # 20 defect scores 5..24
    choice = choose_threshold(
        good, OperatingPoint(policy="max_miss", max_miss=0.1), defect_scores=bad
    )
    assert choice.threshold == 7.0  # 5 and 6 missed: 2/20 = 10 %
    assert choice.calibration_miss == pytest.approx(0.1)
    assert choice.calibration_false_reject == pytest.approx(0.3)


def test_f1_policy_matches_the_old_rule() -> None:
    good, bad = np.array([0.1, 0.2, 0.3]), np.array([0.25, 0.8, 0.9])
    choice = choose_threshold(good, OperatingPoint(policy="f1"), defect_scores=bad)
    assert choice.threshold == 0.25  # F1 6/7 (one good rejected) beats 4/5 at 0.8
    assert choice.rank is None and choice.false_reject_bound is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"policy": "youden"}, "policy"),
        ({"budget": 0.0}, "budget"),
        ({"budget": 0.7}, "budget"),
        ({"max_miss": 1.0}, "max_miss"),
        ({"budjet": 0.01}, "unknown key.*'budjet'"),
        ({"budget": "1%"}, "expected a number"),
    ],
)
def test_operating_point_config_is_checked(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_mapping(OperatingPoint, data, "operating_point")


def test_default_operating_point_is_a_one_percent_budget() -> None:
    point = from_mapping(OperatingPoint, None, "operating_point")
    assert (point.policy, point.budget) == ("false_reject_budget", 0.01)


def test_choice_round_trips_through_a_mapping() -> None:
    choice = choose_threshold(
        np.arange(200.0),
        OperatingPoint(),
        good_sources={"out_of_fold_train": 150, "validation": 50},
    )
    assert from_mapping(ThresholdChoice, to_mapping(choice)) == choice


def test_miss_by_kind_counts_and_bounds_each_kind() -> None:
    kinds = ["crack"] * 10 + ["stain"] * 5 + ["dent"] * 36
    missed = np.r_[np.ones(3, bool), np.zeros(7, bool), np.zeros(5, bool), np.zeros(36, bool)]
    miss = miss_by_kind(missed, kinds)
    assert (miss["crack"].missed, miss["crack"].n) == (3, 10)
    assert miss["crack"].interval.low < 0.3 < miss["crack"].interval.high
    assert miss["stain"].rate == 0.0 and miss["stain"].interval.high > 0.5
    # line-ready on the interval: 0 of 36 shows <= 10 % (upper end 9.7 %), 0 of 5 does not
    assert lacking_kinds(miss, 0.1) == ("crack", "stain")
    assert lacking_kinds(miss, 0.7) == ()


@pytest.mark.parametrize(
    ("bound", "needed"), [(0.0, None), (0.01, 368), (0.05, 72), (0.1, 36), (0.5, 6), (1.0, 1)]
)
def test_defects_needed_is_the_fewest_images_that_show_the_bound(
    bound: float, needed: int | None
) -> None:
    assert defects_needed(bound) == needed
    if needed is not None:
        at, below = (miss_by_kind(np.zeros(n, bool), ["a"] * n) for n in (needed, needed - 1))
        assert lacking_kinds(at, bound) == ()
        assert needed == 1 or lacking_kinds(below, bound) == ("a",)


def test_miss_at_uses_the_verdict_rule() -> None:
    scores = np.array([0.1, 0.5, 0.49, 0.7])
    labels = np.array([0, 1, 1, 1])
    miss = miss_at(scores, labels, ["good", "a", "a", "b"], 0.5)
    assert (miss["a"].missed, miss["b"].missed) == (1, 0)


def test_operating_curve_trades_rejects_for_misses() -> None:
    rng = np.random.default_rng(2)
    good, bad = rng.normal(size=100), rng.normal(2.0, size=40)
    curve = operating_curve(good, bad, ["a"] * 20 + ["b"] * 20)
    fr = [p.false_reject_rate for p in curve]
    miss = [p.miss_rate["a"] for p in curve]
    assert fr == sorted(fr, reverse=True) and miss == sorted(miss)
    assert (fr[0], miss[-1]) == (1.0, 1.0)


def test_conformal_bound_is_at_most_the_budget_when_sufficient() -> None:
    for n in (99, 150, 500):
        assert conformal_bound(n, conformal_rank(n, 0.01)) <= 0.01 + 1e-12


@pytest.mark.parametrize("n", [10**3, 10**5, 10**7])
def test_confident_rank_keeps_the_most_rejects_within_the_exact_upper_bound(n: int) -> None:
    """n - k calibration rejects: their one-sided 95 % Clopper-Pearson bound (the two-sided
    90 % interval's upper end) is within the budget, one more reject's is not."""
    from inspection.core.bootstrap import count_interval

    rejects = n - confident_rank(n, 0.01, 0.95)
    assert count_interval(rejects, n, level=0.90).high <= 0.01
    assert count_interval(rejects + 1, n, level=0.90).high > 0.01


def test_confident_n_needed_is_the_smallest_sufficient_n() -> None:
    assert confident_n_needed(0.01, 0.95) == 299  # 0.99^299 <= 0.05 < 0.99^298
    assert confident_rank(299, 0.01, 0.95) == 299
    assert confident_rank(298, 0.01, 0.95) == 299  # > n: too few
    choice = choose_threshold(np.arange(100.0), OperatingPoint(budget=0.01), confidence=0.95)
    assert not choice.sufficient and choice.n_needed == 299 and choice.threshold > 99


def test_a_confident_budget_holds_for_most_calibration_draws_where_the_marginal_fails() -> None:
    """Uniform good scores: the reject rate above t is 1 - t. Over 2,000 calibration sets of
    500, the confident threshold exceeds the 1 % budget in at most ~5 % of them; the marginal
    (split-conformal) one only keeps it on average, so in a large share of draws it does not."""
    rng = np.random.default_rng(7)
    over = {None: 0, 0.95: 0}
    for _ in range(2000):
        good = rng.random(500)
        for confidence in over:
            point = OperatingPoint(budget=0.01)
            threshold = choose_threshold(good, point, confidence=confidence).threshold
            over[confidence] += 1.0 - threshold > 0.01
    assert over[0.95] / 2000 <= 0.06
    assert over[None] / 2000 > 0.25


def test_good_map_threshold_is_above_most_good_peaks() -> None:
    peaks = np.random.default_rng(3).normal(size=199)
    threshold = good_map_threshold(peaks, 0.01)
    assert (peaks >= threshold).sum() == 1  # k = ceil(200 * 0.99) = 198 of 199


def test_transfer_carries_scores_into_another_space() -> None:
    from inspection.core.operating_point import fit_transfer

    source = np.linspace(1.0, 5.0, 30)
    target = 1.1 * source - 0.2 + np.random.default_rng(4).normal(0, 0.01, 30)
    transfer = fit_transfer(source, target)
    assert transfer.slope == pytest.approx(1.1, abs=0.01)
    assert transfer.max_residual < 0.05
    assert transfer.apply(np.array([10.0]))[0] == pytest.approx(10.8, abs=0.1)
    shift = fit_transfer(np.array([2.0, 2.0]), np.array([2.5, 2.7]))
    assert (shift.slope, shift.intercept) == (1.0, pytest.approx(0.6))


@pytest.mark.parametrize(
    ("n", "budget", "allowed"), [(42, 0.01, 2), (7, 0.01, 1), (7, 0.05, 1), (200, 0.01, 5)]
)
def test_allowed_rejects_follow_the_binomial_test(n: int, budget: float, allowed: int) -> None:
    from inspection.core.operating_point import allowed_rejects, within_budget

    assert allowed_rejects(n, budget) == allowed
    assert within_budget(allowed, n, budget) and not within_budget(allowed + 1, n, budget)


def _exact_tail(rejected: int, n: int, budget: Fraction) -> Fraction:
    """P(X >= rejected), X ~ Binomial(n, budget), in exact rational arithmetic."""
    return 1 - sum(math.comb(n, i) * budget**i * (1 - budget) ** (n - i) for i in range(rejected))


@pytest.mark.parametrize("budget", [Fraction(1, 100), Fraction(1, 20)])
def test_the_budget_test_is_exact_at_a_thousand_good_parts(budget: Fraction) -> None:
    from inspection.core.operating_point import allowed_rejects, within_budget

    n, level = 1000, Fraction(BUDGET_TEST_LEVEL)
    allowed = allowed_rejects(n, float(budget))
    assert _exact_tail(allowed, n, budget) >= level > _exact_tail(allowed + 1, n, budget)
    assert within_budget(allowed, n, float(budget))
    assert not within_budget(allowed + 1, n, float(budget))


@pytest.mark.parametrize("n", [1030, 10**5, 10**7])
def test_the_budget_test_holds_at_any_volume(n: int) -> None:
    """No OverflowError at any n (math.comb on floats raised from n = 1030); the allowed
    count sits where the normal approximation of the binomial puts it at large n."""
    from inspection.core.operating_point import allowed_rejects, within_budget

    budget = 0.01
    allowed = allowed_rejects(n, budget)
    assert within_budget(0, n, budget) and within_budget(allowed, n, budget)
    assert not within_budget(allowed + 1, n, budget)
    assert not within_budget(n, n, budget)
    mean, sd = n * budget, math.sqrt(n * budget * (1 - budget))
    assert abs(allowed - (mean + 1.6449 * sd)) <= 0.05 * sd + 2


@pytest.mark.parametrize(
    ("residual", "threshold", "good", "share"),
    [(0.5, 12.0, (9.0, 10.0, 11.0), 0.25), (0.1, 12.0, (9.0, 10.0, 11.0), 0.05),
     (0.05, 0.1, (-0.2, -0.1, 0.0), 0.25), (0.05, -9.0, (-11.0, -10.0, -9.5), 0.05),
     (0.01, 10.0, (9.0, 10.0, 11.0), float("inf"))],
)  # fmt: skip
def test_the_residual_is_a_share_of_the_thresholds_margin_above_the_good_scores(
    residual: float, threshold: float, good: tuple[float, ...], share: float
) -> None:
    """The share is of threshold - median good score, whatever |threshold| is (0.05 at a
    threshold of 0.1 was 50 % of it); no margin (threshold at the median): inf."""
    transfer = ScoreTransfer(1.0, 0.0, 10, residual)
    assert transfer.residual_share(threshold, np.array(good)) == pytest.approx(share)


def test_a_raised_threshold_keeps_the_bound_guaranteed() -> None:
    choice = ThresholdChoice(
        1.0, "false_reject_budget", 0.01, 0.05, 99, rank=99, false_reject_bound=0.01
    )
    assert dataclasses.replace(choice, transfer_residual=MAX_TRANSFER_RESIDUAL).bound_guaranteed
    above = dataclasses.replace(choice, transfer_residual=0.3)
    assert not above.bound_guaranteed
    raised = dataclasses.replace(above, transfer_raise=0.2)
    assert raised.bound_guaranteed
    assert "raised by 0.2" in raised.describe()


@pytest.mark.parametrize("n", [7, 63, 299])
def test_unit_weights_set_the_threshold_as_no_weights(n: int) -> None:
    good = np.random.default_rng(n).normal(size=n)
    plain = choose_threshold(good, OperatingPoint(), defect_scores=good + 3.0)
    weighted = choose_threshold(
        good, OperatingPoint(), defect_scores=good + 3.0, good_weights=np.ones(n)
    )
    assert weighted == plain


@pytest.mark.parametrize(
    ("weights", "message"),
    [(np.full(3, 0.5), "summing to a whole number"), (np.array([1.0, 2.0, 0.0]), "positive"),
     (np.ones(2), "need 3")],
)  # fmt: skip
def test_good_weights_must_count_whole_images(weights: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        choose_threshold(np.array([1.0, 2.0, 3.0]), OperatingPoint(), good_weights=weights)


def test_convolved_sums_count_the_carried_images_not_the_sums() -> None:
    """63 carried scores and 35 residuals: 2205 sums, but 63 good images (too few for 1 %),
    so the threshold sits above the largest sum. Ranks over the 2205 sums would put it below."""
    rng = np.random.default_rng(5)
    carried, residuals = rng.normal(28.0, 0.5, 63), rng.normal(0.0, 0.15, 35)
    sums, weights = convolved(carried, residuals)
    assert sums.shape == weights.shape == (63 * 35,)
    choice = choose_threshold(sums, OperatingPoint(), good_weights=weights)
    assert (choice.n_good, choice.rank, choice.n_needed) == (63, 63, 99)
    assert choice.threshold > carried.max() + residuals.max()
    assert choose_threshold(sums, OperatingPoint()).threshold < sums.max()


def test_residuals_that_lift_the_bundle_scores_lift_the_threshold_by_as_much() -> None:
    """Signed: residuals all +0.4 (the bundle scores every pair 0.4 above the line) lift the
    threshold by 0.4; all -0.4 lower it by 0.4 (the largest |residual| raised both)."""
    carried = np.random.default_rng(6).normal(10.0, 1.0, 299)
    plain = choose_threshold(carried, OperatingPoint()).threshold
    for shift in (0.4, -0.4):
        sums, weights = convolved(carried, np.full(20, shift))
        lifted = choose_threshold(sums, OperatingPoint(), good_weights=weights).threshold
        assert lifted == pytest.approx(plain + shift)


def test_the_convolution_keeps_the_budget_where_the_largest_residual_overshoots_it() -> None:
    """New good parts score X + R, X ~ N(0, 1) as the 299 carried scores, R ~ N(0, 0.5) as the
    50 pair residuals. Over 200 draws the mean false-reject rate of the convolved threshold
    stays within the 1 % budget; ignoring the residuals, or ranking over the 299 x 50 sums as
    if they were images, breaks it; raising by the largest |residual| (the rule before)
    rejects well under a fifth of the budget, a threshold higher than the bound needs."""
    from scipy.stats import norm

    rates: dict[str, list[float]] = {"convolved": [], "ignored": [], "sums": [], "largest": []}
    for seed in range(200):
        rng = np.random.default_rng(seed)
        carried, residuals = rng.normal(size=299), rng.normal(0.0, 0.5, 50)
        sums, weights = convolved(carried, residuals)
        thresholds = {
            "convolved": choose_threshold(sums, OperatingPoint(), good_weights=weights),
            "ignored": choose_threshold(carried, OperatingPoint()),
            "sums": choose_threshold(sums, OperatingPoint()),
            "largest": choose_threshold(carried + np.abs(residuals).max(), OperatingPoint()),
        }
        for name, choice in thresholds.items():
            rates[name].append(float(norm.sf(choice.threshold / math.sqrt(1.25))))
    mean = {name: float(np.mean(values)) for name, values in rates.items()}
    assert mean["convolved"] <= 0.01
    assert mean["ignored"] > 0.01 and mean["sums"] > 0.01
    assert mean["largest"] < 0.002

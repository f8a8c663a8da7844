"""The live-bundle check of ``inspection demo``: station verdicts vs the export gate's FP32."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from inspection.core.bundle import read_bundle_metadata
from inspection.core.errors import BundleError
from inspection.runtime.self_check import LabelledPath, check_live_bundle, recorded_reference


def _parts(trained_patchcore) -> list[LabelledPath]:
    from inspection.data.dataset import load_dataset
    from inspection.training.registry_export import held_out_test_samples

    tp = trained_patchcore
    samples = held_out_test_samples(tp.record, load_dataset(tp.dataset_root))
    return [LabelledPath(s.path, s.label) for s in samples]


@pytest.mark.slow
def test_live_bundle_judges_its_parts_as_exported(fp32_bundle: Path, trained_patchcore) -> None:
    check = check_live_bundle(fp32_bundle, _parts(trained_patchcore))
    assert check.figures.n_good + check.figures.n_defective == len(_parts(trained_patchcore))
    assert check.figures.ng_without_region == 0
    assert check.passed, check.summary()


@pytest.mark.slow
def test_a_bundle_judging_otherwise_than_gated_fails(
    fp32_bundle: Path, trained_patchcore, tmp_path: Path
) -> None:
    """A bundle applying other numbers than its gate measured with (as INT8 bundles inheriting
    FP32's normalisation did) must fail: here every score lands far below the threshold."""
    from inspection.core.bundle import read_bundle_metadata, write_bundle_metadata

    moved = tmp_path / "bundle"
    shutil.copytree(fp32_bundle, moved)
    meta = read_bundle_metadata(moved)
    norm = replace(meta.normalization, image_threshold_raw=meta.normalization.image_max + 1e6)
    write_bundle_metadata(moved, replace(meta, normalization=norm, output_calibration=None))
    check = check_live_bundle(moved, _parts(trained_patchcore))
    assert not check.passed
    assert "miss_rate 1.000 vs FP32" in check.summary()


def test_a_bundle_without_a_gate_record_is_refused(fp32_bundle: Path) -> None:
    meta = replace(read_bundle_metadata(fp32_bundle), metrics={"overall": {"image_auroc": 1.0}})
    with pytest.raises(BundleError, match="not calibrated on its own outputs"):
        recorded_reference(meta)


def test_a_bundle_as_bad_as_its_fp32_reference_passes_the_gate_but_is_not_line_ready() -> None:
    from inspection.core.export_gate import BundleFigures, GateTolerances, check_gate
    from inspection.runtime.self_check import LiveCheck

    poor = BundleFigures(
        false_reject_rate=5 / 7, miss_rate=3 / 16, image_auroc=None, pixel_auroc=None,
        aupro=None, region_recall=None, ng_without_region=0, n_good=7, n_defective=16,
    )  # fmt: skip
    check = LiveCheck("p/v0001", poor, poor, check_gate(poor, poor, GateTolerances()))
    assert check.passed  # relative to FP32 nothing is worse
    assert check.readiness().lacks == (  # what it misses first
        "misses 3 of 16 defects (19%; up to 46% at 95 %, the bound is 10%)",
        "rejects 5 of 7 good held-out parts (a 10.0% budget allows 2)",
    )
    # no miss in 16 cannot show <= 10 % (95 % interval up to 21 %); none in 36 can
    few = replace(poor, false_reject_rate=0.0, miss_rate=0.0)
    assert LiveCheck("p/v0001", few, few, check.decision).readiness().lacks == (
        "16 defects held out (0 missed) are too few to show at most 10% missed: that takes at "
        "least 36 defects images with no miss",
    )
    fine = replace(few, n_defective=40)
    assert LiveCheck("p/v0001", fine, fine, check.decision).readiness().ready


def test_not_line_ready_names_the_kinds_missed_beyond_the_bound() -> None:
    import numpy as np

    from inspection.core.export_gate import BundleFigures, GateTolerances, check_gate
    from inspection.core.operating_point import OperatingPoint, choose_threshold, miss_by_kind
    from inspection.runtime.self_check import LiveCheck

    figures = BundleFigures(
        false_reject_rate=1 / 42, miss_rate=9 / 42, image_auroc=None, pixel_auroc=None,
        aupro=None, region_recall=None, ng_without_region=0, n_good=42, n_defective=42,
    )  # fmt: skip
    missed = np.r_[np.ones(8, bool), np.zeros(13, bool), np.ones(1, bool), np.zeros(40, bool)]
    miss = miss_by_kind(missed, ["crack"] * 21 + ["stain"] * 41)
    choice = choose_threshold(np.arange(200.0), OperatingPoint(budget=0.01, miss_bound=0.1))
    decision = check_gate(figures, figures, GateTolerances())
    check = LiveCheck("p/v0001", figures, figures, decision, miss=miss, operating=choice)
    # 1 of 42 good is within a 1 % budget; stain 1/41 is under the 10 % bound at 95 % (12.9 %
    # is the interval's upper end: not shown), crack 8/21 is far above it, and comes first
    readiness = check.readiness()
    assert readiness.lacks == (
        "misses 8 of 21 crack (38%; up to 62% at 95 %, the bound is 10%)",
        "41 stain held out (1 missed) are too few to show at most 10% missed: that takes at least "
        "54 stain images with no miss beyond the 1 already missed",
    )
    # the first advice lowers the misses; showing them comes after, with its own count
    assert readiness.advice[0].startswith("to miss fewer crack: label more crack images")
    assert readiness.advice[1] == (
        "hold out 54 stain images to show it (41 now): 77 in test/stain/, as training keeps 30% "
        "of a test folder to set the threshold (val_fraction 0.3, the default)"
    )
    assert "(crack 8/21; stain 1/41)" in check.summary()
    many = replace(figures, false_reject_rate=3 / 42)
    lacks = LiveCheck("p/v0001", many, many, decision, miss=miss, operating=choice).readiness()
    assert "rejects 3 of 42 good held-out parts (a 1.0% budget allows 2)" in lacks.lacks


def test_the_budget_concern_holds_past_a_thousand_good_parts() -> None:
    """The station check's binomial test at 1,100 good parts (it overflowed from 1030)."""
    import numpy as np

    from inspection.core.export_gate import BundleFigures, GateTolerances, check_gate
    from inspection.core.operating_point import OperatingPoint, choose_threshold
    from inspection.runtime.self_check import LiveCheck

    choice = choose_threshold(np.arange(1100.0), OperatingPoint(budget=0.01))
    for rejected, flagged in ((0, False), (17, False), (18, True)):
        figures = BundleFigures(
            false_reject_rate=rejected / 1100, miss_rate=0.0, image_auroc=None, pixel_auroc=None,
            aupro=None, region_recall=None, ng_without_region=0, n_good=1100, n_defective=0,
        )  # fmt: skip
        decision = check_gate(figures, figures, GateTolerances())
        check = LiveCheck("p/v0001", figures, figures, decision, operating=choice)
        rejects = f"rejects {rejected} of 1100 good held-out parts (a 1.0% budget allows 17)"
        assert (rejects in check.readiness().lacks) == flagged


@pytest.mark.slow
def test_a_part_the_bundle_refuses_fails_the_check_by_name(
    fp32_bundle: Path, trained_patchcore, tmp_path: Path
) -> None:
    """A refused part (here a grey copy under a colour-trained bundle) has no verdict: it was
    counted as 'unreadable'; the check names it as refused."""
    from PIL import Image

    parts = _parts(trained_patchcore)
    grey = tmp_path / "grey.png"
    Image.open(parts[0].path).convert("L").save(grey)
    check = check_live_bundle(fp32_bundle, [*parts, LabelledPath(grey, parts[0].label)])
    assert (check.refused, check.unreadable) == (1, 0)
    assert not check.passed
    assert "1 part(s) refused as unlike the training images" in check.summary()

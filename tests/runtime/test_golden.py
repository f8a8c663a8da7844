"""Golden outputs of a real exported bundle: recorded, signed, checked at load, and refusing a
bundle whose graph numerics were changed (weights perturbed, checksums and signature redone)."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from inspection.core.bundle import read_bundle_metadata, verify_bundle, write_bundle_metadata
from inspection.core.errors import BundleError
from inspection.core.golden import GOLDEN_IMAGES, MIN_MARGIN, NEAR_THRESHOLD, golden_margins
from inspection.core.signing import sign_bundle, verify_signed_bundle
from inspection.runtime.golden import GoldenDriftError, check_golden, golden_images, run_golden
from inspection.runtime.inspector import Inspector
from inspection.runtime.model import BundleModel
from tests.golden_helpers import perturb_weights
from tests.ov_precision import cpu_executes_bf16

pytestmark = pytest.mark.slow


def _copy(bundle: Path, tmp_path: Path) -> Path:
    target = tmp_path / bundle.name
    shutil.copytree(bundle, target)
    return target


def test_every_export_records_signed_golden_outputs(fp32_bundle: Path) -> None:
    meta = verify_bundle(fp32_bundle)
    golden = meta.golden
    assert golden is not None and len(golden.images) > GOLDEN_IMAGES
    assert len(golden.images) <= GOLDEN_IMAGES + NEAR_THRESHOLD
    assert golden.precision == "f32" and golden.tolerance > 0
    for file in golden.files:
        assert (fp32_bundle / file).is_file() and file in meta.files


def test_golden_margins_are_the_served_scores_distance_to_the_threshold(
    fp32_bundle: Path,
) -> None:
    """The images added after the first ones are the validation images nearest the threshold
    (none closer than MIN_MARGIN); each margin is its served score's distance to it."""
    model = BundleModel.load(fp32_bundle)
    golden, norm = model.metadata.golden, model.metadata.normalization
    served = run_golden(model, golden_images(model), masked=True)[0]
    margins = np.array([image.margin for image in golden.images])
    np.testing.assert_allclose(margins, golden_margins(served, norm), atol=1e-5)
    assert margins[GOLDEN_IMAGES:].size and (margins >= MIN_MARGIN).all()


def test_the_golden_check_passes_at_load_on_this_cpu(fp32_bundle: Path) -> None:
    inspector = Inspector.from_bundle(fp32_bundle)
    check = inspector.golden
    assert check is not None and check.passed
    assert check.precision == "f32" and check.kernels
    assert check.worst_drift < 1e-4  # same CPU, same precision: exact up to summation order


@pytest.mark.parametrize("relative", [0.02, -0.01])
def test_a_perturbed_graph_is_refused_even_when_re_signed(
    fp32_bundle: Path, tmp_path: Path, relative: float
) -> None:
    bundle = _copy(fp32_bundle, tmp_path)
    perturb_weights(bundle, relative)
    key = Ed25519PrivateKey.generate()
    sign_bundle(bundle, key)
    verify_signed_bundle(bundle, key.public_key())  # signature and checksums are valid
    with pytest.raises(GoldenDriftError, match="golden check REFUSED") as refused:
        Inspector.from_bundle(bundle)
    assert refused.value.check.worst_drift > refused.value.check.tolerance


def test_an_edited_golden_record_fails_its_checksums_first(fp32_bundle: Path, tmp_path) -> None:
    bundle = _copy(fp32_bundle, tmp_path)
    (bundle / "golden" / "00.png").write_bytes(b"not the golden image")
    with pytest.raises(BundleError, match=r"checksum mismatch for golden/00\.png"):
        Inspector.from_bundle(bundle)


def test_fp32_bundle_run_in_bf16_drift_is_seen(fp32_bundle: Path, tmp_path) -> None:
    """The same FP32 graph executed with the bf16 hint: where the CPU executes bf16 the golden
    check sees it (drift well above f32's) and reports the precision executed; OpenVINO runs
    f32 elsewhere (drift ~0). Bounded: bf16 rounding, not a broken graph (< 0.5 units)."""
    bundle = _copy(fp32_bundle, tmp_path)
    meta = read_bundle_metadata(bundle)
    write_bundle_metadata(bundle, dataclasses.replace(meta, inference_precision="bf16"))
    check = check_golden(BundleModel.load(bundle))
    assert check is not None
    assert check.precision == ("bf16" if cpu_executes_bf16() else "f32")
    if cpu_executes_bf16():
        assert 1e-3 < check.worst_drift < 0.5
        assert any("bf16" in kernel for kernel in check.kernels)
    else:
        assert check.worst_drift < 1e-4

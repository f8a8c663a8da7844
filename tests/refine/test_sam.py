"""SAM refiner: export of a random-init MobileSAM, station mechanics, parity with torch; and the
bundle inside the signature: ``refine export-sam`` signs it with the site key, a pinned key
refuses it unsigned or altered (the ``bench/tamper.py --attacks`` row), and without a key
(``allow_unsigned_bundles``) it loads on its checksums alone. One export (10-30 s) serves every
test; the signature tests had an export of their own before."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from inspection.cli import app
from inspection.core.errors import BundleError, WeightsError
from inspection.core.signing import SIGNING_KEY_ENV, init_keys, key_id, load_public_key
from inspection.refine.bundle import verify_refiner_bundle
from inspection.refine.config import GuardConfig, RefineConfig, SamConfig
from inspection.refine.factory import build_refiner
from tests.station.test_signed_decisions import tamper  # noqa: F401 (the bench module fixture)

from .refine_cases import blurred_blob_case, make_result

pytestmark = pytest.mark.filterwarnings("ignore:.*RANDOM WEIGHTS:UserWarning")
PERMISSIVE = GuardConfig(
    max_outside_fraction=1.0,
    min_area_ratio=0.0,
    max_area_ratio=1e9,
    max_image_fraction=1.0,
    min_predicted_iou=-1e9,
)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(a random-init MobileSAM bundle ``refine export-sam`` wrote on a site holding a key,
    the site's public key)."""
    site = tmp_path_factory.mktemp("site")
    (site / "site.yaml").write_text(f"registry_dir: {site / 'var' / 'registry'}\n")
    keys = init_keys(site / "var" / "keys")
    out = site / "mobile_sam"
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(SIGNING_KEY_ENV, raising=False)
        result = CliRunner().invoke(
            app, ["refine", "export-sam", "--random-init", "--out", str(out),
                  "--site", str(site / "site.yaml")],
        )  # fmt: skip
    assert result.exit_code == 0, result.output + str(result.exception)
    assert f"signed with key {keys.key_id}" in " ".join(result.output.split())
    return out, keys.public


@pytest.fixture(scope="module")
def sam_bundle(exported: tuple[Path, Path]) -> Path:
    return exported[0]


@pytest.fixture(scope="module")
def refiner(sam_bundle: Path):
    from inspection.refine.sam import SamRefiner

    config = RefineConfig(guards=PERMISSIVE)
    with pytest.warns(UserWarning, match="RANDOM WEIGHTS"):
        return SamRefiner.from_bundle(sam_bundle, config=config, budget_ms=1e9)


@pytest.mark.slow
def test_export_writes_a_self_describing_bundle(sam_bundle: Path) -> None:
    meta = json.loads((sam_bundle / "metadata.json").read_text())
    assert meta["kind"] == "sam_refiner" and meta["schema_version"] == 1
    assert meta["backend"] == "vit_t" and meta["precision"] == "fp32"
    assert meta["input_size"] == 1024 and meta["random_weights"] is True
    assert meta["pixel_mean"] == [123.675, 116.28, 103.53]
    assert meta["pixel_std"] == [58.395, 57.12, 57.375]
    assert sorted(meta["files"]) == ["decoder.bin", "decoder.xml", "encoder.bin", "encoder.xml"]
    assert meta["checkpoint_sha256"] is None


@pytest.mark.slow
def test_misuse_before_set_image(refiner) -> None:
    refiner.reset_image()
    with pytest.raises(RuntimeError, match=r"call set_image\(\) first"):
        refiner.refine([])
    with pytest.raises(RuntimeError, match=r"call set_image\(\) first"):
        refiner.decode(np.zeros((1, 2)), np.ones(1))
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8 RGB"):
        refiner.set_image(np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match="must be uint8, got float32"):
        refiner.set_image(np.zeros((8, 8, 3), np.float32))


@pytest.mark.slow
def test_refine_and_refine_result_within_budget(refiner) -> None:
    from inspection.refine.prompts import prompts_from_map

    image, _, result = blurred_blob_case(0.5, size=96)
    ok = make_result(result.anomaly_map, 0.5, verdict="OK")
    assert refiner.refine_result(image, ok) is ok  # no encoder run for OK parts

    refiner.set_image(image)
    prompts = prompts_from_map(result.anomaly_map, result.mask, RefineConfig().prompts)
    out = refiner.refine(prompts + prompts)
    assert out.masks.shape == (2, 96, 96) and out.masks.dtype == bool
    assert out.iou.shape == (2,) and np.array_equal(out.masks, out.logits > 0)
    np.testing.assert_allclose(out.logits[0], out.logits[1], atol=1e-5)

    refined = refiner.refine_result(image, result)
    # permissive guards accept any non-empty mask; random weights may give an empty one
    assert refined.mask_source == ("sam-random" if out.masks[0].any() else "raw")
    assert refined.timings_ms["refine_encoder_ms"] > 0
    assert refined.timings_ms["refine_regions"] == 1.0
    assert refined.timings_ms["refine_skipped_budget"] == 0.0
    assert refined.mask.shape == result.mask.shape and refined.score == result.score
    with pytest.raises(RuntimeError, match=r"call set_image\(\) first"):
        refiner.refine(prompts)  # refine_result does not leave its image behind

    refiner.budget_ms = 0.0
    try:
        skipped = refiner.refine_result(image, result)
    finally:
        refiner.budget_ms = 1e9
    assert skipped.mask_source == "raw" and np.array_equal(skipped.mask, result.mask)
    assert skipped.timings_ms["refine_skipped_budget"] == 1.0


@pytest.mark.slow
def test_openvino_matches_torch_mask_logits(refiner, sam_bundle: Path) -> None:
    from inspection.refine.prompts import prompts_from_map
    from inspection.refine.sam import _sam_inputs, preprocess, resized_shape
    from inspection.training.sam_export import build_sam

    image, _, result = blurred_blob_case(0.5, size=80)
    (prompt,) = prompts_from_map(result.anomaly_map, result.mask, RefineConfig().prompts)
    refiner.set_image(image)
    points, labels = _sam_inputs(prompt)
    ov_logits, ov_iou = refiner.decode(points, labels)
    new_h, new_w = resized_shape(80, 80, 1024)
    coords = points * np.array([new_w / 80, new_h / 80], np.float32)
    model = build_sam("vit_t", None, random_init=True)  # same seed as the export
    emb, logits, iou = _torch_reference(model, preprocess(image, refiner.metadata), coords, labels)
    assert ov_logits.shape == (4, 256, 256)
    np.testing.assert_allclose(refiner._embeddings, emb, atol=1e-3)
    np.testing.assert_allclose(ov_logits, logits[0], atol=1e-3)
    np.testing.assert_allclose(ov_iou, iou[0], atol=1e-4)


@pytest.mark.slow
def test_corrupt_bundle_is_refused(sam_bundle: Path, tmp_path: Path) -> None:
    from inspection.refine.sam import SamRefiner

    broken = tmp_path / "broken"
    shutil.copytree(sam_bundle, broken)
    with open(broken / "decoder.bin", "r+b") as handle:
        handle.seek(1000)
        handle.write(b"\x00\x01\x02\x03")
    with pytest.raises(BundleError, match=r"checksum mismatch for decoder\.bin"):
        SamRefiner.from_bundle(broken)
    (broken / "metadata.json").unlink()
    with pytest.raises(BundleError, match="not a SAM refiner bundle"):
        SamRefiner.from_bundle(broken)


@pytest.mark.slow
def test_registry_refuses_random_weights_unless_allowed(sam_bundle: Path) -> None:
    refused = pytest.raises(WeightsError, match="exported with random weights")
    with refused, pytest.warns(UserWarning, match="RANDOM WEIGHTS"):  # verified, then refused
        build_refiner(RefineConfig(method="sam", sam=SamConfig(bundle=sam_bundle)))
    allowed = SamConfig(bundle=sam_bundle, allow_random_weights=True)
    with pytest.warns(UserWarning, match="RANDOM WEIGHTS"):
        refiner = build_refiner(RefineConfig(method="auto", sam=allowed))
    assert refiner.name == "sam-random"


def test_sam_module_imports_without_torch() -> None:
    code = (
        "import sys\n"
        "import inspection.refine.sam, inspection.refine.factory, inspection.refine.classical\n"
        "print(','.join(m for m in ('torch', 'torchvision', 'mobile_sam', 'segment_anything')"
        " if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def _torch_reference(
    model: Any, image_input: np.ndarray, coords: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Torch outputs for parity checks: embeddings, low-res mask logits, IoU predictions, by
    the model's own prompt encoder (not the export wrapper). ``coords`` (N, 2) and ``labels``
    (N,) in the export convention (2/3 = box corners)."""
    import torch  # deferred: the torch side, as the test's other imports

    with torch.no_grad():
        emb = model.image_encoder(torch.from_numpy(image_input))
        is_box = np.isin(labels, (2, 3))
        pts = coords[~is_box]
        points = None
        if len(pts):
            points = (
                torch.from_numpy(pts[None].astype(np.float32)),
                torch.from_numpy(labels[~is_box][None].astype(np.int64)),
            )
        boxes = torch.from_numpy(coords[is_box].reshape(1, 4)) if is_box.any() else None
        sparse, dense = model.prompt_encoder(points=points, boxes=boxes, masks=None)
        # the decoder's forward drops mask 0 with multimask: all four, for parity
        all_masks, all_iou = model.mask_decoder.predict_masks(
            image_embeddings=emb,
            image_pe=model.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
        )
    return emb.numpy(), all_masks.numpy(), all_iou.numpy()


# ------------------------------------------------------------------ the signature
@pytest.mark.slow
def test_export_sam_signs_with_the_site_key(exported: tuple[Path, Path]) -> None:
    bundle, public = exported
    key = load_public_key(public)
    assert verify_refiner_bundle(bundle, key).signed_by == key_id(key)


@pytest.mark.slow
def test_an_altered_sam_refiner_is_refused(tamper: ModuleType, exported: tuple[Path, Path],  # noqa: F811
                                           tmp_path: Path) -> None:  # fmt: skip
    row = tamper.altered_sam_refiner(tmp_path, exported[0])
    assert row["outcome"] == "refused, last good kept", row["what"]


@pytest.mark.slow
def test_unsigned_is_refused_with_a_key_and_loads_without(
    exported: tuple[Path, Path], tmp_path: Path
) -> None:
    bundle = shutil.copytree(exported[0], tmp_path / "unsigned")
    (bundle / "signature.json").unlink()
    config = RefineConfig(method="sam", sam=SamConfig(bundle=bundle, allow_random_weights=True))
    with pytest.raises(BundleError, match="not signed"):
        build_refiner(config, public_key=load_public_key(exported[1]))
    assert build_refiner(config).name == "sam-random"  # allow_unsigned_bundles: no key

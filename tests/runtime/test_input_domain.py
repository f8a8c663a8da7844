"""The station holds every image against its bundle's input domain (``core.input_domain``).

Most tests run a tiny hand-built OpenVINO model (torch-free, fast) whose anomaly map is the
mean of its input channels: colour input gives mean(R, G, B), grey-converted input its luma, so
the conversion of a grey-trained bundle shows in every number. The last ones check what export
recorded on the session's real bundle (``fp32_bundle``).
"""

from __future__ import annotations

import dataclasses
import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench._shared import write_mean_bundle
from inspection.core.alignment import AlignmentSpec
from inspection.core.bundle import (
    read_bundle_metadata,
    write_bundle_metadata,
)
from inspection.core.errors import InputDomainError
from inspection.core.images import read_image
from inspection.core.input_domain import DomainTolerance, InputDomain
from inspection.core.roi import RoiSpec
from inspection.core.tiling import TilingSpec
from inspection.runtime.bounds import CameraOptions
from inspection.runtime.inspector import Inspector
from inspection.runtime.paths import inspect_paths
from inspection.runtime.tiled import TiledInspector

INPUT = (32, 32)
SIDE = 128
COLOUR = InputDomain(
    colour="colour",
    channel_spread=(20.0, 40.0),
    height=(SIDE, SIDE),
    width=(SIDE, SIDE),
    aspect=(1.0, 1.0),
    images=12,
    colour_images=12,
)
GREY = dataclasses.replace(COLOUR, colour="grey", channel_spread=(0.0, 0.0))
MIXED = dataclasses.replace(COLOUR, colour="mixed", channel_spread=(0.0, 40.0))
HALF = RoiSpec((SIDE, SIDE), include=(((0, 0), (SIDE / 2, 0), (SIDE / 2, SIDE), (0, SIDE)),))


def _part(height: int = SIDE, width: int = SIDE, seed: int = 0) -> np.ndarray:
    """A colour part with structure for alignment: gradients, a disc and a bar, mild noise."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    disc = (xs - width * 0.4) ** 2 + (ys - height * 0.5) ** 2 < (min(height, width) * 0.2) ** 2
    bar = (xs > width * 0.7) & (xs < width * 0.8)
    red = 60 + 120 * xs / width + 60 * disc
    green = 60 + 120 * ys / height - 40 * bar
    blue = np.full_like(xs, 90) + 80 * bar
    noise = np.random.default_rng(seed).normal(0, 2, (height, width, 3))
    return np.clip(np.stack([red, green, blue], axis=2) + noise, 0, 255).astype(np.uint8)


def _grey(image: np.ndarray) -> np.ndarray:
    return np.repeat(image[..., :1], 3, axis=2)


def _bundle(target: Path, domain: InputDomain | None, **fields: object) -> Path:
    """A bundle of the mean-channel model; ``fields`` add tiling, ROI or alignment."""
    if fields.get("alignment") is not None:
        target.mkdir(parents=True)
        Image.fromarray(_part()).save(target / "reference.png")
    return write_mean_bundle(
        target, input_size=INPUT, product="part", input_domain=domain, **fields
    )


PATHS = {
    "plain": {},
    "roi": {"roi": HALF},
    "aligned": {"alignment": AlignmentSpec(working_size=128)},
    "tiled": {"tiling": TilingSpec(INPUT, (16, 16), scale=0.5, blend="mean")},
}


def _inspector(tmp_path: Path, domain: InputDomain | None, path: str = "plain", **kwargs):
    bundle = _bundle(
        tmp_path / f"{path}-{domain.colour if domain else 'none'}", domain, **PATHS[path]
    )
    inspector = Inspector.from_bundle(bundle, **kwargs)
    return TiledInspector(inspector) if path == "tiled" else inspector


# ---------------------------------------------------------------- refusals
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    ("image", "message"),
    [
        (_grey(_part()), "grey image (its three channels are equal"),
        (_part(8, 8), "image is 8x8, shorter side 8 px, but the bundle needs at least"),
        (_part(1, 1), "image is 1x1"),
        (
            _part(SIDE, 2 * SIDE),
            "image is 256x128 (aspect 2.00) but the bundle was trained on aspect",
        ),
    ],
    ids=["grey", "8x8", "1x1", "wide"],
)
def test_an_image_unlike_the_training_images_is_an_error_not_a_verdict(
    tmp_path: Path, path: str, image: np.ndarray, message: str
) -> None:
    inspector = _inspector(tmp_path, COLOUR, path)
    with pytest.raises(InputDomainError, match=re.escape(message)):
        inspector.inspect(image)
    if path != "tiled":
        with pytest.raises(InputDomainError):
            inspector.inspect_batch([_part(), image])
        with pytest.raises(InputDomainError):
            inspector.inspect_many([_part(), image])


@pytest.mark.parametrize("path", PATHS)
def test_images_like_the_training_images_are_judged(tmp_path: Path, path: str) -> None:
    inspector = _inspector(tmp_path, COLOUR, path)
    for image in (_part(), _part(seed=3)):
        result = inspector.inspect(image)
        assert result.verdict in ("OK", "NG") and result.input_warnings == ()
    if path in ("plain", "roi", "tiled"):  # alignment needs the reference's own frame
        for image in (_part(2 * SIDE, 2 * SIDE), _part(SIDE // 2, SIDE // 2), _part(SIDE, 140)):
            assert inspector.inspect(image).verdict in ("OK", "NG")


@pytest.mark.parametrize("path", ["plain", "tiled"])
def test_the_bundles_own_tolerance_decides(tmp_path: Path, path: str) -> None:
    """A bundle of a product cut to varying lengths (aspect within 40 %, shorter side down to a
    quarter) judges what a bundle with the default tolerance refuses, and refuses beyond it."""
    large = dataclasses.replace(COLOUR, height=(4 * SIDE,) * 2, width=(4 * SIDE,) * 2)
    loose = dataclasses.replace(large, tolerance=DomainTolerance(0.4, 0.25))
    inspector = _inspector(tmp_path / "loose", loose, path)
    default = _inspector(tmp_path / "default", large, path)
    longer, small = _part(4 * SIDE, 680), _part(SIDE, SIDE)  # aspect 1.33; a quarter the side
    for image in (longer, small) if path == "tiled" else (longer,):  # plain: above its input
        assert inspector.inspect(image).verdict in ("OK", "NG")
        with pytest.raises(InputDomainError):
            default.inspect(image)
    with pytest.raises(InputDomainError, match=re.escape("(accepted 0.71-1.40)")):
        inspector.inspect(_part(4 * SIDE, 760))


@pytest.mark.parametrize("path", PATHS)
def test_prepare_checks_the_image_once(
    tmp_path: Path, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``Inspector.prepare`` checks the camera image once, before the input-domain check and
    alignment (``BundleModel.align_checked``), and still refuses a malformed one first."""
    from inspection.runtime import inspector as inspector_module
    from inspection.runtime import model as model_module
    from inspection.runtime.preprocess import check_image

    loaded = _inspector(tmp_path, COLOUR, path)
    inspector = loaded.inspector if isinstance(loaded, TiledInspector) else loaded
    checked: list[tuple[int, ...]] = []

    def counted(image: np.ndarray) -> np.ndarray:
        checked.append(image.shape)
        return check_image(image)

    for module in (inspector_module, model_module):
        monkeypatch.setattr(module, "check_image", counted)
    ready = inspector.prepare(_part())
    assert checked == [(SIDE, SIDE, 3)] and ready.image.shape == (SIDE, SIDE, 3)
    with pytest.raises(ValueError, match=re.escape("image must be (H, W, 3) uint8 RGB")):
        inspector.prepare(_part().astype(np.float32))
    assert inspector.model.align(_part())[0].shape == (SIDE, SIDE, 3)  # align still checks
    assert len(checked) == 3


def test_warn_judges_and_records_the_problem(tmp_path: Path, caplog) -> None:
    inspector = _inspector(tmp_path, COLOUR, input_check="warn")
    with caplog.at_level(logging.WARNING, "inspection.runtime.inspector"):
        result = inspector.inspect(_grey(_part()))
        batched = inspector.inspect_batch([_part(8, 8)])[0]
    assert result.verdict in ("OK", "NG") and result.input_warnings[0].startswith("grey image")
    assert result.summary()["input_warnings"] == list(result.input_warnings)
    assert batched.input_warnings[0].startswith("image is 8x8")
    assert "judged anyway (input_check: warn): grey image" in caplog.text


def test_off_judges_without_a_word(tmp_path: Path) -> None:
    inspector = _inspector(tmp_path, COLOUR, input_check="off")
    assert inspector.inspect(_grey(_part())).input_warnings == ()
    with pytest.raises(ValueError, match="input_check must be one of refuse, warn, off"):
        Inspector(inspector.model, input_check="maybe")  # type: ignore[arg-type]


def test_a_bundle_without_a_record_still_inspects_and_says_so_once(tmp_path: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING, "inspection.runtime.inspector"):
        inspector = _inspector(tmp_path, None)
        for image in (_grey(_part()), _part(8, 8), _part(SIDE, 3 * SIDE)):
            assert inspector.inspect(image).verdict in ("OK", "NG")
    assert caplog.text.count("records no input domain") == 1


# ------------------------------------------------------- grey-trained bundles
@pytest.mark.parametrize("path", PATHS)
def test_grey_bundles_judge_a_colour_image_as_its_grey_file(tmp_path: Path, path: str) -> None:
    """Colour input under a grey-trained bundle is converted as the decoder converts a grey
    file: the colour file, its grey file and that file's colour-replicated twin judge alike."""
    colour = tmp_path / "part.png"
    Image.fromarray(_part()).save(colour)
    Image.open(colour).convert("L").save(tmp_path / "grey.png")
    Image.open(tmp_path / "grey.png").convert("RGB").save(tmp_path / "twin.png")
    images = [read_image(tmp_path / name) for name in ("part.png", "grey.png", "twin.png")]
    inspector = _inspector(tmp_path, GREY, path)
    results = [inspector.inspect(image) for image in images]
    if path != "tiled":
        results += inspector.inspect_batch(images) + inspector.inspect_many(images)
    for result in results[1:]:
        assert result.score == results[0].score
        np.testing.assert_array_equal(result.anomaly_map, results[0].anomaly_map)
    colour_judged = _inspector(tmp_path, MIXED, path).inspect(images[0])  # no conversion
    assert not np.array_equal(colour_judged.anomaly_map, results[0].anomaly_map)


def test_camera_reduced_files_are_checked_and_converted_too(tmp_path: Path) -> None:
    """Files decoded reduced to the working size (``runtime.paths``): a large colour file under
    a grey bundle judges as its grey file; under a colour bundle, grey and tiny files are
    refused one by one while the rest of the batch is judged."""
    big = np.asarray(Image.fromarray(_part()).resize((4 * SIDE, 4 * SIDE)))
    Image.fromarray(big).save(tmp_path / "a-colour.png")
    Image.fromarray(big).convert("L").save(tmp_path / "b-grey.png")
    Image.fromarray(_part(8, 8)).save(tmp_path / "c-tiny.png")
    Image.fromarray(_part(seed=4)).save(tmp_path / "d-colour.png")
    files = sorted(tmp_path.glob("*.png"))
    camera = CameraOptions(work_max_side=SIDE)
    grey = _inspector(tmp_path, GREY, camera=camera)
    outcomes = inspect_paths(grey, files[:2])
    assert outcomes[0].result.camera_size == (4 * SIDE, 4 * SIDE)
    # reduced at decode: reduction and conversion commute up to a grey level's rounding
    assert outcomes[0].result.score == pytest.approx(outcomes[1].result.score, abs=1.5 / 255)
    np.testing.assert_allclose(
        outcomes[0].result.anomaly_map, outcomes[1].result.anomaly_map, atol=1.5 / 255
    )
    colour = _inspector(tmp_path, COLOUR, camera=camera)
    for batch_size in (1, 4):
        outcomes = inspect_paths(colour, files, batch_size=batch_size)
        assert [o.refused for o in outcomes] == [False, True, True, False]
        assert outcomes[1].error.startswith("grey image") and "8x8" in outcomes[2].error
        assert outcomes[0].ok and outcomes[3].ok


def test_a_training_sized_file_reduced_to_the_working_side_is_judged(tmp_path: Path) -> None:
    """A file as large as the training images, decoded reduced to a working side at the model
    input (``runtime.paths``), was refused as too small: 600x720 read as 213x256 under a 256 px
    input. A file smaller than the working side is still held to the size limit."""
    domain = dataclasses.replace(COLOUR, height=(600, 600), width=(720, 720), aspect=(1.2, 1.2))
    bundle = write_mean_bundle(
        tmp_path / "bundle", input_size=(256, 256), product="part", input_domain=domain
    )
    inspector = Inspector.from_bundle(bundle, camera=CameraOptions(work_max_side=256))
    Image.fromarray(_part(600, 720)).save(tmp_path / "a-frame.png")
    Image.fromarray(_part(100, 120)).save(tmp_path / "b-thumbnail.png")
    frame, thumbnail = inspect_paths(inspector, sorted(tmp_path.glob("*.png")))
    assert frame.ok and frame.result.camera_size == (600, 720), frame.error
    assert thumbnail.refused and "shorter side 100 px" in (thumbnail.error or "")


# ------------------------------------------------ what export recorded (real bundle)
pytest_slow = pytest.mark.slow


@pytest_slow
def test_export_records_the_domain_of_the_versions_images(fp32_bundle: Path, tiny_product) -> None:
    domain = read_bundle_metadata(fp32_bundle).input_domain
    assert domain is not None
    images = [p for p in tiny_product.rglob("*.png") if "ground_truth" not in p.parts]
    assert domain.colour == "colour" and domain.channel_spread[0] >= 4.0
    assert (domain.height, domain.width, domain.aspect) == ((128, 128), (128, 128), (1.0, 1.0))
    assert domain.images == len(images)  # training, validation and test images
    assert '"input_domain"' in (fp32_bundle / "metadata.json").read_text()  # checksummed, signed


@pytest_slow
def test_the_bundle_never_refuses_its_own_images(fp32_bundle: Path, tiny_product) -> None:
    inspector = Inspector.from_bundle(fp32_bundle)
    meta = inspector.metadata
    files = [p for p in tiny_product.rglob("*.png") if "ground_truth" not in p.parts]
    files += [fp32_bundle / name for name in meta.golden.files]
    for file in files:
        image = read_image(file)
        assert meta.input_domain.problems(image, input_size=(64, 64), tiled=False) == (), file
    assert all(o.ok for o in inspect_paths(inspector, files[:8], batch_size=4))


@pytest_slow
def test_a_signed_domain_cannot_be_edited(fp32_bundle: Path, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from inspection.core.errors import BundleError
    from inspection.core.signing import sign_bundle, verify_signed_bundle

    bundle = Path(shutil.copytree(fp32_bundle, tmp_path / "signed"))
    key = Ed25519PrivateKey.generate()
    sign_bundle(bundle, key)
    meta = read_bundle_metadata(bundle)
    loosened = dataclasses.replace(meta.input_domain, colour="mixed")
    write_bundle_metadata(bundle, dataclasses.replace(meta, input_domain=loosened))
    with pytest.raises(BundleError, match="bad bundle signature"):
        verify_signed_bundle(bundle, key.public_key())

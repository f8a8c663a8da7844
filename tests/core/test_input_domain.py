"""The input domain schema (``core.input_domain``): validation, the colour measure, the refusal
rules and their tolerances, measuring files, and the grey conversion of ``core.images``."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from inspection.core import input_domain
from inspection.core.bundle import read_bundle_metadata
from inspection.core.config import from_mapping, to_mapping
from inspection.core.errors import ConfigError, InputDomainError
from inspection.core.images import decode_reduced, grey_replicated, read_image
from inspection.core.input_domain import (
    _PICKED_SIDE,
    DomainTolerance,
    InputDomain,
    _picked,
    bit_depth_problem,
    channel_spread,
    check_bit_depth,
    colour_mode,
    distances,
    evenly,
    input_check_mode,
    intensity_quantiles,
    measure_input_domain,
)
from tests.readers import two_at_once

COLOUR = InputDomain(
    colour="colour",
    channel_spread=(20.0, 40.0),
    height=(256, 256),
    width=(256, 256),
    aspect=(1.0, 1.0),
    images=30,
    colour_images=30,
)
FIXTURES = Path(__file__).parents[1] / "fixtures"


def _colourful(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth colour part: red across, green down, blue constant, mild noise."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    rgb = np.stack([60 + 120 * xs / width, 60 + 120 * ys / height, np.full_like(xs, 90)], axis=2)
    noise = np.random.default_rng(seed).normal(0, 3, rgb.shape)
    return np.clip(rgb + noise, 0, 255).astype(np.uint8)


def _grey(image: np.ndarray) -> np.ndarray:
    return np.repeat(image[..., :1], 3, axis=2)


# ------------------------------------------------------------------ the schema
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"colour": "sepia"}, "colour must be one of ('grey', 'colour', 'mixed'), got 'sepia'"),
        ({"images": 0}, "images must be >= 1 and colour_images in 1..images, got 0 and 30"),
        ({"colour_images": 31}, "colour_images in 1..images, got 30 and 31"),
        (
            {"height": (300, 200)},
            "height must be (low, high) with 0 <= low <= high, got (300, 200)",
        ),
        ({"aspect": (1.0, float("nan"))}, "aspect must be (low, high)"),
        ({"width": (0, 256)}, "sizes must be >= 1 px and aspect > 0"),
        ({"aspect": (0.0, 1.0)}, "sizes must be >= 1 px and aspect > 0"),
        ({"colour": "grey"}, "colour 'grey' contradicts channel_spread (20.0, 40.0)"),
        ({"channel_spread": (2.0, 40.0)}, "colour 'colour' contradicts channel_spread (2.0, 40.0)"),
    ],
)
def test_an_inconsistent_domain_is_refused(change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        dataclasses.replace(COLOUR, **change)


def test_the_domain_round_trips_through_its_json_mapping() -> None:
    data = json.loads(json.dumps(to_mapping(COLOUR)))
    assert from_mapping(InputDomain, data, where="input_domain") == COLOUR
    assert COLOUR.describe() == (
        "colour images (channel spread 20.0-40.0), 256 x 256 px, aspect 1.00, over 30 images"
    )


def test_a_domain_recorded_before_its_tolerance_reads_with_the_defaults() -> None:
    """Bundles exported before a product could set its tolerance hold these keys only."""
    data = to_mapping(COLOUR)
    assert data.pop("tolerance") == {
        "aspect_tolerance": 0.15, "min_side_fraction": 0.5, "histogram_margin": 2.0
    }  # fmt: skip
    old = from_mapping(InputDomain, json.loads(json.dumps(data)), where="input_domain")
    assert old.tolerance == DomainTolerance() and old.aspect_range() == COLOUR.aspect_range()
    loose = dataclasses.replace(COLOUR, tolerance=DomainTolerance(0.4, 0.25))
    assert from_mapping(InputDomain, to_mapping(loose), where="input_domain") == loose
    assert loose.describe().endswith(
        "; accepted: aspect within 40 %, shorter side down to 25 %, intensities within 2 x the "
        "training spread"
    )


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"aspect_tolerance": -0.1}, "aspect_tolerance: must be from 0 to 1 (0 % to 100 % beyond "
         "the training aspect range), got -0.1"),
        ({"aspect_tolerance": 1.5}, "aspect_tolerance: must be from 0 to 1"),
        ({"aspect_tolerance": float("inf")}, "aspect_tolerance: must be from 0 to 1"),
        ({"min_side_fraction": 0}, "min_side_fraction: must be above 0 and at most 1 (of the "
         "smallest training image's shorter side), got 0"),
        ({"min_side_fraction": 1.2}, "min_side_fraction: must be above 0 and at most 1"),
        ({"histogram_margin": 0.5}, "histogram_margin: must be 0 (no intensity check) or at "
         "least 1 (times the training images' own spread), got 0.5"),
    ],
)  # fmt: skip
def test_a_tolerance_out_of_range_is_refused_naming_the_key(values: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        DomainTolerance(**values)
    with pytest.raises(ConfigError, match=re.escape(f"p.yaml.input_domain: {message}")):
        from_mapping(DomainTolerance, values, where="p.yaml.input_domain")
    assert DomainTolerance(0.0, 1.0) != DomainTolerance(1.0, 0.01)  # both ends are allowed
    with pytest.raises(ValueError, match="aspect_tolerance: must be from 0 to 1"):
        DomainTolerance(aspect_tolerance=True)


def test_bundles_written_before_the_record_load_without_one() -> None:
    bundle = FIXTURES / "registry_v2" / "brick" / "bundles" / "v0001-fp32"
    assert read_bundle_metadata(bundle).input_domain is None


# ------------------------------------------------------------ the colour measure
def test_channel_spread_is_zero_for_grey_and_large_for_colour() -> None:
    part = _colourful(200, 300)
    assert channel_spread(_grey(part)) == 0.0
    assert channel_spread(part) > 20.0
    assert channel_spread(np.zeros((1, 1, 3), np.uint8)) == 0.0


def test_channel_spread_barely_depends_on_the_resolution_it_is_measured_at() -> None:
    """The station measures a reduced working copy; export measured the full image."""
    full = _colourful(2048, 2048)
    reduced = cv2.resize(full, (512, 512), interpolation=cv2.INTER_AREA)
    assert channel_spread(reduced) == pytest.approx(channel_spread(full), rel=0.05)
    noisy_grey = np.clip(
        128 + np.random.default_rng(1).normal(0, 6, (1024, 1024, 3)), 0, 255
    ).astype(np.uint8)  # a grey scene through a noisy colour sensor: noise averages out
    assert channel_spread(noisy_grey) < 4.0


@pytest.mark.parametrize("size", [(300, 200), (128, 128), (90, 140), (257, 129), (1, 1)])
def test_the_measures_of_the_picked_pixels_are_the_images(size: tuple[int, int]) -> None:
    """``problems`` picks an image's pixels once and measures that copy: the same figures."""
    image = _colourful(*size, seed=size[0])
    picked = _picked(image, _PICKED_SIDE, cv2.INTER_NEAREST)
    assert picked.shape == (min(size[0], _PICKED_SIDE), min(size[1], _PICKED_SIDE), 3)
    assert channel_spread(picked) == channel_spread(image)
    for grey in (False, True):
        np.testing.assert_array_equal(
            intensity_quantiles(picked, grey=grey), intensity_quantiles(image, grey=grey)
        )


@pytest.mark.parametrize(
    ("spreads", "mode"),
    [
        ([0.0, 0.0, 0.4], "grey"),
        ([1.0], "grey"),
        ([4.0, 30.0], "colour"),
        ([0.0, 30.0], "mixed"),
        ([2.5, 3.0], "mixed"),
    ],
)
def test_colour_mode(spreads: list[float], mode: str) -> None:
    assert colour_mode(spreads) == mode


# ------------------------------------------------------------ the refusal rules
@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (_colourful(256, 256), None),
        (_colourful(1024, 1024), None),  # larger: resized down as training images were
        (_colourful(128, 128), None),  # half the training side: still accepted
        (_colourful(256, 292), None),  # aspect 1.14: within 15 %
        (_colourful(292, 256), None),  # aspect 0.88
        (_grey(_colourful(256, 256)), "grey image (its three channels are equal: channel spread "
         "0.0) but the bundle was trained on colour images (spread 20.0-40.0)"),
        (_colourful(8, 8), "image is 8x8, shorter side 8 px, but the bundle needs at least 128 px "
         "(its training images' shorter sides are 256 px or more)"),
        (_colourful(1, 1), "image is 1x1, shorter side 1 px, but the bundle needs at least 128 px"),
        (_colourful(127, 127), "shorter side 127 px, but the bundle needs at least 128 px"),
        (_colourful(256, 456), "image is 456x256 (aspect 1.78) but the bundle was trained on "
         "aspect 1.00 (accepted 0.87-1.15): resizing it to the model input would distort the part"),
        (_colourful(256, 300), "aspect 1.17"),
        (_colourful(300, 256), "aspect 0.85"),
    ],
)  # fmt: skip
def test_problems_of_an_image_say_what_was_expected_and_what_came(
    image: np.ndarray, expected: str | None
) -> None:
    problems = COLOUR.problems(image, input_size=(256, 256), tiled=False)
    if expected is None:
        assert problems == ()
    else:
        assert any(expected in problem for problem in problems), problems


def test_every_problem_is_named_at_once() -> None:
    problems = COLOUR.problems(_grey(_colourful(8, 32)), input_size=(256, 256), tiled=False)
    assert [p.split(" ")[0] for p in problems] == ["grey", "image", "image"]


def test_the_size_limit_is_at_most_the_model_input_unless_tiled() -> None:
    large = dataclasses.replace(COLOUR, height=(2048, 2048), width=(2048, 2048))
    assert large.min_side((256, 256), tiled=False) == 256  # the input carries every pixel
    assert large.min_side((256, 256), tiled=True) == 1024  # tiles need the native pixels
    image = _colourful(300, 300)
    assert large.problems(image, input_size=(256, 256), tiled=False) == ()
    assert "needs at least 1024 px" in large.problems(image, input_size=(256, 256), tiled=True)[0]


def test_a_copy_reduced_to_the_working_side_is_not_held_to_the_size_limit() -> None:
    """A station judges a reduced copy of a large camera frame (``runtime.bounds``): its shorter
    side says nothing of the camera's; anything shorter than the working side still is."""
    large = dataclasses.replace(
        COLOUR, height=(2048, 2048), width=(2448, 2448), aspect=(1.195, 1.196)
    )
    copy = _colourful(857, 1024)  # a 2448x2048 frame reduced to a 1024 px longer side
    assert "needs at least 1024 px" in large.problems(copy, input_size=(1024, 1024), tiled=False)[0]
    assert large.problems(copy, input_size=(1024, 1024), tiled=False, work_side=1024) == ()
    thumbnail = _colourful(214, 256)
    problems = large.problems(thumbnail, input_size=(1024, 1024), tiled=False, work_side=1024)
    assert "shorter side 214 px, but the bundle needs at least 1024 px" in problems[0]


def test_the_domains_own_tolerance_sets_the_aspect_and_size_limits() -> None:
    """A product of parts cut to varying lengths accepts 40 % beyond its training aspect
    range; one that sets a quarter accepts smaller images; the defaults refuse both."""
    loose = dataclasses.replace(COLOUR, tolerance=DomainTolerance(0.4, 0.25))
    strict = dataclasses.replace(COLOUR, tolerance=DomainTolerance(0.0, 1.0))
    assert loose.aspect_range() == pytest.approx((1 / 1.4, 1.4))
    longer, small = _colourful(256, 350), _colourful(100, 100)  # aspect 1.37; 100 px
    for image, default_refusal in ((longer, "accepted 0.87-1.15"), (small, "at least 128 px")):
        assert loose.problems(image, input_size=(64, 64), tiled=True) == ()
        assert default_refusal in COLOUR.problems(image, input_size=(64, 64), tiled=True)[0]
    refused = loose.problems(_colourful(256, 400), input_size=(64, 64), tiled=True)
    assert refused == (
        "image is 400x256 (aspect 1.56) but the bundle was trained on aspect 1.00 (accepted "
        "0.71-1.40): resizing it to the model input would distort the part",
    )
    tiny = loose.problems(_colourful(63, 63), input_size=(64, 64), tiled=True)
    assert "needs at least 64 px" in tiny[0]  # a quarter of 256
    assert strict.problems(_colourful(256, 257), input_size=(256, 256), tiled=False) != ()
    assert strict.min_side((512, 512), tiled=True) == 256


@pytest.mark.parametrize("mode", ["grey", "mixed"])
def test_only_a_clearly_colour_bundle_refuses_grey(mode: str) -> None:
    domain = dataclasses.replace(
        COLOUR, colour=mode, channel_spread=(0.0, 0.5) if mode == "grey" else (0.0, 30.0)
    )
    grey = _grey(_colourful(256, 256))
    assert domain.problems(grey, input_size=(256, 256), tiled=False) == ()


def test_the_module_imports_no_runtime_or_training_stack() -> None:
    """The CLI imports it at start-up (``inspection inspect --input-check``): numpy and OpenCV
    only, no OpenVINO, torch or SciPy."""
    code = (
        "import sys, inspection.core.input_domain; "
        "print([m for m in ('openvino', 'torch', 'scipy', 'sklearn') if m in sys.modules])"
    )
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert ran.stdout.strip() == "[]"


def test_input_check_modes() -> None:
    assert [input_check_mode(m) for m in ("refuse", "warn", "off")] == ["refuse", "warn", "off"]
    with pytest.raises(ValueError, match="input_check must be one of refuse, warn, off, got False"):
        input_check_mode(False)


# --------------------------------------------------------------- measuring files
def _save(path: Path, image: np.ndarray, mode: str | None = None) -> Path:
    Image.fromarray(image if mode is None else image[..., 0], mode=mode).save(path)
    return path


def test_measuring_files_gives_their_colour_and_size_ranges(tmp_path: Path) -> None:
    files = [
        _save(tmp_path / "a.png", _colourful(120, 160)),
        _save(tmp_path / "b.png", _colourful(100, 150, seed=1)),
        _save(tmp_path / "c.jpg", _colourful(90, 200, seed=2)),
    ]
    domain = measure_input_domain(files, files[:2])
    assert domain.colour == "colour" and domain.images == 3 and domain.colour_images == 2
    assert domain.height == (90, 120) and domain.width == (150, 200)
    assert domain.aspect[0] <= 150 / 100 and domain.aspect[1] >= 200 / 90
    assert all(
        domain.problems(read_image(f), input_size=(64, 64), tiled=False) == () for f in files
    )


def test_grey_files_measure_grey_whatever_their_pixel_format(tmp_path: Path) -> None:
    part = _grey(_colourful(64, 64))
    files = [
        _save(tmp_path / "mono.png", part, mode="L"),
        _save(tmp_path / "rgb.png", part),
        _save(tmp_path / "rgb.jpg", part),  # a grey scene through a colour JPEG
    ]
    domain = measure_input_domain(files, files)
    assert domain.colour == "grey" and domain.channel_spread[1] <= 1.0


def test_measuring_nothing_is_refused() -> None:
    with pytest.raises(ValueError, match="needs at least one image"):
        measure_input_domain([], [])


def test_evenly_picks_the_ends_and_spreads_between() -> None:
    paths = [Path(f"{i:03d}.png") for i in range(10)]
    assert evenly(list(reversed(paths)), 4) == [paths[0], paths[3], paths[6], paths[9]]
    assert evenly(paths[:3], 4) == paths[:3]


# -------------------------------------------------------------- grey conversion
def test_grey_conversion_is_the_decoders(tmp_path: Path) -> None:
    """A colour file converted to grey and the same scene stored as a grey file (as a colour
    converts it with Pillow) decode to the same array."""
    part = _colourful(48, 64)
    colour = _save(tmp_path / "part.png", part)
    Image.open(colour).convert("L").save(tmp_path / "part-grey.png")
    from_grey_file = read_image(tmp_path / "part-grey.png")
    np.testing.assert_array_equal(grey_replicated(read_image(colour)), from_grey_file)
    np.testing.assert_array_equal(grey_replicated(from_grey_file), from_grey_file)  # identity
    assert from_grey_file.shape == (48, 64, 3)


@pytest.mark.parametrize(
    ("peak", "bits", "refused"),
    [(4095, 16, "values all below 4096"), (65535, 12, "values up to 65535 (16 bits)"),
     (4095, 8, "values up to 4095 (12 bits)"), (65535, 16, None), (4095, 12, None),
     (300, 12, None), (255, 12, "values all below 256"), (None, 8, None)],
)  # fmt: skip
def test_a_camera_writing_another_bit_depth_is_named(
    peak: int | None, bits: int, refused: str | None
) -> None:
    problem = bit_depth_problem(peak, bits)
    if refused is None:
        assert problem is None
    else:
        assert problem.startswith("wrong camera bit depth") and refused in problem
        assert f"image_bits: {bits} (0..{2**bits - 1})" in problem


def test_a_12_bit_tiff_under_a_16_bit_bundle_is_refused_before_any_verdict() -> None:
    twelve = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) % 4096).astype(np.uint16)
    decoded = decode_reduced(cv2.imencode(".tiff", twelve)[1].tobytes(), bits=16)
    with pytest.raises(InputDomainError, match="wrong camera bit depth"):
        check_bit_depth(decoded, 16, "refuse")
    check_bit_depth(decoded, 16, "warn")  # judged, logged
    check_bit_depth(decoded, 12, "refuse")  # the declared depth fits


# ----------------------------------------------------------------- intensities
def test_the_intensity_distance_is_the_wasserstein_distance_of_the_pixels() -> None:
    from scipy.stats import wasserstein_distance

    image = _colourful(96, 128)
    darker = np.clip(image.astype(np.int16) * 0.8 - 5, 0, 255).astype(np.uint8)
    ours = distances(intensity_quantiles(darker), intensity_quantiles(image))[:3]
    theirs = [wasserstein_distance(darker[..., c].ravel(), image[..., c].ravel()) for c in range(3)]
    assert ours == pytest.approx(theirs, abs=1.0)


@pytest.fixture(scope="module")
def brick_domain(tiny_product: Path) -> tuple[InputDomain, list[Path]]:
    """The domain of the demo brick's training images, and its held-out images."""
    train = sorted((tiny_product / "train" / "good").glob("*.png"))
    held_out = sorted((tiny_product / "test").glob("*/*.png"))
    domain = measure_input_domain([*train, *held_out], [*train, *held_out], training=train)
    return domain, held_out


def _problems(domain: InputDomain, image: np.ndarray) -> tuple[str, ...]:
    return domain.problems(image, input_size=(64, 64), tiled=False)


def test_held_out_parts_good_or_defective_are_inside_the_intensity_domain(
    brick_domain: tuple[InputDomain, list[Path]],
) -> None:
    domain, held_out = brick_domain
    assert domain.intensity is not None and domain.intensity.images == 24
    assert len(domain.intensity.quantiles) == 5  # a colour product: channels and differences
    assert [p for p in held_out if _problems(domain, read_image(p))] == []


def test_a_swapped_channel_order_is_refused_and_named(
    brick_domain: tuple[InputDomain, list[Path]],
) -> None:
    domain, held_out = brick_domain
    bgr = read_image(held_out[0])[..., ::-1]
    (problem,) = _problems(domain, bgr)
    assert problem.startswith("image intensities unlike the training images' (")
    assert "-green histogram distance" in problem
    assert "red and blue channels are swapped (BGR sent for RGB)" in problem
    with pytest.raises(InputDomainError, match="channels are swapped"):
        _refuse(domain, bgr)


@pytest.mark.parametrize("gain", [0.6, 1.5])
def test_a_wrong_gain_is_refused(brick_domain: tuple[InputDomain, list[Path]], gain: float) -> None:
    domain, held_out = brick_domain
    image = read_image(held_out[0]).astype(np.float32) * gain
    (problem,) = _problems(domain, np.clip(image, 0, 255).astype(np.uint8))
    assert "a camera's gain, exposure or lighting changed? Set it back" in problem


def test_a_colour_image_under_a_grey_bundle_is_named_as_colour(
    tiny_product: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A grey bundle judges a colour image in grey; unlike its images, the refusal blamed the
    camera's gain. It now says the image is colour and what to send instead."""
    train = sorted((tiny_product / "train" / "good").glob("*.png"))
    grey = [_save(tmp_path / p.name, _grey(read_image(p)), mode="L") for p in train]
    domain = measure_input_domain(grey, grey, training=grey)
    assert domain.colour == "grey" and domain.intensity is not None
    brighter = np.clip(read_image(train[0]).astype(np.float32) * 1.6, 0, 255).astype(np.uint8)
    (colour,) = _problems(domain, brighter)
    assert colour.startswith("image intensities unlike the training images' (luma ")
    assert "it is a colour image (channel spread" in colour and "gain" not in colour, colour
    (grey_too,) = _problems(domain, _grey(brighter))
    assert "a camera's gain, exposure or lighting changed?" in grey_too
    measured = []  # a grey bundle measures an image's colour only for a refusal
    monkeypatch.setattr(input_domain, "channel_spread", lambda image: measured.append(1) or 0.0)
    assert _problems(domain, _grey(read_image(train[0]))) == () and measured == []


def test_a_product_may_widen_or_turn_off_the_intensity_check(
    brick_domain: tuple[InputDomain, list[Path]],
) -> None:
    domain, held_out = brick_domain
    bgr = read_image(held_out[0])[..., ::-1]
    off = dataclasses.replace(domain, tolerance=DomainTolerance(histogram_margin=0))
    assert _problems(off, bgr) == ()
    again = from_mapping(InputDomain, json.loads(json.dumps(to_mapping(domain))), where="d")
    assert again == domain and _problems(again, bgr)


def _refuse(domain: InputDomain, image: np.ndarray) -> None:
    if problems := _problems(domain, image):
        raise InputDomainError("; ".join(problems))


def test_measuring_files_decodes_two_at_once_with_the_figures_of_one_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = [_save(tmp_path / f"{i}.png", _colourful(40 + i, 60, seed=i)) for i in range(6)]
    training = files[::2]
    with monkeypatch.context() as one_reader:
        one_reader.setattr(input_domain, "READERS", 1)
        alone = measure_input_domain(files, files, training=training)

    monkeypatch.setattr(input_domain, "READERS", 2)
    monkeypatch.setattr(input_domain, "read_image", two_at_once(input_domain.read_image))
    pooled = measure_input_domain(files, files, training=training)  # serial: BrokenBarrierError

    assert to_mapping(pooled) == to_mapping(alone) and pooled.intensity is not None

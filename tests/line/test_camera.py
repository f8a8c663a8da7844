from __future__ import annotations

import dataclasses
import importlib.util
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from bench._shared import line_config
from inspection.core.images import decode_image
from inspection.line.camera import (
    PIXEL_FORMATS,
    CaptureError,
    FileSequenceCamera,
    GenICamCamera,
    decode_pixels,
    open_camera,
)
from inspection.line.config import CameraConfig
from inspection.line.handshake import ErrorCode, Trigger
from inspection.line.station import LineStation
from inspection.runtime import bounds
from inspection.runtime.bounds import BoundsConfig
from inspection.station.core import StationCore
from inspection.station.errors import BadImage
from inspection.station.pipeline import Pipeline


def _images(folder: Path) -> list[Path]:
    paths = [folder / "b" / "2.png", folder / "a.png", folder / "b" / "1.jpg"]
    for n, path in enumerate(paths):
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((8, 12, 3), n * 40, np.uint8)).save(path)
    (folder / "notes.txt").write_text("not an image")
    return paths


def test_file_camera_serves_images_in_name_order_and_loops(tmp_path: Path) -> None:
    _images(tmp_path)
    camera = open_camera(CameraConfig(kind="file", path=tmp_path))
    names = [camera.capture().name for _ in range(4)]
    assert names == ["a.png", "b/1.jpg", "b/2.png", "a.png"]
    frame = camera.capture()
    assert decode_image(frame.data, name=frame.name).shape == (8, 12, 3)
    assert frame.capture_ms >= 0


def test_file_camera_without_loop_runs_dry(tmp_path: Path) -> None:
    _images(tmp_path)
    camera = FileSequenceCamera(tmp_path, loop=False)
    for _ in range(3):
        camera.capture()
    with pytest.raises(CaptureError, match="all 3 images were served"):
        camera.capture()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "missing", "is not a folder"),
        (lambda p: p, "no images under"),
    ],
)
def test_file_camera_errors_name_the_folder(tmp_path: Path, make, message: str) -> None:
    with pytest.raises(CaptureError, match=message):
        FileSequenceCamera(make(tmp_path)).capture()


def test_genicam_camera_says_what_is_missing(tmp_path: Path) -> None:
    config = CameraConfig(kind="genicam", cti=tmp_path / "vendor.cti")
    if importlib.util.find_spec("harvesters") is None:
        with pytest.raises(CaptureError, match=r"pip install 'inspection\[genicam\]'"):
            GenICamCamera(config)
    else:
        with pytest.raises(CaptureError, match=r"GenTL producer .* not found"):
            GenICamCamera(config)


# ------------------------------------------------ GenICam: the genicam wheel's GenTL producer
def viky(**settings) -> CameraConfig:
    """A virtual camera of the ``genicam`` wheel's producer (the first unless ``device``:
    serial 0/1/2 draws a red/green/blue ball on white; 400 x 400, RGBa8 or Mono8, free-running
    at ``AcquisitionFrameRate`` 20; no trigger, exposure, gain or buffer timestamps)."""
    pytest.importorskip("harvesters")
    genicam = pytest.importorskip("genicam")
    cti = Path(genicam.__file__).with_name("viky.cti")
    return CameraConfig(kind="genicam", cti=cti, timeout_s=3.0, **settings)


def test_genicam_camera_delivers_frames_with_the_configured_features() -> None:
    camera = open_camera(viky(trigger="free_run", features={"PixelFormat": "Mono8"}))
    try:
        frames = [camera.capture() for _ in range(3)]
    finally:
        camera.close()
    image = decode_image(frames[-1].data, name=frames[-1].name)
    assert image.shape == (400, 400, 3)
    assert np.array_equal(image[..., 0], image[..., 2]), "Mono8 became grey RGB"
    assert len({f.name for f in frames}) == 3 and all(f.capture_ms > 0 for f in frames)


def test_free_run_never_returns_a_frame_queued_before_the_trigger() -> None:
    """Between two parts the free-running stream keeps delivering: a plain fetch at a trigger
    returns the newest queued frame at once, exposed before the trigger. A capture instead
    discards it and the frame in flight, so it cannot end before one frame period has passed.
    (The producer gives no buffer timestamps: host arrival times are the clock.)"""
    period_ms = 200.0
    camera = GenICamCamera(viky(trigger="free_run", features={"AcquisitionFrameRate": 5.0}))
    try:
        camera.capture()
        time.sleep(0.5)  # the line is idle; frames keep arriving
        started = time.perf_counter()
        with camera._acquirer.fetch(timeout=3.0):  # what the capture fetched before #66
            queued_ms = (time.perf_counter() - started) * 1e3
        waits = []
        for _ in range(5):  # more triggers than the stream has buffers: none may be lost
            time.sleep(0.3)
            waits.append(camera.capture().capture_ms)
    finally:
        camera.close()
    assert queued_ms < period_ms / 4, f"a plain fetch waited {queued_ms:.1f} ms: nothing queued"
    assert min(waits) >= 0.75 * period_ms, f"a queued frame came back: {waits}"


@pytest.mark.parametrize(("device", "ball"), [("0", (255, 0, 0)), ("2", (0, 0, 255))])
def test_genicam_colour_frames_keep_their_colours(device: str, ball: tuple[int, ...]) -> None:
    """RGBa8, the producer's colour format: the red camera's ball is red, the blue's blue."""
    camera = open_camera(viky(device=device, trigger="free_run", features={"PixelFormat": "RGBa8"}))
    try:
        frame = camera.capture()
    finally:
        camera.close()
    image = decode_image(frame.data, name=frame.name)
    ball_pixels = image[(image != 255).any(axis=2)]
    assert len(ball_pixels) > 0 and (ball_pixels == ball).all()


@pytest.mark.parametrize(
    ("settings", "missing"),
    [({}, "TriggerSelector"), ({"trigger": "free_run", "exposure_us": 800.0}, "ExposureTime")],
)
def test_genicam_settings_the_device_lacks_are_named(settings: dict, missing: str) -> None:
    with pytest.raises(CaptureError, match=f"no feature '{missing}'"):
        GenICamCamera(viky(**settings))


def test_genicam_camera_unplugged_fails_one_capture_then_opens_again() -> None:
    camera = GenICamCamera(viky(trigger="free_run"))
    try:
        camera.capture()
        camera._acquirer.destroy()  # the device handle goes away, as on an unplugged cable
        with pytest.raises(CaptureError, match="opened again on the next trigger"):
            camera.capture()
        frame = camera.capture()
    finally:
        camera.close()
    assert decode_image(frame.data, name=frame.name).shape == (400, 400, 3)


def test_a_line_station_answers_every_trigger_once_across_an_unplug(
    tmp_path: Path, fp32_bundle: Path
) -> None:
    """Six triggers through the handshake with the virtual camera unplugged after the second:
    six answers, one of them "no image", five verdicts stored once each."""
    config = line_config(tmp_path, fp32_bundle, tmp_path, input_check="warn")  # not a brick
    station = LineStation.build(dataclasses.replace(config, camera=viky(trigger="free_run")))
    station.core.models.refresh()
    answers = []
    try:
        for n in range(6):
            if n == 2:
                station.camera._acquirer.destroy()  # unplugged between two parts
            answers.append(station.handler.handle(Trigger(f"u-{n}"), source="opcua"))
    finally:
        station.stop()
    codes = [a.error_code for a in answers]
    assert codes == [ErrorCode.NONE] * 2 + [ErrorCode.NO_IMAGE] + [ErrorCode.NONE] * 3
    assert [a.request_id for a in answers] == [f"u-{n}" for n in range(6)]
    stored = [
        station.core.store.get_inspection(a.inspection_id) for a in answers if a.inspection_id
    ]
    assert sorted(row.request_id for row in stored) == [f"cam-1/u-{n}" for n in (0, 1, 3, 4, 5)]
    # each acquisition of the virtual camera starts its frame sequence anew (an image before the
    # unplug may equal one after it): a frame served twice shows within one acquisition
    shas = {row.request_id: row.image_sha for row in stored}
    before, after = ([shas[f"cam-1/u-{n}"] for n in part] for part in ((0, 1), (3, 4, 5)))
    assert len(set(before)) == 2 and len(set(after)) == 3, "a frame was served twice"


# ------------------------------------------------ pixels handed over: judged as their PNG
@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the images the station decoded from bytes (``Reading.decode``'s
    ``decode_reduced``, wrapped to count, still decoding)."""
    names: list[str] = []
    decode = bounds.decode_reduced

    def counted(data: bytes, **options):
        names.append(options["name"])
        return decode(data, **options)

    monkeypatch.setattr(bounds, "decode_reduced", counted)
    return names


def _png(pixels: np.ndarray) -> bytes:
    """``pixels`` (grey or RGB) as a GenICam camera encodes them (cv2, BGR order)."""
    ok, png = cv2.imencode(".png", pixels if pixels.ndim == 2 else pixels[:, :, ::-1])
    assert ok
    return png.tobytes()


def _both_ways(pipeline: Pipeline, data: bytes, pixels: np.ndarray, name: str) -> tuple:
    """The rows of ``data`` inspected from its bytes, then from its ``pixels``."""
    runs = [{}, {"pixels": pixels}]
    return tuple(
        pipeline.run(data, product="brick", station_id="cam-1", source_name=name, **run).row
        for run in runs
    )


def _judged_alike(from_bytes, from_pixels) -> None:
    for column in ("verdict", "score", "width", "height", "image_sha", "mask_sha", "regions"):
        assert getattr(from_pixels, column) == getattr(from_bytes, column), column


def test_frames_judged_from_their_pixels_match_their_png(
    tmp_path: Path, fp32_bundle: Path, decodes: list[str]
) -> None:
    """8-bit grey and RGB frames, one kept and one reduced to the working side (96 px): verdict,
    score, camera size, regions and the stored image (the working copy's PNG when reduced) and
    mask are those of decoding the PNG, with no decode; a frame over ``max_pixels`` is refused
    with the same message."""
    config = line_config(tmp_path, fp32_bundle, tmp_path, input_check="warn",
                         max_pixels=20_000, bounds=BoundsConfig(work_max_side=96))  # fmt: skip
    core = StationCore.build(config.core)
    core.models.refresh()
    rng = np.random.default_rng(94)
    try:
        for shape in [(60, 80), (60, 80, 3), (120, 160), (120, 160, 3)]:
            pixels = rng.integers(0, 256, size=shape, dtype=np.uint8)
            cv2.circle(pixels, (shape[1] // 2, shape[0] // 2), shape[0] // 6, (0, 0, 0), -1)
            decodes.clear()
            from_bytes, from_pixels = _both_ways(core.pipeline, _png(pixels), pixels, "f.png")
            assert decodes == ["f.png"], f"{shape}: the pixels were decoded again"
            _judged_alike(from_bytes, from_pixels)
            assert (from_pixels.height, from_pixels.width) == shape[:2]
        big, messages = np.zeros((150, 200), np.uint8), []
        for run in [{}, {"pixels": big}]:
            with pytest.raises(BadImage) as refused:
                core.pipeline.run(_png(big), product="brick", station_id="cam-1", **run)
            messages.append(str(refused.value))
    finally:
        core.stop()
        core.store.engine.dispose()
    assert messages[0] == messages[1]
    assert "200x150 = 30000 pixels, above the limit of 20000; raise core.max_pixels" in messages[1]


@pytest.mark.parametrize("pixel_format", ["Mono8", "RGBa8"])
def test_a_genicam_frame_is_judged_from_its_pixels_never_decoded(
    tmp_path: Path, fp32_bundle: Path, decodes: list[str], pixel_format: str
) -> None:
    """A trigger through the handshake hands the virtual camera's pixels to the pipeline: no
    decode; one frame judged from its pixels and from its PNG alike."""
    camera = viky(trigger="free_run", features={"PixelFormat": pixel_format})
    config = line_config(tmp_path, fp32_bundle, tmp_path, input_check="warn")
    station = LineStation.build(dataclasses.replace(config, camera=camera))
    station.core.models.refresh()
    try:
        answer = station.handler.handle(Trigger("p-1"), source="opcua")
        assert answer.error_code == ErrorCode.NONE, answer
        assert decodes == [], "the camera's frame was decoded from its PNG"
        frame = station.camera.capture()
        assert frame.pixels is not None and not frame.pixels.flags.writeable
        assert frame.pixels.shape == ((400, 400) if pixel_format == "Mono8" else (400, 400, 3))
        rows = _both_ways(station.core.pipeline, frame.data, frame.pixels, frame.name)
    finally:
        station.stop()
    assert decodes == [frame.name]
    _judged_alike(*rows)
    assert station.core.store.get_inspection(answer.inspection_id).width == 400


# ------------------------------------------------ pixel formats the producer cannot deliver
def _depth_probe(bits: int) -> tuple[list[int], list[int]]:
    """Values of ``bits`` significant bits and the 8-bit grey each must become."""
    return [0, 1 << (bits - 1), (1 << bits) - 1, 5 << (bits - 8)], [0, 128, 255, 5]


@pytest.mark.parametrize("bits", [8, 10, 12, 14, 16])
def test_mono_frames_keep_their_top_8_bits(bits: int) -> None:
    values, grey = _depth_probe(bits)
    data = np.array(values, np.uint8 if bits == 8 else np.uint16)
    assert decode_pixels(f"Mono{bits}", data, 1, 4).tolist() == [grey]


def _lsb_packed(values: list[int], bits: int) -> np.ndarray:
    """PFNC ``Mono10p``/``Mono12p``: one little-endian bit stream, pixel after pixel."""
    stream = sum(value << (bits * n) for n, value in enumerate(values))
    return np.frombuffer(stream.to_bytes(len(values) * bits // 8, "little"), np.uint8)


def _gev_packed(values: list[int], bits: int) -> np.ndarray:
    """GigE Vision ``Mono10Packed``/``Mono12Packed``: two pixels in three bytes, high bits
    in bytes 0 and 2, the low bits of both in byte 1."""
    low, out = bits - 8, []
    for a, b in zip(values[::2], values[1::2], strict=True):
        out += [a >> low, (a & ((1 << low) - 1)) | ((b & ((1 << low) - 1)) << 4), b >> low]
    return np.array(out, np.uint8)


@pytest.mark.parametrize("packing", ["p", "Packed"])
@pytest.mark.parametrize("bits", [10, 12])
def test_packed_mono_frames_decode_as_harvesters_unpacks_them(bits: int, packing: str) -> None:
    pfnc = pytest.importorskip("harvesters.util.pfnc")
    pixel_format = f"Mono{bits}{packing}"
    values, grey = _depth_probe(bits)
    raw = (_lsb_packed if packing == "p" else _gev_packed)(values, bits)
    data = pfnc.Dictionary.get_proxy(symbolic=pixel_format).expand(raw)
    assert decode_pixels(pixel_format, data, 1, 4).tolist() == [grey]


_RGB = (200, 100, 40)


def _mosaic(pattern: str, height: int = 6, width: int = 8) -> np.ndarray:
    """A Bayer mosaic of a scene of colour ``_RGB``; ``pattern``: the colours of the top-left
    2 x 2 cell, row by row (``RG`` = RGGB)."""
    cell = {"RG": "RGGB", "BG": "BGGR", "GR": "GRBG", "GB": "GBRG"}[pattern]
    value = {"R": _RGB[0], "G": _RGB[1], "B": _RGB[2]}
    tile = np.array([[value[cell[0]], value[cell[1]]], [value[cell[2]], value[cell[3]]]])
    return np.tile(tile, (height // 2, width // 2))


@pytest.mark.parametrize("bits", [8, 12])
@pytest.mark.parametrize("pattern", ["RG", "BG", "GR", "GB"])
def test_bayer_frames_are_demosaiced_to_the_scene_colour(pattern: str, bits: int) -> None:
    data = (_mosaic(pattern) << (bits - 8)).astype(np.uint8 if bits == 8 else np.uint16)
    image = decode_pixels(f"Bayer{pattern}{bits}", data.ravel(), 6, 8)
    assert image.shape == (6, 8, 3) and image.dtype == np.uint8
    assert (image[1:-1, 1:-1] == _RGB).all(), image[2, 2]  # interior: full neighbourhoods


@pytest.mark.parametrize(
    ("pixel_format", "pixel"),
    [("RGB8", [200, 100, 40]), ("BGR8", [40, 100, 200]),
     ("RGBa8", [200, 100, 40, 9]), ("BGRa8", [40, 100, 200, 9])],
)  # fmt: skip
def test_colour_frames_become_rgb(pixel_format: str, pixel: list[int]) -> None:
    data = np.array(pixel * 6, np.uint8)
    image = decode_pixels(pixel_format, data, 2, 3)
    assert image.shape == (2, 3, 3) and (image == _RGB).all()


@pytest.mark.parametrize("pixel_format", ["Mono8", "RGB8"])
def test_decoded_frames_own_their_memory(pixel_format: str) -> None:
    """The camera's buffer is queued again after decoding: the image must not follow it."""
    data = np.full(12 * PIXEL_FORMATS[pixel_format][1], 7, np.uint8)
    image = decode_pixels(pixel_format, data, 3, 4)
    data[:] = 0
    assert (image == 7).all()


def test_an_unknown_pixel_format_is_refused_by_name() -> None:
    with pytest.raises(CaptureError, match=r"pixel format 'YCbCr422_8' is not supported; set "):
        decode_pixels("YCbCr422_8", np.zeros(8, np.uint8), 2, 2)

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inspection.core.images import decode_image
from inspection.line.camera import CaptureError, FileSequenceCamera, GenICamCamera, open_camera
from inspection.line.config import CameraConfig
from inspection.line.handshake import ErrorCode, Trigger
from inspection.line.station import LineStation

from .station_env import line_config


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
    """The first virtual camera of the ``genicam`` wheel's producer (400 x 400, RGBa8 or
    Mono8, free-running; no trigger, exposure or gain features)."""
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
    assert len({row.image_sha for row in stored}) == 5, "a frame was served twice"

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inspection.core.images import decode_image
from inspection.line.camera import CaptureError, FileSequenceCamera, GenICamCamera, open_camera
from inspection.line.config import CameraConfig


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
    if importlib.util.find_spec("harvesters") is None:
        with pytest.raises(CaptureError, match=r"pip install 'inspection\[genicam\]'"):
            GenICamCamera(tmp_path / "vendor.cti")
    else:
        with pytest.raises(CaptureError, match=r"GenTL producer .* not found"):
            GenICamCamera(tmp_path / "vendor.cti")

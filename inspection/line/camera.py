"""Camera input for a line station: one ``capture()`` per trigger returns one encoded frame.

Two backends behind the one-method ``Camera`` protocol:

- ``FileSequenceCamera``: the images under a folder in name order (tests, demos, replays).
- ``GenICamCamera``: a GenICam/GigE Vision/USB3 Vision camera through ``harvesters``
  (``pip install 'inspection[genicam]'``). Harvesters talks to the camera through the
  vendor's GenTL producer (a ``.cti`` file shipped with the vendor SDK); without it there
  is no camera to open, so this backend is never faked in tests.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from inspection.core.errors import InspectionError
from inspection.core.images import IMAGE_SUFFIXES
from inspection.line.config import CameraConfig


class CaptureError(InspectionError):
    """The camera delivered no image (timeout, end of sequence, device gone)."""


@dataclass(frozen=True)
class Frame:
    """One captured image: encoded bytes (PNG/JPEG/...), a name for the store, capture time."""

    data: bytes
    name: str
    capture_ms: float

    def __post_init__(self) -> None:
        if self.capture_ms < 0:
            raise ValueError(f"capture_ms must be >= 0, got {self.capture_ms}")


class Camera(Protocol):
    """Captures one frame per call; raises ``CaptureError`` when there is none."""

    def capture(self) -> Frame: ...

    def close(self) -> None: ...


class FileSequenceCamera:
    """Serves the image files under ``folder`` (recursively, sorted by relative path).

    Thread-safe. With ``loop`` the sequence restarts at the end; without it the camera
    raises ``CaptureError`` once every image was served.
    """

    def __init__(self, folder: str | Path, *, loop: bool = True) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise CaptureError(f"file camera: {self.folder} is not a folder")
        self.files = sorted(
            (p for p in self.folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES),
            key=lambda p: p.relative_to(self.folder).as_posix(),
        )
        self.loop = loop
        self._lock = threading.Lock()
        self._order = itertools.cycle(self.files) if loop else iter(self.files)

    def capture(self) -> Frame:
        started = time.perf_counter()
        if not self.files:
            raise CaptureError(f"file camera: no images under {self.folder}")
        with self._lock:
            path = next(self._order, None)
        if path is None:
            raise CaptureError(f"file camera: all {len(self.files)} images were served")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise CaptureError(f"file camera: cannot read {path}: {exc}") from exc
        name = path.relative_to(self.folder).as_posix()
        return Frame(data, name, (time.perf_counter() - started) * 1000.0)

    def close(self) -> None:
        return None


class GenICamCamera:
    """A GenICam camera via harvesters: software trigger if the device has one, else the
    next frame of its free-running stream. Mono8 frames become RGB; frames are PNG-encoded.
    """

    def __init__(self, cti: str | Path, *, device: str | None = None, timeout_s: float = 2.0):
        try:
            from harvesters.core import Harvester  # the optional genicam extra
        except ImportError as exc:
            raise CaptureError(
                "GenICam camera needs harvesters: pip install 'inspection[genicam]' "
                "(and the camera vendor's GenTL producer, a .cti file)"
            ) from exc
        if not Path(cti).is_file():
            raise CaptureError(f"GenICam camera: GenTL producer {cti} not found")
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._harvester = Harvester()
        self._harvester.add_file(str(cti))
        self._harvester.update()
        if not self._harvester.device_info_list:
            self._harvester.reset()
            raise CaptureError(f"GenICam camera: no device found through {cti}")
        selector: dict[str, Any] = {"serial_number": device} if device else {}
        self._acquirer = self._harvester.create(selector or 0)
        self._software_trigger = self._enable_software_trigger()
        self._acquirer.start()

    def _enable_software_trigger(self) -> bool:
        nodes = self._acquirer.remote_device.node_map
        try:
            nodes.TriggerSelector.value = "FrameStart"
            nodes.TriggerMode.value = "On"
            nodes.TriggerSource.value = "Software"
        except Exception:  # GenApi raises per-vendor types; the device then free-runs
            return False
        return True

    def capture(self) -> Frame:
        started = time.perf_counter()
        with self._lock:
            try:
                if self._software_trigger:
                    self._acquirer.remote_device.node_map.TriggerSoftware.execute()
                with self._acquirer.fetch(timeout=self.timeout_s) as buffer:
                    image = _component_rgb(buffer.payload.components[0])
            except Exception as exc:  # harvesters/GenTL timeouts and device errors
                raise CaptureError(f"GenICam camera: no frame: {exc}") from exc
        ok, png = cv2.imencode(".png", np.ascontiguousarray(image[:, :, ::-1]))  # cv2 wants BGR
        if not ok:
            raise CaptureError("GenICam camera: the frame could not be PNG-encoded")
        data = png.tobytes()
        return Frame(data, f"genicam-{time.time_ns()}.png", (time.perf_counter() - started) * 1e3)

    def close(self) -> None:
        self._acquirer.stop()
        self._acquirer.destroy()
        self._harvester.reset()


def _component_rgb(component: Any) -> np.ndarray:
    """(H, W, 3) uint8 RGB copy of a harvesters image component (Mono8 or RGB8)."""
    channels = component.num_components_per_pixel
    array = np.asarray(component.data).reshape(component.height, component.width, channels)
    if array.dtype != np.uint8:
        array = (array >> max(0, array.dtype.itemsize * 8 - 8)).astype(np.uint8)
    if channels == 1:
        array = np.repeat(array, 3, axis=2)
    return np.ascontiguousarray(array[:, :, :3])


def open_camera(config: CameraConfig) -> Camera:
    """The camera ``config`` describes (see ``CameraConfig``)."""
    if config.kind == "file":
        return FileSequenceCamera(config.path or Path("."), loop=config.loop)
    if config.kind == "genicam":
        cti = config.cti or Path(".")
        return GenICamCamera(cti, device=config.device, timeout_s=config.timeout_s)
    raise ValueError(f"unknown camera kind {config.kind!r}; use file or genicam")

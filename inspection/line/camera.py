"""Camera input for a line station: one ``capture()`` per trigger returns one encoded frame.

Two backends behind the one-method ``Camera`` protocol:

- ``FileSequenceCamera``: the images under a folder in name order (tests, demos, replays).
- ``GenICamCamera``: a GenICam/GigE Vision/USB3 Vision camera through ``harvesters``
  (``pip install 'inspection[genicam]'``). Harvesters talks to the camera through the
  vendor's GenTL producer (a ``.cti`` file shipped with the vendor SDK); the tests use the
  virtual cameras of the ``genicam`` wheel's producer (``viky.cti``), never a fake.
"""

from __future__ import annotations

import itertools
import logging
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

log = logging.getLogger(__name__)


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
    """A GenICam camera via harvesters, set up from ``CameraConfig``: trigger mode (a software
    trigger per capture, or the newest frame of a free-running stream), exposure, gain and any
    other SFNC feature by name. Mono8 frames become RGB; frames are PNG-encoded.

    A failed capture (timeout, camera unplugged) drops the device; the next capture opens it
    again, so one trigger answers "no image" and none gets a stale or another part's frame.
    """

    def __init__(self, config: CameraConfig) -> None:
        try:
            from harvesters.core import Harvester  # the optional genicam extra
        except ImportError as exc:
            raise CaptureError(
                "GenICam camera needs harvesters: pip install 'inspection[genicam]' "
                "(and the camera vendor's GenTL producer, a .cti file)"
            ) from exc
        if config.cti is None or not Path(config.cti).is_file():
            raise CaptureError(f"GenICam camera: GenTL producer {config.cti} not found")
        self.config = config
        self._lock = threading.Lock()
        self._harvester = Harvester()
        self._harvester.add_file(str(config.cti))
        self._acquirer: Any = None
        try:
            self._open()
        except CaptureError:
            self._harvester.reset()
            raise

    def _open(self) -> None:
        self._harvester.update()
        if not self._harvester.device_info_list:
            raise CaptureError(f"GenICam camera: no device found through {self.config.cti}")
        device = self.config.device
        self._acquirer = self._harvester.create({"serial_number": device} if device else 0)
        try:
            _set_features(self._acquirer.remote_device.node_map, self.config.genicam_features())
            if self.config.trigger == "free_run":  # a trigger takes the newest frame
                nodes = self._acquirer.remote_device.node_map
                if nodes.has_node("TriggerMode"):
                    nodes.TriggerMode.value = "Off"
                stream = self._acquirer.data_streams[0].node_map
                stream.StreamBufferHandlingMode.value = "NewestOnly"
            self._acquirer.start()
        except Exception:
            self._drop()
            raise

    def _drop(self) -> None:
        acquirer, self._acquirer = self._acquirer, None
        try:
            acquirer.stop()
            acquirer.destroy()
        except Exception:  # a device already gone cannot be stopped cleanly
            log.debug("GenICam camera: closing a failed device", exc_info=True)

    def capture(self) -> Frame:
        started = time.perf_counter()
        with self._lock:
            try:
                if self._acquirer is None:
                    self._open()
                if self.config.trigger == "software":
                    self._acquirer.remote_device.node_map.TriggerSoftware.execute()
                with self._acquirer.fetch(timeout=self.config.timeout_s) as buffer:
                    image = _component_rgb(buffer.payload.components[0])
            except CaptureError:
                raise
            except Exception as exc:  # harvesters/GenTL timeouts and device errors
                if self._acquirer is not None:
                    self._drop()
                raise CaptureError(
                    f"GenICam camera: no frame ({type(exc).__name__}: {exc}); the device is "
                    "opened again on the next trigger"
                ) from exc
        ok, png = cv2.imencode(".png", np.ascontiguousarray(image[:, :, ::-1]))  # cv2 wants BGR
        if not ok:
            raise CaptureError("GenICam camera: the frame could not be PNG-encoded")
        data = png.tobytes()
        return Frame(data, f"genicam-{time.time_ns()}.png", (time.perf_counter() - started) * 1e3)

    def close(self) -> None:
        with self._lock:
            if self._acquirer is not None:
                self._drop()
            self._harvester.reset()


def _set_features(nodes: Any, features: dict[str, Any]) -> None:
    """Write each SFNC feature in order; ``CaptureError`` naming the first one the device lacks
    or refuses."""
    for name, value in features.items():
        if not nodes.has_node(name):
            raise CaptureError(
                f"GenICam camera: the device has no feature {name!r} (SFNC name); remove it "
                "or the setting that needs it from the camera config"
            )
        try:
            getattr(nodes, name).value = value
        except Exception as exc:  # GenApi raises per-vendor types
            raise CaptureError(f"GenICam camera: {name} = {value!r} refused: {exc}") from exc


def _component_rgb(component: Any) -> np.ndarray:
    """(H, W, 3) uint8 RGB copy of a harvesters image component (Mono8 or RGB8)."""
    channels = int(component.num_components_per_pixel)  # harvesters reports a float
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
        return GenICamCamera(config)
    raise ValueError(f"unknown camera kind {config.kind!r}; use file or genicam")

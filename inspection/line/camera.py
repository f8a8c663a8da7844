"""Camera input for a line station: one ``capture()`` per trigger returns one encoded frame,
with its pixels when the camera has them (the station then reads those, not the bytes).

``FileSequenceCamera``: a folder's images in name order (tests, demos, replays).
``GenICamCamera``: a GenICam camera through ``harvesters`` and the vendor's GenTL producer
(``.cti``); the tests use the ``genicam`` wheel's virtual cameras, never a fake.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from inspection.core.errors import InspectionError
from inspection.core.images import IMAGE_SUFFIXES, narrow_to_8_bits
from inspection.line.config import CameraConfig

log = logging.getLogger(__name__)


class CaptureError(InspectionError):
    """The camera delivered no image (timeout, end of sequence, device gone)."""


@dataclass(frozen=True)
class Frame:
    """One captured image: encoded bytes (PNG/JPEG/...; hashed and stored), a name for the
    store, capture time, and the pixels ``data`` encodes losslessly when the camera has them
    ((H, W) uint8 grey or (H, W, 3) uint8 RGB, read-only; None: decode ``data``)."""

    data: bytes
    name: str
    capture_ms: float
    pixels: np.ndarray | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.capture_ms < 0:
            raise ValueError(f"capture_ms must be >= 0, got {self.capture_ms}")


class Camera(Protocol):
    """Captures one frame per call; raises ``CaptureError`` when there is none."""

    def capture(self) -> Frame: ...

    def close(self) -> None: ...


class FileSequenceCamera:
    """Serves the image files under ``folder`` (recursively, by relative path); thread-safe.
    Without ``loop``, ``CaptureError`` once every image was served."""

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
    """A GenICam camera via harvesters, set up from ``CameraConfig``; frames of ``PIXEL_FORMATS``
    become 8-bit grey or RGB pixels, handed over with their PNG (another format stops start-up,
    naming it).

    A frame belongs to its trigger: each capture discards the frames already delivered before it
    fires (in ``free_run``, also the frame in flight at the trigger). A failed capture drops the
    device and the next one opens it again, so no trigger gets a stale or another part's frame."""

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
        nodes = self._acquirer.remote_device.node_map
        try:
            _set_features(nodes, self.config.genicam_features())
            if self.config.trigger == "free_run":  # keep one buffer: the stream's newest frame
                if nodes.has_node("TriggerMode"):
                    nodes.TriggerMode.value = "Off"
                stream = self._acquirer.data_streams[0].node_map
                stream.StreamBufferHandlingMode.value = "NewestOnly"
            if nodes.has_node("PixelFormat"):
                _layout(str(nodes.PixelFormat.value))  # refuse an unknown format at start-up
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
                image = self._frame_after_trigger()
            except CaptureError:
                raise
            except Exception as exc:  # harvesters/GenTL timeouts and device errors
                if self._acquirer is not None:
                    self._drop()
                raise CaptureError(
                    f"GenICam camera: no frame ({type(exc).__name__}: {exc}); the device is "
                    "opened again on the next trigger"
                ) from exc
        bgr = image if image.ndim == 2 else np.ascontiguousarray(image[:, :, ::-1])  # cv2's order
        ok, png = cv2.imencode(".png", bgr)
        if not ok:
            raise CaptureError("GenICam camera: the frame could not be PNG-encoded")
        image.flags.writeable = False  # the pixels ``data`` holds: nobody may change them
        name, capture_ms = f"genicam-{time.time_ns()}.png", (time.perf_counter() - started) * 1e3
        return Frame(png.tobytes(), name, capture_ms, pixels=image)

    def _frame_after_trigger(self) -> np.ndarray:
        """``decode_pixels`` of the frame this trigger calls for (see the class doc)."""
        from genicam.gentl import ACQ_QUEUE_TYPE_LIST  # harvesters' own dependency

        acquirer, deadline = self._acquirer, time.monotonic() + self.config.timeout_s
        stream = acquirer.data_streams[0]
        stream.flush_buffer_queue(ACQ_QUEUE_TYPE_LIST.ACQ_QUEUE_OUTPUT_DISCARD)  # frames so far
        stream.flush_buffer_queue(ACQ_QUEUE_TYPE_LIST.ACQ_QUEUE_UNQUEUED_TO_INPUT)  # refill pool
        if self.config.trigger == "software":
            acquirer.remote_device.node_map.TriggerSoftware.execute()
        else:  # the next frame to arrive was already exposing or in transfer: drop it
            with acquirer.fetch(timeout=self.config.timeout_s):
                pass
        with acquirer.fetch(timeout=max(deadline - time.monotonic(), 1e-3)) as buffer:
            c = buffer.payload.components[0]
            return decode_pixels(str(c.data_format), c.data, c.height, c.width)

    def close(self) -> None:
        with self._lock:
            if self._acquirer is not None:
                self._drop()
            self._harvester.reset()


def _set_features(nodes: Any, features: dict[str, Any]) -> None:
    """Write each SFNC feature in order; ``CaptureError`` names the first one refused."""
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


_BAYER_TO_RGB = {
    "RG": cv2.COLOR_BayerRGGB2RGB,
    "BG": cv2.COLOR_BayerBGGR2RGB,
    "GR": cv2.COLOR_BayerGRBG2RGB,
    "GB": cv2.COLOR_BayerGBRG2RGB,
}
PIXEL_FORMATS: dict[str, tuple[int, int, int | None]] = {
    **{f"Mono{bits}": (bits, 1, None) for bits in (8, 10, 12, 14, 16)},
    **{f"Mono{bits}{packing}": (bits, 1, None) for bits in (10, 12) for packing in ("p", "Packed")},
    **{
        f"Bayer{p}{bits}": (bits, 1, code)
        for p, code in _BAYER_TO_RGB.items()
        for bits in (8, 10, 12, 16)
    },
    "RGB8": (8, 3, None),
    "BGR8": (8, 3, cv2.COLOR_BGR2RGB),
    "RGBa8": (8, 4, cv2.COLOR_RGBA2RGB),
    "BGRa8": (8, 4, cv2.COLOR_BGRA2RGB),
}
"""PFNC pixel format -> (significant bits, values per pixel, OpenCV conversion to RGB). Packed
formats arrive unpacked by harvesters; values are LSB-aligned, as PFNC defines them."""


def _layout(pixel_format: str) -> tuple[int, int, int | None]:
    """``PIXEL_FORMATS[pixel_format]``, or ``CaptureError`` naming the format."""
    if pixel_format not in PIXEL_FORMATS:
        raise CaptureError(
            f"GenICam camera: pixel format {pixel_format!r} is not supported; set PixelFormat "
            f"(camera features) to one of {', '.join(PIXEL_FORMATS)}"
        )
    return PIXEL_FORMATS[pixel_format]


def decode_pixels(pixel_format: str, data: np.ndarray, height: int, width: int) -> np.ndarray:
    """A frame's pixel values (flat, as harvesters delivers them) -> (H, W) uint8 grey or (H, W, 3)
    uint8 RGB: deeper values keep their top 8 bits, Bayer mosaics are demosaiced (bilinear)."""
    bits, channels, to_rgb = _layout(pixel_format)
    shape = (height, width) if channels == 1 else (height, width, channels)
    values = np.asarray(data).reshape(shape)  # a view of the camera's buffer
    if bits > 8:
        values = narrow_to_8_bits(values, bits)[0]
    return cv2.cvtColor(values, to_rgb) if to_rgb is not None else values.copy()  # own memory


def open_camera(config: CameraConfig) -> Camera:
    """The camera ``config`` describes (see ``CameraConfig``)."""
    if config.kind == "file":
        return FileSequenceCamera(config.path or Path("."), loop=config.loop)
    if config.kind == "genicam":
        return GenICamCamera(config)
    raise ValueError(f"unknown camera kind {config.kind!r}; use file or genicam")

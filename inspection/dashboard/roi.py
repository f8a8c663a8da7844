"""Regions of interest: the reference image with its ROI drawn over it, and audited edits.

The ROI lives in ``configs/products/<product>.yaml`` (``core.roi.RoiSpec``). An edit is the
ROI as JSON (``reference_size``, ``include``, ``exclude``: polygons of [x, y] pixels); it is
validated like the config loader does, written back into the product file (only the ``roi:``
block is replaced, comments elsewhere stay) and recorded in the registry's audit log.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import yaml

from inspection.core.config import from_mapping
from inspection.core.errors import ConfigError, RegistryError
from inspection.core.images import read_image
from inspection.core.registry import Registry
from inspection.core.roi import RoiSpec
from inspection.training.config import ProductConfig, config_dir, load_product_config

INCLUDE_RGB = (40, 200, 80)
EXCLUDE_RGB = (230, 50, 50)
_ROI_BLOCK = re.compile(r"^roi:.*(?:\n[ \t]+.*)*", re.MULTILINE)  # the key and its indented lines


def products_with_reference(directory: Path | None = None) -> list[str]:
    """Products whose config names a reference image (the ones an ROI can be drawn on)."""
    folder = (directory or config_dir()) / "products"
    names = sorted(p.stem for p in folder.glob("*.yaml"))
    return [n for n in names if load_product_config(n, directory).reference is not None]


def reference_image(config: ProductConfig) -> np.ndarray | None:
    """The product's reference image ((H, W, 3) uint8 RGB), None when the file is missing."""
    if config.reference is None or not Path(config.reference).is_file():
        return None
    return read_image(config.reference)


def overlay(image: np.ndarray, roi: RoiSpec | None, max_side: int = 1024) -> np.ndarray:
    """``image`` shrunk to ``max_side`` with the ROI shaded and outlined (include green,
    exclude red): (h, w, 3) uint8 RGB."""
    scale = min(1.0, max_side / max(image.shape[:2]))
    size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
    shown = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    if roi is None:
        return shown
    inside = roi.mask(size[1], size[0])
    shaded = shown.astype(np.float32)
    shaded[~inside] *= 0.45  # what is not inspected is dimmed
    shown = shaded.astype(np.uint8)
    factor = np.asarray((size[0] / roi.reference_size[1], size[1] / roi.reference_size[0]))
    for polygons, colour in ((roi.include, INCLUDE_RGB), (roi.exclude, EXCLUDE_RGB)):
        points = [np.rint(np.asarray(p) * factor).astype(np.int32) for p in polygons]
        cv2.polylines(shown, points, True, colour, max(2, size[0] // 300), cv2.LINE_AA)
    return shown


def roi_json(roi: RoiSpec | None, image: np.ndarray | None = None) -> str:
    """The ROI as editable JSON (an empty one over the whole reference when there is none)."""
    if roi is None:
        height, width = (100, 100) if image is None else image.shape[:2]
        return json.dumps({"reference_size": [height, width], "include": [], "exclude": []})
    data = roi.to_mapping()
    lines = ["{", f'  "reference_size": {json.dumps(data["reference_size"])},']
    for key, end in (("include", ","), ("exclude", "")):
        polygons = ",\n    ".join(json.dumps(p, separators=(",", ":")) for p in data[key])
        lines.append(
            f'  "{key}": [\n    {polygons}\n  ]{end}' if polygons else f'  "{key}": []{end}'
        )
    return "\n".join([*lines, "}"])


def parse_roi(text: str) -> RoiSpec:
    """Validate edited JSON into a ``RoiSpec``; ``ConfigError`` says what is wrong."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"roi: not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    if not isinstance(data, dict):
        raise ConfigError("roi: expected a JSON object with reference_size, include, exclude")
    return from_mapping(RoiSpec, data, where="roi")


def save_roi(
    product: str,
    roi: RoiSpec,
    registry: Registry,
    *,
    actor: str,
    reason: str,
    directory: Path | None = None,
) -> Path:
    """Write ``roi`` into the product's config and append an ``roi`` audit event."""
    if not actor.strip() or not reason.strip():
        raise RegistryError("an ROI change needs who (your name) and why (a reason)")
    path = (directory or config_dir()) / "products" / f"{product}.yaml"
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    block = _roi_yaml(roi)
    updated = _ROI_BLOCK.sub(lambda _m: block.rstrip("\n"), text, count=1)
    if updated == text and not _ROI_BLOCK.search(text):
        updated = text.rstrip("\n") + ("\n" if text else "") + block
    check = from_mapping(ProductConfig, yaml.safe_load(updated) or {}, where=str(path))
    if check.roi != roi:
        raise ConfigError(f"{path}: the written ROI does not read back equal; nothing saved")
    path.write_text(updated if updated.endswith("\n") else updated + "\n", encoding="utf-8")
    registry.record_event(
        product, "roi", actor=actor.strip(), reason=reason.strip(),
        include=len(roi.include), exclude=len(roi.exclude),
    )  # fmt: skip
    return path


def _roi_yaml(roi: RoiSpec) -> str:
    data = roi.to_mapping()
    lines = ["roi:", f"  reference_size: {json.dumps(data['reference_size'])}"]
    for key in ("include", "exclude"):
        if not data[key]:
            lines.append(f"  {key}: []")
            continue
        lines.append(f"  {key}:")
        lines += [f"    - {json.dumps(p, separators=(',', ':'))}" for p in data[key]]
    return "\n".join(lines) + "\n"

"""Regions of interest: the reference image with its ROI drawn over it, and audited edits.

An edit replaces only the ``roi:`` block of ``configs/products/<product>.yaml`` and is recorded
as a signed ROI decision, which stations pinning the site key require for a bundle's ROI.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import yaml

from inspection.core.config import default_configs_dir, from_mapping
from inspection.core.errors import ConfigError, RegistryError
from inspection.core.images import read_image
from inspection.core.product_config import ProductConfig, load_product_config, product_config_path
from inspection.core.registry import Registry
from inspection.core.roi import RoiSpec

INCLUDE_RGB = (40, 200, 80)
EXCLUDE_RGB = (230, 50, 50)
_ROI_BLOCK = re.compile(r"^roi:.*(?:\n[ \t]+.*)*", re.MULTILINE)  # the key and its indented lines


def products_with_reference(
    directory: Path | None = None, site_products: tuple[str, ...] | list[str] | None = None
) -> list[str]:
    """Products whose config names a reference image, among ``site_products`` when given."""
    folder = (directory or default_configs_dir()) / "products"
    names = sorted(p.stem for p in folder.glob("*.yaml"))
    if site_products is not None:
        names = [n for n in names if n in set(site_products)]
    return [n for n in names if load_product_config(n, directory).reference is not None]


def reference_image(config: ProductConfig) -> np.ndarray | None:
    """The product's reference image at its ``image_bits`` and ``image_range`` (None: the file
    is missing)."""
    if config.reference is None or not Path(config.reference).is_file():
        return None
    return read_image(config.reference, bits=config.image_bits, value_range=config.image_range)


def overlay(image: np.ndarray, roi: RoiSpec | None, max_side: int = 1024) -> np.ndarray:
    """``image`` shrunk to ``max_side``, the ROI shaded and outlined (include green, exclude red)."""
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
    """Write ``roi`` into the product's config and record it as a signed ROI decision."""
    if not actor.strip() or not reason.strip():
        raise RegistryError("an ROI change needs who (your name) and why (a reason)")
    path = product_config_path(product, directory)
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    block = _roi_yaml(roi)
    updated = _ROI_BLOCK.sub(lambda _m: block.rstrip("\n"), text, count=1)
    if updated == text and not _ROI_BLOCK.search(text):
        updated = text.rstrip("\n") + ("\n" if text else "") + block
    check = from_mapping(ProductConfig, yaml.safe_load(updated) or {}, where=str(path))
    if check.roi != roi:
        raise ConfigError(f"{path}: the written ROI does not read back equal; nothing saved")
    path.write_text(updated if updated.endswith("\n") else updated + "\n", encoding="utf-8")
    registry.journal.record_decision(product, "roi", roi.to_mapping(), actor=actor, reason=reason)
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


LABELS = ("include", "exclude")
"""Box labels of the visual editor: inspected area, or a hole cut out of it."""


def is_box(polygon: list[list[float]] | tuple) -> bool:
    points = np.asarray(polygon, dtype=np.float64)
    if points.shape != (4, 2):
        return False
    xs, ys = np.unique(points[:, 0]), np.unique(points[:, 1])
    return len(xs) == 2 and len(ys) == 2


def boxes_of(roi: RoiSpec | None) -> list[dict[str, float | str]] | None:
    """The ROI as labelled boxes in reference pixels; ``None`` when a polygon is no rectangle."""
    if roi is None:
        return []
    boxes = []
    for label, polygons in (("include", roi.include), ("exclude", roi.exclude)):
        for polygon in polygons:
            if not is_box(polygon):
                return None
            points = np.asarray(polygon, dtype=np.float64)
            left, top = points.min(axis=0)
            right, bottom = points.max(axis=0)
            boxes.append(
                {"label": label, "left": float(left), "top": float(top),
                 "width": float(right - left), "height": float(bottom - top)}
            )  # fmt: skip
    return boxes


def roi_from_boxes(boxes: list[dict[str, float | str]], reference_size: tuple[int, int]) -> RoiSpec:
    """A ``RoiSpec`` from labelled boxes, clipped to the (H, W) reference."""
    height, width = reference_size
    include, exclude = [], []
    for box in boxes:
        label = str(box.get("label", "")).strip().lower()
        if label not in LABELS:
            raise ConfigError(f"roi box: label must be include or exclude, got {label!r}")
        left = min(max(round(float(box["left"])), 0), width)
        top = min(max(round(float(box["top"])), 0), height)
        right = min(max(round(float(box["left"]) + float(box["width"])), 0), width)
        bottom = min(max(round(float(box["top"]) + float(box["height"])), 0), height)
        if right - left < 1 or bottom - top < 1:
            continue  # a click, not a box
        polygon = [[left, top], [right, top], [right, bottom], [left, bottom]]
        (include if label == "include" else exclude).append(polygon)
    if not include:
        raise ConfigError("roi: draw at least one 'include' box (the area to inspect)")
    data = {"reference_size": [height, width], "include": include, "exclude": exclude}
    return from_mapping(RoiSpec, data, where="roi")


def canvas_drawing(boxes: list[dict[str, float | str]], scale: float) -> dict:
    """Fabric.js JSON of labelled boxes for the canvas (reference pixels times ``scale``)."""
    colours = {"include": "rgba(40,200,80,0.25)", "exclude": "rgba(230,50,50,0.30)"}
    rect = {"type": "LabeledRect", "originX": "left", "originY": "top", "stroke": "#263238"}
    rect |= {"strokeWidth": 2, "scaleX": 1, "scaleY": 1}
    sides = ("left", "top", "width", "height")
    objects = [
        {**rect, "label": box["label"], "fill": colours[str(box["label"])]}
        | {side: float(box[side]) * scale for side in sides}
        for box in boxes
    ]
    return {"version": "5.3.0", "objects": objects}

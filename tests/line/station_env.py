"""A real line station for tests: the session's tiny FP32 bundle, a file camera, a store."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from inspection.core.registry import Registry
from inspection.core.signing import pin_file
from inspection.line.config import CameraConfig, LineConfig, LinkSecurity
from inspection.line.links import LINKS
from inspection.station.config import CORE_KEYS, StationCoreConfig


def camera_folder(root: Path, tiny_product: Path, count: int = 4) -> Path:
    """``count`` real demo images (good and defective) in one folder."""
    folder = root / "camera"
    folder.mkdir(parents=True, exist_ok=True)
    images = sorted((tiny_product / "test").rglob("*.png"))
    for n, image in enumerate(images[:: max(1, len(images) // count)][:count]):
        shutil.copy(image, folder / f"{n:03d}.png")
    return folder


def line_config(
    root: Path, fp32_bundle: Path, camera: Path, *, loop: bool = True, **overrides
) -> LineConfig:
    """Serves ``brick`` (live) and ``grass`` (no live model); station id ``cam-1``; a PLC link's
    section by its name (``opcua=OpcUaTriggerConfig(...)``)."""
    registry = Registry(root / "registry")
    if not registry.bundles.bundle_ids("brick"):
        registry.bundles.add_bundle("brick", fp32_bundle, "v0001-fp32")
        registry.journal.promote("brick", "v0001-fp32", actor="tests", reason="line tests")
    core = {
        "products": ("brick", "grass"),
        "store_url": f"sqlite:///{root / 'line.db'}",
        "blob_dir": root / "blobs",
        "registry_dir": root / "registry",
        "registry_poll_seconds": 3600.0,
        "allow_unsigned_bundles": "bundle_public_key" not in overrides,
    }
    if "bundle_public_key" in overrides:  # the key file given, pinned by its fingerprint
        overrides["signing_keys"] = (pin_file(overrides.pop("bundle_public_key")),)
    core |= {key: value for key, value in overrides.items() if key in CORE_KEYS}
    values = {
        "station_id": "cam-1",
        "camera": CameraConfig(kind="file", path=camera, loop=loop),
        "inspect_timeout_s": 10.0,
        "security": LinkSecurity(pki_dir=root / "pki"),
    }
    values["links"] = {name: overrides.pop(name) for name in list(overrides) if name in LINKS}
    values |= {key: value for key, value in overrides.items() if key not in CORE_KEYS}
    return LineConfig(core=StationCoreConfig(**core), **values)


def line_yaml(root: Path, camera: Path, **sections: dict) -> Path:
    """A line config file serving brick from ``root``'s registry (``line_config`` made it),
    with ``sections`` (a PLC link's, say) on top."""
    core = {"products": ["brick"], "store_url": f"sqlite:///{root / 'line.db'}",
            "blob_dir": str(root / "blobs"), "registry_dir": str(root / "registry"),
            "allow_unsigned_bundles": True}  # fmt: skip
    data = {"station_id": "cam-1", "core": core, "camera": {"kind": "file", "path": str(camera)},
            "security": {"pki_dir": str(root / "pki")}, **sections}  # fmt: skip
    path = root / "line.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path

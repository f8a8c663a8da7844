"""The registry's immutable half: model versions (``<product>/versions/<version>/``) and bundles
(``<product>/bundles/<bundle_id>/``), each written to a staging folder and renamed into place
under the product's file lock (``product_lock``), so a crash leaves it whole or absent.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock

from inspection.core.bundle import read_bundle_metadata, verify_bundle
from inspection.core.config import from_mapping
from inspection.core.errors import RegistryError
from inspection.core.fingerprint import sha256_file
from inspection.core.jsonl import write_json
from inspection.core.model_record import RECORD_FILE, ModelRecord, VersionRef, check_name, utc_now

_VERSION_RE = re.compile(r"^v(\d{4,})$")


def product_dir(root: Path, product: str) -> Path:
    """``<root>/<product>`` after checking the product name."""
    return root / check_name("product", product)


def product_lock(root: Path, product: str) -> FileLock:
    """The product's file lock (its folder is created), held by every write under it."""
    directory = product_dir(root, product)
    directory.mkdir(parents=True, exist_ok=True)
    return FileLock(str(directory / ".lock"), timeout=60)


class VersionStore:
    """Reads and writes model versions and bundles under ``root``; holds no state."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def products(self) -> list[str]:
        return _folders(self.root)

    # ----------------------------------------------------------------- versions
    def create_version(
        self,
        product: str,
        *,
        model_kind: str,
        config: Mapping[str, Any],
        dataset: Mapping[str, Any],
        metrics: Mapping[str, Any],
        packages: Mapping[str, str],
        write_files: Callable[[Path], None] | None = None,
        weights: Mapping[str, Any] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> ModelRecord:
        """Create the next immutable version (``write_files(dir)`` puts its artefacts in it)."""
        with product_lock(self.root, product):
            versions_dir = product_dir(self.root, product) / "versions"
            versions_dir.mkdir(parents=True, exist_ok=True)
            version = f"v{_next_number(versions_dir):04d}"
            with _staged(versions_dir, version) as staging:
                if write_files is not None:
                    write_files(staging)
                files = {
                    p.relative_to(staging).as_posix(): sha256_file(p)
                    for p in sorted(staging.rglob("*"))
                    if p.is_file()
                }
                record = {
                    "product": product,
                    "version": version,
                    "model_kind": model_kind,
                    "created_at": utc_now(),
                    "config": dict(config),
                    "dataset": dict(dataset),
                    "metrics": dict(metrics),
                    "packages": dict(packages),
                    "weights": dict(weights or {}),
                    "files": files,
                    "extra": dict(extra or {}),
                }
                write_json(staging / RECORD_FILE, record)
        return self.version(product, version)

    def versions(self, product: str) -> list[ModelRecord]:
        versions_dir = product_dir(self.root, product) / "versions"
        if not versions_dir.is_dir():
            return []
        names = sorted(p.name for p in versions_dir.iterdir() if _VERSION_RE.match(p.name))
        return [self.version(product, name) for name in names]

    def version(self, product: str, version: str | None = None) -> ModelRecord:
        """The record of ``version`` (``v0001``), or of the product's latest when not given."""
        if not version:
            records = self.versions(product)
            if not records:
                raise RegistryError(f"product {product!r} has no trained model versions yet")
            return records[-1]
        path = product_dir(self.root, product) / "versions" / version
        record_file = path / RECORD_FILE
        if not record_file.is_file():
            known = [r.name for r in (path.parent.iterdir() if path.parent.is_dir() else [])]
            raise RegistryError(
                f"no model version {product}/{version}; known: {', '.join(sorted(known)) or 'none'}"
            )
        data = json.loads(record_file.read_text(encoding="utf-8"))
        return from_mapping(ModelRecord, {**data, "path": path}, str(record_file))

    # ------------------------------------------------------------------ bundles
    def add_bundle(self, product: str, source_dir: str | Path, bundle_id: str) -> Path:
        """Copy a verified bundle folder into the registry; an existing id is never overwritten."""
        check_name("bundle", bundle_id)
        verify_bundle(source_dir)
        with product_lock(self.root, product):
            bundles_dir = product_dir(self.root, product) / "bundles"
            bundles_dir.mkdir(parents=True, exist_ok=True)
            target = bundles_dir / bundle_id
            if target.exists():
                raise RegistryError(
                    f"bundle {product}/{bundle_id} already exists; bundles are immutable"
                )
            with _staged(bundles_dir, bundle_id) as staging:
                shutil.copytree(source_dir, staging, dirs_exist_ok=True)
        return target

    def bundle_ids(self, product: str) -> list[str]:
        return _folders(product_dir(self.root, product) / "bundles")

    def bundle_dir(self, product: str, bundle_id: str) -> Path:
        path = product_dir(self.root, product) / "bundles" / check_name("bundle", bundle_id)
        if not path.is_dir():
            known = ", ".join(self.bundle_ids(product)) or "none"
            raise RegistryError(f"no bundle {product}/{bundle_id}; known: {known}")
        return path

    def bundle_record(self, product: str, bundle_id: str) -> ModelRecord:
        """The model version a bundle was exported from (named in its metadata)."""
        ref = VersionRef.parse(
            read_bundle_metadata(self.bundle_dir(product, bundle_id)).model_version
        )
        if ref.product != product:
            raise RegistryError(
                f"bundle {product}/{bundle_id} was exported from {ref}, another product"
            )
        return self.version(product, ref.version)


@contextmanager
def _staged(parent: Path, name: str) -> Iterator[Path]:
    """A staging folder in ``parent``, renamed to ``name`` after the block (removed on error)."""
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=parent))
    try:
        yield staging
        os.rename(staging, parent / name)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _folders(parent: Path) -> list[str]:
    """Names of the folders in ``parent`` (if any), hidden staging ones left out."""
    if not parent.is_dir():
        return []
    return sorted(p.name for p in parent.iterdir() if p.is_dir() and not p.name.startswith("."))


def _next_number(versions_dir: Path) -> int:
    numbers = [int(m.group(1)) for p in versions_dir.iterdir() if (m := _VERSION_RE.match(p.name))]
    return max(numbers, default=0) + 1

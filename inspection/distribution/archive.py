"""Bundle archives: a deterministic tar of a bundle folder plus a manifest of digests, served
apart so a station refuses a download that does not hash right before unpacking anything."""

from __future__ import annotations

import json
import os
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inspection.core.bundle import read_bundle_metadata, verify_bundle, verify_checksums
from inspection.core.config import from_mapping, to_mapping
from inspection.core.errors import BundleError, ConfigError, InspectionError
from inspection.core.fingerprint import sha256_file
from inspection.core.model_record import check_name

MANIFEST_SCHEMA_VERSION = 1
ARCHIVE_SUFFIX = ".tar"


@dataclass(frozen=True)
class ArchiveManifest:
    """What a station needs to check a downloaded bundle before it uses it: ``files`` maps
    each path in the bundle folder to its sha256 (the archive holds them under ``<bundle_id>/``)."""

    schema_version: int
    product: str
    bundle_id: str
    archive_sha256: str
    archive_bytes: int
    files: dict[str, str]
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.schema_version != MANIFEST_SCHEMA_VERSION:
            raise ConfigError(
                f"archive manifest schema version {self.schema_version} is not supported "
                f"(this station reads version {MANIFEST_SCHEMA_VERSION})"
            )
        check_name("product", self.product)
        check_name("bundle", self.bundle_id)
        if len(self.archive_sha256) != 64 or self.archive_bytes < 1 or not self.files:
            raise ConfigError(
                f"archive manifest of {self.product}/{self.bundle_id} is incomplete: "
                "expected a 64-hex archive_sha256, archive_bytes >= 1 and a non-empty files map"
            )

    def to_json(self) -> str:
        return json.dumps(to_mapping(self), indent=2, sort_keys=True)


def manifest_from_mapping(data: object, where: str = "archive manifest") -> ArchiveManifest:
    """Validate a manifest read from JSON; problems raise ``BundleError`` naming ``where``."""
    if not isinstance(data, dict):
        raise BundleError(f"{where}: expected a JSON object, got {type(data).__name__}")
    try:
        return from_mapping(ArchiveManifest, data, where=where)
    except (InspectionError, ValueError) as exc:
        raise BundleError(f"{where}: {exc}") from exc


def pack_bundle(bundle_dir: str | Path, archive_path: str | Path) -> ArchiveManifest:
    """Verify ``bundle_dir`` and write it atomically as a deterministic tar to ``archive_path``
    (members sorted, owned by 0:0, mtime 0: the same bundle always gives the same bytes)."""
    bundle_dir, archive_path = Path(bundle_dir), Path(archive_path)
    metadata = verify_bundle(bundle_dir)
    paths = sorted(p for p in bundle_dir.rglob("*") if p.is_file())
    archive_path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{archive_path.name}-", dir=archive_path.parent)
    os.close(handle)
    try:
        with tarfile.open(tmp_name, "w", format=tarfile.PAX_FORMAT) as tar:
            for path in paths:
                rel = path.relative_to(bundle_dir).as_posix()
                info = tar.gettarinfo(str(path), arcname=f"{metadata.bundle_id}/{rel}")
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mtime = 0
                info.mode = 0o644
                with open(path, "rb") as source:
                    tar.addfile(info, source)
        os.replace(tmp_name, archive_path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return ArchiveManifest(
        schema_version=MANIFEST_SCHEMA_VERSION,
        product=metadata.product,
        bundle_id=metadata.bundle_id,
        archive_sha256=sha256_file(archive_path),
        archive_bytes=archive_path.stat().st_size,
        files={p.relative_to(bundle_dir).as_posix(): sha256_file(p) for p in paths},
    )


def check_archive(archive_path: str | Path, manifest: ArchiveManifest) -> None:
    """Refuse an archive whose size or sha256 differs from the manifest (``BundleError``)."""
    archive_path = Path(archive_path)
    size = archive_path.stat().st_size
    if size != manifest.archive_bytes:
        raise BundleError(
            f"download of {manifest.product}/{manifest.bundle_id} is {size} bytes, "
            f"the catalog says {manifest.archive_bytes}: refused"
        )
    actual = sha256_file(archive_path)
    if actual != manifest.archive_sha256:
        raise BundleError(
            f"download of {manifest.product}/{manifest.bundle_id} has sha256 {actual[:12]}…, "
            f"the catalog says {manifest.archive_sha256[:12]}…: corrupt, refused"
        )


# tarfile's "data" filter exists from Python 3.11.4 (Debian 12 ships 3.11.2); where it is
# missing, _safe_members alone keeps extraction inside the target.
_DATA_FILTER: dict[str, str] = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}


def _safe_members(tar: tarfile.TarFile, target_dir: Path) -> list[tarfile.TarInfo]:
    """Every entry, if all are regular files or folders that land inside ``target_dir``."""
    root = target_dir.resolve()
    members = tar.getmembers()
    for member in members:
        inside = (root / member.name).resolve().is_relative_to(root)
        if not (member.isfile() or member.isdir()) or not inside:
            raise tarfile.TarError(f"unsafe entry {member.name!r} (link, device or outside path)")
    return members


def unpack_bundle(
    archive_path: str | Path, manifest: ArchiveManifest, target_dir: str | Path
) -> Path:
    """Check the archive digest, unpack safely (no absolute paths, ``..``, links or devices),
    check every file and the bundle's identity; returns the bundle folder under ``target_dir``."""
    check_archive(archive_path, manifest)
    target_dir = Path(target_dir)
    with tarfile.open(archive_path, "r") as tar:
        names = tar.getnames()
        prefix = f"{manifest.bundle_id}/"
        strays = [name for name in names if not name.startswith(prefix)]
        if strays:
            raise BundleError(f"archive of {manifest.bundle_id} holds stray entries: {strays[:3]}")
        try:
            tar.extractall(target_dir, members=_safe_members(tar, target_dir), **_DATA_FILTER)
        except tarfile.TarError as exc:
            raise BundleError(f"archive of {manifest.bundle_id} cannot be unpacked: {exc}") from exc
    bundle_dir = target_dir / manifest.bundle_id
    verify_checksums(bundle_dir, manifest.files, required=list(manifest.files), what="download")
    unexpected = sorted(
        p.relative_to(bundle_dir).as_posix()
        for p in bundle_dir.rglob("*")
        if p.is_file() and p.relative_to(bundle_dir).as_posix() not in manifest.files
    )
    if unexpected:
        raise BundleError(f"archive of {manifest.bundle_id} holds unlisted files: {unexpected[:3]}")
    verify_bundle(bundle_dir)
    metadata = read_bundle_metadata(bundle_dir)
    if (metadata.product, metadata.bundle_id) != (manifest.product, manifest.bundle_id):
        raise BundleError(
            f"archive announced as {manifest.product}/{manifest.bundle_id} holds "
            f"{metadata.product}/{metadata.bundle_id}: refused"
        )
    return bundle_dir

"""Bundle archives: deterministic packing, digest checks, safe unpacking of a real bundle."""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import replace
from pathlib import Path

import pytest

from inspection.core.errors import BundleError
from inspection.distribution.archive import (
    check_archive,
    manifest_from_mapping,
    pack_bundle,
    unpack_bundle,
)


def test_pack_is_deterministic_and_round_trips(fp32_bundle: Path, tmp_path: Path) -> None:
    first = pack_bundle(fp32_bundle, tmp_path / "a.tar")
    second = pack_bundle(fp32_bundle, tmp_path / "b.tar")
    assert first == second
    assert manifest_from_mapping(json.loads(first.to_json())) == first
    bundle_dir = unpack_bundle(tmp_path / "a.tar", first, tmp_path / "out")
    assert bundle_dir.name == first.bundle_id == "v0001-fp32"
    assert {p.name for p in bundle_dir.iterdir()} == {p.name for p in fp32_bundle.iterdir()}


def test_a_flipped_byte_is_refused_before_unpacking(fp32_bundle: Path, tmp_path: Path) -> None:
    manifest = pack_bundle(fp32_bundle, tmp_path / "a.tar")
    data = bytearray((tmp_path / "a.tar").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "a.tar").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="corrupt, refused"):
        unpack_bundle(tmp_path / "a.tar", manifest, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_truncated_download_is_refused(fp32_bundle: Path, tmp_path: Path) -> None:
    manifest = pack_bundle(fp32_bundle, tmp_path / "a.tar")
    data = (tmp_path / "a.tar").read_bytes()
    (tmp_path / "a.tar").write_bytes(data[:1000])
    with pytest.raises(BundleError, match="1000 bytes, the catalog says"):
        check_archive(tmp_path / "a.tar", manifest)


def _evil_archive(path: Path, name: str) -> None:
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo(name)
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))


@pytest.mark.parametrize(
    ("member", "match"),
    [
        ("../escape.txt", "stray entries"),
        ("v0001-fp32/../../escape.txt", "cannot be unpacked"),
        ("v0001-fp32/extra.txt", "lists no checksum|is missing"),
    ],
)
def test_hostile_archives_are_refused(
    fp32_bundle: Path, tmp_path: Path, member: str, match: str
) -> None:
    manifest = pack_bundle(fp32_bundle, tmp_path / "good.tar")
    _evil_archive(tmp_path / "evil.tar", member)
    from inspection.core.fingerprint import sha256_file

    evil = replace(
        manifest,
        archive_sha256=sha256_file(tmp_path / "evil.tar"),
        archive_bytes=(tmp_path / "evil.tar").stat().st_size,
    )
    with pytest.raises(BundleError, match=match):
        unpack_bundle(tmp_path / "evil.tar", evil, tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists()


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"schema_version": 2}, "schema version 2 is not supported"),
        ({"archive_sha256": "abc"}, "incomplete"),
        ({"bundle_id": "../x"}, "invalid bundle name"),
        ({"surprise": 1}, "unknown key"),
    ],
)
def test_bad_manifests_are_refused(fp32_bundle: Path, tmp_path: Path, change, match) -> None:
    manifest = pack_bundle(fp32_bundle, tmp_path / "a.tar")
    with pytest.raises(BundleError, match=match):
        manifest_from_mapping(json.loads(manifest.to_json()) | change)

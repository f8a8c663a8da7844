"""Blob folders on storage without hard links (exFAT, FAT, SMB shares): ``os.link`` fails
there with EPERM or EOPNOTSUPP, and every write failed with it. A blob is then claimed by an
exclusive create and renamed over the claim: stored once, never replacing another's file."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from inspection.store.blobs import BlobStore
from tests.exfat import exfat_mount


@pytest.fixture(params=[errno.EPERM, errno.EOPNOTSUPP])
def no_links(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """``os.link`` as exFAT (EPERM) or an SMB share (EOPNOTSUPP) answers it."""

    def link(source: object, target: object, **_: object) -> None:
        raise OSError(request.param, os.strerror(request.param), str(source), None, str(target))

    monkeypatch.setattr(os, "link", link)
    return request.param


def test_a_blob_is_stored_once_where_files_cannot_be_linked(tmp_path: Path, no_links: int) -> None:
    blobs = BlobStore(tmp_path)
    sha, created = blobs.put_new(b"image bytes", ".png")
    assert created and blobs.get(sha) == b"image bytes"
    assert blobs.path(sha).stat().st_mode & 0o777 == 0o444
    assert blobs.put_new(b"image bytes", ".png") == (sha, False)
    assert [p.name for p in blobs.path(sha).parent.iterdir()] == [f"{sha}.png"]  # no .tmp-*


def test_a_file_another_writer_made_meanwhile_is_never_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between the look-up and the write another writer stores the blob: its file stays."""
    blobs = BlobStore(tmp_path)
    data = b"image bytes"

    def link(source: object, target_path: object, **_: object) -> None:
        Path(target_path).write_bytes(b"the other writer's file")
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", link)
    sha, created = blobs.put_new(data, ".png")
    target = blobs._path(sha, ".png")
    assert not created and target.read_bytes() == b"the other writer's file"
    assert [p.name for p in target.parent.iterdir()] == [target.name]


def test_an_empty_claim_left_by_a_crash_is_written(tmp_path: Path, no_links: int) -> None:
    blobs = BlobStore(tmp_path)
    sha, _ = blobs.put_new(b"image bytes", ".png")
    path = blobs.path(sha)
    path.chmod(0o644)
    path.write_bytes(b"")  # the write that claimed it died before its rename
    assert blobs.put_new(b"image bytes", ".png") == (sha, True)
    assert blobs.get(sha) == b"image bytes"


def test_blobs_are_stored_on_a_real_exfat_file_system(tmp_path: Path) -> None:
    with exfat_mount(tmp_path / "exfat") as mounted:
        (mounted / "file").write_bytes(b"x")
        with pytest.raises(PermissionError):  # what every blob write failed with before
            os.link(mounted / "file", mounted / "link")
        blobs = BlobStore(mounted / "blobs")
        assert blobs.unwritable() is None
        sha, created = blobs.put_new(b"image bytes", ".png")
        assert created and blobs.get(sha) == b"image bytes"
        assert blobs.put_new(b"image bytes", ".png") == (sha, False)
        assert not list((mounted / "blobs" / sha[:2]).glob(".tmp-*"))


def test_a_blob_folder_that_cannot_hold_files_is_named(tmp_path: Path) -> None:
    (tmp_path / "blobs").write_text("not a folder")  # a share unmounted, a path mistyped
    problem = BlobStore(tmp_path / "blobs").unwritable()
    assert problem is not None
    assert problem.startswith(f"core.blob_dir {tmp_path / 'blobs'}: ")
    assert problem.endswith("; nothing can be stored")

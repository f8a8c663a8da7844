"""The central blob folder trusts no station: a file whose bytes do not hash to its name is
refused on every read that shows or trains on it, writes never replace a file, and one
station's account cannot replace or delete another's files (sticky, read-only files)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inspection.dashboard.review import _blob_image as dashboard_image
from inspection.retrain.assemble import _blob_image as training_image
from inspection.store.blobs import FOLDER_MODE, BlobMismatch, BlobStore
from inspection.store.store import Store


def _png(value: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _tamper(path: Path, data: bytes) -> None:
    """What a station's account with write access to the file would do."""
    path.chmod(0o644)
    path.write_bytes(data)


def test_a_tampered_blob_is_refused_and_counted_by_every_reader(tmp_path: Path) -> None:
    store = Store.migrated(f"sqlite:///{tmp_path / 'central.db'}", tmp_path / "blobs")
    sha = store.blobs.put(_png(10), ".png")
    path = store.blobs.path(sha)
    assert store.blobs.get(sha) == _png(10) and store.blobs.checked_path(sha) == path
    _tamper(path, _png(200))  # still a valid image: only its hash tells
    before = BlobStore.refused
    with pytest.raises(BlobMismatch, match="do not hash to its name"):
        store.blobs.get(sha)
    with pytest.raises(BlobMismatch, match=str(path)):
        store.blobs.checked_path(sha)
    missing: list[str] = []
    assert dashboard_image(store, sha, "image", missing) is None and missing == ["image"]
    skipped: dict[str, str] = {}
    assert training_image(store, sha, "r1", skipped) is None
    assert "do not hash to its name" in skipped["r1"]
    assert BlobStore.refused == before + 4


def test_a_write_never_replaces_an_existing_file(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)
    sha = blobs.put(b"first", ".bin")
    path = blobs.path(sha)
    assert path.stat().st_mode & 0o777 == 0o444
    assert path.parent.stat().st_mode & 0o7777 == FOLDER_MODE
    _tamper(path, b"planted")
    with pytest.raises(BlobMismatch, match="do not hash to its name"):
        blobs.put_new(b"first", ".bin")  # loud: the writer's copy would be a planted file
    assert path.read_bytes() == b"planted"  # left as found: reads refuse it, none replaces it
    assert not list(path.parent.glob(".tmp-*"))


_AS_USER = """
import os, pathlib, sys
from inspection.store.blobs import BlobStore
os.setgid(65534); os.setuid(int(sys.argv[1]))  # imports first: the interpreter is root's
root, action = sys.argv[2], sys.argv[3]
if action == "write":
    print(BlobStore(root).put(b"station A's image", ".png"))
    sys.exit()
target = next(pathlib.Path(root).glob("*/*.png"))
try:
    if action == "replace":
        open(target.parent / "mine", "wb").write(b"forged")
        os.replace(target.parent / "mine", target)
    elif action == "unlink":
        target.unlink()
    elif action == "overwrite":
        open(target, "wb").write(b"forged")
except PermissionError:
    print("refused")
else:
    print("done")
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="runs two station accounts: needs root")
@pytest.mark.parametrize("action", ["replace", "unlink", "overwrite"])
def test_a_station_account_cannot_replace_another_stations_blob(action: str) -> None:
    share = tempfile.TemporaryDirectory(prefix="central-blobs-")  # pytest's is root-only
    root = Path(share.name)
    os.chown(root, 0, 65534)
    root.chmod(FOLDER_MODE)

    def as_user(uid: int, what: str) -> str:
        run = [sys.executable, "-c", _AS_USER, str(uid), str(root), what]
        done = subprocess.run(run, capture_output=True, text=True, check=True, cwd=Path.cwd())
        return done.stdout.strip()

    sha = as_user(1, "write")  # station A (uid 1) writes its blob
    assert as_user(65534, action) == "refused"  # station B (uid 65534) may not touch it
    assert BlobStore(root).get(sha) == b"station A's image"
    share.cleanup()

"""An exFAT file system for tests of storage without hard links: a loop file formatted by
``mkfs.exfat`` (exfatprogs) and mounted with ``mount.exfat-fuse`` (exfat-fuse), as a USB disk
or a camera's card is. Skips, saying why, where the tools or the permission to mount are missing."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

TOOLS = ("mkfs.exfat", "mount.exfat-fuse", "losetup", "umount")


@contextmanager
def exfat_mount(where: Path, size_mb: int = 8) -> Iterator[Path]:
    """An empty exFAT file system mounted at ``where`` for the block (unmounted after)."""
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"no exFAT: {', '.join(missing)} not installed (apt: exfatprogs exfat-fuse)")
    if os.geteuid() != 0:
        pytest.skip("no exFAT: mounting a loop device needs root")
    image = where.with_suffix(".img")
    with image.open("wb") as handle:
        handle.truncate(size_mb << 20)
    subprocess.run(["mkfs.exfat", str(image)], check=True, capture_output=True)
    attach = subprocess.run(["losetup", "-f", "--show", str(image)], capture_output=True, text=True)
    if attach.returncode != 0:
        pytest.skip(f"no exFAT: no loop device here ({attach.stderr.strip()})")
    device = attach.stdout.strip()
    where.mkdir()
    mount = subprocess.run(["mount.exfat-fuse", device, str(where)], capture_output=True, text=True)
    try:
        if mount.returncode != 0:
            pytest.skip(f"no exFAT: mounting is not permitted here ({mount.stderr.strip()})")
        yield where
    finally:
        if mount.returncode == 0:
            subprocess.run(["umount", str(where)], check=True)
        subprocess.run(["losetup", "-d", device], check=True)

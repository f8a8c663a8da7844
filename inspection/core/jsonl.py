"""Crash-safe JSON files for the registry: atomic whole-file writes, append-only jsonl logs."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str), encoding="utf-8")
    os.replace(tmp, path)


def append_jsonl(path: Path, row: Mapping[str, Any]) -> None:
    """Append one line; after a torn last line (a crash mid-append) it starts a new line, so
    the torn line alone is lost (``read_jsonl`` skips it), never the row written now."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        torn = handle.tell() > 0 and _last_byte(handle) != b"\n"
        line = json.dumps(row, sort_keys=True, default=str) + "\n"
        handle.write((("\n" if torn else "") + line).encode("utf-8"))
        handle.flush()
        os.fsync(handle.fileno())


def _last_byte(handle: BinaryIO) -> bytes:
    handle.seek(-1, os.SEEK_END)
    return handle.read(1)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a torn last line after a crash; earlier rows stay valid
    return rows

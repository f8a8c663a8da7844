"""``runtime.paths`` folder expansion: relative names, folder symlinks, excluded folders."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from inspection.runtime.paths import expand_paths, find_files


def _touch(*paths: Path) -> None:
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def test_folders_expand_to_image_files_named_relative_to_their_argument(tmp_path: Path) -> None:
    root = tmp_path / "in"
    _touch(root / "b" / "1.png", root / "a" / "2.JPG", root / "a" / "notes.txt")
    given = tmp_path / "single.bmp"
    _touch(given)

    found = find_files([root, given])

    assert [f.relative for f in found] == ["a/2.JPG", "b/1.png", "single.bmp"]
    assert [f.path for f in found] == [root / "a" / "2.JPG", root / "b" / "1.png", given]
    assert expand_paths([root, given]) == [f.path for f in found]


def test_folder_symlinks_are_followed_once_without_cycles_or_aliases(tmp_path: Path) -> None:
    root = tmp_path / "in"
    outside = tmp_path / "outside"
    _touch(root / "real" / "a.png", outside / "b.png")
    (root / "linked").symlink_to(outside, target_is_directory=True)
    (root / "real" / "loop").symlink_to(root, target_is_directory=True)
    (root / "twice").symlink_to(outside, target_is_directory=True)
    (root / "alias").symlink_to(root / "real", target_is_directory=True)  # sorts first

    found = find_files([root])

    assert [f.relative for f in found] == ["linked/b.png", "real/a.png"]


def test_excluded_folders_inside_an_argument_are_skipped(tmp_path: Path) -> None:
    root = tmp_path / "in"
    _touch(root / "a.png", root / "results" / "overlays" / "a.png_overlay.png")
    (root / "view").symlink_to(root / "results", target_is_directory=True)

    assert expand_paths([root], exclude=[root / "results" / "overlays"]) == [root / "a.png"]
    # an excluded folder given as the argument itself is still searched: the user chose it
    overlays = root / "results" / "overlays"
    assert len(expand_paths([overlays], exclude=[overlays])) == 1


def test_a_nested_folder_link_met_first_by_a_sorted_walk_names_the_folder(tmp_path: Path) -> None:
    """Two links to one outside folder: the one a sorted depth-first walk meets first (a/x,
    before b) names its files, also when the other sits nearer the argument."""
    root = tmp_path / "in"
    outside = tmp_path / "outside"
    _touch(root / "a" / "keep.png", outside / "deep" / "c.png")
    (root / "a" / "x").symlink_to(outside, target_is_directory=True)
    (root / "b").symlink_to(outside, target_is_directory=True)
    (root / "a" / "y").symlink_to(outside / "deep", target_is_directory=True)

    assert [f.relative for f in find_files([root])] == ["a/keep.png", "a/x/deep/c.png"]


def test_each_folder_is_read_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The folder tree was walked twice (once to learn which folders are reachable without
    symlinks, once to list them): every folder, linked ones included, is now read once."""
    root = tmp_path / "in"
    outside = tmp_path / "outside"
    _touch(root / "a" / "1.png", root / "a" / "b" / "2.png", outside / "3.png")
    (root / "c").mkdir()
    (root / "linked").symlink_to(outside, target_is_directory=True)
    (root / "a" / "alias").symlink_to(root / "a" / "b", target_is_directory=True)
    read: list[str] = []
    scandir = os.scandir

    def counted(path: str | Path = ".") -> Iterator[os.DirEntry[str]]:
        read.append(str(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", counted)
    found = [f.relative for f in find_files([root])]

    assert found == ["a/1.png", "a/b/2.png", "linked/3.png"]
    assert sorted(read) == sorted(map(str, (root, root / "a", root / "a" / "b", root / "c",
                                            root / "linked")))  # fmt: skip

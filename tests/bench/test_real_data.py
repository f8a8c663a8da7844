"""The ELPV split of bench/real_data.py: seeded, disjoint, the labelled cells nested in k."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.bench import bench_module


@pytest.fixture(scope="module")
def real_data():
    return bench_module("real_data")


def fake_cells(folder: Path) -> tuple[Path, np.ndarray, np.ndarray, np.ndarray]:
    """An ELPV-like label table over empty files: per type 600 good, 250 defective, 56
    likely and 20 of probability 1/3."""
    paths, probs, types = [], [], []
    for family in ("mono", "poly"):
        for prob, count in ((0.0, 600), (1.0, 250), (2 / 3, 56), (1 / 3, 20)):
            for _ in range(count):
                name = f"images/cell{len(paths):04d}.png"
                paths.append(name)
                probs.append(prob)
                types.append(family)
    (folder / "images").mkdir(parents=True)
    for name in paths:
        (folder / name).touch()
    return folder, np.array(paths), np.array(probs), np.array(types)


def files(root: Path) -> dict[str, set[str]]:
    return {
        str(d.relative_to(root)): {f.name for f in d.iterdir()}
        for d in sorted(root.glob("*/*"))
        if d.is_dir()
    }


def test_split_counts_disjoint_and_of_one_family(real_data, tmp_path: Path) -> None:
    cells = fake_cells(tmp_path / "elpv")
    parts = files(real_data.build_split("mono", 0, 30, tmp_path / "work", cells))
    sizes = {part: len(names) for part, names in parts.items()}
    assert sizes == {
        "calibration/good": 250, "test/defective": 150, "test/good": 100,
        "test/likely": 56, "train/defective": 30, "train/good": 200,
    }  # fmt: skip
    everything = [name for names in parts.values() for name in names]
    assert len(everything) == len(set(everything))  # no cell in two parts
    family = dict(zip((Path(p).name for p in cells[1]), cells[3], strict=True))
    assert {family[name] for name in everything} == {"mono"}


def test_seeds_draw_other_splits_and_k_adds_cells_outside_the_test(
    real_data, tmp_path: Path
) -> None:
    cells = fake_cells(tmp_path / "elpv")
    work = tmp_path / "work"
    seed0 = files(real_data.build_split("poly", 0, 10, work, cells))
    again = files(real_data.build_split("poly", 0, 100, work, cells))
    seed1 = files(real_data.build_split("poly", 1, 10, work, cells))
    assert seed0["test/defective"] == again["test/defective"]
    assert seed0["train/good"] == again["train/good"]
    assert seed0["train/defective"] < again["train/defective"]  # the same first k
    assert not again["train/defective"] & again["test/defective"]
    assert seed0["train/good"] != seed1["train/good"]


def test_too_few_cells_refused(real_data, tmp_path: Path) -> None:
    cells = fake_cells(tmp_path / "elpv")
    with pytest.raises(SystemExit, match="too few"):
        real_data.build_split("mono", 0, 101, tmp_path / "work", cells)


def test_the_keep_rules_cross_fit_is_reported_where_a_head_was_judged(real_data) -> None:
    evidence = {"defects": 92.0, "patchcore_missed": 46.0, "mixed_missed": 45.0,
                "patchcore_auroc": 0.8938, "mixed_auroc": 0.9147}  # fmt: skip
    assert real_data._cross_fit({"kept": False, "evidence": evidence}) == (
        "46 -> 45 of 92, 0.894 -> 0.915"
    )
    assert real_data._cross_fit({"kept": False, "evidence": {}}) == "-"  # none taught
    assert real_data._cross_fit(None) == "-"  # k = 0: no head


def test_the_good_tail_is_read_from_the_calibration_and_validation_good_scores(real_data) -> None:
    metrics = {"calibration": {"operating": {"threshold": 34.21}}}
    calibration = {f"calibration/good/cell{i:04d}.png": float(i) for i in range(1, 11)}
    validation = {"test/good/cell0100.png": 100.0, "test/defective/cell0200.png": 500.0}
    tail = real_data.good_tail(metrics, {"calibration": calibration, "validation": validation}, 3)
    assert tail["top_good"] == [["cell0010", 10.0], ["cell0009", 9.0], ["cell0008", 8.0]]
    assert tail["threshold"] == 34.21
    assert tail["n_good_certifying"] == 11  # the defective validation cell is not good
    assert tail["good_median"] == 6.0
    assert real_data.good_tail({}, {"calibration": calibration}) == {}  # no threshold recorded


def test_train_good_moves_only_good_non_test_cells(real_data, tmp_path: Path) -> None:
    cells = fake_cells(tmp_path / "elpv")
    work = tmp_path / "work"
    splits = {
        n: files(real_data.build_split("mono", 1, 0, work, cells, n)) for n in (100, 200, 350)
    }
    for parts in splits.values():
        everything = [name for names in parts.values() for name in names]
        assert len(everything) == len(set(everything))  # no cell in two parts
    tests = [
        {p: names for p, names in parts.items() if p.startswith("test/")}
        for parts in splits.values()
    ]
    assert tests[0] == tests[1] == tests[2]  # the held-out split, cell for cell
    train = {n: parts["train/good"] for n, parts in splits.items()}
    calibration = {n: parts["calibration/good"] for n, parts in splits.items()}
    assert [len(train[n]) for n in train] == [100, 200, 350]
    assert train[100] < train[200] < train[350]
    assert calibration[100] == calibration[200]
    assert train[350] - train[200] == calibration[200] - calibration[350]  # 150 moved
    shared = real_data.shared_calibration("mono", 1, cells)
    assert len(shared) == 100 and shared == calibration[350]  # calibrate at every N


def test_train_good_beyond_the_shared_calibration_cells_refused(real_data, tmp_path: Path) -> None:
    cells = fake_cells(tmp_path / "elpv")
    with pytest.raises(SystemExit, match="--train-good 351"):
        real_data.build_split("mono", 0, 0, tmp_path / "work", cells, 351)


def test_the_shared_tail_reads_only_the_shared_calibration_cells(real_data) -> None:
    calibration = {f"calibration/good/cell{i:04d}.png": float(i) for i in range(1, 11)}
    shared = {f"cell{i:04d}.png" for i in (2, 4, 6, 8)}  # scores 2, 4, 6, 8
    tail = real_data.shared_tail({"calibration": calibration}, shared)
    assert tail == {"n": 4, "second": 6.0, "median": 5.0, "ratio": 1.2}
    assert real_data.shared_tail({"calibration": calibration}, {"cell0099.png"}) == {}

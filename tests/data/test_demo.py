"""The demo generator: byte-identical per seed, exact masks, valid MVTec layout, subtle defects."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inspection.core.errors import DatasetError
from inspection.data import demo, demo_weave
from inspection.data.dataset import load_mvtec

SMALL = {"n_train": 3, "n_test_good": 2, "n_test_per_defect": 1, "size": 64}


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.png"))}


def test_same_seed_writes_byte_identical_files(tmp_path: Path) -> None:
    first = demo.write_demo_product(tmp_path / "a", "gravel", seed=3, **SMALL)
    second = demo.write_demo_product(tmp_path / "b", "gravel", seed=3, **SMALL)
    files = _tree(first)
    assert len(files) == 3 + 2 + 2 * len(demo.DEFECT_KINDS)
    assert files == _tree(second)


def test_two_images_are_drawn_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first two stains meet at a barrier: one thread alone would wait there in vain."""
    meet = threading.Barrier(demo.WRITE_WORKERS, timeout=20)
    stain, calls = demo.DEFECTS["stain"], []

    def stain_together(image: np.ndarray, rng: np.random.Generator) -> tuple:
        calls.append(threading.get_ident())
        if len(calls) <= demo.WRITE_WORKERS:
            meet.wait()
        return stain(image, rng)

    monkeypatch.setitem(demo.DEFECTS, "stain", stain_together)
    demo.write_demo_product(tmp_path, "brick", seed=1, **{**SMALL, "n_test_per_defect": 2})
    assert len(set(calls)) == demo.WRITE_WORKERS == 2


def test_threads_write_the_bytes_one_writes(tmp_path: Path) -> None:
    params = {"seed": 2, "n_train": 3, "n_test_good": 2, "n_test_per_defect": 2}
    render = demo._renderer("grass", 64)
    for folder, workers in (("one", 1), ("two", demo.WRITE_WORKERS)):
        demo.write_samples(tmp_path / folder, params, demo.DEFECT_KINDS, render, stream=1,
                           workers=workers)  # fmt: skip
    assert _tree(tmp_path / "one") == _tree(tmp_path / "two")
    assert len(_tree(tmp_path / "one")) == 3 + 2 + 2 * 2 * len(demo.DEFECT_KINDS)


def test_other_seed_changes_every_image(tmp_path: Path) -> None:
    first = _tree(demo.write_demo_product(tmp_path / "a", "grass", seed=3, **SMALL))
    other = _tree(demo.write_demo_product(tmp_path / "b", "grass", seed=4, **SMALL))
    assert first.keys() == other.keys()
    assert all(first[name] != other[name] for name in first if "ground_truth" not in name)


def test_layout_is_mvtec(tiny_product: Path) -> None:
    assert sorted(p.name for p in (tiny_product / "test").iterdir()) == [
        "crack",
        "good",
        "hole",
        "scratch",
        "stain",
    ]
    assert sorted(p.name for p in (tiny_product / "ground_truth").iterdir()) == sorted(
        demo.DEFECT_KINDS
    )
    assert len(list((tiny_product / "train" / "good").glob("*.png"))) == 24
    assert (tiny_product / "ground_truth" / "crack" / "002_mask.png").is_file()
    image = Image.open(tiny_product / "test" / "hole" / "000.png")
    assert (image.mode, image.size) == ("RGB", (128, 128))


@pytest.mark.parametrize("kind", demo.DEFECT_KINDS)
@pytest.mark.parametrize("product", sorted(demo.PRODUCTS))
def test_mask_is_exactly_the_altered_area(product: str, kind: str) -> None:
    spec = demo.PRODUCTS[product]
    texture = demo.load_texture(spec)
    for index in range(3):
        seed = (11, index, demo.DEFECT_KINDS.index(kind))
        defective, mask = demo.render_sample(texture, spec, 128, seed, kind)
        clean, no_mask = demo.render_sample(texture, spec, 128, seed, None)
        assert no_mask is None
        assert mask.dtype == np.uint8
        assert set(np.unique(mask).tolist()) == {0, 255}
        inside = mask > 0
        changed = np.any(defective != clean, axis=2)
        assert not np.any(changed & ~inside), "pixels changed outside the mask"
        # rounding to uint8 may hide the faintest edge pixels, nothing more
        assert changed[inside].mean() > 0.85
        assert 0.001 < inside.mean() < 0.08


def test_masks_on_disk_match_defects(tiny_product: Path) -> None:
    dataset = load_mvtec(tiny_product)
    for sample in dataset.test_samples:
        if sample.label == 1:
            mask = np.asarray(Image.open(sample.mask_path))
            assert mask.shape == (128, 128)
            assert set(np.unique(mask).tolist()) == {0, 255}
    assert not (tiny_product / "ground_truth" / "good").exists()


def test_defects_are_not_given_away_by_mean_brightness(tiny_product: Path) -> None:
    """AUROC of mean brightness as a detector stays near chance (defects are local)."""
    dataset = load_mvtec(tiny_product)
    scores = {0: [], 1: []}
    for sample in dataset.test_samples:
        scores[sample.label].append(float(np.asarray(Image.open(sample.path)).mean()))
    good, bad = np.array(scores[0]), np.array(scores[1])
    auroc = (bad[:, None] > good[None, :]).mean()
    assert 0.2 < auroc < 0.8, auroc


def test_only_kinds_writes_those_defects_as_a_full_write_does(tmp_path: Path) -> None:
    full = _tree(demo.write_demo_product(tmp_path / "full", "part", seed=7, **SMALL))
    chip = _tree(
        demo.write_demo_product(tmp_path / "chip", "part", seed=7, only_kinds=["chip"], **SMALL)
    )
    assert chip == {
        name: data for name, data in full.items() if "/chip/" in name or "good/" in name
    }
    assert any("/chip/" in name for name in chip)
    with pytest.raises(DatasetError, match=r"'part' has no defect kind dent; its kinds: burr"):
        demo.write_demo_product(tmp_path / "dent", "part", seed=7, only_kinds=["dent"], **SMALL)


def test_unknown_product_lists_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(
        DatasetError, match=r"unknown demo product 'tiles'; valid products: brick, grass, gravel"
    ):
        demo.write_demo_product(tmp_path, "tiles", seed=0, **SMALL)


def test_image_count_matches_files(tmp_path: Path) -> None:
    roots = demo.write_demo(
        tmp_path,
        ("brick",),
        seed=0,
        size=48,
        n_train=2,
        n_test_good=1,
        n_test_per_defect=1,
        n_labelled=1,
        n_calibration=1,
    )
    written = [*roots[0].glob("t*/*/*.png"), *roots[0].glob("calibration/*/*.png")]
    assert len(written) == demo.demo_image_count(["brick"], 2, 1, 1, 1, 1) == 12


def test_same_bytes_from_another_process(tmp_path: Path) -> None:
    here = demo.write_demo_product(tmp_path / "a", "brick", seed=5, **SMALL)
    code = (
        "import sys; from inspection.data.demo import write_demo_product; "
        "write_demo_product(sys.argv[1], 'brick', seed=5, n_train=3, n_test_good=2, "
        "n_test_per_defect=1, size=64)"
    )
    repo = str(Path(__file__).resolve().parents[2])
    subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "b")], cwd=repo, check=True, timeout=120
    )
    assert _tree(here) == _tree(tmp_path / "b" / "brick")


def test_rewrite_replaces_previous_demo_but_not_foreign_folders(tmp_path: Path) -> None:
    demo.write_demo_product(tmp_path, "brick", seed=0, **{**SMALL, "n_train": 5})
    out = demo.write_demo_product(tmp_path, "brick", seed=0, **SMALL)
    assert len(list((out / "train" / "good").iterdir())) == 3  # stale images removed
    assert json.loads((out / demo.MARKER).read_text())["n_train"] == 3
    foreign = tmp_path / "grass"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(DatasetError, match="was not written by the demo generator"):
        demo.write_demo_product(tmp_path, "grass", seed=0, **SMALL)
    assert (foreign / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize(
    "added", ["train/good/extra.png", "test/good/010.png", "ground_truth/mine/000_mask.png"]
)
def test_rewrite_never_deletes_files_the_generator_did_not_write(
    tmp_path: Path, added: str
) -> None:
    out = demo.write_demo_product(tmp_path, "brick", seed=0, **SMALL)
    (out / added).parent.mkdir(parents=True, exist_ok=True)
    (out / added).write_bytes(b"mine")
    before = _tree(out)
    with pytest.raises(DatasetError, match=re.escape(f"did not write: {added}; move them out")):
        demo.write_demo_product(tmp_path, "brick", seed=1, **SMALL)
    assert _tree(out) == before  # nothing deleted, nothing rewritten
    assert json.loads((out / demo.MARKER).read_text())["seed"] == 0


def test_rewrite_names_the_first_foreign_files_and_their_count(tmp_path: Path) -> None:
    out = demo.write_demo_product(tmp_path, "brick", seed=0, **SMALL)
    for name in ("a", "b", "c", "d", "e"):
        (out / "test" / "good" / f"{name}.png").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"test/good/a\.png, .*c\.png and 2 more"):
        demo.write_demo_product(tmp_path, "brick", seed=0, **SMALL)


def test_an_unreadable_marker_vouches_for_no_file(tmp_path: Path) -> None:
    out = demo.write_demo_product(tmp_path, "brick", seed=0, **SMALL)
    (out / demo.MARKER).write_text("{not json")
    with pytest.raises(
        DatasetError, match=r"did not write: ground_truth/crack/000_mask\.png, .* and 10 more"
    ):
        demo.write_demo_product(tmp_path, "brick", seed=0, **SMALL)
    assert (out / "train" / "good" / "000.png").is_file()


def test_another_generators_product_is_cleared_by_its_recorded_counts(tmp_path: Path) -> None:
    out = tmp_path / "plate"
    params = {"product": "plate", "n_train": 1, "n_test_good": 0, "n_test_per_defect": 1}
    demo.prepare_folder(out, params)
    for name in ("train/good/000.png", "test/dent/000.png", "ground_truth/dent/000_mask.png"):
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(b"")
    (out / "reference.png").write_bytes(b"")
    demo.prepare_folder(out, params)
    assert sorted(p.name for p in out.iterdir()) == [demo.MARKER, "reference.png"]


def test_negative_seed_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="demo seed must be zero or positive, got -1"):
        demo.write_demo_product(tmp_path, "brick", seed=-1, **SMALL)


WEAVE = {"n_train": 2, "n_test_good": 1, "n_test_per_defect": 1, "size": 96}


def test_weave_has_global_defects_with_masks(tmp_path: Path) -> None:
    root = demo.write_demo_product(tmp_path / "a", "weave", seed=1, **WEAVE)
    dataset = load_mvtec(root)
    kinds = sorted({s.defect_type for s in dataset.test_samples if s.label})
    assert kinds == sorted(demo.defect_kinds("weave"))
    assert all(s.mask_path is not None for s in dataset.test_samples if s.label)
    for kind in ("density", "rotation", "tint"):  # global: every pixel altered
        mask = np.asarray(Image.open(root / "ground_truth" / kind / "000_mask.png"))
        assert mask.min() == 255, kind
    gap = np.asarray(Image.open(root / "ground_truth" / "missing_thread" / "000_mask.png")) > 0
    assert 0.02 < gap.mean() < 0.25  # one thread's width over the full height
    assert gap.any(axis=1).all()
    again = demo.write_demo_product(tmp_path / "b", "weave", seed=1, **WEAVE)
    assert _tree(root) == _tree(again)


def test_weave_defects_change_the_image_and_good_samples_vary(tmp_path: Path) -> None:
    """Same seed with and without a defect: the defect changes the image; goods differ."""
    size, seed = 96, (0, 3, 1, 0, 0)
    good, _, _ = demo_weave.render_weave_sample(size, seed, None)
    for kind in demo.defect_kinds("weave"):
        defective, _, _ = demo_weave.render_weave_sample(size, seed, kind)
        assert np.abs(defective - good).mean() > 1.0, kind
    other, _, _ = demo_weave.render_weave_sample(size, (0, 3, 1, 0, 1), None)
    assert np.abs(other - good).mean() > 1.0


def test_unknown_product_lists_weave() -> None:
    with pytest.raises(DatasetError, match="weave"):
        demo.defect_kinds("carpet")


def test_tissue_eval_product_has_its_own_defects_and_exact_masks(tmp_path: Path) -> None:
    root = demo.write_demo_product(tmp_path / "a", "tissue", seed=2, **SMALL)
    kinds = sorted(p.name for p in (root / "ground_truth").iterdir())
    assert kinds == sorted(demo.defect_kinds("tissue")) == ["colour_shift", "cut", "smudge", "warp"]
    assert _tree(root) == _tree(demo.write_demo_product(tmp_path / "b", "tissue", seed=2, **SMALL))
    spec = demo.EVAL_PRODUCTS["tissue"]
    texture = demo.load_texture(spec)
    render = demo._renderer("tissue", 64)
    for kind in kinds:
        seed = (2, demo.ALL_PRODUCTS.index("tissue"), 1, 1, 0)
        clean, _ = demo.render_sample(texture, spec, 64, seed, None)
        image, mask = render(seed, kind)
        changed = np.abs(image.astype(int) - clean.astype(int)).max(axis=2) > 0
        assert mask is not None and mask.any(), kind
        assert not changed[mask == 0].any(), f"{kind}: pixels altered outside the mask"


def test_demo_products_hold_36_held_out_per_kind_and_a_line_of_good_parts() -> None:
    from inspection.data.demo import demo_image_count, demo_test_counts

    assert demo_test_counts("tissue") == (10, 6) and demo_test_counts("weave") == (60, 52)
    assert demo_test_counts("brick") == demo_test_counts("grass") == (60, 52)
    assert demo_test_counts("gravel") == (60, 52)
    assert demo_test_counts("weave", 2, None) == (2, 52)
    # grass gets 20 labelled defects per type, brick and weave none; brick, grass and gravel
    # 200 good calibration images, weave none
    assert demo_image_count(["brick", "weave"], n_train=1) == (1 + 60 + 52 * 4 + 200) + (
        1 + 60 + 52 * 4
    )
    assert demo_image_count(["grass"], n_train=1) == 1 + 60 + (52 + 20) * 4 + 200


def test_calibration_images_are_a_stream_of_their_own_after_the_existing_files(
    tmp_path: Path,
) -> None:
    """Good calibration images land in calibration/good; every other file is byte-identical
    to a run without them, a larger test split only adds files, and no calibration image
    equals a training or test image."""
    plain = _tree(demo.write_demo_product(tmp_path / "a", "brick", seed=3, **SMALL))
    larger = {**SMALL, "n_test_good": 3, "n_test_per_defect": 2}
    out = demo.write_demo_product(tmp_path / "b", "brick", seed=3, n_calibration=4, **larger)
    files = _tree(out)
    assert {name: files[name] for name in plain} == plain
    added = set(files) - set(plain)
    calibration = {f"calibration/good/{i:03d}.png" for i in range(4)}
    assert calibration <= added and len(added - calibration) == 1 + 2 * 4  # good + defects+masks
    assert not {files[n] for n in calibration} & {files[n] for n in files if n not in calibration}
    dataset = load_mvtec(out)
    assert len(dataset.calibration_samples) == 4
    assert len(dataset.train_samples) == SMALL["n_train"]
    demo.write_demo_product(tmp_path / "b", "brick", seed=3, **SMALL)  # replaces its own files
    assert _tree(out) == plain


def test_labelled_defects_are_a_stream_of_their_own(tmp_path: Path) -> None:
    """Labelled training defects land in train/<defect> with masks in ground_truth/train, the
    other files are byte-identical to a run without them, and none equals a test image."""
    plain = _tree(demo.write_demo_product(tmp_path / "a", "grass", seed=3, **SMALL))
    out = demo.write_demo_product(tmp_path / "b", "grass", seed=3, n_labelled=2, **SMALL)
    files = _tree(out)
    assert {name: files[name] for name in plain} == plain
    added = sorted(set(files) - set(plain))
    assert len(added) == 2 * 2 * len(demo.DEFECT_KINDS)
    assert "train/crack/001.png" in added and "ground_truth/train/crack/001_mask.png" in added
    tests = {files[n] for n in plain if n.startswith("test/")}
    assert not tests & {files[n] for n in added}
    dataset = load_mvtec(out)
    assert len(dataset.labelled_samples) == 2 * len(demo.DEFECT_KINDS)
    assert len(dataset.train_samples) == SMALL["n_train"]
    # a second run replaces its own files, labelled ones included
    demo.write_demo_product(tmp_path / "b", "grass", seed=3, **SMALL)
    assert _tree(out) == plain


def test_unlike_labelled_defects_are_larger_and_fainter() -> None:
    """``unlike``: the same defect drawn larger about its centre, at a lower blend weight."""
    seed, size = (3, 1, 2, 4, 0), 128
    _, mask = demo._renderer("gravel", size)(seed, "stain")
    clean, _ = demo._renderer("gravel", size)(seed, None)
    image, grown = demo._renderer("gravel", size, unlike=True)(seed, "stain")
    assert mask is not None and grown is not None
    assert grown.astype(bool).sum() > 1.5 * mask.astype(bool).sum()
    changed = np.abs(image.astype(int) - clean.astype(int)).max(-1)
    assert not changed[grown == 0].any()
    with pytest.raises(DatasetError, match="texture products only"):
        demo._renderer("weave", size, unlike=True)


@pytest.mark.parametrize("kind", demo.ALIGNED_PRODUCTS["part"])
def test_part_defects_alter_only_their_mask_and_the_pose_stays_nominal(kind: str) -> None:
    render = demo._renderer("part", 128)
    for index in range(3):
        seed = (5, demo.ALL_PRODUCTS.index("part"), 1, 1, index)
        clean, no_mask = render(seed, None)
        image, mask = render(seed, kind)
        assert no_mask is None and mask is not None and mask.dtype == np.uint8
        inside = mask > 0
        changed = np.abs(image.astype(int) - clean.astype(int)).max(axis=2) > 0
        assert inside.any() and not changed[~inside].any(), f"{kind}: altered outside its mask"
        assert changed[inside].mean() > 0.8
        assert inside.mean() < 0.01  # small, local defects
    # good parts differ (pose, turning marks, light) but stay within a few pixels of nominal
    a, _ = render((5, 0, 0, 0, 0), None)
    b, _ = render((5, 0, 0, 0, 1), None)
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 1.0
    silhouette = [(x.mean(axis=2) > 100).astype(float) for x in (a, b)]
    assert np.abs(silhouette[0] - silhouette[1]).mean() < 0.08


def test_part_is_byte_identical_per_seed(tmp_path: Path) -> None:
    one = demo.write_demo_product(tmp_path / "a", "part", seed=3, **SMALL)
    two = demo.write_demo_product(tmp_path / "b", "part", seed=3, **SMALL)
    assert _tree(one) == _tree(two)
    assert sorted(p.name for p in (one / "ground_truth").iterdir()) == sorted(
        demo.defect_kinds("part")
    )

"""Incremental PatchCore update: a new immutable version with lineage; the parent untouched."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from inspection.cli import app
from inspection.core.errors import ConfigError, DatasetError
from inspection.core.fingerprint import relative_name, sha256_file
from inspection.core.model_record import ADDED_DIR, RECORD_FILE, ModelRecord
from inspection.core.registry import Registry
from inspection.data import leaks
from inspection.data.dataset import load_dataset
from inspection.data.leaks import PRINTS_FILE, TrainPrints
from inspection.training import incremental
from inspection.training.incremental import _check_parent, extend_bank
from inspection.training.train import load_trained_model
from tests.training.models.patchcore.test_coreset import coverage_radius

pytestmark = pytest.mark.slow


@pytest.fixture
def registry(trained_patchcore, tmp_path: Path) -> Registry:
    """A private copy of the shared trained registry (this test adds versions)."""
    shutil.copytree(trained_patchcore.registry.root, tmp_path / "registry", ignore=_bundles)
    return Registry(tmp_path / "registry")


@pytest.fixture(scope="module")
def new_good(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    from inspection.data.demo import write_demo_product

    root = write_demo_product(
        tmp_path_factory.mktemp("line"), "brick", seed=31, n_train=4,
        n_test_good=1, n_test_per_defect=1, size=128,
    )  # fmt: skip
    return sorted((root / "train" / "good").glob("*.png"))


def test_update_registers_a_child_version_and_leaves_the_parent(
    registry: Registry, trained_patchcore, new_good: list[Path], tmp_path: Path
) -> None:
    parent = registry.bundles.version("brick", trained_patchcore.record.version)
    parent_files = {name: sha256_file(parent.path / name) for name in parent.files}
    parent_bank = load_trained_model(parent).model.memory_bank.clone()

    site = tmp_path / "site.yaml"
    site.write_text(f"registry_dir: {registry.root}\nreports_dir: {tmp_path / 'reports'}\n")
    args = ["train", "--update", "brick", "--images", str(new_good[0].parent), "--site", str(site)]
    args += ["--data", str(trained_patchcore.dataset_root)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output

    record = registry.bundles.version("brick")
    lineage = record.lineage()
    assert f"registered {record.model_version} from {parent.version}" in result.output
    assert (tmp_path / "reports" / "brick" / f"{record.version}-patchcore/metrics.json").is_file()
    assert record.version != parent.version and lineage is not None
    assert lineage.parent == parent.version and lineage.method == "incremental"
    assert lineage.added_digests == tuple(sha256_file(p) for p in new_good)
    kept = sorted(sha256_file(p) for p in (record.path / ADDED_DIR).iterdir())
    assert kept == sorted(lineage.added_digests)  # a later retrain trains on them too
    assert lineage.bank_rows_before == parent_bank.shape[0]
    assert lineage.added_patches > 0 and lineage.bank_rows_after == (
        lineage.bank_rows_before + lineage.added_patches
    )
    assert record.extra["train_images"] == parent.extra["train_images"] + len(new_good)
    assert record.splits() == parent.splits() and record.config == parent.config
    child_bank = load_trained_model(record).model.memory_bank
    assert torch.equal(child_bank[: parent_bank.shape[0]], parent_bank)  # old rows kept as-is
    assert child_bank.shape[0] == lineage.bank_rows_after
    assert 0.0 <= record.metrics["overall"]["image_auroc"] <= 1.0
    norm = record.normalization()
    assert norm.image_min <= norm.image_threshold_raw <= norm.image_max

    unchanged = registry.bundles.version("brick", parent.version)
    assert unchanged == parent and "lineage" not in unchanged.extra
    assert {name: sha256_file(parent.path / name) for name in parent.files} == parent_files

    again = CliRunner().invoke(app, args)  # the same images once more
    assert isinstance(again.exception, DatasetError)  # `main` prints it as one error line
    assert f"is already in the bank (added in {record.version})" in str(again.exception)


def test_update_keeps_the_pooled_operating_point(
    registry: Registry, trained_patchcore, new_good: list[Path]
) -> None:
    """An update recalibrated on its 2 good validation images alone: its threshold sat just
    above them and brick's v0002 rejected 4 of 7 held-out good parts. It now sets the threshold
    as a full training does: the out-of-fold scores (the parent's, and the new images' as the
    parent scores them, never having seen them) pooled with the validation ones."""
    from inspection.core.operating_point import OUT_OF_FOLD, allowed_rejects
    from inspection.training.incremental import update_bank

    parent = registry.bundles.version("brick", trained_patchcore.record.version)
    outcome = update_bank(registry, "brick", new_good)

    before, after = parent.calibration().operating, outcome.record.calibration().operating
    assert before is not None and after is not None
    assert after.good_sources[OUT_OF_FOLD] == before.good_sources[OUT_OF_FOLD] + len(new_good)
    assert (after.policy, after.budget) == (before.policy, before.budget)
    good = outcome.predictions.scores[outcome.predictions.labels == 0]
    rejected = int((good >= after.threshold).sum())
    assert rejected <= allowed_rejects(good.size, after.budget), (rejected, good.size)
    recorded = outcome.record.good_scores()
    assert len(recorded.out_of_fold) == len(parent.good_scores().out_of_fold) + len(new_good)
    assert recorded.train_full_bank.keys() == parent.good_scores().train_full_bank.keys()
    assert recorded.train_full_bank != parent.good_scores().train_full_bank  # the child's own


@pytest.mark.parametrize(
    ("split", "suffix"),
    [("test", ".png"), ("validation", ".png"), ("test", ".jpg"), ("train", ".png")],
)
def test_update_refuses_held_out_and_banked_images(
    registry: Registry, trained_patchcore, tmp_path: Path, split: str, suffix: str
) -> None:
    """``train --update`` took test/good images into the bank, then reported test AUROC 1.0 on
    images it was trained on; a held-out image (even re-saved as JPEG) or a banked one now
    refuses the update."""
    from inspection.training.incremental import update_bank

    parent = registry.bundles.version("brick", trained_patchcore.record.version)
    root = trained_patchcore.dataset_root
    names = getattr(parent.splits(), split, None) or ["train/good/000.png"]
    copy = tmp_path / "new" / f"000{suffix}"  # renamed, moved, maybe re-encoded: found by pixels
    copy.parent.mkdir()
    Image.open(root / names[0]).save(copy)

    with pytest.raises(DatasetError) as refused:
        update_bank(registry, "brick", [copy], dataset=None)

    if split == "train":
        expected = f"1 of the new images are not new to {parent.model_version}: {copy} is "
        assert expected + f"already in the bank ({names[0]})" in str(refused.value)
    else:
        expected = f"copy held-out test images (same decoded pixels): {copy} is held-out "
        assert expected + str(root / names[0]) in str(refused.value)
    assert registry.bundles.version("brick").version == parent.version


@pytest.fixture
def printed(monkeypatch: pytest.MonkeyPatch) -> Counter[Path]:
    """How often the leak check decoded and printed each file (``leaks.prints_of``)."""
    counts: Counter[Path] = Counter()
    prints_of = leaks.prints_of

    def counted(paths, *args, **kwargs):
        counts.update(Path(p) for p in paths)
        return prints_of(paths, *args, **kwargs)

    monkeypatch.setattr(leaks, "prints_of", counted)
    monkeypatch.setattr(incremental, "prints_of", counted)
    return counts


def test_update_prints_each_new_image_once_and_reads_the_training_prints(
    registry: Registry, trained_patchcore, new_good: list[Path], printed: Counter[Path]
) -> None:
    """An update printed each new image twice (the held-out check, then the bank check) and
    decoded every training image of the parent again: training records their prints, the
    update reads them and its child keeps them."""
    parent = registry.bundles.version("brick", trained_patchcore.record.version)
    dataset = load_dataset(trained_patchcore.dataset_root)
    train = {relative_name(s.path, dataset.root): s.path for s in dataset.train_samples}
    recorded = TrainPrints.load(parent.file(PRINTS_FILE)).by_name()
    decoded = leaks.prints_of(list(train.values()))
    assert recorded.keys() == train.keys()
    assert all(np.array_equal(recorded[name], decoded[path]) for name, path in train.items())
    printed.clear()

    child = incremental.update_bank(registry, "brick", new_good).record

    assert [printed[path] for path in new_good] == [1] * len(new_good)
    assert not printed.keys() & set(train.values())
    assert max(printed.values()) == 1  # the held-out images once each too
    assert child.files[PRINTS_FILE] == parent.files[PRINTS_FILE]


@pytest.mark.parametrize("recorded", [True, False], ids=["prints", "recorded before prints"])
def test_a_re_saved_training_image_is_refused_with_or_without_recorded_prints(
    registry: Registry, trained_patchcore, tmp_path: Path, printed: Counter[Path], recorded: bool
) -> None:
    """A version recorded before training kept prints has its training images decoded again."""
    if not recorded:
        _recorded_before_prints(registry.bundles.version("brick", trained_patchcore.record.version))
    root = trained_patchcore.dataset_root
    copy = tmp_path / "new" / "000.jpg"
    copy.parent.mkdir()
    Image.open(root / "train/good/000.png").save(copy)

    with pytest.raises(DatasetError, match=r"already in the bank \(train/good/000.png\)"):
        incremental.update_bank(registry, "brick", [copy])

    train = [s.path for s in load_dataset(root).train_samples]
    assert [printed[path] for path in train] == [0 if recorded else 1] * len(train)


def _recorded_before_prints(record: ModelRecord) -> None:
    """Make ``record`` a version trained before training recorded its prints."""
    (record.path / PRINTS_FILE).unlink()
    data = json.loads((record.path / RECORD_FILE).read_text(encoding="utf-8"))
    del data["files"][PRINTS_FILE]
    (record.path / RECORD_FILE).write_text(json.dumps(data), encoding="utf-8")


def test_extend_bank_adds_uncovered_picks_and_respects_the_cap() -> None:
    torch.manual_seed(0)
    # 200 new rows in 20 tight, well-separated blobs far from the bank: 20 greedy picks must
    # take one row per blob (radius ~ blob size), which 20 random rows almost never do
    blobs = torch.randn(20, 16) * 20.0 + 100.0
    bank, far = torch.randn(50, 16), blobs.repeat_interleave(10, 0) + 0.1 * torch.randn(200, 16)
    grown = extend_bank(bank, far, ratio=0.1, cap_rows=None)
    assert grown.shape == (70, 16) and torch.equal(grown[:50], bank)
    assert coverage_radius(far, grown) < 2.0
    assert coverage_radius(far, torch.cat([bank, far[::10][:19], far[:1]])) > 10.0

    capped = extend_bank(bank, far, ratio=0.1, cap_rows=60)
    assert capped.shape == (60, 16)
    with pytest.raises(ValueError, match="must share d"):
        extend_bank(bank, torch.randn(10, 8), ratio=0.1, cap_rows=None)


def test_only_patchcore_without_global_context_is_updated(trained_patchcore) -> None:
    stfpm = dataclasses.replace(trained_patchcore.record, model_kind="stfpm")
    with pytest.raises(ConfigError, match="only PatchCore memory banks"):
        _check_parent(stfpm)


def _bundles(directory: str, names: list[str]) -> list[str]:
    return ["bundles", "live.json"] if Path(directory).name == "brick" else []

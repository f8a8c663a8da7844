"""The images an export calibrates and measures on are the ones its version recorded."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inspection.core.errors import BundleError
from inspection.data.dataset import load_dataset
from inspection.training.registry_export import split_samples
from tests.conftest import TrainedProduct


def _copy(trained: TrainedProduct, tmp_path: Path) -> Path:
    root = tmp_path / "moved" / "brick"
    shutil.copytree(trained.dataset_root, root)
    return root


def test_a_moved_dataset_with_the_same_content_is_accepted(
    trained_patchcore: TrainedProduct, tmp_path: Path
) -> None:
    root = _copy(trained_patchcore, tmp_path)
    recorded = trained_patchcore.record.splits().validation
    samples = split_samples(trained_patchcore.record, load_dataset(root), "validation")
    assert len(samples) == len(recorded) > 0


def test_changed_images_under_recorded_names_are_refused(
    trained_patchcore: TrainedProduct, tmp_path: Path
) -> None:
    """Same names, other content (a re-shot or edited folder): the bundle would get
    thresholds fitted on images its version never measured."""
    root = _copy(trained_patchcore, tmp_path)
    name = trained_patchcore.record.splits().validation[0]
    image = np.asarray(Image.open(root / name).convert("RGB"))
    Image.fromarray(255 - image).save(root / name)
    with pytest.raises(BundleError, match=rf"1 validation file\(s\) .* differ .*{name}"):
        split_samples(trained_patchcore.record, load_dataset(root), "validation")


def test_recorded_images_that_are_gone_are_refused(
    trained_patchcore: TrainedProduct, tmp_path: Path
) -> None:
    root = _copy(trained_patchcore, tmp_path)
    name = trained_patchcore.record.splits().test[-1]
    (root / name).unlink()
    with pytest.raises(BundleError, match=rf"missing or differ .*{name}"):
        split_samples(trained_patchcore.record, load_dataset(root), "test")


def test_a_moved_training_folder_is_named_with_the_way_to_point_at_it(
    trained_patchcore: TrainedProduct, tmp_path: Path
) -> None:
    from inspection.training.registry_export import _export_dataset

    gone = {**trained_patchcore.record.dataset, "root": str(tmp_path / "gone")}
    record = dataclasses.replace(trained_patchcore.record, dataset=gone)
    with pytest.raises(BundleError, match="no longer there: pass --dataset"):
        _export_dataset(record, None)
    assert (
        _export_dataset(record, trained_patchcore.dataset_root).root
        == load_dataset(trained_patchcore.dataset_root).root
    )

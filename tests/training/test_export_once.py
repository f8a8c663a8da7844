"""Export does each costly thing once (#94): a version is converted once for all its
precisions, a bundle under export is compiled once, and each image is scored once by it."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest

from inspection.core.bundle import read_bundle_metadata, write_bundle_metadata
from inspection.core.errors import BundleError
from inspection.core.images import read_image
from inspection.core.registry import Registry
from inspection.core.roi import RoiSpec
from inspection.runtime.inspector import Inspector
from inspection.runtime.model import BundleModel
from inspection.runtime.preprocess import model_batch
from inspection.runtime.recalibration import file_input
from inspection.training import bundle_runs
from inspection.training.bundle_runs import BundleRuns, SplitInputs, run_bundle
from inspection.training.export import LabelledSample
from tests.conftest import TrainedProduct
from tests.readers import two_at_once


def _samples(trained: TrainedProduct) -> list[LabelledSample]:
    from inspection.data.dataset import load_dataset
    from inspection.training.registry_export import split_samples

    return split_samples(trained.record, load_dataset(trained.dataset_root), "validation")


def _counting(model: BundleModel) -> list[int]:
    """The batch sizes ``model.run`` and ``model.run_each`` are called with from now on (the
    real runs, counted)."""
    sizes: list[int] = []

    def counting(run):
        def counted(batch: np.ndarray):
            sizes.append(len(batch))
            return run(batch)

        return counted

    model.run = counting(model.run)  # type: ignore[method-assign]
    model.run_each = counting(model.run_each)  # type: ignore[method-assign]
    return sizes


def test_a_bundle_under_export_scores_each_image_once(
    fp32_bundle: Path, trained_patchcore: TrainedProduct
) -> None:
    samples = _samples(trained_patchcore)
    runs = BundleRuns(BundleModel.load(fp32_bundle))
    sizes = _counting(runs.model)

    first = runs.outputs(samples)
    again = runs.outputs([*reversed(samples), samples[0]])

    assert sum(sizes) == len(samples), sizes  # the second call ran nothing
    fresh = run_bundle(fp32_bundle, samples)
    np.testing.assert_array_equal(first.scores, fresh.scores)
    np.testing.assert_array_equal(first.maps, fresh.maps)
    np.testing.assert_array_equal(again.scores, [*first.scores[::-1], first.scores[0]])
    assert list(again.labels) == [s.label for s in [*reversed(samples), samples[0]]]


def test_images_scored_in_flight_get_the_outputs_of_their_own_runs(
    fp32_bundle: Path, trained_patchcore: TrainedProduct
) -> None:
    samples = _samples(trained_patchcore)
    model = BundleModel.load(fp32_bundle)  # f32 pinned: the bundle's inference precision
    prep = model.metadata.preprocessing
    reading = {"bits": prep.source_bits, "value_range": prep.source_range}
    batch = model_batch([model.align(read_image(s.path, **reading))[0] for s in samples], prep)

    each = model.run_each(batch)
    alone = [model.run(batch[i : i + 1]) for i in range(len(batch))]
    scored = run_bundle(fp32_bundle, samples)  # export's scoring: decoded, run, ROI, fused
    inspector = Inspector(model)
    station = [inspector.infer_raw(read_image(s.path, **reading)) for s in samples]

    assert len(set(each.scores.tolist())) > 1  # distinct images: an order mix-up would show
    np.testing.assert_array_equal(each.scores, np.concatenate([a.scores for a in alone]))
    np.testing.assert_array_equal(each.maps, np.concatenate([a.maps for a in alone]))
    np.testing.assert_array_equal(scored.scores, [raw.score for raw in station])
    np.testing.assert_array_equal(scored.maps, np.stack([raw.anomaly_map for raw in station]))


def test_the_refiner_choice_judges_the_outputs_a_bundle_already_has(
    fp32_bundle: Path, trained_patchcore: TrainedProduct
) -> None:
    samples = _samples(trained_patchcore)
    runs = BundleRuns(BundleModel.load(fp32_bundle))
    runs.outputs(samples)
    sizes = _counting(runs.model)
    station = Inspector(BundleModel.load(fp32_bundle))
    prep = station.metadata.preprocessing
    reading = {"bits": prep.source_bits, "value_range": prep.source_range}

    for sample in samples:
        image = read_image(sample.path, **reading)
        judged, expected = runs.inspect(image), station.inspect(image)
        assert (judged.score, judged.verdict) == (expected.score, expected.verdict)
        np.testing.assert_array_equal(judged.anomaly_map, expected.anomaly_map)
        np.testing.assert_array_equal(judged.mask, expected.mask)

    assert sizes == []  # every image judged from the outputs the calibration ran
    runs.inspect(np.ascontiguousarray(read_image(samples[0].path, **reading)[::-1]))
    assert sizes == [1]  # an image it has not run is run


def test_the_bundles_of_a_version_decode_each_image_once(
    fp32_bundle: Path,
    fp16_bundle: Path,
    trained_patchcore: TrainedProduct,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    samples = _samples(trained_patchcore)
    made: list[Path] = []

    def counted(model: BundleModel, path: Path) -> np.ndarray:
        made.append(path)
        return file_input(model, path)

    monkeypatch.setattr(bundle_runs, "file_input", counted)
    inputs = SplitInputs()
    fp32 = BundleRuns(BundleModel.load(fp32_bundle), inputs).outputs(samples)
    fp16 = BundleRuns(BundleModel.load(fp16_bundle), inputs).outputs(samples)

    assert sorted(made) == sorted(Path(s.path) for s in samples)  # once, for both bundles
    np.testing.assert_array_equal(fp32.scores, run_bundle(fp32_bundle, samples).scores)
    np.testing.assert_array_equal(fp16.scores, run_bundle(fp16_bundle, samples).scores)

    other = BundleModel.load(fp32_bundle)  # fed otherwise: its inputs are made again
    other.metadata = dataclasses.replace(
        other.metadata, roi=RoiSpec((8, 8), exclude=(((0, 0), (4, 0), (4, 4)),))
    )
    made.clear()
    BundleRuns(other, inputs).outputs(samples[:2])
    assert made == [Path(s.path) for s in samples[:2]]


def test_the_split_images_are_decoded_two_at_once_each_as_alone(
    fp32_bundle: Path, trained_patchcore: TrainedProduct, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = [Path(s.path) for s in _samples(trained_patchcore)]
    model = BundleModel.load(fp32_bundle)
    monkeypatch.setattr(bundle_runs, "READERS", 2)
    monkeypatch.setattr(bundle_runs, "file_input", two_at_once(bundle_runs.file_input))

    made = SplitInputs().of(model, [*paths, paths[0]])  # one at a time: BrokenBarrierError

    assert len(made) == len(paths) + 1 and made[-1] is made[0]
    for path, model_input in zip([*paths, paths[0]], made, strict=True):
        np.testing.assert_array_equal(model_input, file_input(model, path))


def test_reread_takes_the_rewritten_metadata_on_the_compiled_model(
    fp32_bundle: Path, tmp_path: Path
) -> None:
    bundle = Path(shutil.copytree(fp32_bundle, tmp_path / "bundle"))
    model = BundleModel.load(bundle)
    meta = read_bundle_metadata(bundle)
    write_bundle_metadata(bundle, dataclasses.replace(meta, image_threshold=0.25))

    reread = model.reread()

    assert reread.metadata.image_threshold == 0.25 != model.metadata.image_threshold
    assert reread.compiled is model.compiled  # nothing compiled again

    weights = bundle / meta.weights_file
    content = weights.read_bytes()
    weights.write_bytes(content[:-1] + bytes([content[-1] ^ 0xFF]))
    write_bundle_metadata(bundle, meta)  # checksums of the new weights: a consistent bundle
    with pytest.raises(BundleError, match=rf"{meta.weights_file} changed since it was compiled"):
        model.reread()


@pytest.mark.slow
def test_gated_exports_convert_the_version_once(
    trained_patchcore: TrainedProduct, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from inspection.training import export, registry_export
    from inspection.training.export import ExportOptions
    from inspection.training.registry_export import RegistryExport, export_gated

    root = Path(shutil.copytree(trained_patchcore.registry.root, tmp_path / "registry"))
    shutil.rmtree(root / "brick" / "bundles", ignore_errors=True)  # the session's exports
    conversions = []
    convert = export.convert_torch_model

    def counted(*args, **kwargs):
        conversions.append(args[1])
        return convert(*args, **kwargs)

    monkeypatch.setattr(export, "convert_torch_model", counted)
    loaded = []  # the dataset read, its split files hashed against the record: once too
    load_dataset = registry_export.load_dataset

    def counted_load(root):
        loaded.append(root)
        return load_dataset(root)

    monkeypatch.setattr(registry_export, "load_dataset", counted_load)
    version = RegistryExport(version=trained_patchcore.record.version)

    gated = export_gated(Registry(root), "brick", ("fp32", "fp16"), version, ExportOptions())

    assert [r.metadata.precision for r in gated.results] == ["fp32", "fp16"], gated.refused
    assert len(conversions) == 1, conversions
    assert len(loaded) == 1, loaded
    fp32, fp16 = gated.results
    assert fp16.metadata.input_domain == fp32.metadata.input_domain is not None

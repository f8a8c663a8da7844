"""End to end on the tiny product: train, register, reload, evaluate, report; seeded runs repeat."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from inspection.cli import app
from inspection.core.product_config import MODEL_KINDS, load_model_config
from inspection.core.registry import Registry
from inspection.data.dataset import load_dataset
from inspection.training.evaluate import predict, write_report
from inspection.training.models import KINDS, build_model
from inspection.training.models.common import ModelKind
from inspection.training.train import (
    CHECKPOINT_FILE,
    evaluation_splits,
    load_trained_model,
    train_model,
    train_prints,
)

pytestmark = pytest.mark.slow
TINY = ["image_size=[64, 64]", "max_epochs=1", "batch_size=8"]
EVALUATION_TOLERANCE = 1e-4
"""How far a re-evaluation may sit from training's figures on the same images. On AVX-512
CPUs oneDNN picks its convolution kernels by the batch's shape, so training's and evaluation's
passes over the same images differ in the last bits, and a few near-tied pixels swap ranks:
pixel AUROC 7.0e-7 apart on a Xeon with AVX-512 (identical on AVX2-only EPYCs). Reading the
12-bit images at 16 bits (the bug the image-bits test catches) moved pixel AUROC by 0.21, image
AUROC by 0.09 and the false-reject rate by 1.0: over 900x this tolerance."""


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_every_config_kind_is_registered() -> None:
    assert set(KINDS) == set(MODEL_KINDS) and all(KINDS[name].name == name for name in KINDS)


def test_a_kind_registered_once_is_asked_by_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """A toy kind (STFPM's builder) defined here: training builds it and asks it about tiles."""
    from inspection.core.errors import ConfigError
    from inspection.core.tiling import TilingSpec
    from inspection.training.backbones import resolve_weights
    from inspection.training.tiled import check_tiling

    toy = ModelKind("toy", KINDS["stfpm"].build, tiling_refusal="toy models see whole images")
    monkeypatch.setitem(MODEL_KINDS, "toy", {})
    monkeypatch.setitem(KINDS, "toy", toy)
    config = dataclasses.replace(load_model_config("stfpm", overrides=TINY), kind="toy")
    assert build_model(config, resolve_weights(config.backbone.name, "random")) is not None
    with pytest.raises(ConfigError, match=r"^toy models see whole images$"):
        check_tiling(config, TilingSpec((64, 64), (64, 64)))


def test_unknown_layer_is_refused_with_the_valid_ones() -> None:
    from inspection.core.errors import ConfigError
    from inspection.training.backbones import resolve_weights

    config = load_model_config("patchcore", overrides=["backbone.layers=[layer2]"])
    with pytest.raises(ConfigError, match=r"\['layer2'\] not in tf_efficientnet_lite0; valid"):
        build_model(config, resolve_weights(config.backbone.name, "random"))


@pytest.mark.parametrize(
    ("kind", "overrides"),
    # stfpm over 2 epochs: validation runs only after the last, and must still set thresholds
    [("patchcore", ["image_size=[128, 128]"]), ("stfpm", ["max_epochs=2"]), ("padim", [])],
)
def test_train_registers_a_complete_version(
    kind: str, overrides: list[str], tiny_product: Path, tmp_path: Path
) -> None:
    dataset = load_dataset(tiny_product)
    config = load_model_config(kind, overrides=[*TINY, *overrides])
    outcome = train_model(
        config, dataset, product="brick", registry=Registry(tmp_path), progress=False
    )
    record = outcome.record

    assert record.version == "v0001" and record.model_kind == kind
    assert (record.path / CHECKPOINT_FILE).is_file() and CHECKPOINT_FILE in record.files
    assert record.dataset["sha256"] == dataset.fingerprint()["sha256"]
    assert record.weights["source"] == "bundled"
    assert record.packages["torch"] == metadata.version("torch")
    assert record.packages["anomalib"] == "2.7.0"
    assert record.config["image_size"] == list(config.image_size)
    assert record.extra["preprocessing"]["mean"] == [0.5, 0.5, 0.5]
    assert record.extra["preprocessing"]["input_size"] == list(config.image_size)
    assert all(math.isfinite(v) for v in record.extra["normalization"].values())
    norm = record.extra["normalization"]
    assert norm["image_min"] <= norm["image_max"] and norm["pixel_min"] <= norm["pixel_max"]

    overall = record.metrics["overall"]
    for key in ("image_auroc", "pixel_auroc", "aupro", "image_f1", "pixel_f1"):
        assert 0.0 <= overall[key] <= 1.0, key
    if kind == "patchcore":  # ImageNet features separate the tiny product's defects reliably
        assert overall["image_auroc"] >= 0.75
    # the metrics keep, typed, the calibration they were judged at (the report draws with it)
    calibration = record.calibration()
    assert record.evaluation() == outcome.metrics and outcome.metrics.calibration == calibration
    assert calibration.normalization == record.normalization()
    assert calibration.n_good + calibration.n_defective == len(record.splits().validation)

    # The registered checkpoint rebuilds the same model with no download.
    _, test = evaluation_splits(config, dataset)
    assert len(test) == record.metrics["test_images"] == len(outcome.predictions.scores)
    reloaded = predict(load_trained_model(record), test, image_size=config.image_size)
    np.testing.assert_allclose(reloaded.scores, outcome.predictions.scores, rtol=1e-5)
    assert reloaded.maps.shape == (len(test), *config.image_size)

    report = write_report(tmp_path / "report", outcome.predictions, outcome.metrics)
    for name in ("metrics.json", "roc.png", "score_histogram.png", "examples.png"):
        assert (report / name).stat().st_size > 0, name
    assert json.loads((report / "metrics.json").read_text())["overall"] == overall


def test_same_seed_same_scores(tiny_product: Path, tmp_path: Path) -> None:
    dataset = load_dataset(tiny_product)
    config = load_model_config("patchcore", overrides=TINY)
    runs = [
        train_model(config, dataset, product="brick", registry=Registry(tmp_path), progress=False)
        for _ in range(2)
    ]
    np.testing.assert_array_equal(runs[0].predictions.scores, runs[1].predictions.scores)
    assert [r.record.version for r in runs] == ["v0001", "v0002"]


def _count_decodes(monkeypatch: pytest.MonkeyPatch) -> Counter[Path]:
    """Decodings of each file by the training's image reader, counted from now on."""
    from inspection.training import samples

    decoded: Counter[Path] = Counter()
    read_image = samples.read_image

    def counted(path: Path, **reading: object) -> np.ndarray:
        decoded[Path(path)] += 1
        return read_image(path, **reading)

    monkeypatch.setattr(samples, "read_image", counted)
    return decoded


def test_training_decodes_each_image_once(
    tiny_product: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fit, the out-of-fold and validation passes and the evaluation read the same files:
    each is decoded once (``KEPT.held``), and nothing stays kept after the training."""
    from inspection.data.decoded import KEPT

    decoded = _count_decodes(monkeypatch)
    dataset = load_dataset(tiny_product)
    config = load_model_config("patchcore", overrides=TINY)
    train_model(config, dataset, product="brick", registry=Registry(tmp_path), progress=False)
    assert set(decoded) == {s.path for s in dataset.samples}
    assert set(decoded.values()) == {1}
    assert KEPT.take(dataset.train_samples[0].path, 16) is None


def test_training_prints_are_of_the_fits_decodings_past_the_budget_too(
    tiny_product: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The version's training prints (``data.leaks.TrainPrints``) decode no image again, not
    even one past the budget of kept decodings, and are the leak check's prints of the files."""
    from inspection.core.fingerprint import relative_name
    from inspection.data.decoded import DecodedImages
    from inspection.data.leaks import prints_of
    from inspection.training import samples

    none_kept = DecodedImages(budget_bytes=0)
    monkeypatch.setattr(samples, "KEPT", none_kept)
    monkeypatch.setattr(sys.modules["inspection.training.train"], "KEPT", none_kept)
    decoded = _count_decodes(monkeypatch)
    dataset = load_dataset(tiny_product)
    config = load_model_config("patchcore", overrides=TINY)
    with none_kept.held():
        for sample in dataset.train_samples:  # as the fit decodes them
            samples.decoded_image(sample.path, config.image_bits, config.image_range)
        decoded.clear()
        prints = train_prints(dataset, config).by_name()
    assert not decoded
    files = prints_of([s.path for s in dataset.train_samples])
    assert prints.keys() == {relative_name(path, tiny_product) for path in files}
    assert all(np.array_equal(prints[relative_name(p, tiny_product)], v) for p, v in files.items())


def test_rows_past_the_budget_are_held_as_float16_and_grouped(
    tiny_product: Path, tmp_path: Path
) -> None:
    """Past ``rows_budget_gb`` a PatchCore fit holds its rows as float16 and selects its bank
    group by group: a bank of the same size, out-of-fold scores for every training image, and
    test scores that rank as the float32 fit's (measured: correlation 0.973, pixel AUROC
    0.885 vs 0.872 on the tiny set; a bank of one group's rows alone falls far below)."""
    dataset = load_dataset(tiny_product)
    runs = {}
    for budget in ("0.5", "0.0003"):  # 0.3 MB: about four groups of the 0.66 MB of rows
        overrides = [*TINY, "coreset_sampling_ratio=0.1", f"rows_budget_gb={budget}"]
        runs[budget] = train_model(
            load_model_config("patchcore", overrides=overrides), dataset, product="brick",
            registry=Registry(tmp_path / budget), progress=False,
        )  # fmt: skip
    exact, grouped = runs["0.5"], runs["0.0003"]
    assert not exact.model.compact and grouped.model.compact
    bank, reference = grouped.model.model.memory_bank, exact.model.model.memory_bank
    assert bank.dtype == torch.float32 and bank.shape == reference.shape
    good = grouped.record.good_scores().out_of_fold
    assert len(good) == len(dataset.train_samples) and np.all(np.isfinite(list(good.values())))
    scores = exact.predictions.scores, grouped.predictions.scores
    assert np.corrcoef(*scores)[0, 1] >= 0.9
    pixel = exact.metrics.overall.pixel_auroc, grouped.metrics.overall.pixel_auroc
    assert abs(pixel[0] - pixel[1]) <= 0.05


def test_rows_past_the_budget_live_in_an_unlinked_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The float16 row block is a shared file mapping (page cache, not the process's own
    memory) whose file has no name left: nothing to clean up after a crash."""
    from inspection.training.models.patchcore.lightning_model import row_block

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    block = row_block((3, 64, 8))
    block[1] = 2.5
    assert block.dtype == torch.float16 and block.shape == (3, 64, 8)
    assert float(block[1].float().mean()) == 2.5 and list(tmp_path.iterdir()) == []
    maps = Path("/proc/self/maps").read_text(encoding="utf-8")
    assert f"{tmp_path}/inspection-rows-" in maps and "(deleted)" in maps


def _train_in_subprocess(product: Path, tmp_path: Path) -> str:
    """``inspection train`` on ``product`` in a fresh interpreter: its output (one line) and
    ``exit <code> [<torch/anomalib if they were imported>]``."""
    site = tmp_path / "site.yaml"
    site.write_text(f"registry_dir: {tmp_path / 'registry'}\n", encoding="utf-8")
    probe = (
        "import sys; from inspection.cli import main; "
        f"sys.argv = ['inspection', 'train', '-p', 'brick', '--data', {str(product)!r}, "
        f"'--site', {str(site)!r}]\n"
        "try:\n    main()\nexcept SystemExit as exit:\n"
        "    loaded = [m for m in ('torch', 'anomalib') if m in sys.modules]\n"
        "    print('exit', exit.code, loaded)"
    )
    wide = {**os.environ, "COLUMNS": "500"}  # long temporary paths stay on one line
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, env=wide
    )
    return " ".join((result.stdout + result.stderr).split())


def test_cli_train_lists_unreadable_images_before_loading_torch(
    tiny_product: Path, tmp_path: Path
) -> None:
    """Every unreadable file in one error, answered before torch and anomalib load."""
    product = tmp_path / "brick"
    shutil.copytree(tiny_product, product)
    (product / "train" / "good" / "zz_a.png").write_text("not an image")
    (product / "test" / "good" / "zz_b.png").write_bytes(b"")
    said = _train_in_subprocess(product, tmp_path)
    assert "exit 2 []" in said, said[-2000:]
    assert "2 of" in said and "zz_a.png: not an image" in said and "zz_b.png: empty file" in said


def test_cli_train_refuses_test_images_that_copy_training_images(
    tiny_product: Path, tmp_path: Path
) -> None:
    """A leaked test image would inflate every held-out figure: refused before torch loads,
    naming the copy; --allow-duplicates is the explicit way past it."""
    product = tmp_path / "brick"
    shutil.copytree(tiny_product, product)
    leaked = sorted((product / "train" / "good").glob("*.png"))[0]
    shutil.copy(leaked, product / "test" / "good" / "zz_leaked.png")
    said = _train_in_subprocess(product, tmp_path)
    assert "exit 2 []" in said, said[-2000:]
    assert "1 test image(s) copy training images" in said and "zz_leaked.png" in said
    assert "--allow-duplicates" in said


def test_checked_dataset_summarises_other_findings_and_goes_on(
    tiny_product: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from inspection.cli.train import checked_dataset

    product = tmp_path / "brick"
    shutil.copytree(tiny_product, product)
    next((product / "ground_truth").rglob("*_mask.png")).unlink()
    dataset = checked_dataset(product)
    assert len(dataset.samples) == len(load_dataset(tiny_product).samples)
    said = " ".join(capsys.readouterr().out.split())
    assert "data check: 1 error(s)" in said and "defective image has no mask" in said
    assert "training goes on" in said


def _train_then_evaluate(
    data: Path, tmp_path: Path, overrides: list[str]
) -> tuple[dict, dict, str]:
    """``inspection train`` brick from ``data`` into a site under ``tmp_path``, then
    ``inspection evaluate`` the version: (training metrics, evaluation metrics, train output)."""
    site = tmp_path / "site.yaml"
    site.write_text(
        f"registry_dir: {tmp_path / 'registry'}\nreports_dir: {tmp_path / 'reports'}\n",
        encoding="utf-8",
    )
    runner = CliRunner()
    args = ["train", "-p", "brick", "-m", "patchcore", "--data", str(data)]
    args += [item for override in overrides for item in ("--set", override)]
    trained_run = runner.invoke(app, [*args, "--site", str(site)])
    assert trained_run.exit_code == 0, trained_run.output
    reports = tmp_path / "reports/brick/v0001-patchcore"
    trained = json.loads((reports / "metrics.json").read_text())
    result = runner.invoke(app, ["evaluate", "brick", "v0001", "--site", str(site)])
    assert result.exit_code == 0, result.output
    evaluated = json.loads((reports / "evaluate/metrics.json").read_text())
    return trained, evaluated, trained_run.output


def test_cli_train_then_evaluate(tiny_product: Path, tmp_path: Path) -> None:
    trained, evaluated, said = _train_then_evaluate(tiny_product, tmp_path, TINY)
    assert "registered brick/v0001" in said
    assert "out-of-fold scores" in said  # the long stages' own bar (StepProgress.stage)
    assert evaluated["overall"]["image_auroc"] == pytest.approx(
        trained["overall"]["image_auroc"], abs=EVALUATION_TOLERANCE
    )


def test_cli_evaluate_reads_the_images_at_the_versions_image_bits(
    tiny_product: Path, tmp_path: Path
) -> None:
    """``inspection evaluate`` read every image at 16 bits: a version trained on 12-bit images
    was re-evaluated on near-black ones and reported other figures than training did."""
    import cv2

    product = tmp_path / "data" / "brick"
    for source in tiny_product.rglob("*.png"):
        target = product / source.relative_to(tiny_product)
        target.parent.mkdir(parents=True, exist_ok=True)
        if "ground_truth" in source.parts:
            shutil.copyfile(source, target)
        else:  # the image as a 12-bit camera writes it: grey, values 0..4095 in 16 bits
            grey = cv2.imread(str(source), cv2.IMREAD_GRAYSCALE).astype(np.uint16) << 4
            cv2.imwrite(str(target), grey)
    trained, evaluated, _ = _train_then_evaluate(product, tmp_path, [*TINY, "image_bits=12"])
    for key in ("image_auroc", "pixel_auroc", "false_reject_rate", "miss_rate"):
        assert evaluated["overall"][key] == pytest.approx(
            trained["overall"][key], abs=EVALUATION_TOLERANCE
        ), key


def test_checked_dataset_reads_at_the_products_declared_bits(
    tiny_product: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``inspection train`` checks the data at the product's ``image_bits``: 12-bit images
    are no finding when the product declares 12 (it used to print 'set image_bits: 12')."""
    from PIL import Image

    from inspection.cli.train import checked_dataset

    product = tmp_path / "brick"
    shutil.copytree(tiny_product, product)
    for path in (product / "train" / "good").glob("*.png"):
        grey = np.asarray(Image.open(path).convert("L"), dtype=np.uint16) * 16  # 0..4080
        Image.fromarray(grey).save(path)
    checked_dataset(product)
    assert "set image_bits: 12" in " ".join(capsys.readouterr().out.split())
    checked_dataset(product, image_bits=12)
    assert "image_bits" not in capsys.readouterr().out


@pytest.mark.parametrize("fraction", [0.3, 0.2, 0.5])
def test_the_advice_s_folder_count_is_what_the_split_holds_out(fraction: float) -> None:
    """A newcomer told to hold out 36 put 36 in test/scratch/ and got 25 held out: the advice
    now names the folder count, and the split it counts for is the one training makes."""
    from inspection.core.operating_point import folder_count
    from inspection.data.dataset import Sample
    from inspection.training.train import split_validation

    def held_out(n: int) -> int:
        kind = [Sample(Path(f"test/scratch/{i:03d}.png"), "test", 1, "scratch") for i in range(n)]
        return len(split_validation(kind, fraction, seed=0)[1])

    for wanted in (1, 3, 22, 36, 54):
        n = folder_count(wanted, fraction)
        assert held_out(n) >= wanted > held_out(n - 1), (wanted, n)

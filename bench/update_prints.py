"""What recording the training images' prints (``data.leaks.TrainPrints``) costs a training and
saves a ``train --update``.

    python bench/update_prints.py [--n-train 200] [--size 512 1024] [--repeat 3]
                                  [--out reports/training]

At each ``--size``, a demo brick product of ``--n-train`` good training images is trained as
``inspection train brick`` does (``load_model_config("patchcore", product="brick")``). Then
``--repeat`` rounds of: (a) training's side, ``pixel_print`` of each decoded image (what
``KEPT.offer`` adds to each decoding of a training), ``train_prints`` collecting them after
the fit, and (for comparison) ``train_prints`` decoding every image again;
(b) the bank check's training prints (``incremental._trained_prints``) of the trained version
and of the same version recorded before prints (read from ``train_prints.npz`` vs each image
decoded); (c) a whole update of 8 new good images from each, its ``load`` stage (where the leak
checks run) and its total. Writes ``<out>/update_prints.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

from _report import recorded, rounds, save_report, seconds, table

from inspection.core.fingerprint import relative_name
from inspection.core.images import read_image
from inspection.core.model_record import RECORD_FILE, ModelRecord
from inspection.core.product_config import load_model_config
from inspection.core.registry import Registry
from inspection.data.dataset import load_dataset
from inspection.data.decoded import KEPT
from inspection.data.demo import write_demo_product
from inspection.data.leaks import PRINTS_FILE, pixel_print
from inspection.training.incremental import _trained_prints, update_bank
from inspection.training.samples import decoded_image
from inspection.training.train import train_model, train_prints

NEW = 8
"""New good images per update."""


def before_prints(registry: Registry, record: ModelRecord) -> ModelRecord:
    """``record`` as a version trained before training recorded its prints."""
    (record.path / PRINTS_FILE).unlink()
    data = json.loads((record.path / RECORD_FILE).read_text(encoding="utf-8"))
    del data["files"][PRINTS_FILE]
    (record.path / RECORD_FILE).write_text(json.dumps(data), encoding="utf-8")
    return registry.bundles.version(record.product, record.version)


def measure(folder: Path, n_train: int, size: int, repeat: int) -> dict:
    """The figures of one product: ``n_train`` training images at ``size`` px."""
    made = {"n_test_good": 8, "n_test_per_defect": 3, "size": size}
    root = write_demo_product(folder / "data", "brick", seed=5, n_train=n_train, **made)
    line = write_demo_product(folder / "line", "brick", seed=6, n_train=NEW, **made)
    new = sorted((line / "train" / "good").glob("*.png"))
    config = load_model_config("patchcore", product="brick")
    dataset = load_dataset(root)
    trained = train_model(
        config, dataset, product="brick", registry=Registry(folder / "registry"), progress=False
    )
    registries = {"recorded": folder / "registry", "before prints": folder / "before"}
    shutil.copytree(registries["recorded"], registries["before prints"])
    before = Registry(registries["before prints"])
    parents = {
        "recorded": trained.record,
        "before prints": before_prints(before, before.bundles.version("brick")),
    }
    paths = {s.path: relative_name(s.path, root) for s in dataset.train_samples}
    reading = {"bits": config.image_bits, "value_range": config.image_range}

    def at_decoding(_: int) -> float:
        total = 0.0
        for path in paths:
            array = read_image(path, **reading)
            total += seconds(lambda array=array: pixel_print(array))
        return total

    def after_fit(_: int) -> float:
        with KEPT.held():
            for path in paths:  # as the fit decodes them
                decoded_image(path, config.image_bits, config.image_range)
            return seconds(lambda: train_prints(dataset, config))

    def check(parent: ModelRecord) -> Callable[[int], float]:
        return lambda _: seconds(lambda: _trained_prints(parent, paths, reading))

    def update(name: str) -> Callable[[int], dict[str, float]]:
        def run(r: int) -> dict[str, float]:
            copy = folder / f"update-{name}-{r}"
            shutil.copytree(registries[name], copy)
            outcome = update_bank(Registry(copy), "brick", new, dataset=dataset)
            return {"load": outcome.metrics["update_stage_seconds"]["load"],
                    "total": outcome.seconds}  # fmt: skip

        return run

    runs = rounds(
        {
            "train: at each decoding (`KEPT.offer`)": at_decoding,
            "train: `train_prints` after the fit": after_fit,
            "train: each image decoded again (none kept)": (
                lambda _: seconds(lambda: train_prints(dataset, config))
            ),
            **{f"check: {name}": check(parent) for name, parent in parents.items()},
            **{f"update: {name}": update(name) for name in parents},
        },
        repeat,
    )
    return {
        "n_train": len(paths),
        "size": size,
        "new_images": NEW,
        "training_stage_seconds": trained.clock.seconds,
        "prints_file_bytes": (trained.record.path / PRINTS_FILE).stat().st_size,
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=200)
    parser.add_argument("--size", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("reports/training"))
    args = parser.parse_args()
    with recorded() as env:
        products = []
        for size in args.size:
            with tempfile.TemporaryDirectory() as tmp:
                products.append(measure(Path(tmp), args.n_train, size, args.repeat))
    report = {"env": env, "products": products}
    save_report(args.out, "update_prints", report, markdown(report))


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 4)


def markdown(report: dict) -> str:
    env = report["env"]
    lines = [
        "# Training prints: what recording them costs a training and saves an update",
        "",
        f"`{env['command']}` at {env['commit']}; CPU {env['cpu']}; load {env['load_before']} -> "
        f"{env['load_after']}. A demo brick product trained as `inspection train brick` "
        f"(`load_model_config`); medians of {_rounds(report)} rounds, seconds. Training prints "
        "each image as it decodes it (`KEPT.offer`, past the 256 MB budget of kept decodings "
        "too) and `train_prints` collects them; the last training row is what decoding them "
        "again would cost. `before prints`: the same version with `train_prints.npz` taken out, "
        "as a version trained before training recorded prints: each update decodes its "
        "training images again.",
    ]
    for product in report["products"]:
        lines += ["", *_product(product)]
    return "\n".join(lines) + "\n"


def _rounds(report: dict) -> int:
    return len(next(iter(report["products"][0]["runs"].values())))


def _product(product: dict) -> list[str]:
    runs, stages, n = product["runs"], product["training_stage_seconds"], product["n_train"]
    trained = sum(stages.values())
    size = product["size"]
    return [
        f"## {n} training images at {size} x {size} px",
        "",
        *table(
            ["training: prints of the training images", "seconds", "ms an image",
             "share of the training"],
            [
                [name.removeprefix("train: "), _median(v), round(1000 * _median(v) / n, 3),
                 f"{100 * _median(v) / trained:.2f} %"]
                for name, v in runs.items() if name.startswith("train: ")
            ],
        ),
        "",
        f"The training took {trained:.1f} s, its `train_prints` stage "
        f"{stages.get('train_prints', 0.0):.2f} s; `train_prints.npz` holds "
        f"{product['prints_file_bytes']:,} bytes ({product['prints_file_bytes'] / n:.0f} an "
        "image).",
        "",
        *table(
            ["update of a parent", "the bank check's training prints", "update's load stage",
             f"whole update ({product['new_images']} new images)"],
            [
                [name, _median(runs[f"check: {name}"]),
                 _median([r["load"] for r in runs[f"update: {name}"]]),
                 _median([r["total"] for r in runs[f"update: {name}"]])]
                for name in ("recorded", "before prints")
            ],
        ),
    ]  # fmt: skip


if __name__ == "__main__":
    main()

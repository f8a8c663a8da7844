"""Round 9 of #91: a measured ceiling for image-level labels on ELPV mono (a probe, not a trial).

    python bench/elpv_ceiling.py run [--seeds 0,1] [--k 10,30,100,163] [--work var/elpv]
    python bench/elpv_ceiling.py report       # elpv_ceiling.md again from elpv_ceiling.json

The design is ``real_data.TRIALS["ceiling"]`` (fixed before any row ran). Per seed: the CLI
defaults train on ``real_data``'s own mono split (k = 0; the registry kept under
``<work>/ceiling/``, reused when there); each cell gets 457 features from that model
(``cell_features``: its image score and pooled patch embeddings; the ``train/good`` cells from
the product's out-of-fold banks); a classifier learns the 200 ``train/good`` cells against the
first k labelled defective cells outside ``test/`` (``ProbeCells`` refuses any other teaching
cell); its threshold is certified as the product certifies (``choose_threshold`` on the 250
calibration + 30 validation good cells) and the held-out cells are counted there, and at the
held-out good cells' own 99th percentile (an oracle, not certifiable). Rows:
``reports/real_data/elpv_ceiling.json`` and ``.md``; ELPV is CC BY-NC-SA 4.0 (evaluation only).
"""

from __future__ import annotations

# isort: off
import inspection  # noqa: F401  (first: sets OMP_WAIT_POLICY before torch loads OpenMP)

# isort: on
import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import real_data
from _report import cpu_description, load_average, measured, table

STEM = "elpv_ceiling"
FAMILY = "mono"
LABELLED_POOL = 163
"""Mono cells of probability 1 outside ``test/`` (313 - 150): the largest k."""
CLASSIFIERS = ("lr", "svm")
ORACLE_QUANTILE = 0.99
TOP = 3
"""Certifying good cells named per row, highest score first: which cells set the threshold."""
log = logging.getLogger("bench.elpv_ceiling")


@dataclass(frozen=True)
class ProbeCells:
    """File names of each role in the probe: ``negatives`` and ``positives`` teach the
    classifier; ``certifying`` good cells set its threshold; ``held_out`` (kind -> names) are
    counted; ``set_aside``: the product's validation defects (neither). ``ValueError`` when a
    teaching cell is in any other role, or a held-out cell certifies: the leakage guard."""

    negatives: tuple[str, ...]
    positives: tuple[str, ...]
    certifying: tuple[str, ...]
    held_out: Mapping[str, tuple[str, ...]]
    set_aside: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        teaching = set(self.negatives) | set(self.positives)
        held = {name for names in self.held_out.values() for name in names}
        roles = {"certifying": set(self.certifying), "held-out": held,
                 "set aside": set(self.set_aside)}  # fmt: skip
        for what, names in roles.items():
            if shared := sorted(teaching & names):
                raise ValueError(f"{len(shared)} teaching cells are also {what}: {shared[:3]}")
        if shared := sorted(held & set(self.certifying)):
            raise ValueError(f"{len(shared)} held-out cells also certify: {shared[:3]}")


def probe_cells(
    parts: Mapping[str, Sequence[str]], validation: set[str], labelled: Sequence[str], k: int
) -> ProbeCells:
    """The probe's roles from ``real_data.split_parts``'s ``parts`` (label-table paths), the
    product's ``validation`` cells (file names, taken out of ``test/``) and the ``labelled``
    pool (its first ``k`` teach)."""

    def names(cells: Sequence[str]) -> tuple[str, ...]:
        return tuple(Path(cell).name for cell in cells)

    test = {part.split("/")[1]: names(cells) for part, cells in parts.items()
            if part.startswith("test/")}  # fmt: skip
    return ProbeCells(
        negatives=names(parts["train/good"]),
        positives=names(labelled[:k]),
        certifying=names(parts["calibration/good"])
        + tuple(n for n in test["good"] if n in validation),
        held_out={
            kind: tuple(n for n in cells if n not in validation) for kind, cells in test.items()
        },
        set_aside=tuple(
            n for kind, cells in test.items() if kind != "good" for n in cells if n in validation
        ),
    )


def certified_counts(
    certifying: np.ndarray, held: Mapping[str, np.ndarray], point: Any
) -> dict[str, Any]:
    """The threshold ``point`` (an ``OperatingPoint``) certifies on the (G,) ``certifying``
    good scores, and per held-out kind (name -> scores) how many score below it (missed; for
    ``good``: rejected, at or above it), beside the oracle: the held-out good cells' own
    ``ORACLE_QUANTILE`` and the defects below it."""
    from inspection.core.operating_point import choose_threshold

    choice = choose_threshold(certifying, point)
    oracle = float(np.quantile(held["good"], ORACLE_QUANTILE))
    counts: dict[str, Any] = {"threshold": choice.threshold, "rank": choice.rank,
                              "n_good": choice.n_good, "bound": choice.false_reject_bound,
                              "oracle_threshold": oracle}  # fmt: skip
    for kind, scores in held.items():
        counts[kind] = {"n": int(scores.size)}
        if kind == "good":
            counts[kind]["rejected"] = int((scores >= choice.threshold).sum())
            counts[kind]["oracle_rejected"] = int((scores >= oracle).sum())
        else:
            counts[kind]["missed"] = int((scores < choice.threshold).sum())
            counts[kind]["oracle_missed"] = int((scores < oracle).sum())
    return counts


def classifier(name: str, seed: int) -> Any:
    """The design's ``lr`` or ``svm`` (standardised features, balanced classes), its C chosen
    by stratified 5-fold cross-validation (ROC AUC) on the data it is fitted to."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    models = {
        "lr": (LogisticRegression(class_weight="balanced", max_iter=5000), np.logspace(-4, 2, 13)),
        "svm": (SVC(kernel="rbf", gamma="scale", class_weight="balanced"), [0.1, 1, 10, 100]),
    }
    model, grid = models[name]
    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    pipeline = make_pipeline(StandardScaler(), model)
    key = f"{type(model).__name__.lower()}__C"
    return GridSearchCV(pipeline, {key: list(grid)}, cv=folds, scoring="roc_auc")


def auroc(good: np.ndarray, bad: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    labels = np.r_[np.zeros(good.size), np.ones(bad.size)]
    return round(float(roc_auc_score(labels, np.r_[good, bad])), 4)


def judged(cells: ProbeCells, scores: Mapping[str, float], point: Any) -> dict[str, Any]:
    """``certified_counts``, image / per-kind AUROC of per-cell ``scores`` (name -> score) and
    the ``TOP`` highest-scoring certifying good cells ([name, score], highest first)."""
    held = {kind: np.array([scores[n] for n in names]) for kind, names in cells.held_out.items()}
    counts = certified_counts(np.array([scores[n] for n in cells.certifying]), held, point)
    top = sorted(cells.certifying, key=lambda n: -scores[n])[:TOP]
    counts["top_certifying"] = [[Path(n).stem, round(float(scores[n]), 3)] for n in top]
    bad = [held[kind] for kind in held if kind != "good"]
    counts["image_auroc"] = auroc(held["good"], np.concatenate(bad))
    for kind in held:
        if kind != "good":
            counts[kind]["auroc"] = auroc(held["good"], held[kind])
    return counts


# ------------------------------------------------------------------ torch side (the features)


def trained_registry(data: Path, root: Path) -> tuple[Path, dict[str, Any]]:
    """``inspection train -p elpv`` (the CLI defaults) on ``data`` with its registry under
    ``root`` (kept; reused when a version is there): (registry folder, how it was trained)."""
    registry, trained = root / "registry", root / "train.json"
    if list(registry.rglob("record.json")) and trained.is_file():
        return registry, {**json.loads(trained.read_text()), "train": "reused"}
    root.mkdir(parents=True, exist_ok=True)
    site = root / "site.yaml"
    site.write_text(
        f"registry_dir: {registry.resolve()}\nstore_url: sqlite:///{root.resolve()}/store.db\n"
        f"blob_dir: {root.resolve()}/blobs\nreports_dir: {root.resolve()}/reports\n"
        f"products: [{real_data.PRODUCT}]\n"
    )
    command = [sys.executable, "-m", "inspection", "train", "-p", real_data.PRODUCT,
               "--data", str(data.resolve()), "--site", str(site)]  # fmt: skip
    load = load_average()
    stdout, code, wall, _, _ = measured(command)
    if code != 0:
        raise SystemExit(f"{' '.join(command)} exited {code}:\n{stdout[-3000:]}")
    facts = {"train": "trained", "train_s": round(wall, 1), "train_load": load}
    trained.write_text(json.dumps(facts) + "\n")
    return registry, facts


def patch_rows(model: Any, samples: Sequence[Any], config: Any) -> np.ndarray:
    """(N, h * w, d) float32: each sample's PatchCore patch embedding (pooled layer concat, in
    ``reshape_embedding``'s row order) from ``model``'s frozen backbone."""
    import torch

    from inspection.training.models.patchcore.out_of_fold import model_inputs

    inner, rows = model.model, []
    with torch.no_grad():
        for start in range(0, len(samples), 32):
            images = model_inputs(model, samples[start : start + 32], config.image_size,
                                  config.image_bits, config.image_range)  # fmt: skip
            features = inner.feature_extractor(images)
            pooled = {layer: inner.feature_pooler(f) for layer, f in features.items()}
            embedding = inner.generate_embedding(pooled)
            rows.append(embedding.permute(0, 2, 3, 1).flatten(1, 2).float().numpy())
    return np.concatenate(rows)


def cell_features(inner: Any, rows: np.ndarray, image_size: Sequence[int]) -> np.ndarray:
    """(N, 1 + 3 d) features of cells with patch ``rows`` (N, h * w, d) by ``inner``'s bank as it
    stands: the image score, the rows' grid mean, grid maximum and the row at the anomaly map's
    largest pixel (source: ``real_data.TRIALS["ceiling"]``)."""
    import torch

    from inspection.training.models.patchcore.out_of_fold import replayed_embeddings

    height, width = image_size
    count = rows.shape[1]
    grid_h = round(np.sqrt(count * height / width))
    grid_w = count // grid_h
    out = []
    inner.eval()
    with torch.no_grad():
        for start in range(0, len(rows), 16):
            batch = torch.from_numpy(rows[start : start + 16])
            pixels = torch.zeros(1, 3, height, width).expand(len(batch), -1, -1, -1)
            with replayed_embeddings(inner, list(batch), (height, width)):
                output = inner(pixels)
            maps = output.anomaly_map.reshape(len(batch), -1)
            y, x = np.divmod(maps.argmax(1).numpy(), width)
            peak = (y * grid_h // height) * grid_w + x * grid_w // width
            out.append(np.c_[output.pred_score.reshape(-1).double().numpy(),
                             batch.mean(1).numpy(), batch.amax(1).numpy(),
                             batch[np.arange(len(batch)), peak].numpy()])  # fmt: skip
    return np.concatenate(out)


def out_of_fold_features(model: Any, rows: np.ndarray, config: Any) -> np.ndarray:
    """``cell_features`` of the training cells (``rows`` in ``dataset.train_samples`` order),
    each by the bank of the other folds: the product's ``fold_of`` and ``fold_banks``, as its
    out-of-fold scores are made; the trained bank is put back."""
    import torch

    from inspection.training.models.patchcore.out_of_fold import fold_banks, fold_of

    inner = model.model
    assignment = fold_of(len(rows), config.calibration_folds, config.seed)
    tensors = [torch.from_numpy(r) for r in rows]
    banks = fold_banks(tensors, assignment, config.coreset_sampling_ratio,
                       config.memory_bank_max, config.seed)  # fmt: skip
    trained, features = inner.memory_bank, np.empty((len(rows), 1 + 3 * rows.shape[2]))
    try:
        for fold, bank in enumerate(banks):
            inner.memory_bank = bank
            held = np.flatnonzero(assignment == fold)
            features[held] = cell_features(inner, rows[held], config.image_size)
    finally:
        inner.memory_bank = trained
    return features


def features_of_seed(seed: int, work: Path) -> tuple[dict[str, np.ndarray], ProbeCells, dict]:
    """Per cell (file name), its features at ``seed`` (``ProbeCells`` at the largest k, the
    model's operating point and the run's facts in the third item)."""
    from inspection.core.product_config import model_config_from_mapping
    from inspection.core.registry import Registry
    from inspection.data.dataset import Sample, load_dataset
    from inspection.training.train import evaluation_splits, load_trained_model

    cells = real_data.elpv_labels()
    parts = real_data.split_parts(FAMILY, seed, LABELLED_POOL, cells)
    data = real_data.build_split(FAMILY, seed, 0, work, cells)
    registry, facts = trained_registry(data, work / "ceiling" / f"{FAMILY}-seed{seed}")
    record = Registry(registry).bundles.version(real_data.PRODUCT)
    config = model_config_from_mapping(record.config, where=record.model_version)
    model = load_trained_model(record)
    dataset = load_dataset(data)
    validation, _ = evaluation_splits(config, dataset)
    roles = probe_cells(parts, {s.path.name for s in validation},
                        parts["train/defective"], LABELLED_POOL)  # fmt: skip
    started = time.perf_counter()
    train = list(dataset.train_samples)
    train_features = out_of_fold_features(model, patch_rows(model, train, config), config)
    labelled = [Sample(cells[0] / cell, "train", 1, "defective")
                for cell in parts["train/defective"]]  # fmt: skip
    others = [*dataset.calibration_samples, *dataset.test_samples, *labelled]
    other_features = cell_features(model.model, patch_rows(model, others, config),
                                   config.image_size)  # fmt: skip
    features = {s.path.name: f for s, f in zip(train, train_features, strict=True)}
    features |= {s.path.name: f for s, f in zip(others, other_features, strict=True)}
    recorded = record.good_scores().out_of_fold
    ours = np.array([features[Path(p).name][0] for p in recorded])
    facts |= {"features_s": round(time.perf_counter() - started, 1), "model": record.model_version,
              "oof_max_abs_diff": round(float(np.abs(ours - np.array(list(recorded.values()))).max()), 4),
              "point": config.operating_point}  # fmt: skip
    return features, roles, facts


# ------------------------------------------------------------------ rows


def seed_rows(seed: int, ks: Sequence[int], work: Path) -> list[dict[str, Any]]:
    """The k = 0 product row and, per k and classifier, the probe's row at ``seed``."""
    load = load_average()
    features, pool, facts = features_of_seed(seed, work)
    point = facts.pop("point")
    common = {"seed": seed, "cpu": cpu_description(), "commit": real_data._commit(), **facts}
    product = {name: float(f[0]) for name, f in features.items()}
    rows = [{**common, "k": 0, "classifier": "product score", "load_before": load,
             **judged(pool, product, point)}]  # fmt: skip
    for k in ks:
        cells = ProbeCells(pool.negatives, pool.positives[:k], pool.certifying, pool.held_out,
                           pool.set_aside)  # fmt: skip
        x = np.stack([features[n] for n in (*cells.negatives, *cells.positives)])
        y = np.r_[np.zeros(len(cells.negatives)), np.ones(len(cells.positives))]
        judged_names = [*cells.certifying, *(n for v in cells.held_out.values() for n in v)]
        for name in CLASSIFIERS:
            load, started = load_average(), time.perf_counter()
            search = classifier(name, seed).fit(x, y)
            scores = search.decision_function(np.stack([features[n] for n in judged_names]))
            rows.append({**common, "k": k, "classifier": name, "load_before": load,
                         "fit_s": round(time.perf_counter() - started, 1),
                         "C": float(next(iter(search.best_params_.values()))),
                         "cv_auroc": round(float(search.best_score_), 4),
                         **judged(cells, dict(zip(judged_names, scores, strict=True)), point)})  # fmt: skip
            log.info("seed %d k %d %s: %s", seed, k, name, rows[-1]["defective"])
    return rows


def _missed(row: dict, kind: str, key: str = "missed") -> str:
    found = row[kind]
    return f"{found[key]}/{found['n']} ({found[key] / found['n']:.0%})"


def report(rows: list[dict]) -> None:
    """Write ``elpv_ceiling.md`` from the rows."""
    headers = ["seed", "k", "classifier", "C (cv AUROC)", "defective missed", "likely missed",
               "good rejected", "oracle: defective missed", "oracle: likely missed",
               "image AUROC", "defective AUROC", "likely AUROC", "certified n (rank, bound)",
               "3 highest certifying good", "OOF check", "train s (load)", "features s",
               "load", "commit"]  # fmt: skip
    body = [
        [r["seed"], r["k"], r["classifier"],
         f"{r['C']:.3g} ({r['cv_auroc']:.3f})" if "C" in r else "-",
         _missed(r, "defective"), _missed(r, "likely"),
         f"{r['good']['rejected']}/{r['good']['n']}", _missed(r, "defective", "oracle_missed"),
         _missed(r, "likely", "oracle_missed"), f"{r['image_auroc']:.3f}",
         f"{r['defective']['auroc']:.3f}", f"{r['likely']['auroc']:.3f}",
         f"{r['n_good']} ({r['rank']}, {r['bound']:.2%})",
         ", ".join(f"{name} {score:.3g}" for name, score in r.get("top_certifying", ())) or "-",
         f"{r['oof_max_abs_diff']:g}", f"{r['train_s']} ({r['train_load'].split()[0]})",
         r["features_s"], r["load_before"].split()[0], r["commit"]]
        for r in sorted(rows, key=lambda r: (r["seed"], r["k"], r["classifier"]))
    ]  # fmt: skip
    lines = ["# ELPV mono: a measured ceiling for image-level labels (#91, round 9)", "",
             real_data.TRIALS["ceiling"], "", real_data.LICENCE, "",
             "Missed: held-out cells (70 good, 105 defective, 39 likely) scored below the "
             "threshold certified on the 280 calibration + validation good cells. Oracle: at the "
             "held-out good cells' own 99th percentile (not certifiable: a ceiling only). OOF "
             "check: largest |difference| between this probe's out-of-fold image scores of the "
             "training cells and the registry's. Load: 1-minute load before the row.", "",
             *table(headers, body), "",
             f"CPU: {'; '.join(sorted({r['cpu'] for r in rows}))}.", ""]  # fmt: skip
    (real_data.REPORTS / f"{STEM}.md").write_text("\n".join(lines), encoding="utf-8")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=("run", "report"))
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--k", default=f"10,30,100,{LABELLED_POOL}")
    parser.add_argument("--work", default=str(real_data.WORK))
    args = parser.parse_args()
    out = real_data.REPORTS / f"{STEM}.json"
    rows = json.loads(out.read_text()) if out.is_file() else []
    if args.command == "run":
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        for seed in map(int, args.seeds.split(",")):
            rows = [r for r in rows if r["seed"] != seed]
            rows += seed_rows(seed, [int(k) for k in args.k.split(",")], Path(args.work))
            out.write_text(json.dumps(rows, indent=1, default=str) + "\n")
    report(rows)


if __name__ == "__main__":
    main()

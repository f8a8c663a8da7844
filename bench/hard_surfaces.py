"""Hard surfaces: which PatchCore levers pay on busy textures, at what station cost.

    /work/bin/heavy python bench/hard_surfaces.py ablate  [--products grass,gravel,tissue,weave,brick]
    /work/bin/heavy python bench/hard_surfaces.py station [--products grass,gravel]
    /work/bin/bench python bench/hard_surfaces.py latency
    python bench/hard_surfaces.py report

``ablate``: per product, a greedy walk over the levers of ``bench/_hard_levers.py`` on cached
backbone features. Every step tries a lever family on the current best and keeps a change only
if it raises **validation** image AUROC by more than ``MARGIN`` (the cheaper setting wins ties);
the held-out test split is measured for every lever and never chooses. Families, in order of
expected gain per CPU second: input scale (1x, 1.5x, 2x) -> feature layers and neighbourhood
(pool kernel) -> coreset ratio (1 / 10 / 25 %, capped at 8192 rows) -> PatchCore's image-score
re-weighting on/off -> horizontal-flip TTA -> EfficientNet-Lite1/Lite2. ``grass`` and
``gravel`` are tuned; the evaluation family nothing here is tuned on -- ``tissue`` and
``weave`` (demo products) and ``part`` (``data/demo_part.py``: an aligned gear with chips,
burrs, specks and an undrilled hole, new here) -- and ``brick`` (regression) get the default,
the scale family and each tuned product's choice; ``part`` also position-aware neighbours.
Writes ``<out>/ablation.json``.

``station``: the chosen configuration per product (when ``ModelConfig`` can express it) trained
and exported through the real path (``train_model`` + ``export_bundle``, INT8 with the gate,
and FP32) into ``var/hard_surfaces/``. ``latency`` times ``Inspector.inspect`` on those bundles
(p50 over rounds) and a graph proxy for every ablation lever (FP32 OpenVINO graph of the lever's
PatchCore with a bank of its size, batch 1). ``report`` writes ``<out>/summary.md`` and plots.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
from _hard_levers import (
    BANK_CAP,
    FeatureCache,
    Lever,
    fit_lever,
    fuse_global,
    fuse_stats,
    lever_layers,
    masks_of,
    run_split,
)
from _hard_metrics import figures, peaks, per_kind
from _report import load_average, previous_report, save_report, timed_rounds

from inspection.core.metrics import image_auroc
from inspection.data.dataset import load_dataset
from inspection.training.config import load_model_config
from inspection.training.train import evaluation_splits

OUT = Path("reports/hard_surfaces")
MARGIN = 0.01
TUNED = ("grass", "gravel")
ALIGNED = ("part",)
KEY_FAMILIES = ("default", "scale", "layers", "transfer")
"""``latency --key-levers`` times only these families and the chosen levers."""
"""Aligned evaluation products: position-aware nearest neighbours are tried on them."""
log = logging.getLogger("hard_surfaces")


def _walk(
    cache: FeatureCache, product: str, earlier: list[dict], save: Any, until: float
) -> list[dict[str, Any]]:
    """The greedy walk (module docstring); every lever tried, in order, with its figures.

    ``earlier``: rows of an interrupted run, reused; ``save(rows)`` after every lever; no new
    lever starts after the epoch time ``until`` (the rest is listed as not run)."""
    rows: list[dict[str, Any]] = []
    tried: dict[Lever, dict] = {}
    known = {_key(r["lever"]): r for r in earlier}

    def run(lever: Lever) -> dict:
        key = replace(lever, name="", family="")
        if key in tried:
            return tried[key]
        if _key(asdict(lever)) in known:
            row = {**known[_key(asdict(lever))], "name": lever.name, "family": lever.family}
            tried[key] = row
            rows.append(row)
            return row
        if time.time() > until:
            return {"validation_auroc": -1.0}
        row = _evaluate(cache, lever)
        tried[key] = row
        rows.append(row)
        log.info(
            "%s %-28s val %.3f test %.3f px %.3f pro %.3f bank %d (%.0f s)",
            product, lever.name, row["validation_auroc"], row["test"]["image_auroc"]["value"],
            row["test"]["pixel_auroc"]["value"], row["test"]["aupro"]["value"], row["bank"],
            row["seconds"],
        )  # fmt: skip
        save(rows)
        return row

    def step(best: Lever, candidates: list[Lever]) -> Lever:
        best_val = run(best)["validation_auroc"]
        for candidate in candidates:
            val = run(candidate)["validation_auroc"]
            if val > best_val + MARGIN:
                best, best_val = candidate, val
        return best

    best = Lever("default (1x, blocks.2+4, 1 %)", "default")
    scales = [replace(best, name=f"scale {s:g}x", family="scale", scale=s) for s in (1.5, 2.0)]
    best = step(best, scales)
    for lever in [*scales, Lever("", "")]:
        if lever.size != best.size:
            cache.drop(lever.backbone, lever.size)
    layer_sets = [("blocks.2", "blocks.4", "blocks.6"), ("blocks.2",)]
    if best.size <= 256:
        layer_sets[:0] = [("blocks.1", "blocks.2", "blocks.4"), ("blocks.1", "blocks.2")]
    candidates = [
        replace(
            best,
            name=f"{_s(best)} layers {'+'.join(x[-1] for x in ls)}",
            family="layers",
            layers=ls,
        )
        for ls in layer_sets
    ]
    candidates += [
        replace(best, name=f"{_s(best)} pool {k}", family="neighbourhood", pool=k) for k in (1, 5)
    ]
    best = step(best, candidates)
    patches = run(best).get("patches", 0)
    banks = {min(int(patches * r), BANK_CAP): r for r in (0.25, 0.10)}  # same bank: lower ratio
    best = step(best, [
        replace(best, name=f"{_s(best)} coreset {int(r * 100)} %", family="coreset", ratio=r)
        for r in sorted(banks.values())
    ])  # fmt: skip
    best = step(best, [
        replace(best, name=f"{_s(best)} no re-weighting", family="score", neighbors=1),
        replace(best, name=f"{_s(best)} map-peak score", family="score", map_score=True),
    ])  # fmt: skip
    best = step(best, [replace(best, name=f"{_s(best)} flip TTA", family="tta", flip_tta=True)])
    best = step(best, [
        replace(best, name=f"{_s(best)} {b[-5:]}", family="backbone", backbone=b)
        for b in ("tf_efficientnet_lite1", "tf_efficientnet_lite2")
    ])  # fmt: skip
    best = step(best, _new_levers(best))
    for lever in _new_levers(Lever("default (1x, blocks.2+4, 1 %)", "default"))[:3]:
        run(lever)  # the cheap 1x station: context only, never chosen
    for row in rows:
        row["chosen"] = row["lever"] == asdict(best)
    return rows


def _new_levers(base: Lever) -> list[Lever]:
    """This session's levers on top of ``base``: local colour statistics appended to the
    embedding (two weights), a separate statistics model fused on z-scores, the product's
    global context fused on z-scores."""
    tag = _s(base) if base.family != "default" else "1x"
    return [
        replace(base, name=f"{tag} + stats model fused", family="fusion", fusion="stats"),
        replace(base, name=f"{tag} + local stats x0.5", family="stats", stats=0.5),
        replace(base, name=f"{tag} + global context fused", family="fusion", fusion="global"),
        replace(base, name=f"{tag} + local stats x1", family="stats", stats=1.0),
    ]


def _transfer(
    cache: FeatureCache, product: str, report: dict, until: float = float("inf")
) -> list[dict[str, Any]]:
    """An untuned product: the default, the scale family and each tuned product's choice.

    Levers not measured before start in order until the epoch time ``until``: the default,
    this session's levers at 1x, the opt-in setting and grass's choice, then the rest."""
    levers = [Lever("default (1x, blocks.2+4, 1 %)", "default")]
    levers += [
        replace(levers[0], name=f"scale {s:g}x", family="scale", scale=s) for s in (1.5, 2.0)
    ]
    for tuned in TUNED:
        chosen = [r for r in report.get(tuned, {}).get("levers", []) if r.get("chosen")]
        if chosen:
            lever = Lever(**{**chosen[0]["lever"], "layers": tuple(chosen[0]["lever"]["layers"])})
            setting = replace(lever, flip_tta=False, map_score=False)
            levers.append(replace(setting, name=f"{tuned}'s setting: {_describe(setting)}",
                                  family="transfer"))  # fmt: skip
            flip = " (flip TTA)" if lever.flip_tta and "flip" not in lever.name else ""
            levers.append(
                replace(lever, name=f"{tuned}'s choice: {lever.name}{flip}", family="transfer")
            )
    levers.append(replace(levers[0], name="2x layers 2+4+6 (the opt-in setting)", family="scale",
                          scale=PROMOTED["scale"], layers=tuple(PROMOTED["layers"])))  # fmt: skip
    levers += _new_levers(levers[0])[:3]
    if product in ALIGNED:
        levers.append(replace(levers[0], name="PaDiM (per-position Gaussians)", family="position",
                              padim=True, neighbors=1))  # fmt: skip
        levers += [
            replace(levers[0], name=f"positions within {r} cells", family="position",
                    neighbors=1, position_radius=r)
            for r in (1, 2, 4)
        ]  # fmt: skip
        levers.append(replace(levers[-2], name="2x positions within 2 cells", scale=2.0))
    rows, seen = [], set()
    earlier = {_key(r["lever"]): r for r in report.get(product, {}).get("levers", [])}
    for lever in sorted(levers, key=_priority):
        key = replace(lever, name="", family="")
        if key in seen:
            continue
        seen.add(key)
        if _key(asdict(lever)) in earlier:  # measured by an earlier run: kept, renamed
            row = earlier[_key(asdict(lever))]
            rows.append({**row, "name": lever.name, "family": lever.family})
            continue
        if time.time() > until:
            log.info("%s %s: not run (past --until)", product, lever.name)
            continue
        row = _evaluate(cache, lever)
        rows.append(row)
        log.info("%s %-40s val %.3f test %.3f px %.3f pro %.3f", product, lever.name,
                 row["validation_auroc"], row["test"]["image_auroc"]["value"],
                 row["test"]["pixel_auroc"]["value"], row["test"]["aupro"]["value"])  # fmt: skip
    for row in rows:
        row["chosen"] = False
    return rows


def _priority(lever: Lever) -> int:
    """Order of an untuned product's levers under a deadline (``_transfer``)."""
    if lever.family == "default":
        return 0
    if _is_new(asdict(lever)) and lever.scale == 1.0:
        return 1  # this session's levers at the cheap 256 px station
    if lever.name.startswith(("2x layers", "grass's")):
        return 2
    return 3 if lever.name.startswith("gravel's") else 4


def _describe(lever: Lever) -> str:
    """Short settings of a lever (what ``overrides`` would set; else its name's settings)."""
    overrides = lever.overrides()
    if overrides is None:
        return lever.name
    return ", ".join(overrides) or "default"


def _key(lever: dict) -> str:
    """A lever's settings without its name and family, as a comparable string."""
    full = asdict(Lever(**{**lever, "layers": tuple(lever["layers"])}))
    return json.dumps({**full, "name": "", "family": ""}, sort_keys=True)


def _s(lever: Lever) -> str:
    return f"{lever.scale:g}x"


def _evaluate(cache: FeatureCache, lever: Lever) -> dict[str, Any]:
    started = time.perf_counter()
    load = load_average()
    feats = cache.get(lever.backbone, lever.size, False, lever_layers(lever))
    fitted = fit_lever(feats["train"], lever)
    val_out, _ = run_split(cache, "val", fitted, lever)
    test_out, score_s = run_split(cache, "test", fitted, lever)
    samples = cache.splits["test"]
    labels = np.asarray([s.label for s in samples])
    masks = masks_of(samples)
    val_labels = np.asarray([s.label for s in cache.splits["val"]])
    extra: dict[str, Any] = {}
    if lever.fusion == "stats":
        val, test = fuse_stats(val_out, val_labels, test_out)
    elif lever.fusion == "global":
        val, test, kept = fuse_global(cache, lever, val_out.main, val_labels, test_out.main)
        extra["global_kept"] = list(kept)
    else:
        val, test = val_out.main, test_out.main
    extract = cache.extract_s.get((lever.backbone, lever.size, False), {})
    kinds = [s.defect_type for s in samples]
    return {
        **extra,
        "cpu": _cpu(),
        "load": [load, load_average()],
        "name": lever.name,
        "family": lever.family,
        "lever": asdict(lever),
        "overrides": lever.overrides(),
        "validation_auroc": round(float(image_auroc(val.scores, val_labels)), 4),
        "test": figures(test.scores, test.maps, labels, masks),
        "test_per_kind": per_kind(test.scores, labels, kinds),
        "peaks": peaks(test.maps, labels, masks, kinds),
        "bank": int(fitted.bank.shape[0]),
        "patches": fitted.patches,
        "fit_s": round(extract.get("train", 0.0) + fitted.select_s, 2),
        "select_s": round(fitted.select_s, 2),
        "score_ms_per_image": round(1e3 * score_s / len(samples), 2),
        "seconds": round(time.perf_counter() - started, 1),
    }


def ablate(args: argparse.Namespace) -> None:
    report = _ablation(args.out)
    for product in args.products.split(","):
        dataset = load_dataset(args.data / product)
        config = load_model_config("patchcore", product=product)
        validation, test = evaluation_splits(config, dataset)
        cache = FeatureCache(
            {"train": list(dataset.train_samples), "val": validation, "test": test}
        )
        load = load_average()
        started = time.perf_counter()
        previous = report.get(product, {})
        for row in previous.get("levers", []):  # rows reused from an earlier run keep its CPU
            row.setdefault("cpu", previous.get("cpu", "unknown"))
            row.setdefault("load", [previous.get("load_before"), previous.get("load_after")])
        if product in TUNED:
            earlier = report.get(product, {}).get("levers", [])

            def save(rows: list, product: str = product) -> None:
                save_report(args.out, f"ablation_{product}", {"product": product, "levers": rows,
                            "partial": True, "tuned": True})  # fmt: skip

            rows = _walk(cache, product, earlier, save, _until(args.until))
        else:
            rows = _transfer(cache, product, report, _until(args.until))
        report[product] = {
            "product": product,
            "tuned": product in TUNED,
            "test_images": len(test),
            "test_good": sum(s.label == 0 for s in test),
            "validation_images": len(validation),
            "levers": rows,
            "load_before": load,
            "load_after": load_average(),
            "seconds": round(time.perf_counter() - started, 1),
            "cpu": _cpu(),
        }
        save_report(args.out, f"ablation_{product}", report[product])


def _ablation(out: Path) -> dict[str, dict]:
    """Every product's ``ablation_<product>.json`` (one file each: phases may run in parallel)."""
    order = [*TUNED, "tissue", "weave", "part", "brick"]
    found = {p.stem.removeprefix("ablation_"): p for p in out.glob("ablation_*.json")}
    names = sorted(found, key=lambda n: order.index(n) if n in order else len(order))
    return {name: json.loads(found[name].read_text(encoding="utf-8")) for name in names}


def _chosen(report: dict, product: str) -> dict | None:
    rows = [r for r in report.get(product, {}).get("levers", []) if r.get("chosen")]
    return rows[0] if rows else None


def station(args: argparse.Namespace) -> None:
    """Default and chosen configs through ``train_model`` + ``export_bundle`` (FP32, INT8)."""
    from inspection.core.registry import Registry
    from inspection.training.export import ExportOptions
    from inspection.training.registry_export import RegistryExport, export_bundle
    from inspection.training.train import train_model

    ablation = _ablation(args.out)
    report = previous_report(args.out, "station")
    registry = Registry(args.registry)
    for product in args.products.split(","):
        chosen = _chosen(ablation, product)
        configs: dict[str, tuple[str, ...]] = {}
        if args.configs:
            for item in args.configs.split(";"):
                role, _, overrides = item.partition(":")
                configs[role] = tuple(o for o in overrides.split("|") if o)
        elif chosen is not None and chosen["overrides"]:
            configs["chosen"] = tuple(chosen["overrides"])
        for role, overrides in configs.items():
            key = f"{product}/{role}"
            if key in report:
                continue
            config = load_model_config("patchcore", product=product, overrides=overrides)
            load = load_average()
            outcome = train_model(
                config, load_dataset(args.data / product), product=product, registry=registry,
                progress=False,
            )  # fmt: skip
            version = outcome.record.model_version
            bundles = {}
            for precision in ("fp32", "int8"):
                result = export_bundle(
                    registry, product, ExportOptions(precision=precision, force=True),
                    RegistryExport(version=version),
                )  # fmt: skip
                bundles[precision] = {
                    "bundle": str(result.bundle_dir),
                    "gate_passed": bool(result.gate.passed),
                    "metrics": {k: result.metrics.get(k) for k in (
                        "image_auroc", "pixel_auroc", "aupro", "false_reject_rate", "miss_rate",
                        "region_recall")},
                }  # fmt: skip
            report[key] = {
                "product": product,
                "role": role,
                "overrides": list(overrides),
                "version": version,
                "fit_s": outcome.record.metrics.get("fit_seconds"),
                "bank": int(outcome.model.model.memory_bank.shape[0]),
                "record_metrics": {k: outcome.record.metrics.get(k) for k in (
                    "image_auroc", "pixel_auroc", "aupro")},
                "bundles": bundles,
                "load_before": load,
                "load_after": load_average(),
            }  # fmt: skip
            save_report(args.out, "station", report)


def latency(args: argparse.Namespace) -> None:
    """Station p50 of every exported bundle, and a graph proxy for every ablation lever."""
    from inspection.core.images import read_image
    from inspection.runtime.inspector import Inspector

    station_rows = previous_report(args.out, "station")
    out: dict[str, Any] = {"load_before": load_average(), "cpu": _cpu(), "bundles": {},
                           "proxy": {}}  # fmt: skip
    images = [read_image(p) for p in sorted((args.data / "grass/test/good").glob("*.png"))[:20]]
    for bundle in sorted(args.site_registry.glob("*/bundles/v0001-*")):
        product, precision = bundle.parts[-3], bundle.name.split("-")[-1]
        inspector = Inspector.from_bundle(bundle)
        out["bundles"][f"{product}/default/{precision}"] = timed_rounds(inspector.inspect, images)
        out["bundles"][f"{product}/default/{precision}"]["bundle"] = str(bundle)
    for key, row in station_rows.items():
        for precision, bundle in row["bundles"].items():
            inspector = Inspector.from_bundle(bundle["bundle"])
            out["bundles"][f"{key}/{precision}"] = timed_rounds(inspector.inspect, images)
    ablation = _ablation(args.out)
    shapes: dict[str, dict] = {}
    for product in ablation.values():
        for row in product["levers"]:
            lever = row["lever"]
            if args.key_levers and not (row["family"] in KEY_FAMILIES or row.get("chosen")):
                continue
            key = _shape_key(lever, row["bank"])
            shapes.setdefault(key, {"lever": lever, "bank": row["bank"]})
    for key, shape in shapes.items():
        out["proxy"][key] = _proxy(shape["lever"], shape["bank"], images)
        log.info("proxy %s %s", key, out["proxy"][key])
    out["load_after"] = load_average()
    save_report(args.out, "latency", out)


def _shape_key(lever: dict, bank: int) -> str:
    tta = "+flip" if lever["flip_tta"] else ""
    if lever.get("position_radius") is not None:
        tta += f" positions{lever['position_radius']}"
    return (f"{lever['backbone'][-5:]} {lever['size'] if 'size' in lever else _size(lever)}px "
            f"{'+'.join(x[-1] for x in lever['layers'])} pool{lever['pool']} bank{bank}{tta}")  # fmt: skip


def _size(lever: dict) -> int:
    return Lever(**{**lever, "layers": tuple(lever["layers"])}).size


def _proxy(lever_dict: dict, bank: int, images: list) -> dict[str, float]:
    """FP32 OpenVINO graph of the lever's PatchCore (random bank of its size), batch 1,
    2 threads, LATENCY hint; image resize + normalisation included (cv2), TTA runs it twice."""
    import cv2
    import openvino as ov
    import torch

    from inspection.runtime.graph import optimize_graph
    from inspection.training.backbones import resolve_weights
    from inspection.training.convert import convert_torch_model
    from inspection.training.train import build_model

    lever = Lever(**{**lever_dict, "layers": tuple(lever_dict["layers"])})
    if lever.pool != 3 or lever.position_radius is not None:
        return {"p50_ms": None, "note": "not a model setting (not exported)"}
    config = load_model_config("patchcore", overrides=[
        f"backbone.name={lever.backbone}", f"backbone.layers=[{','.join(lever.layers)}]",
        f"image_size=[{lever.size},{lever.size}]", f"num_neighbors={lever.neighbors}"])  # fmt: skip
    model = build_model(config, resolve_weights(lever.backbone)).model.eval()
    dim = sum(_channels(lever.backbone, layer) for layer in lever.layers)
    model.memory_bank = torch.randn(bank, dim)
    graph = convert_torch_model(model, (lever.size, lever.size))
    optimize_graph(graph)
    compiled = ov.Core().compile_model(graph, "CPU", {"PERFORMANCE_HINT": "LATENCY",
                                       "INFERENCE_PRECISION_HINT": "f32"})  # fmt: skip
    request = compiled.create_infer_request()

    def run(image: np.ndarray) -> None:
        for flip in (False, True) if lever.flip_tta else (False,):
            x = cv2.resize(image, (lever.size, lever.size), interpolation=cv2.INTER_LINEAR)
            x = (x.astype(np.float32) / 255.0 - 0.5) / 0.5
            x = x[:, ::-1] if flip else x
            request.infer({0: np.ascontiguousarray(x.transpose(2, 0, 1)[None])})

    return timed_rounds(run, images)


def _channels(backbone: str, layer: str) -> int:
    import timm

    from inspection.training.backbones import no_pretrained_download

    with no_pretrained_download():
        model = timm.create_model(backbone, pretrained=False, features_only=True)
    info = model.feature_info
    return dict(zip(info.module_name(), info.channels(), strict=True))[layer]


def report(args: argparse.Namespace) -> None:
    """``summary.md`` and plots from the phases' JSON files."""
    ablation = _ablation(args.out)
    station_rows = previous_report(args.out, "station")
    lat = previous_report(args.out, "latency")
    lines = [
        "# Hard surfaces: PatchCore levers on busy textures, with their station cost",
        "",
        "Produced by `bench/hard_surfaces.py` (phases `ablate`, `station` under `/work/bin/heavy`;",
        "`latency` under `/work/bin/bench`; `report`). Held-out test split (the project's own",
        "split: 70 % of each test type); the **validation split alone chooses** (greedy walk, a",
        f"change is kept only if it adds > {MARGIN} validation image AUROC). Intervals: stratified",
        "bootstrap 95 % (image AUROC: `core/bootstrap.py`, 2000 resamples; pixel AUROC / AUPRO:",
        "images resampled, 1000 resamples, binned figures). Pixel figures on maps brought back to",
        "256 px. `grass`, `gravel` are tuned; **`tissue` and `weave` are the evaluation family**",
        "(demo generators `demo_tissue`, `demo_weave`; 60 good + 30 per defect type, nothing tuned",
        "on them); `brick` is the regression check.",
        "",
        "**Two CPUs.** Each row names the machine it ran on (`CPU` column): rows of the first",
        "session ran on an Intel Xeon (2 vCPU), rows of the second (colour statistics, fusion,",
        "PaDiM, weave, and walk steps the first session did not reach) on an AMD EPYC (2 vCPU,",
        "Zen 4: AVX-512, VNNI, BF16, no AMX). A row measured once is reused, not re-run; accuracy does not depend on the CPU",
        "beyond float rounding, fit seconds do (both sessions shared the machine: each row's load",
        "before and after it is in `ablation_<product>.json`, `load`).",
        "",
        "**Levers added in the second session** (`bench/_hard_levers.py`): `+ local stats xW` --",
        "per-channel mean and std of the normalised pixels in a 32 px window around each",
        "stride-8 patch, z-scored on training patches and scaled so their summed variance is W^2",
        "times the CNN embedding's, appended to the PatchCore embedding; `+ stats model fused`",
        "-- a separate nearest-neighbour model of those statistics alone, fused with PatchCore by",
        "the max of z-scores standardised on the good validation images (image score and map);",
        "`+ global context fused` -- the product's global context (`core/global_context.py`:",
        "pooled features, colour, frequency; components chosen on validation, image score only);",
        "`PaDiM` -- a Gaussian per grid cell (shrunk covariance, Mahalanobis distance) for the",
        "aligned `part`. `graph p50` of these levers is an estimate marked `~` (see the station",
        "cost section): the graph proxy builds only what `ModelConfig` can export.",
        "",
        "Tuned products' rows are in walk order and **cumulative**: each row is the best so far",
        "plus the named change (gravel's `2x lite2` carries layers 2+4+6 and flip TTA; its",
        "`2x + ...` rows sit on top of that; grass's `2x + ...` rows on 2x layers 2+4+6).",
        "",
    ]
    proxy = lat.get("proxy", {})
    for product, entry in ablation.items():
        lines += _product_table(product, entry, proxy)
    lines += _before_after(ablation)
    lines += _station_table(station_rows, lat)
    lines += _kinds_section(args.out, ablation)
    for product, entry in ablation.items():
        _plot_levers(args.out / f"levers_{product}.png", product, entry)
    (args.out / "summary.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _cell(fig: dict | None) -> str:
    if not fig:
        return "-"
    if "low" not in fig:
        return f"{fig['value']:.3f}"
    return f"{fig['value']:.3f} [{fig['low']:.3f}, {fig['high']:.3f}]"


def _product_table(product: str, entry: dict, proxy: dict) -> list[str]:
    role = "tuned" if entry["tuned"] else "not tuned: the default, scale and the tuned choices"
    lines = [
        f"## {product} ({role}; {entry['test_images']} held-out images, {entry['test_good']} "
        f"good; CPU per row in the last column)",
        "",
        "| lever | val AUROC | image AUROC | pixel AUROC | AUPRO | bank | fit s | graph p50 ms |"
        " CPU |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in entry["levers"]:
        test = row["test"]
        p, estimate = _proxy_p50(row, proxy), None
        if _is_new(row["lever"]):
            p, estimate = None, _estimate(row, proxy)
        mark = " **(chosen)**" if row.get("chosen") else ""
        lines.append(
            f"| {row['name']}{mark} | {row['validation_auroc']:.3f} | {_cell(test['image_auroc'])}"
            f" | {_cell(test['pixel_auroc'])} | {_cell(test['aupro'])} | {row['bank']} | "
            f"{row['fit_s']:.1f} | {_p50_cell(p, estimate)} | {_cpu_short(row.get('cpu'))} |"
        )
    return [*lines, ""]


def _cpu_short(cpu: str | None) -> str:
    """Short CPU name ("Intel Xeon", "AMD EPYC") of a model-name string."""
    if not cpu:
        return "-"
    return "Intel Xeon" if "Intel" in cpu else "AMD EPYC" if "AMD" in cpu else cpu


def _p50_cell(p50: float | None, estimate: float | None) -> str:
    """Graph proxy p50, or the estimate (``~``) of a lever the proxy does not build."""
    if p50 is not None:
        return f"{p50:.1f}"
    return f"~{estimate:.1f}" if estimate is not None else "-"


def _proxy_p50(row: dict, proxy: dict) -> float | None:
    return proxy.get(_shape_key(row["lever"], row["bank"]), {}).get("p50_ms")


def _is_new(lever: dict) -> bool:
    return bool(lever.get("stats") or lever.get("fusion") or lever.get("padim"))


EXTRA_MS = {"stats": 0.3, "fusion:stats": 1.5, "fusion:global": 0.8, "padim": 0.0}
"""Estimated station cost a second-session lever adds to the graph of its base lever (same
backbone, size, layers, bank), in ms. ``stats``: two 32 px average pools of the input and 6
more embedding dimensions (< 2 % of the nearest-neighbour product). ``fusion:stats``: a
6-dimensional nearest-neighbour search against a bank of <= 1 % of the statistics rows, one
more blurred map and a max. ``fusion:global``: the global step measured at 0.64-0.77 ms p50
(``reports/global``). ``padim``: the per-cell Mahalanobis product (h*w*D^2, 24 MFLOP at 1x)
replaces the bank search (h*w*bank*D, 96 MFLOP at 1x): no more than its base."""


def _estimate(row: dict, proxy: dict) -> float | None:
    """Base lever's graph proxy p50 plus ``EXTRA_MS`` (an estimate, not a measurement)."""
    lever = row["lever"]
    base = {**lever, "stats": 0.0, "fusion": "", "padim": False, "neighbors": 9}
    bank = row["bank"]
    if lever.get("padim"):
        default_bank = [k for k in proxy if k.startswith(_shape_key(base, 0).rsplit(" bank", 1)[0])]
        p50 = proxy[default_bank[0]]["p50_ms"] if default_bank else None
    else:
        p50 = proxy.get(_shape_key(base, bank), {}).get("p50_ms")
    if p50 is None:
        return None
    extra = EXTRA_MS["stats"] if lever.get("stats") else 0.0
    extra += EXTRA_MS.get(f"fusion:{lever.get('fusion')}", 0.0) if lever.get("fusion") else 0.0
    return p50 + extra


def _before_after(ablation: dict) -> list[str]:
    lines = [
        "## Before -> after (held-out)",
        "",
        "`after` is the product's own validation choice for tuned products; for the others, the",
        "setting promoted to grass and gravel (2x input, layers 2+4+6) where it was measured, else",
        "its scale part (2x input) -- the evaluation family says whether it carries -- and each",
        "tuned product's choice carried over. Rows `1x + ...`: the second session's levers on",
        "the cheap 256 px default, for every product.",
        "",
        "| product | after | image AUROC before -> after | pixel AUROC | AUPRO |",
        "| --- | --- | --- | --- | --- |",
    ]
    for product, entry in ablation.items():
        rows = entry["levers"]
        before = rows[0]
        afters = [r for r in rows if r.get("chosen") or r["family"] == "transfer"]
        afters += [r for r in rows if _is_new(r["lever"]) and r["lever"]["scale"] == 1.0]
        setting = _setting_row(rows)
        if setting is not None and all(setting is not r for r in afters):
            part = setting["lever"]["layers"] != PROMOTED["layers"]
            label = "scale part of the promoted setting" if part else "promoted setting"
            afters.append({**setting, "name": f"{setting['name']} ({label})"})
        for after in afters:
            b, a = before["test"], after["test"]
            lines.append(
                f"| {product} | {after['name']} | {_cell(b['image_auroc'])} -> "
                f"{_cell(a['image_auroc'])} | {b['pixel_auroc']['value']:.3f} -> "
                f"{_cell(a['pixel_auroc'])} | {b['aupro']['value']:.3f} -> {_cell(a['aupro'])} |"
            )
    return [*lines, ""]


def _station_table(rows: dict, lat: dict) -> list[str]:
    lines = []
    if lat.get("bundles"):
        lines += [
            "## Station p50 (`Inspector.inspect`, end to end) and the graph proxy",
            "",
            f"Under `/work/bin/heavy` (the whole-machine lock was not free in time), load "
            f"{lat['load_before']} -> {lat['load_after']}; {lat['cpu']}. 3 rounds of 20 images,",
            "median of round p50s [range]. The default configs are `make demo`'s bundles; the",
            "levers' cost is the graph proxy column above (FP32 OpenVINO graph of the lever's",
            "PatchCore with a bank of its size, batch 1, resize + normalise included).",
            "",
            "| bundle | p50 ms |",
            "| --- | --- |",
        ]
        lines += [
            f"| {k} | {v['p50_ms']:.1f} {v['p50_range_ms']} |" for k, v in lat["bundles"].items()
        ]
        lines.append("")
    if not rows:
        return lines
    lines += [
        "## Through the real path: train, export, station (`Inspector.inspect`)",
        "",
        f"p50 over 3 rounds of 20 images (median of round p50s, [range]); load "
        f"{lat.get('load_before', '-')} -> {lat.get('load_after', '-')}; {lat.get('cpu', '')}.",
        "Image AUROC here is the bundle's own on the held-out split (its export record).",
        "",
        "| product | config | bank | fit s | bundle | gate | image AUROC | pixel AUROC | AUPRO |"
        " station p50 ms |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for key, row in rows.items():
        for precision, bundle in row["bundles"].items():
            m = bundle["metrics"]
            t = lat.get("bundles", {}).get(f"{key}/{precision}", {})
            p50 = f"{t['p50_ms']:.1f} {t['p50_range_ms']}" if t else "-"
            lines.append(
                f"| {row['product']} | {row['role']}: {', '.join(row['overrides']) or 'default'} |"
                f" {row['bank']} | {row['fit_s']} | {precision} | "
                f"{'passed' if bundle['gate_passed'] else 'refused'} | {_num(m['image_auroc'])} | "
                f"{_num(m['pixel_auroc'])} | {_num(m['aupro'])} | {p50} |"
            )
    return [*lines, ""]


def _num(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}"


def _kinds_section(out: Path, ablation: dict) -> list[str]:
    lines = [
        "## Per defect kind: what remains and why",
        "",
        "For the default and the chosen lever (untuned products: the row of the `before -> after`",
        "table): image AUROC per kind, and the share of defects",
        "whose map peak **inside** the defect exceeds the 95th percentile of good images' own",
        "peaks (`found`). A defect below that line cannot be found at a threshold that keeps",
        "good texture clean: the map, not the threshold, is the limit. Plots:",
        "`peaks_<product>.png` (each defect's inside-peak over good images' peak distribution).",
        "A fused lever's map is in z units (standardised on good validation maps, can be < 0):",
        "for it compare `found`, not the peak ratio.",
        "",
        "| product | kind | AUROC default -> chosen | found default -> chosen | median inside-peak /"
        " good p95 (chosen) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for product, entry in ablation.items():
        rows = entry["levers"]
        chosen = next((r for r in rows if r.get("chosen")), None)
        if chosen is None:
            chosen = next((r for r in rows if r["family"] == "transfer"), None)
        chosen = chosen or _setting_row(rows) or rows[0]
        stats = {name: _peak_stats(row["peaks"]) for name, row in (("d", rows[0]), ("c", chosen))}
        for kind in sorted(stats["c"]):
            d, c = stats["d"][kind], stats["c"][kind]
            lines.append(
                f"| {product} | {kind} | {_num(rows[0]['test_per_kind'].get(kind))} -> "
                f"{_num(chosen['test_per_kind'].get(kind))} | {d['found']:.2f} -> {c['found']:.2f}"
                f" | {c['ratio']:.2f} |"
            )
        _plot_peaks(out / f"peaks_{product}.png", product, rows[0], chosen)
    return [*lines, ""]


PROMOTED = {"scale": 2.0, "layers": ["blocks.2", "blocks.4", "blocks.6"]}
"""The setting promoted to grass and gravel (``configs/products``)."""


def _setting_row(rows: list[dict]) -> dict | None:
    """An untuned product's row of the promoted setting, else of its scale part (2x)."""

    def plain(lever: dict) -> bool:
        return lever["pool"] == 3 and not lever["flip_tta"] and not lever.get("map_score") and (
            lever.get("position_radius") is None) and lever["ratio"] == 0.01  # fmt: skip

    for layers in (PROMOTED["layers"], ["blocks.2", "blocks.4"]):
        for row in rows:
            lever = row["lever"]
            if plain(lever) and lever["scale"] == PROMOTED["scale"] and lever["layers"] == layers:
                return row
    return None


def _peak_stats(peaks: list[dict]) -> dict[str, dict[str, float]]:
    good = np.asarray([p["peak"] for p in peaks if p["label"] == 0])
    p95 = float(np.quantile(good, 0.95))
    out = {}
    for kind in sorted({p["kind"] for p in peaks if p["label"] == 1}):
        inside = np.asarray([p["peak_inside"] for p in peaks
                             if p["kind"] == kind and p["peak_inside"] is not None])  # fmt: skip
        out[kind] = {"found": float((inside > p95).mean()) if inside.size else 0.0,
                     "ratio": float(np.median(inside) / p95) if inside.size else 0.0}  # fmt: skip
    return out


def _plot_peaks(path: Path, product: str, default: dict, chosen: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=False)
    for ax, row, title in ((axes[0], default, "default"), (axes[1], chosen, row_name(chosen))):
        peaks = row["peaks"]
        good = np.asarray([p["peak"] for p in peaks if p["label"] == 0])
        scale = float(np.quantile(good, 0.95))
        kinds = sorted({p["kind"] for p in peaks if p["label"] == 1})
        rng = np.random.default_rng(0)
        ax.scatter(rng.uniform(-0.2, 0.2, good.size), good / scale, s=8, c="tab:green",
                   label="good: image peak")  # fmt: skip
        for i, kind in enumerate(kinds, start=1):
            inside = np.asarray([p["peak_inside"] for p in peaks
                                 if p["kind"] == kind and p["peak_inside"] is not None])  # fmt: skip
            ax.scatter(i + rng.uniform(-0.2, 0.2, inside.size), inside / scale, s=8, c="tab:red",
                       label="defect: peak inside its mask" if i == 1 else None)  # fmt: skip
        ax.axhline(1.0, color="k", lw=0.8, ls="--", label="good p95")
        ax.set_xticks(range(len(kinds) + 1), ["good", *kinds])
        ax.set_ylabel("map peak / good images' p95")
        ax.set_title(f"{product}: {title}", fontsize=9)
        ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def row_name(row: dict) -> str:
    return row["name"]


def _plot_levers(path: Path, product: str, entry: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = entry["levers"]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.3))
    y = np.arange(len(rows))
    ax.barh(y - 0.2, [r["validation_auroc"] for r in rows], 0.4, label="validation (chooses)")
    tests = [r["test"]["image_auroc"] for r in rows]
    values = np.asarray([t["value"] for t in tests])
    err = [values - [t["low"] for t in tests], [t["high"] for t in tests] - values]
    ax.barh(y + 0.2, values, 0.4, xerr=err, alpha=0.7, label="held-out image AUROC, 95 % CI")
    ax.set_yticks(y, [r["name"] + (" *" if r.get("chosen") else "") for r in rows], fontsize=8)
    ax.axvline(0.95, color="k", lw=0.8, ls="--")
    ax.set_xlim(0.3, 1.0)
    ax.invert_yaxis()
    ax.set_title(f"{product}: levers in walk order (* chosen)")
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _until(hhmm: str | None) -> float:
    """Epoch seconds of today's UTC ``HH:MM`` (no limit when None)."""
    if not hhmm:
        return float("inf")
    hour, minute = (int(x) for x in hhmm.split(":"))
    now = time.gmtime()
    return time.mktime(time.struct_time((now.tm_year, now.tm_mon, now.tm_mday, hour, minute, 0,
                       0, 0, 0))) - time.timezone  # fmt: skip


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return f"{line.split(':', 1)[1].strip()} x{os.cpu_count()}"
    return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("phase", choices=("ablate", "station", "latency", "report"))
    parser.add_argument("--data", type=Path, default=Path("datasets"))
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--products", default="grass,gravel,tissue,weave,brick")
    parser.add_argument(
        "--configs",
        default=None,
        help="station: 'role:override|override;role2:...' instead of the ablation's choice",
    )
    parser.add_argument("--key-levers", action="store_true", help="latency: key levers only")
    parser.add_argument("--until", default=None, help="UTC HH:MM: start no lever after it")
    parser.add_argument(
        "--site-registry",
        type=Path,
        default=Path("/work/main/var/registry"),
        help="latency: the default configs' bundles (make demo's), timed as 'default'",
    )
    parser.add_argument("--registry", type=Path, default=Path("var/hard_surfaces/registry"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for name in ("lightning", "lightning_fabric", "nncf", "anomalib", "inspection"):
        logging.getLogger(name).setLevel(logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    phases = {"ablate": ablate, "station": station, "latency": latency, "report": report}
    phases[args.phase](args)


if __name__ == "__main__":
    main()

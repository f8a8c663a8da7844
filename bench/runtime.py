"""Runtime benchmark: anomalib's torch inference vs our OpenVINO FP32 / FP16 / INT8 bundles.

    python bench/runtime.py [--product brick] [--kinds patchcore stfpm] [--out reports/bench]

For each model kind: train on the demo data (``datasets/<product>``) into a bench registry
(reused on later runs), export FP32/FP16/INT8 bundles, save the anomalib module with its own
``to_torch`` export, then measure every engine in its own subprocess on the same held-out
test images: latency p50/p95 at batch 1 (decoded image in, result out), best throughput
(sequential, batch 8, or async queue), peak RSS, and image/pixel AUROC of the normalised
outputs. Writes ``runtime.json`` and ``runtime.md``. Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

log = logging.getLogger("bench.runtime")
ENGINES = ("anomalib-torch", "fp32", "fp16", "int8")
THROUGHPUT_IMAGES = 32
LATENCY_SAMPLES = 32
BATCH = 8


# ========================================================================= workers
def _peak_rss_mb() -> float:
    """Peak RSS of this process since exec (VmHWM); ru_maxrss would include the parent's
    memory at fork time, which is the torch-side bench parent."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _percentiles(samples: list[float]) -> dict[str, float]:
    return {
        "p50": float(np.percentile(samples, 50)),
        "p95": float(np.percentile(samples, 95)),
        "mean": float(np.mean(samples)),
    }


def _timed(fn, count: int) -> float:
    start = time.perf_counter()
    fn()
    return count / (time.perf_counter() - start)


def worker_openvino(bundle: Path, images: list[np.ndarray]) -> dict[str, Any]:
    """Station side: only numpy/OpenCV/OpenVINO are imported here."""
    from inspection.runtime.inspector import Inspector

    start = time.perf_counter()
    inspector = Inspector.from_bundle(bundle)
    load_s = time.perf_counter() - start
    outputs = [inspector.inspect(image) for image in images]  # also the warm-up
    latencies = []
    while len(latencies) < LATENCY_SAMPLES:
        for image in images:
            t = time.perf_counter()
            inspector.inspect(image)
            latencies.append((time.perf_counter() - t) * 1e3)
    rss_serving = _peak_rss_mb()
    stream = (images * (THROUGHPUT_IMAGES // len(images) + 1))[:THROUGHPUT_IMAGES]
    throughput = {
        "sequential": _timed(lambda: [inspector.inspect(i) for i in stream], len(stream)),
        f"batch{BATCH}": _timed(
            lambda: [
                inspector.inspect_batch(stream[k : k + BATCH]) for k in range(0, len(stream), BATCH)
            ],
            len(stream),
        ),
    }
    fast = Inspector.from_bundle(bundle, performance_hint="THROUGHPUT")
    fast.inspect_many(stream[:4])
    throughput["async"] = _timed(lambda: fast.inspect_many(stream), len(stream))
    return {
        "load_s": load_s,
        "latency_ms": _percentiles(latencies),
        "throughput_ips": throughput,
        "peak_rss_mb_serving": rss_serving,
        "peak_rss_mb": _peak_rss_mb(),
        "torch_imported": "torch" in sys.modules,
        "scores": [r.score for r in outputs],
        "maps": np.stack([r.anomaly_map for r in outputs]),
    }


def worker_torch(model_path: Path, images: list[np.ndarray]) -> dict[str, Any]:
    """anomalib's own inference: ``TorchInferencer`` (pre-processor, model, post-processor)."""
    import torch
    from anomalib.deploy import TorchInferencer

    torch.set_num_threads(os.cpu_count() or 1)
    start = time.perf_counter()
    inferencer = TorchInferencer(path=model_path, device="cpu")
    load_s = time.perf_counter() - start

    def predict(image: np.ndarray) -> Any:
        with torch.inference_mode():
            return inferencer.predict(image)

    outputs = [predict(image) for image in images]
    latencies = []
    while len(latencies) < LATENCY_SAMPLES:
        for image in images:
            t = time.perf_counter()
            predict(image)
            latencies.append((time.perf_counter() - t) * 1e3)
    rss_serving = _peak_rss_mb()
    stream = (images * (THROUGHPUT_IMAGES // len(images) + 1))[:THROUGHPUT_IMAGES]

    def batched() -> None:
        for k in range(0, len(stream), BATCH):
            tensor = torch.stack(
                [
                    torch.from_numpy(i).permute(2, 0, 1).float() / 255.0
                    for i in stream[k : k + BATCH]
                ]
            )
            with torch.inference_mode():
                inferencer.model(tensor)

    throughput = {
        "sequential": _timed(lambda: [predict(i) for i in stream], len(stream)),
        f"batch{BATCH}": _timed(batched, len(stream)),
    }
    return {
        "load_s": load_s,
        "latency_ms": _percentiles(latencies),
        "throughput_ips": throughput,
        "peak_rss_mb_serving": rss_serving,
        "peak_rss_mb": _peak_rss_mb(),
        "torch_imported": True,
        "scores": [float(o.pred_score.reshape(-1)[0]) for o in outputs],
        "maps": np.stack(
            [o.anomaly_map.reshape(o.anomaly_map.shape[-2:]).numpy() for o in outputs]
        ),
    }


def run_worker(args: argparse.Namespace) -> None:
    from inspection.core.images import read_image

    paths = json.loads(Path(args.images).read_text())
    images = [read_image(p) for p in paths]
    load_before = os.getloadavg()[0]
    if args.engine == "anomalib-torch":
        result = worker_torch(Path(args.model), images)
    else:
        result = worker_openvino(Path(args.model), images)
    # other jobs on the machine skew timings: record the 1-minute load around the run
    result["loadavg_1m"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    np.save(Path(args.out).with_suffix(".npy"), result.pop("maps").astype(np.float32))
    Path(args.out).write_text(json.dumps(result, indent=2))


# ========================================================================== parent
def ensure_dataset(product: str, datasets: Path) -> Path:
    from inspection.data.demo import write_demo

    folder = datasets / product
    if not (folder / "train").is_dir():
        log.info("writing demo product %s to %s", product, datasets)
        write_demo(datasets, [product])
    return folder


def ensure_version(registry: Any, product: str, kind: str, dataset_dir: Path) -> Any:
    from inspection.data.dataset import load_dataset
    from inspection.training.config import load_model_config
    from inspection.training.train import train

    for record in reversed(registry.versions(product)):
        if record.model_kind == kind:
            log.info("reusing %s (%s)", record.model_version, kind)
            return record
    log.info("training %s on %s", kind, dataset_dir)
    config = load_model_config(kind, product=product)
    return train(config, load_dataset(dataset_dir), product=product, registry=registry)


def ensure_bundles(registry: Any, record: Any, dataset_dir: Path) -> dict[str, Path]:
    from inspection.training.export import export_bundle

    bundles = {}
    for precision in ("fp32", "fp16", "int8"):
        bundle_id = f"{record.version}-{precision}"
        if bundle_id not in registry.bundle_ids(record.product):
            log.info("exporting %s", bundle_id)
            export_bundle(
                registry,
                record.product,
                precision=precision,
                version=record.version,
                dataset_path=dataset_dir,
                force=True,  # measure it even when export would refuse it; reported below
            )
        bundles[precision] = registry.bundle_dir(record.product, bundle_id)
    return bundles


def torch_model_file(record: Any, folder: Path) -> Path:
    from inspection.training.train import load_trained_model

    target = folder / f"{record.version}-torch"
    path = target / "weights" / "torch" / "model.pt"
    if not path.is_file():
        path = Path(load_trained_model(record).to_torch(export_root=target))
    return path


def measure(engine: str, model: Path, images_file: Path, scratch: Path) -> dict[str, Any]:
    out = scratch / f"{engine}.json"
    command = [
        sys.executable, __file__, "worker", "--engine", engine, "--model", str(model),
        "--images", str(images_file), "--out", str(out),
    ]  # fmt: skip
    log.info("measuring %s", engine)
    # anomalib's TorchInferencer unpickles the module; we wrote that file ourselves just above.
    env = {**os.environ, "TRUST_REMOTE_CODE": "1"}
    subprocess.run(command, check=True, cwd=ROOT, env=env)
    result = json.loads(out.read_text())
    result["maps"] = np.load(out.with_suffix(".npy"))
    return result


def accuracy(result: dict[str, Any], samples: list[Any]) -> dict[str, float | None]:
    from inspection.training.evaluate import compute_metrics
    from inspection.training.export import _read_mask

    maps = result["maps"]
    overall = compute_metrics(
        np.asarray(result["scores"]),
        np.asarray([s.label for s in samples]),
        maps,
        np.stack([_read_mask(s.mask_path, maps.shape[1:]) for s in samples]),
        [s.defect_type for s in samples],
        image_threshold=0.5,
        pixel_threshold=0.5,
    )["overall"]
    return {"image_auroc": overall["image_auroc"], "pixel_auroc": overall["pixel_auroc"]}


def bench_kind(
    registry: Any, product: str, kind: str, dataset_dir: Path, work: Path, cache: Path
) -> dict:
    from inspection.data.dataset import load_dataset
    from inspection.training.export import held_out_test_samples

    record = ensure_version(registry, product, kind, dataset_dir)
    bundles = ensure_bundles(registry, record, dataset_dir)
    models = {"anomalib-torch": torch_model_file(record, cache), **bundles}
    work.mkdir(parents=True, exist_ok=True)
    samples = held_out_test_samples(record, load_dataset(dataset_dir))
    images_file = work / f"{kind}-images.json"
    images_file.write_text(json.dumps([str(s.path) for s in samples]))
    rows = {}
    for engine in ENGINES:
        result = measure(engine, models[engine], images_file, work)
        result.update(accuracy(result, samples))
        del result["maps"], result["scores"]
        best_mode = max(result["throughput_ips"], key=result["throughput_ips"].get)
        result["best_throughput_ips"] = result["throughput_ips"][best_mode]
        result["best_throughput_mode"] = best_mode
        rows[engine] = result
    int8_meta = json.loads((bundles["int8"] / "metadata.json").read_text())
    return {
        "model_version": record.model_version,
        "image_size": record.extra["preprocessing"]["input_size"],
        "test_images": len(samples),
        "engines": rows,
        "int8_export_drop_vs_fp32": int8_meta["metrics"].get("image_auroc_drop"),
        "checks": _checks(rows),
    }


def _checks(rows: dict[str, dict]) -> dict[str, Any]:
    torch_, fp32, int8 = rows["anomalib-torch"], rows["fp32"], rows["int8"]
    vs_torch = int8["best_throughput_ips"] / torch_["best_throughput_ips"]
    vs_fp32 = int8["best_throughput_ips"] / fp32["best_throughput_ips"]
    drop = (fp32["image_auroc"] or 0.0) - (int8["image_auroc"] or 0.0)
    return {
        "int8_vs_torch_throughput": round(vs_torch, 2),
        "int8_vs_fp32_throughput": round(vs_fp32, 2),
        "int8_image_auroc_drop_vs_fp32": round(drop, 4),
        "pass_3x_torch": vs_torch >= 3.0,
        "pass_1_5x_fp32": vs_fp32 >= 1.5,
        "pass_auroc_drop": drop <= 0.01,
        "station_rss_vs_torch": round(
            int8["peak_rss_mb_serving"] / torch_["peak_rss_mb_serving"], 2
        ),
    }


def write_markdown(report: dict, path: Path) -> None:
    lines = [
        "# Runtime benchmark: anomalib torch vs OpenVINO bundles",
        "",
        f"Machine: {report['machine']['cpu']}, {report['machine']['cores']} cores "
        f"(shared with other jobs; figures are noisy). Product `{report['product']}`, "
        "held-out test split, each engine in its own process. Latency: decoded RGB image in, "
        "full result out (preprocess, inference, normalisation, map resize, regions).",
        "",
    ]
    for kind, data in report["kinds"].items():
        lines += [
            f"## {kind} ({data['model_version']}, input {data['image_size']}, "
            f"{data['test_images']} test images)",
            "",
            "| engine | p50 ms | p95 ms | best throughput img/s (mode) | peak RSS MB | "
            "image AUROC | pixel AUROC | machine load (1 min, before/after) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for engine, row in data["engines"].items():
            lines.append(
                f"| {engine} | {row['latency_ms']['p50']:.1f} | {row['latency_ms']['p95']:.1f} | "
                f"{row['best_throughput_ips']:.1f} ({row['best_throughput_mode']}) | "
                f"{row['peak_rss_mb_serving']:.0f} | {_f(row['image_auroc'])} | "
                f"{_f(row['pixel_auroc'])} | {_load(row)} |"
            )
        checks = data["checks"]
        lines += [
            "",
            f"- INT8 throughput vs anomalib torch: **{checks['int8_vs_torch_throughput']}x** "
            f"(target >= 3x: {'met' if checks['pass_3x_torch'] else 'NOT met'})",
            f"- INT8 throughput vs our FP32: **{checks['int8_vs_fp32_throughput']}x** "
            f"(target >= 1.5x: {'met' if checks['pass_1_5x_fp32'] else 'NOT met'})",
            f"- INT8 image-AUROC drop vs FP32: **{checks['int8_image_auroc_drop_vs_fp32']}** "
            f"(target <= 0.01: {'met' if checks['pass_auroc_drop'] else 'NOT met'})",
            f"- Station (INT8, no torch) peak RSS is {checks['station_rss_vs_torch']}x "
            "that of anomalib's torch inferencer",
            "",
        ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _load(row: dict) -> str:
    load = row.get("loadavg_1m")
    return "-" if not load else f"{load[0]:.1f} / {load[1]:.1f}"


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def run_parent(args: argparse.Namespace) -> None:
    from inspection.core.registry import Registry

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    registry = Registry(args.registry)
    dataset_dir = ensure_dataset(args.product, Path(args.datasets))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.registry).parent / "work"
    work.mkdir(parents=True, exist_ok=True)
    report = {
        "product": args.product,
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
        },
        "kinds": {},
    }
    previous = out / "runtime.json"
    if args.keep and previous.is_file():  # keep other kinds' figures from an earlier run
        report["kinds"] = json.loads(previous.read_text())["kinds"]
    with tempfile.TemporaryDirectory(prefix="bench-runtime-") as scratch:
        for kind in args.kinds:
            report["kinds"][kind] = bench_kind(
                registry, args.product, kind, dataset_dir, Path(scratch) / kind, work
            )
            (out / "runtime.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
            write_markdown(report, out / "runtime.md")
    print((out / "runtime.md").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    worker = sub.add_parser("worker", help="internal: measure one engine")
    worker.add_argument("--engine", choices=ENGINES, required=True)
    worker.add_argument("--model", required=True)
    worker.add_argument("--images", required=True)
    worker.add_argument("--out", required=True)
    parser.add_argument("--product", default="brick")
    parser.add_argument("--kinds", nargs="+", default=["patchcore", "stfpm"])
    parser.add_argument("--datasets", default=str(ROOT / "datasets"))
    parser.add_argument("--registry", default=str(ROOT / "var" / "bench" / "registry"))
    parser.add_argument("--out", default=str(ROOT / "reports" / "bench"))
    parser.add_argument(
        "--keep", action="store_true", help="Keep other kinds' results from runtime.json."
    )
    args = parser.parse_args()
    if args.command == "worker":
        run_worker(args)
    else:
        run_parent(args)


if __name__ == "__main__":
    main()

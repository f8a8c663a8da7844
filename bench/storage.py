"""Bytes stored per part, good vs NG, under each storage setting, and per day at a line's rate.

A real station core (live bundle, ``Pipeline``, ``Store``) inspects distinct demo images
(good and defective, ``--size`` px PNG) once per storage setting; the bytes each stored part
costs are read back from the blob folder (a blob shared by several rows, such as the all-zero
mask of good parts, is shared out among them) and from the database's growth. Then per day at
``--rates`` parts/day with ``--ng-rate`` NG, written and held at steady state under the
retention windows of ``configs/retention.yaml``.
Writes ``reports/storage/storage.json`` and ``storage.md``.

    python bench/storage.py                      # trains a tiny bundle first (~1 min)
    python bench/storage.py --registry var/registry --product brick --size 256
"""

from __future__ import annotations

import argparse
import shutil
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import yaml
from _report import recorded, save_report, table
from _station import REPO, demo_test_images, serve_live_copy, tiny_registry
from sqlalchemy import text

from inspection.core.registry import Registry
from inspection.station.config import StationCoreConfig
from inspection.station.core import StationCore
from inspection.store.models import SHA_COLUMNS, Inspection
from inspection.store.retention import RetentionConfig, database_bytes

REPORTS = REPO / "reports" / "storage"
WINDOWS = ("blob_days", "kept_blob_days", "row_days")  # the retention windows on record
SETTINGS: dict[str, dict[str, Any]] = {
    "before (everything)": {"good_overlay": True, "good_map": True},
    "default (no good overlay)": {"good_overlay": False, "good_map": True},
    "lean (no good overlay, no good map)": {"good_overlay": False, "good_map": False},
}


def measure(setting: dict[str, Any], args: argparse.Namespace, images: list[bytes]) -> dict:
    """Inspect ``images`` on a fresh station with ``setting``; bytes per good / NG part."""
    root = Path(args.workdir) / "station"
    shutil.rmtree(root, ignore_errors=True)
    (root / "configs").mkdir(parents=True)
    retention = {"default": setting, "audit_rate": 0}
    (root / "configs" / "retention.yaml").write_text(yaml.safe_dump(retention), "utf-8")
    # the station writes golden and tuning records into its registry: a copy, never --registry
    serve_live_copy(args.registry, args.product, root / "registry", "storage bench")
    config = StationCoreConfig(
        products=(args.product,),
        store_url=f"sqlite:///{root / 'inspection.db'}",
        blob_dir=root / "blobs",
        registry_dir=root / "registry",
        allow_unsigned_bundles=True,
        tune_on_load=False,
        configs_dir=root / "configs",
        input_check="off",
    )
    core = StationCore.build(config)
    core.models.start(0)
    try:
        rows = [
            core.pipeline.run(data, product=args.product, station_id="st-1").row for data in images
        ]
    finally:
        core.models.stop()
    db_per_row = _db_bytes_per_row(core.store, rows, args.db_copies)
    users = Counter(sha for row in rows for sha in _shas(row))
    sizes = {sha: core.store.blobs.path(sha).stat().st_size for sha in users}
    per_part: dict[str, list[float]] = {"OK": [], "NG": []}
    for row in rows:
        per_part[row.verdict].append(sum(sizes[s] / users[s] for s in _shas(row)))
    return {
        verdict: {
            "parts": len(values),
            "blob_bytes": round(sum(values) / len(values)) if values else None,
            "db_bytes": round(db_per_row),
        }
        for verdict, values in per_part.items()
    }


def _db_bytes_per_row(store: Any, rows: list[Any], copies: int) -> float:
    """SQLite file growth per row (WAL checkpointed) when the stored rows are inserted again
    ``copies`` times with new ids: enough rows that page granularity does not matter."""
    columns = [c.name for c in Inspection.__table__.columns]
    fields = [{c: getattr(row, c) for c in columns} for row in rows]

    def size() -> int:
        with store.engine.connect() as connection:
            connection.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
        return database_bytes(store) or 0

    before = size()
    for _ in range(copies):
        batch = [f | {"id": uuid.uuid4().hex, "request_id": None} for f in fields]
        with store.session() as session:
            session.execute(Inspection.__table__.insert(), batch)
    return (size() - before) / (copies * len(rows))


def _shas(row: Any) -> list[str]:
    return [sha for column in SHA_COLUMNS if (sha := getattr(row, column))]


def per_day(parts: dict, rate: int, ng_rate: float, retention: RetentionConfig) -> dict:
    """Bytes written per day and held at steady state under ``retention``'s default windows."""
    policy = retention.default
    good, ng = parts["OK"], parts["NG"]
    audit = 1 / retention.audit_rate if retention.audit_rate else 0.0
    n_good, n_ng = rate * (1 - ng_rate), rate * ng_rate
    written = n_good * (good["blob_bytes"] + good["db_bytes"]) + n_ng * (
        ng["blob_bytes"] + ng["db_bytes"]
    )
    kept_days = policy.kept_blob_days if policy.kept_blob_days is not None else float("inf")
    row_days = policy.row_days if policy.row_days is not None else float("inf")
    held = (
        n_good * (1 - audit) * good["blob_bytes"] * policy.blob_days
        + (n_good * audit * good["blob_bytes"] + n_ng * ng["blob_bytes"]) * kept_days
        + rate * good["db_bytes"] * row_days
    )
    return {"written_gb_per_day": round(written / 1e9, 2), "steady_state_gb": round(held / 1e9, 1)}


def markdown(report: dict[str, Any]) -> str:
    headers = ("setting", "good part", "NG part", "DB per row",
               *(f"{r:,}/day written, held" for r in report["rates"]))  # fmt: skip
    rows = [(name, *(f"{row['parts'][v]['blob_bytes'] / 1e3:.1f} KB" for v in ("OK", "NG")),
             f"{row['parts']['OK']['db_bytes']} B",
             *(f"{d['written_gb_per_day']} GB, {d['steady_state_gb']} GB" for d in row["per_day"]))
            for name, row in report["settings"].items()]  # fmt: skip
    lines = [
        "# Storage per part (bench/storage.py)",
        "",
        f"{report['images']} distinct {report['size']} px demo PNGs through a real station core "
        f"(`Pipeline` -> `Store`, SQLite), bundle `{report['bundle']}`. Blob bytes are the files "
        "each row references (shared blobs shared out); database bytes the SQLite file's growth "
        "per row with the rows inserted again `--db-copies` times (WAL checkpointed). Per day: NG rate "
        f"{report['ng_rate']:.1%}, retention windows of configs/retention.yaml "
        f"({report['retention']}).",
        "",
        *table(headers, rows),
        "",
        f"CPU: {report['cpu']}; load {report['load_before']} before, {report['load_after']} after.",
        "",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", help="Registry with a live bundle (default: train one).")
    parser.add_argument("--product", default="brick")
    parser.add_argument("--size", type=int, default=256, help="Side of the demo images, px.")
    parser.add_argument("--good", type=int, default=60)
    parser.add_argument("--defective", type=int, default=10, help="Per defect type.")
    parser.add_argument("--db-copies", type=int, default=100, help="Row copies for DB bytes.")
    parser.add_argument("--ng-rate", type=float, default=0.022)
    parser.add_argument("--rates", type=int, nargs="+", default=[100_000, 800_000])
    parser.add_argument("--workdir", default="/tmp/inspection-storage-bench")
    parser.add_argument("--out", default=str(REPORTS))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    args.registry = args.registry or str(tiny_registry(Path(args.workdir), args.product))
    paths = demo_test_images(
        Path(args.workdir) / "images", args.product, seed=29, good=args.good,
        per_defect=args.defective, size=args.size,
    )  # fmt: skip
    images = [path.read_bytes() for path in paths]
    retention = RetentionConfig()
    settings = {}
    with recorded(argv) as env:
        for name, setting in SETTINGS.items():
            parts = measure(setting, args, images)
            if missing := [verdict for verdict, part in parts.items() if not part["parts"]]:
                sys.exit(
                    f"no part judged {' or '.join(missing)} among {len(images)} images: "
                    "raise --good or --defective"
                )
            days = [per_day(parts, rate, args.ng_rate, retention) for rate in args.rates]
            settings[name] = {"setting": setting, "parts": parts, "per_day": days}
    report = {
        "images": len(images),
        "size": args.size,
        "bundle": Registry(args.registry).journal.live(args.product).bundle_id,
        "ng_rate": args.ng_rate,
        "rates": args.rates,
        "retention": {k: getattr(retention.default, k) for k in WINDOWS}
        | {"audit_rate": retention.audit_rate},
        "settings": settings,
        **env,
    }
    save_report(Path(args.out), "storage", report, markdown(report))
    print(markdown(report))
    return report


if __name__ == "__main__":
    main()

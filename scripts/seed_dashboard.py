"""Seed a self-contained demo site for the dashboard: registry, store, blobs, retrain reports.

    python scripts/seed_dashboard.py var/dashboard-demo --inspections 5000
    INSPECTION_SITE_CONFIG=var/dashboard-demo/site.yaml inspection dashboard

On PostgreSQL the rows go in by ``COPY``, with old rows' blobs already pruned as retention
would. It creates an admin login and prints the sign-in. SEEDED DATA, NOT MODEL OUTPUT: images
and masks are real demo samples, but scores, maps, metrics and bundles (placeholder model
files) are generated here, and every seeded JSON carries ``"seeded": true``.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml
from PIL import Image
from sqlalchemy import insert, select, text

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from inspection.core.bundle import (  # noqa: E402
    BUNDLE_SCHEMA_VERSION,
    BundleMetadata,
    Normalization,
    Preprocessing,
    write_bundle_metadata,
)
from inspection.core.export_gate import BundleFigures, ExportRecord, GateRecord  # noqa: E402
from inspection.core.registry import Registry  # noqa: E402
from inspection.core.retrain_report import (  # noqa: E402
    ModelEvaluation,
    RetrainReport,
    write_retrain_report,
)
from inspection.dashboard.review import heat_overlay  # noqa: E402
from inspection.data.demo import PRODUCTS, load_texture, render_sample  # noqa: E402
from inspection.store import rollups  # noqa: E402
from inspection.store.models import Inspection  # noqa: E402
from inspection.store.store import Store  # noqa: E402

STATIONS = {"brick": ["line1-cam1", "line1-cam2"], "grass": ["line2-cam1"]}
DEFECT_RATE = 0.06
AUDIT_EVERY = 200
"""One part in this many is in the random audit sample (``Inspection.audit_sample``)."""
SEEDED_NOTE = "seeded demo data, not model output"
SEEDED_SCALE = Normalization(0.5, 0.5, 0.0, 1.0, 0.0, 1.0)
"""Every seeded bundle's normalisation, so the stored scores carry its fingerprint."""


@dataclass(frozen=True)
class Sample:
    """Blob ids of one demo picture: image, anomaly map, overlay and mask (None when good)."""

    image_sha: str
    map_sha: str
    overlay_sha: str
    mask_sha: str | None
    defect: str | None
    size: int


def write_site(root: Path, products: list[str], store_url: str | None = None) -> Path:
    """Write ``root/site.yaml`` pointing every path inside ``root``; returns its path."""
    root.mkdir(parents=True, exist_ok=True)
    site = {
        "registry_dir": str(root / "registry"),
        "store_url": store_url or f"sqlite:///{root / 'inspection.db'}",
        "blob_dir": str(root / "blobs"),
        "reports_dir": str(root / "reports"),
        "datasets_dir": str(root / "datasets"),
        "products": products,
    }
    (root / "site.yaml").write_text(yaml.safe_dump(site, sort_keys=False), encoding="utf-8")
    return root / "site.yaml"


# ---------------------------------------------------------------------------------- pictures
def _render(product: str, index: int, defect: str | None, size: int):
    """(image (S, S, 3) uint8, mask (S, S) uint8 0/255 or None) from the demo generator."""
    spec = PRODUCTS[product]
    texture = _TEXTURES.setdefault(product, load_texture(spec))
    return render_sample(texture, spec, size, (99, sorted(PRODUCTS).index(product), index), defect)


_TEXTURES: dict[str, np.ndarray] = {}


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _fake_map(mask: np.ndarray | None, size: int, rng: np.random.Generator) -> np.ndarray:
    """A plausible anomaly map (S, S) float32 in [0, 1]: blurred mask plus low texture noise."""
    noise = cv2.GaussianBlur(rng.random((size, size)).astype(np.float32), (0, 0), size / 20)
    heat = 0.25 * (noise - noise.min()) / max(float(np.ptp(noise)), 1e-6)
    if mask is not None:
        blob = cv2.GaussianBlur((mask > 0).astype(np.float32), (0, 0), size / 40)
        heat = heat + 0.85 * blob / max(float(blob.max()), 1e-6)
    return np.clip(heat, 0, 1)


def seed_pictures(store: Store, product: str, n_each: int, size: int) -> list[Sample]:
    """``n_each`` good and ``n_each`` defective pictures per product, stored as blobs."""
    kinds = ("crack", "hole", "scratch", "stain")
    rng = np.random.default_rng(len(product))
    samples = []
    for index in range(2 * n_each):
        defect = kinds[index % len(kinds)] if index >= n_each else None
        image, mask = _render(product, index, defect, size)
        heat = _fake_map(mask, size, rng)
        samples.append(
            Sample(
                image_sha=store.blobs.put(_png(image), ".png"),
                map_sha=store.blobs.put(_png(np.uint8(heat * 255)), ".png"),
                overlay_sha=store.blobs.put(_png(heat_overlay(image, heat)), ".png"),
                mask_sha=store.blobs.put(_png(mask), ".png") if mask is not None else None,
                defect=defect,
                size=size,
            )
        )
    return samples


# ------------------------------------------------------------------------------------ scores
def seeded_scores(rng: np.random.Generator, n: int, defective: np.ndarray, shift: float = 0.0):
    """(N,) float64 scores in [0, 1]: good ~ Beta(2.2, 7) (+shift), defective ~ Beta(7, 2.6)."""
    good = rng.beta(2.2, 7.0, n) + shift
    bad = rng.beta(7.0, 2.6, n)
    return np.clip(np.where(defective, bad, good), 0.0, 1.0)


def plant_stations(count: int, products: tuple[str, ...]) -> dict[str, list[str]]:
    """``count`` lines of one camera each, making ``products`` in turn."""
    lines: dict[str, list[str]] = {product: [] for product in products}
    for k in range(count):
        lines[products[k % len(products)]].append(f"line{k + 1:02d}-cam1")
    return lines


def seed_inspections(
    store: Store,
    pictures: dict[str, list[Sample]],
    n: int,
    *,
    days: float = 6.5,
    now: datetime | None = None,
    seed: int = 0,
    batch: int = 20_000,
    stations: dict[str, list[str]] = STATIONS,
) -> None:
    """Insert ``n`` inspections spread over the last ``days`` through the real schema (bulk
    ``INSERT`` of ``batch`` rows), then rebuild the rollups from them."""
    now = now or datetime.now(timezone.utc)
    rng = np.random.default_rng(seed)
    pairs = [(p, s) for p, names in stations.items() if p in pictures for s in names]
    age = np.sort(rng.random(n))[::-1] * days * 86400.0
    which = rng.integers(0, len(pairs), n)
    defective = rng.random(n) < DEFECT_RATE
    # grass drifts: its good parts score higher over the last two days (seeded on purpose)
    drifting = np.array([pairs[k][0] == "grass" for k in range(len(pairs))])[which]
    drifting &= age < 2 * 86400
    scores = np.clip(seeded_scores(rng, n, defective) + 0.08 * (drifting & ~defective), 0, 1)
    latency = rng.gamma(9.0, 4.0, n)
    audit = rng.random(n) < 1.0 / AUDIT_EVERY
    pools = {
        (p, bad): [s for s in pictures[p] if (s.defect is not None) == bad]
        for p in pictures
        for bad in (False, True)
    }
    picks = rng.random(n)
    for start in range(0, n, batch):
        rows = []
        for i in range(start, min(start + batch, n)):
            product, station = pairs[which[i]]
            score = float(scores[i])
            pool = pools[product, bool(defective[i])]
            sample = pool[int(picks[i] * len(pool))]
            rows.append(
                {
                    "id": uuid.uuid4().hex,
                    "created_at": now - timedelta(seconds=float(age[i])),
                    "product": product,
                    "station_id": station,
                    "part_id": f"P{1_000_000 + i}",
                    "source": "import",
                    "source_name": SEEDED_NOTE,
                    "score": score,
                    "threshold": 0.5,
                    "verdict": "NG" if score >= 0.5 else "OK",
                    "model_version": f"{product}/v0002",
                    "bundle_id": "v0002-int8",
                    "latency_ms": float(latency[i]),
                    "mask_source": "sam" if sample.mask_sha else "raw",
                    "regions": [],
                    "width": sample.size,
                    "height": sample.size,
                    "image_sha": sample.image_sha,
                    "map_sha": sample.map_sha,
                    "mask_sha": sample.mask_sha,
                    "overlay_sha": sample.overlay_sha,
                    "audit_sample": bool(audit[i]),
                    "audit_rate": AUDIT_EVERY if audit[i] else None,
                    "score_scale": SEEDED_SCALE.fingerprint,
                }
            )
        with store.session() as session:
            session.execute(insert(Inspection), rows)
    with store.session() as session:  # bulk inserts skip the write path's rollup update
        rollups.rebuild(session)


def copy_inspections(
    store: Store,
    pictures: dict[str, list[Sample]],
    n: int,
    *,
    stations: dict[str, list[str]],
    days: float,
    now: datetime,
    seed: int = 0,
    chunk: int = 1_000_000,
) -> None:
    """``seed_inspections`` for a plant's PostgreSQL: ``COPY`` of ``chunk`` rows per
    transaction with the keys and indexes built after, blobs pruned past ``KeepPolicy``'s
    ages; then the rollups and a ``VACUUM ANALYZE``."""
    import psycopg
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv

    from inspection.store import partitions
    from inspection.store.retention import KeepPolicy

    rng = np.random.default_rng(seed)
    pairs = [(p, s) for p, names in stations.items() if p in pictures for s in names]
    shas = {
        (p, bad): [s for s in pictures[p] if (s.defect is not None) == bad]
        for p in pictures
        for bad in (False, True)
    }
    span, policy = days * 86400.0, KeepPolicy()
    with store.engine.begin() as connection:
        partitions.ensure(connection, now, since=now - timedelta(days=days))
    url = store.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as connection:
        rebuild = _drop_keys(connection)
        for start in range(0, n, chunk):
            size = min(chunk, n - start)
            index = np.arange(start, start + size)
            age = span - (index + rng.random(size)) / n * span
            which = rng.integers(0, len(pairs), size)
            defective = rng.random(size) < DEFECT_RATE
            score = seeded_scores(rng, size, defective)
            audit = rng.random(size) < 1.0 / AUDIT_EVERY
            kept = (score >= 0.5) | audit
            after = np.where(kept, policy.kept_blob_days or np.inf, policy.blob_days) * 86400.0
            pruned = age > after
            picks = rng.random(size)
            cols: dict[str, list] = {
                c: [] for c in ("image_sha", "map_sha", "mask_sha", "overlay_sha")
            }
            for i in range(size):
                product = pairs[which[i]][0]
                pool = shas[product, bool(defective[i])]
                sample = pool[int(picks[i] * len(pool))]
                cols["image_sha"].append(sample.image_sha)
                gone = pruned[i]
                cols["map_sha"].append(None if gone else sample.map_sha)
                cols["mask_sha"].append(None if gone else sample.mask_sha)
                cols["overlay_sha"].append(None if gone else sample.overlay_sha)
            created = np.datetime64(now.replace(tzinfo=None), "us") - (age * 1e6).astype(
                "timedelta64[us]"
            )
            station = pc.take(pa.array([s for _, s in pairs]), pa.array(which))
            product = pc.take(pa.array([p for p, _ in pairs]), pa.array(which))
            part = pc.binary_join_element_wise("P", pc.cast(pa.array(index), pa.string()), "")
            raw = rng.bytes(16 * size).hex().encode()
            table = pa.table(
                {
                    "id": pa.array(np.frombuffer(raw, dtype="S32")).cast(pa.string()),
                    "request_id": pc.binary_join_element_wise(station, part, "/"),
                    "created_at": pa.array(created).cast(pa.timestamp("us", tz="UTC")),
                    "product": product,
                    "station_id": station,
                    "part_id": part,
                    "source": pa.array(["import"] * size),
                    "source_name": pa.array([SEEDED_NOTE] * size),
                    "score": score,
                    "threshold": np.full(size, 0.5),
                    "verdict": np.where(score >= 0.5, "NG", "OK"),
                    "model_version": pc.binary_join_element_wise(product, "v0002", "/"),
                    "bundle_id": pa.array(["v0002-int8"] * size),
                    "latency_ms": rng.gamma(9.0, 4.0, size),
                    "mask_source": np.where(defective, "sam", "raw"),
                    "regions": pa.array(["[]"] * size),
                    "width": np.full(size, pictures[pairs[0][0]][0].size),
                    "height": np.full(size, pictures[pairs[0][0]][0].size),
                    **{c: pa.array(v, pa.string()) for c, v in cols.items()},
                    "audit_sample": audit,
                    "audit_rate": pa.array(np.where(audit, AUDIT_EVERY, 0), mask=~audit),
                    "score_scale": pa.array([SEEDED_SCALE.fingerprint] * size),
                    "blobs_pruned_at": pa.array(
                        created + (np.minimum(after, span) * 1e6).astype("timedelta64[us]"),
                        mask=~pruned,
                    ).cast(pa.timestamp("us", tz="UTC")),
                }
            )
            buffer = io.BytesIO()
            pcsv.write_csv(table, buffer, pcsv.WriteOptions(include_header=False))
            copy = f"COPY inspections ({', '.join(table.column_names)}) FROM STDIN (FORMAT csv)"
            with connection.transaction(), connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit = off")
                with cursor.copy(copy) as sink:
                    sink.write(buffer.getvalue())
            print(f"copied {start + size:,} of {n:,}", flush=True)
        rebuild()
    with store.session() as session:
        session.execute(text("SET LOCAL work_mem = '256MB'"))
        rollups.rebuild(session)
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("VACUUM ANALYZE inspections")


def _drop_keys(connection: Any) -> Callable[[], None]:
    """Drop the results table's keys and indexes; returns what builds them again."""
    keys = connection.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = 'inspections'::regclass AND contype IN ('p', 'u')"
    ).fetchall()
    indexes = connection.execute(
        "SELECT indexname, indexdef FROM pg_indexes i WHERE tablename = 'inspections' AND "
        "NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)"
    ).fetchall()
    for name, _ in indexes:
        connection.execute(f"DROP INDEX {name}")
    for name, _ in keys:
        connection.execute(f"ALTER TABLE inspections DROP CONSTRAINT {name}")

    def rebuild() -> None:
        connection.execute("SET maintenance_work_mem = '1GB'")
        for name, definition in keys:
            connection.execute(f"ALTER TABLE inspections ADD CONSTRAINT {name} {definition}")
            print(f"built {name}", flush=True)
        for name, definition in indexes:
            connection.execute(definition.replace(" ON ONLY ", " ON "))
            print(f"built {name}", flush=True)

    return rebuild


def seed_reviews(store: Store, n: int, *, audits: int = 0, seed: int = 0) -> int:
    """Label up to ``n`` of the oldest NG/borderline inspections and ``audits`` audit parts."""
    from inspection.store.queries import QueueQuery, review_queue

    rng = np.random.default_rng(seed)
    rows = review_queue(store, QueueQuery(order="oldest"), limit=n) if n else []
    picked = select(Inspection).where(Inspection.audit_sample, Inspection.review_label.is_(None))
    with store.session() as session:
        rows += list(session.scalars(picked.order_by(Inspection.created_at).limit(audits)))
    for row in rows:
        is_defect = row.mask_sha is not None
        if is_defect:
            label, defect_type = "defect", ["crack", "hole", "scratch", "stain"][rng.integers(4)]
        else:
            label, defect_type = ("false_alarm" if row.verdict == "NG" else "good"), None
        if rng.random() < 0.03:
            label, defect_type = "unsure", None
        store.add_review(
            row.id, label=label, reviewer="seed", defect_type=defect_type, note=SEEDED_NOTE
        )
    return len(rows)


# ---------------------------------------------------------------------------------- registry
METRICS = {
    "v0001": {"image_auroc": 0.962, "image_f1": 0.912, "pixel_auroc": 0.951, "aupro": 0.861},
    "v0002": {"image_auroc": 0.981, "image_f1": 0.941, "pixel_auroc": 0.968, "aupro": 0.893},
}
INT8_LOSS = {"image_auroc": -0.003, "image_f1": -0.006, "pixel_auroc": -0.004, "aupro": -0.009}


def _bundle(tmp: Path, product: str, version: str, precision: str, seed: int) -> Path:
    metrics = dict(METRICS[version])
    if precision == "int8":
        metrics = {k: round(v + INT8_LOSS[k], 4) for k, v in metrics.items()}
    folder = tmp / f"{version}-{precision}"
    folder.mkdir(parents=True)
    (folder / "model.xml").write_text(f"<!-- {SEEDED_NOTE}: placeholder -->\n", encoding="utf-8")
    (folder / "model.bin").write_bytes(b"SEEDED PLACEHOLDER")
    rng = np.random.default_rng(seed)
    labels = np.r_[np.zeros(60, np.int8), np.ones(40, np.int8)]
    scores = seeded_scores(rng, len(labels), labels.astype(bool))
    (folder / "validation_scores.json").write_text(
        json.dumps(
            {
                "split": "test",
                "seeded": True,
                "note": SEEDED_NOTE,
                "scores": [round(float(s), 4) for s in scores],
                "labels": labels.tolist(),
            }
        ),
        encoding="utf-8",
    )
    write_bundle_metadata(
        folder,
        BundleMetadata(
            schema_version=BUNDLE_SCHEMA_VERSION,
            bundle_id=folder.name,
            product=product,
            model_kind="patchcore",
            model_version=f"{product}/{version}",
            precision=precision,
            preprocessing=Preprocessing((256, 256), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
            normalization=SEEDED_SCALE,
            metrics={"overall": metrics, **_seeded_gate(labels, scores, metrics)},
            extra={"seeded": True},
        ),
    )
    return folder


def _seeded_gate(labels: np.ndarray, scores: np.ndarray, metrics: dict[str, float]) -> dict:
    """The export gate a bundle records, from its seeded scores at threshold 0.5 (passed: a
    seeded bundle is its own reference). 60 good held out cannot show a 1 % budget, so every
    seeded bundle reads NOT LINE-READY, as a real first model would."""
    good, bad = scores[labels == 0], scores[labels == 1]
    figures = BundleFigures(
        false_reject_rate=float(np.mean(good >= 0.5)), miss_rate=float(np.mean(bad < 0.5)),
        image_auroc=metrics["image_auroc"], pixel_auroc=metrics["pixel_auroc"],
        aupro=metrics["aupro"], region_recall=None, ng_without_region=0,
        n_good=len(good), n_defective=len(bad),
    )  # fmt: skip
    return ExportRecord(GateRecord(True, figures, figures)).to_mapping()


def seed_registry(registry: Registry, product: str, tmp: Path) -> None:
    """Two versions, FP32 and INT8 bundles, a promotion history, a threshold and a retrain run."""
    for number, version in enumerate(("v0001", "v0002")):
        registry.bundles.create_version(
            product,
            model_kind="patchcore",
            config={"seeded": True},
            dataset={"name": f"demo/{product}", "seeded": True},
            metrics={"overall": METRICS[version]},
            packages={},
            extra={"note": SEEDED_NOTE},
        )
        for precision in ("fp32", "int8"):
            bundle = _bundle(tmp / product, product, version, precision, seed=number)
            registry.bundles.add_bundle(product, bundle, bundle.name)
    registry.journal.promote(product, "v0001-fp32", actor="seed", reason="first model on the line")
    registry.journal.promote(
        product, "v0002-int8", actor="seed", reason="retrained; INT8 2.5x faster"
    )
    registry.journal.set_threshold(product, 0.5, actor="seed", reason="bundle default")


def seed_retrain_report(registry: Registry, reports_dir: Path, product: str) -> None:
    run = "20250101T020000Z"
    report = RetrainReport(
        run={"product": product, "run": run, "actor": "scheduler", "seeded": True},
        finished_at="2025-01-01T02:00:00+00:00",
        decision="promote",
        reasons=("challenger beats champion on image AUROC by 0.019 with no AUPRO loss",),
        champion=_seeded_evaluation(product, "v0001-fp32", METRICS["v0001"]),
        challenger=_seeded_evaluation(product, "v0002-int8", METRICS["v0002"]),
    )
    folder = reports_dir / "retrain" / product / run
    folder.mkdir(parents=True, exist_ok=True)
    write_retrain_report(report, folder / "report.json")
    registry.journal.record_event(
        product, "retrain", actor="scheduler", reason=report.reason, run=run, decision="promote"
    )


def _seeded_evaluation(product: str, bundle_id: str, metrics: dict[str, float]) -> ModelEvaluation:
    version = bundle_id.split("-")[0]
    return ModelEvaluation(
        bundle_id=bundle_id,
        model_version=f"{product}/{version}",
        threshold=0.5,
        metrics=dict(metrics),
        full_metrics={"overall": dict(metrics)},
    )


def seed_site(
    root: str | Path,
    *,
    inspections: int = 2000,
    reviews: int = 150,
    audits: int = 0,
    products: tuple[str, ...] = ("brick", "grass"),
    pictures_each: int = 6,
    size: int = 192,
    registry: bool = True,
    store_url: str | None = None,
    seed: int = 0,
    stations: int | None = None,
    days: float = 6.5,
) -> Path:
    """Seed everything under ``root`` (``stations``: that many lines instead of ``STATIONS``);
    returns the site YAML path."""
    root = Path(root).resolve()
    site = write_site(root, list(products), store_url)
    store = Store.migrated(store_url or f"sqlite:///{root / 'inspection.db'}", root / "blobs")
    pictures = {p: seed_pictures(store, p, pictures_each, size) for p in products}
    lines = plant_stations(stations, products) if stations else STATIONS
    if store.engine.dialect.name == "postgresql":
        now = datetime.now(timezone.utc)
        copy_inspections(
            store, pictures, inspections, stations=lines, days=days, now=now, seed=seed
        )
    else:
        seed_inspections(store, pictures, inspections, days=days, seed=seed, stations=lines)
    seed_reviews(store, reviews, audits=audits, seed=seed)
    if registry:
        reg = Registry(root / "registry")
        for product in products:
            seed_registry(reg, product, root / "staging")
            seed_retrain_report(reg, root / "reports", product)
    store.engine.dispose()
    return site


def add_admin(site: Path, name: str, password: str) -> None:
    """Create the admin login of a seeded site (its store as ``site`` names it)."""
    from inspection.core.config import load_site_config
    from inspection.store.users import add_user

    config = load_site_config(site)
    store = Store(config.store_url, config.blob_dir)
    add_user(store, name, "admin", password)
    store.engine.dispose()


def main() -> None:
    import secrets

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="empty folder for the demo site")
    parser.add_argument("--inspections", type=int, default=5000)
    parser.add_argument("--reviews", type=int, default=300)
    parser.add_argument("--audits", type=int, default=0, help="audit-sample parts to label")
    parser.add_argument("--store-url", help="an empty database (default: SQLite in ROOT)")
    parser.add_argument("--stations", type=int, help="lines of one camera each (default: 3)")
    parser.add_argument("--days", type=float, default=6.5, help="spread over the last days")
    parser.add_argument("--user", default="admin", help="admin login to create (default admin)")
    parser.add_argument(
        "--password-stdin", action="store_true", help="read its password from stdin"
    )
    args = parser.parse_args()
    if args.root.exists() and any(args.root.iterdir()):
        parser.error(f"{args.root} is not empty; pick a new folder")
    password = sys.stdin.readline().rstrip("\r\n") if args.password_stdin else None
    password = password or secrets.token_urlsafe(12)
    site = seed_site(
        args.root,
        inspections=args.inspections,
        reviews=args.reviews,
        audits=args.audits,
        store_url=args.store_url,
        stations=args.stations,
        days=args.days,
    )
    add_admin(site, args.user, password)
    print(f"seeded {args.inspections} inspections; open with:")
    print(f"  INSPECTION_SITE_CONFIG={site} inspection dashboard")
    print(f"sign in as {args.user!r} with password {password!r} (role admin)")


if __name__ == "__main__":
    main()

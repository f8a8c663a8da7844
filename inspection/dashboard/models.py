"""Model versions and bundles per product: metrics by precision, live pointer, promote/rollback."""

from __future__ import annotations

from typing import Any

import pandas as pd

from inspection.core.bundle import read_bundle_metadata
from inspection.core.decisions import LiveState
from inspection.core.errors import BundleError, RegistryError
from inspection.core.registry import Registry
from inspection.runtime.recalibration import read_golden_outcomes
from inspection.runtime.self_check import promotion_reason
from inspection.runtime.tuning import read_tunings

PREFERRED_METRICS = ("image_auroc", "image_f1", "pixel_auroc", "pixel_f1", "aupro", "latency_ms")


def order_metrics(keys: set[str]) -> list[str]:
    return [k for k in PREFERRED_METRICS if k in keys] + sorted(keys - set(PREFERRED_METRICS))


def bundle_table(registry: Registry, product: str) -> pd.DataFrame:
    """One row per exported bundle (and per version not yet exported), newest first."""
    live = registry.journal.live(product)
    rows = []
    bundles = registry.bundles.bundle_ids(product)
    for record in registry.bundles.versions(product):
        own = [b for b in bundles if b.startswith(f"{record.version}-")]
        base = {"version": record.version, "model": record.model_kind, "created": record.created_at}
        if not own:
            rows.append(
                {**base, "bundle": "(not exported)", "precision": "", "live": False, "golden": ""}
            )
            try:
                rows[-1].update(record.evaluation().overall.figures())
            except RegistryError as exc:
                rows[-1]["problem"] = str(exc)
        for bundle_id in own:
            rows.append({**base, **_bundle_row(registry, product, bundle_id, live)})
    known_versions = {r.version for r in registry.bundles.versions(product)}
    for bundle_id in bundles:  # bundles whose version record is absent still show up
        if bundle_id.split("-", 1)[0] not in known_versions:
            row = {"version": bundle_id.split("-", 1)[0], "model": "", "created": ""}
            rows.append({**row, **_bundle_row(registry, product, bundle_id, live)})
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    fixed = ["live", "version", "bundle", "precision", "model", "created", "golden"]
    metric_cols = order_metrics(set(frame.columns) - {*fixed, "problem"})
    columns = [*fixed, *metric_cols, "problem"]
    columns = [c for c in columns if c in frame.columns]
    return frame[columns].sort_values(["version", "bundle"], ascending=[False, True])


def _bundle_row(
    registry: Registry, product: str, bundle_id: str, live: LiveState | None
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "bundle": bundle_id,
        "precision": bundle_id.rsplit("-", 1)[-1],
        "live": live is not None and live.bundle_id == bundle_id,
    }
    try:
        metadata = read_bundle_metadata(registry.bundles.bundle_dir(product, bundle_id))
        figures = metadata.evaluation().overall.figures()
    except (BundleError, RegistryError) as exc:
        row["problem"] = str(exc)
        return row
    row["precision"] = metadata.precision
    row["golden"] = (
        f"{len(metadata.golden.images)} images, ≤ {metadata.golden.tolerance:g}"
        if metadata.golden is not None
        else "none recorded"
    )
    row.update(figures)
    return row


COUNT_PREFIXES = ("n_", "gt_regions", "regions_found", "ng_without_region")


def is_count(metric: str) -> bool:
    return metric.startswith(COUNT_PREFIXES)


def exported_versions(registry: Registry, product: str) -> list[str]:
    """Versions with at least one exported bundle, newest first."""
    versions = {b.split("-", 1)[0] for b in registry.bundles.bundle_ids(product)}
    return sorted(versions, reverse=True)


def format_comparison(frame: pd.DataFrame) -> pd.DataFrame | object:
    """A pandas Styler for ``precision_comparison``: counts as integers, rates to 4 places."""
    if frame.empty:
        return frame
    counts = [m for m in frame.index if is_count(m)]
    rates = [m for m in frame.index if not is_count(m)]
    deltas = [c for c in frame.columns if c.startswith("Δ")]
    values = [c for c in frame.columns if not c.startswith("Δ")]
    styler = frame.style.format("{:.4f}", subset=(rates, values), na_rep="—")
    styler = styler.format("{:+.4f}", subset=(rates, deltas), na_rep="—")
    styler = styler.format("{:.0f}", subset=(counts, values), na_rep="—")
    return styler.format("{:+.0f}", subset=(counts, deltas), na_rep="—")


def precision_comparison(registry: Registry, product: str, version: str) -> pd.DataFrame:
    """Metrics of one version's bundles by precision, with ``Δ <p> vs fp32`` columns."""
    columns: dict[str, dict[str, float]] = {}
    for bundle_id in registry.bundles.bundle_ids(product):
        if not bundle_id.startswith(f"{version}-"):
            continue
        try:
            metadata = read_bundle_metadata(registry.bundles.bundle_dir(product, bundle_id))
            columns[metadata.precision] = metadata.evaluation().overall.figures()
        except (BundleError, RegistryError):
            continue
    frame = pd.DataFrame(columns)
    if frame.empty:
        return frame
    frame = frame.loc[order_metrics(set(frame.index))]
    if "fp32" in frame.columns:
        for precision in [c for c in frame.columns if c != "fp32"]:
            frame[f"Δ {precision} vs fp32"] = frame[precision] - frame["fp32"]
    return frame


def golden_tolerance(registry: Registry, product: str, bundle_id: str) -> float | None:
    """The bundle's golden-check tolerance; None: none recorded or unreadable."""
    try:
        golden = read_bundle_metadata(registry.bundles.bundle_dir(product, bundle_id)).golden
    except (BundleError, RegistryError):
        return None
    return None if golden is None else golden.tolerance


def golden_verdict(drift: float | None, tolerance: float | None) -> str:
    """'passed', 'REFUSED' or '—' (not checked) for a measured golden drift."""
    if drift is None or tolerance is None:
        return "—"
    return "passed" if drift <= tolerance else "REFUSED"


def tuning_frame(registry: Registry, product: str) -> pd.DataFrame:
    """Each station CPU's self-benchmark: a row per measured bundle with its golden check."""
    tolerances = {
        b: golden_tolerance(registry, product, b) for b in registry.bundles.bundle_ids(product)
    }
    rows = [
        {
            "served": m.bundle_id == record.chosen_bundle_id,
            "cpu": record.cpu.summary(),
            "live bundle": record.live_bundle_id,
            "bundle": m.bundle_id,
            "precision": m.precision,
            "p50_ms": m.p50_ms,
            "p95_ms": m.p95_ms,
            "img_per_s": m.throughput_ips,
            "gate": m.gate_note,
            "golden": golden_verdict(m.golden_drift, tolerances.get(m.bundle_id)),
            "golden_drift": m.golden_drift,
            "load_1m": record.load_1m,
            "measured": record.measured_at,
        }
        for record in read_tunings(registry, product)
        for m in record.measurements
    ]
    return pd.DataFrame(rows)


def promote(
    registry: Registry,
    product: str,
    bundle_id: str,
    *,
    actor: str,
    reason: str,
    not_ready: bool = False,
) -> LiveState:
    """Make ``bundle_id`` live; who and why are required and land in the audit log. A NOT
    LINE-READY bundle needs ``not_ready`` (``runtime.self_check.promotion_reason``: raises
    ``RegistryError`` otherwise) and its log entry names what it lacks."""
    _need_who_why(actor, reason, "promotion")
    metadata = read_bundle_metadata(registry.bundles.bundle_dir(product, bundle_id))
    why = promotion_reason(
        metadata, reason.strip(), not_ready=not_ready,
        override="tick 'Serve it although NOT LINE-READY' (recorded with your name)",
    )  # fmt: skip
    return registry.journal.promote(product, bundle_id, actor=actor.strip(), reason=why)


def rollback(registry: Registry, product: str, *, actor: str, reason: str) -> LiveState:
    """Return to the previously live bundle; who and why are required."""
    _need_who_why(actor, reason, "rollback")
    return registry.journal.rollback(product, actor=actor.strip(), reason=reason.strip())


def _need_who_why(actor: str, reason: str, what: str) -> None:
    if not actor.strip() or not reason.strip():
        raise RegistryError(f"a {what} needs who (your name) and why (a reason)")


def events_frame(registry: Registry, product: str) -> pd.DataFrame:
    """The product's audit log, newest first: when, action, who, why, bundle, value."""
    columns = ["at", "action", "actor", "reason", "bundle", "previous", "value"]
    rows = [
        (e.get("at", ""), e.get("action", ""), e.get("actor", ""), e.get("reason", ""),
         e.get("bundle_id") or "", e.get("previous") or "", e.get("value"))
        for e in registry.journal.events(product)
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=columns).iloc[::-1].reset_index(drop=True)


def control_frame(registry: Registry) -> pd.DataFrame:
    """Line clients' control calls (OPC 40100), newest first; ``check``: each record's signature
    against the station's pinned key and its place in the chain (``control_checks``: verified,
    unsigned, forged, N missing before, chain broken)."""
    columns = ["at", "station", "seq", "user", "role", "peer", "method", "arguments", "result",
               "check"]  # fmt: skip
    stations = sorted(p.stem.removeprefix("control-")
                      for p in registry.journal.root.glob("control-*.jsonl"))  # fmt: skip
    rows = [
        (c.get("at", ""), c.get("station", ""), c.get("seq"), c.get("user") or "",
         c.get("role") or "", c.get("peer", ""), c.get("method", ""),
         ", ".join(map(str, c.get("arguments") or [])), c.get("result", ""), check)
        for station in stations for c, check in registry.journal.control_checks(station)
    ]  # fmt: skip
    frame = pd.DataFrame(rows, columns=columns).sort_values("at", kind="stable")
    return frame.iloc[::-1].reset_index(drop=True)


def golden_outcome_frame(registry: Registry, product: str) -> pd.DataFrame:
    """Each station CPU's last golden check at load (passed, recalibrated or refused), and
    what became of the registry's threshold version on a re-calibrated bundle."""
    rows = []
    for record in read_golden_outcomes(registry, product):
        recal = record.get("recalibration") or {}
        before, after = recal.get("before") or {}, recal.get("after") or {}
        rows.append(
            {
                "outcome": record.get("outcome", ""),
                "cpu": record.get("cpu", ""),
                "bundle": record.get("bundle_id", ""),
                "executed": record.get("precision", ""),
                "worst_drift": record.get("worst_drift"),
                "tolerance": record.get("tolerance"),
                "threshold_raw_before": before.get("image_threshold_raw"),
                "threshold_raw_after": after.get("image_threshold_raw"),
                "validation_images": (
                    f"{recal['n_good']} good + {recal['n_defective']} defective" if recal else ""
                ),
                "registry_threshold": _registry_threshold(record),
                "note": "; ".join(
                    str(note)
                    for note in (
                        record.get("refusal", "") or recal.get("operating_point", ""),
                        record.get("threshold_not_applied", ""),
                        (record.get("threshold_carried") or {}).get("how", ""),
                    )
                    if note
                ),
                "checked": record.get("checked_at", ""),
            }
        )
    return pd.DataFrame(rows)


def _registry_threshold(record: dict[str, Any]) -> str:
    """'v1 0.8000 → 0.6123 (carried)', 'not applied' or ''."""
    carried = record.get("threshold_carried")
    if isinstance(carried, dict):
        return f"v{carried['version']} {carried['from']:.4f} → {carried['to']:.4f} (carried)"
    return "not applied" if record.get("threshold_not_applied") else ""

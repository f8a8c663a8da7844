"""``inspection operating``: a live bundle's certificate from audited parts; and table cells
for figures, the operating point and per-kind miss rates (shared by commands)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.markup import escape

from inspection.cli._site import SITE_OPTION, group
from inspection.core.config import load_site_config
from inspection.core.metrics import EvaluationMetrics
from inspection.core.operating_point import KindMiss, ThresholdChoice
from inspection.core.registry import Registry

if TYPE_CHECKING:
    from inspection.runtime.self_check import LiveCheck

console = Console()
operating_app = group("operating", "Operating points: certify a live bundle from audited parts.")


@operating_app.command("certify")
def certify(
    product: str = typer.Option(
        ..., "--product", "-p", help="Product whose live bundle to certify."
    ),
    actor: str = typer.Option(..., "--actor", help="Who certifies (audit log)."),
    since_days: float | None = typer.Option(
        None, "--since-days", min=0.0, help="Only audit parts of the last N days (default: all)."
    ),
    site: str = SITE_OPTION,
) -> None:
    """Derive the live bundle's threshold again, without retraining, from its calibration
    scores and the random audit sample's parts reviewers confirmed good; record it as a new
    (signed) threshold version when it passes the bundle's export gate on its held-out parts.
    Stations pick it up as any threshold version."""
    # deferred: sqlalchemy
    from inspection.station.certify import certify_product, product_certificate
    from inspection.store.store import Store

    config = load_site_config(site)
    registry = Registry(config.registry_dir)
    store = Store(config.store_url, config.blob_dir)
    since = None if since_days is None else datetime.now(timezone.utc) - timedelta(days=since_days)
    try:
        store.check_schema()
        version = certify_product(registry, store, product, actor=actor.strip(), since=since)
        console.print(f"{product}: threshold v{version.number} = {version.value:.4f}")
        shown = product_certificate(registry, store, product, since=since)
        console.print(escape(shown.describe()))
    finally:
        store.engine.dispose()


def fmt(value: object, digits: int = 3) -> str:
    """A figure with ``digits`` decimals; '-' for a missing one."""
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "-"


def operating_text(choice: ThresholdChoice | None) -> str:
    """``ThresholdChoice`` in a table cell (n, guaranteed bound, whether it rests on out-of-fold
    scores, what is lacking)."""
    if choice is None:
        return "F1 (recorded before operating points)"
    if choice.policy != "false_reject_budget":
        return f"{choice.policy} (n={choice.n_good} good, {choice.n_defective} defective)"
    text = f"budget {choice.budget:.1%}, n={choice.n_good}, bound {choice.false_reject_bound:.2%}"
    if not choice.exchangeable:
        text += "\n(on out-of-fold training scores: not exchangeable with new parts)"
    return text if choice.sufficient else f"{text}\n({choice.n_needed} good needed)"


def kind_miss_text(miss: dict[str, KindMiss]) -> str:
    """One line per defect kind: missed/n, rate and its interval."""
    return "\n".join(
        f"{m.kind} {m.missed}/{m.n} = {m.rate:.0%} [{m.interval.low:.0%}-{m.interval.high:.0%}]"
        for m in miss.values()
    )


def subset_miss_text(metrics: EvaluationMetrics) -> str:
    """Per defect kind miss rate with its interval, from metrics (unknown without defects)."""
    if not metrics.per_defect:
        return "unknown (no defect images)"
    lines = []
    for kind, subset in metrics.per_defect.items():
        rate = subset.miss_rate
        if rate is None:
            continue
        band = "" if subset.miss_low is None else f" [{subset.miss_low:.0%}-{subset.miss_high:.0%}]"
        lines.append(f"{kind} {rate:.0%}{band}")
    return "\n".join(lines)


def not_line_ready(product: str, check: LiveCheck, bundle: str = "the live bundle") -> str | None:
    """Why ``bundle`` of ``product`` is NOT LINE-READY on its held-out parts (``check``), in
    the one sentence the demo and export print; None when it is line-ready."""
    concerns = check.line_concerns()
    if not concerns:
        return None
    op = check.operating
    budget = op is not None and op.policy == "false_reject_budget"
    point = f" at its {op.budget:.1%} false-reject budget" if budget else ""
    return f"{product}: {bundle}{point} {' and '.join(concerns)} on held-out parts (see its report)"


# ------------------------------------------------------------- plain words
# The last line of ``train``, ``export`` and ``retrain``: fine to run or not, why, what next.


def train_advice(product: str, version: str, metrics: EvaluationMetrics | None) -> str:
    """What training's held-out figures mean for the line, and the next step (export)."""
    export = f"inspection export --product {product} --version {version}"
    o = None if metrics is None else metrics.overall
    if o is None or not o.n_good:
        return (
            f"TRAINED {product}/{version}, not evaluated (no held-out images): nothing shows it "
            f"finds defects. Next: {export}, then judge a few known-bad parts"
        )
    rejected = round((o.false_reject_rate or 0.0) * o.n_good)
    good = f"rejects {rejected} of {o.n_good} good held-out parts"
    if not o.n_defective:
        return (
            f"TRAINED {product}/{version}: {good}; misses unknown (no defect images). Next: "
            f"{export}, then judge a few known-bad parts"
        )
    missed = round((o.miss_rate or 0.0) * o.n_defective)
    figures = f"{good}, misses {missed} of {o.n_defective} defects"
    if rejected > 0.1 * o.n_good or missed > 0.1 * o.n_defective:
        return (
            f"NOT FINE TO RUN {product}/{version}: {figures}. Next: add good and defect "
            "images (train/, test/) and train again; its report says what it misses"
        )
    return f"LOOKS FINE {product}/{version}: {figures}. Next: {export}"


def export_advice(
    product: str, bundle_id: str, *, concerns: str | None, signed: bool, live: bool
) -> str:
    """Whether an exported bundle may run on the line, why, and the next step."""
    bundle = f"{product}/{bundle_id}"
    reasons, fixes = [], []
    if not signed:
        reasons.append("unsigned, so stations refuse it")
        fixes.append("inspection keys init --site, then export again")
    if concerns:
        reasons.append(f"it {concerns}")
        fixes.append("add held-out images of what it misses or rejects, train and export again")
    if reasons:
        return f"NOT FINE TO RUN {bundle}: {'; '.join(reasons)}. Next: {'; '.join(fixes)}"
    if live:
        return f"FINE TO RUN {bundle}: live now. Next: inspection serve"
    return f"FINE TO RUN {bundle}. Next: inspection promote {product} {bundle_id}, then serve"

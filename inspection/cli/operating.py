"""``inspection operating``: a live bundle's certificate from audited parts; table cells for
figures, the operating point and per-kind miss rates; and ``train``'s LINE-READY line (shared by
commands)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import typer
from rich.markup import escape

from inspection.cli._site import SITE_OPTION, group
from inspection.cli.console import screen
from inspection.core.config import load_site_config
from inspection.core.metrics import EvaluationMetrics, SubsetMetrics
from inspection.core.operating_point import KindMiss, ThresholdChoice
from inspection.core.readiness import Readiness, held_out_of, line_readiness
from inspection.core.registry import Registry

console = screen()
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


def rate_of(rate: float | None, n: int | None) -> str:
    """'0.0% of 42': a rate in percent with the count it is measured on ('-': unknown), as
    ``train`` and ``export`` print false rejects and misses."""
    if rate is None:
        return "-"
    return f"{rate:.1%}" if n is None else f"{rate:.1%} of {n}"


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


def version_readiness(product: str, version: str, metrics: EvaluationMetrics | None) -> Readiness:
    """The LINE-READY verdict on a trained version's held-out figures (``train``'s last line,
    ``models list``)."""
    subject = f"{product}/{version}"
    return line_readiness(held_out_of(subject, metrics or EvaluationMetrics(SubsetMetrics())))


def train_verdict(product: str, version: str, metrics: EvaluationMetrics | None) -> str:
    """The last line of ``train``: ``version_readiness``, and the next step (export) when it
    is line-ready."""
    readiness = version_readiness(product, version, metrics)
    return readiness.line(f"inspection export --product {product} --version {version}")

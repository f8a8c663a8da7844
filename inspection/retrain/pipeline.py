"""One retrain run: assemble data, train a challenger, export it through its export gate, gate
it against the champion, maybe promote. The registry changes only through its atomic writes;
a failure leaves the live bundle as it was and is recorded as a ``failed`` retrain event.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any

from inspection.core.bundle import SIGNATURE_FILE
from inspection.core.config import SiteConfig
from inspection.core.errors import ConfigError, DatasetError
from inspection.core.model_record import ModelRecord, utc_now
from inspection.core.registry import Registry
from inspection.core.retrain_report import RetrainEvent
from inspection.core.signing import site_keys_dir, site_public_key
from inspection.core.types import Progress
from inspection.data.dataset import load_dataset
from inspection.data.leaks import listed
from inspection.refine.config import RefineConfig, refine_config_in
from inspection.retrain import adapters
from inspection.retrain.assemble import RunData, assemble_run_data
from inspection.retrain.config import RetrainConfig
from inspection.retrain.gate import Decision, decide
from inspection.retrain.lineage import learned_images
from inspection.retrain.lock import retrain_lock
from inspection.retrain.report import write_report
from inspection.retrain.scoring import evaluate_bundles
from inspection.store.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetrainResult:
    """Outcome of a run; ``challenger_bundle`` empty when no export gate passed the challenger."""

    product: str
    run_id: str
    status: str
    challenger_bundle: str
    champion_bundle: str | None
    decision: Decision
    report_dir: Path | None
    details: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        if not self.challenger_bundle:  # no export gate passed: nothing was compared
            return f"{self.product} run {self.run_id}: {self.decision.reasons[-1]}"
        verb = "promoted" if self.status == "promoted" else "kept the champion"
        return (
            f"{self.product} run {self.run_id}: {verb} "
            f"(challenger {self.challenger_bundle}, champion {self.champion_bundle or 'none'}); "
            f"report {self.report_dir}"
        )


class ReviewSource(Enum):
    """Where a run finds reviewed images when no ``Store`` is given."""

    SITE = "the site's results store"


@dataclass
class _Run:
    """State collected while a run goes along (for the report and the audit event)."""

    product: str
    run_id: str
    actor: str
    started_at: str
    stage: str = "start"
    champion: str | None = None
    challenger_version: str | None = None
    challenger_bundle: str | None = None
    training: str = "full"
    """How the challenger was trained: ``full``, or ``incremental from vNNNN``."""
    reviewed_good_ids: tuple[str, ...] = ()
    learned_images: tuple[str, ...] = ()
    """Registry-relative files of the images learned by ``train --update`` it trained on."""
    skipped_review_ids: tuple[str, ...] = ()
    reviews_until: str | None = None
    """When the run read the reviews (UTC): later ones are not in its training set."""
    new_reviews: int | None = None
    """Reviews recorded since the champion was made (None: no champion or no cut-off)."""
    int8_image_auroc_drop: float | None = None
    export_refused: dict[str, str] = field(default_factory=dict)
    """Precision -> why its export gate refused the challenger in it (not registered)."""


@dataclass(frozen=True)
class _Context:
    """What every stage of one run reads (set once, never changed)."""

    registry: Registry
    site: SiteConfig
    config: RetrainConfig
    reviews: Store | ReviewSource | None
    overrides: tuple[str, ...]
    replace_config: Mapping[str, Any] | None
    say: Progress
    train_progress: bool
    refine: RefineConfig
    """The site's refine.yaml, read before the run starts (the challenger's export)."""


def retrain_product(
    product: str,
    *,
    site: SiteConfig,
    config: RetrainConfig,
    actor: str = "scheduler",
    store: Store | ReviewSource | None = ReviewSource.SITE,
    overrides: Iterable[str] = (),
    replace_config: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
    train_progress: bool = False,
) -> RetrainResult:
    """Retrain ``product`` under its lock (``RetrainBusy`` if held). ``store``: reviews source;
    ``overrides`` / ``replace_config`` change the challenger's config (default: champion's)."""
    registry = Registry(site.registry_dir)
    _check_trained(registry, product)
    refine = refine_config_in(site.configs)  # a bad key stops the run before anything is done
    with retrain_lock(site.registry_dir, product):
        run = _Run(product, _run_id(config.work_dir / product), actor, utc_now())
        try:
            context = _Context(
                registry, site, config, store, tuple(overrides),
                replace_config, _sayer(run, progress), train_progress, refine,
            )  # fmt: skip
            return _retrain(run, context)
        except BaseException as exc:
            _record_failure(registry, run, exc)
            raise
        finally:
            _prune_run_dirs(config.work_dir / product, config.keep_work_dirs)


def _retrain(run: _Run, ctx: _Context) -> RetrainResult:
    champion_record, champion_dir = _champion(ctx.registry, run)
    data = _assemble(run, ctx, champion_record)
    if reason := _nothing_new(run, ctx, champion_record, data):
        shutil.rmtree(data.train_root.parent.parent, ignore_errors=True)  # the unused run folder
        details = {"data": data.summary(), "training": "none", "nothing_new": True}
        return _kept(run, ctx, reason, details)
    record = _incremental(run, ctx, champion_record, data) or _train(
        run, ctx, champion_record or ctx.registry.bundles.version(run.product), data
    )
    bundle_id = _export(run, ctx, record, data)
    details = {"challenger_version": record.version, "data": data.summary(),
               "training": run.training, "export_refused": run.export_refused}  # fmt: skip
    if bundle_id is None:
        refused = "; ".join(f"{p}: {why}" for p, why in run.export_refused.items())
        reason = f"challenger refused by its export gate ({refused}); keeping the champion"
        log.error("retrain %s/%s: %s", run.product, run.run_id, reason)
        return _kept(run, ctx, reason, details)
    bundles = {"challenger": ctx.registry.bundles.bundle_dir(run.product, bundle_id)}
    if champion_dir is not None:
        bundles = {"champion": champion_dir, **bundles}
    run.stage = "evaluate"
    ctx.say(f"evaluating {' and '.join(bundles)} on {len(data.eval_items)} images")
    evaluations = evaluate_bundles(bundles, data.eval_items, warmup=ctx.config.warmup)
    champion_eval = evaluations.get("champion")
    decision = decide(
        champion_eval.gate_metrics() if champion_eval else None,
        evaluations["challenger"].gate_metrics(),
        ctx.config.gate,
    )
    decision = unsigned_refusal(decision, bundles, ctx.site.registry_dir)
    status = "promoted" if decision.promote else "kept"
    report_dir = _report(run, ctx, record, status, decision, evaluations, data)
    _finish(ctx.registry, run, decision, evaluations, report_dir, status)
    return RetrainResult(
        run.product, run.run_id, status, bundle_id, run.champion, decision, report_dir, details
    )


def _assemble(run: _Run, ctx: _Context, champion: ModelRecord | None) -> RunData:
    """The run's MVTec folder: original data plus reviewed images since ``reviewed_since``."""
    since = _since(ctx.registry, run.product, ctx.config, champion)
    carry_over = _skipped_last_run(ctx.registry, run.product)
    # nothing learned is dropped: what the champion trained on stays, whatever the cut-off
    carry_over += _champion_reviewed_good(ctx.registry, run.product, run.champion)
    learned = learned_images(ctx.registry, champion)
    job = ctx.config.job(run.product)
    run.stage = "assemble"
    original = load_dataset(job.dataset or ctx.site.datasets_dir / run.product)
    ctx.say(f"assembling data (reviewed-good since {since.isoformat() if since else 'the start'})")
    run.reviews_until = utc_now()
    store = _open_store(ctx.site, ctx.reviews)
    source = champion or ctx.registry.bundles.version(run.product)
    config = adapters.challenger_config(source, ctx.overrides, ctx.replace_config)
    data = assemble_run_data(
        original, store, run.product, ctx.config.work_dir / run.product / run.run_id,
        since=since, carry_over=carry_over, learned=learned,
        reading=(config.image_bits, config.image_range),
    )  # fmt: skip
    run.new_reviews = _new_reviews(store, run.product, since)
    run.reviewed_good_ids = tuple(data.reviewed_good)
    run.skipped_review_ids = tuple(data.skipped)
    run.learned_images = tuple(
        p.relative_to(ctx.registry.root).as_posix()
        for p in learned.images
        if p.name in data.learned
    )
    if data.learned:
        ctx.say(
            f"{len(data.learned)} good image(s) the champion learned by train --update join training"
        )
    if data.left_out:
        ctx.say(
            f"left out {len(data.left_out)} image(s) the champion learned or a reviewer labelled: "
            + "; ".join(f"{what}: {why}" for what, why in list(data.left_out.items())[:5])
        )
    if data.teaching_defect or data.reviewed_defect:
        ctx.say(
            f"reviewed defects: {len(data.teaching_defect)} teach ({len(data.painted)} with a "
            f"painted region), {len(data.reviewed_defect)} held out to evaluate"
        )
    if data.skipped:
        ctx.say(
            f"left out {len(data.skipped)} reviewed inspection(s) whose image is missing or "
            f"unreadable in the blob store: {listed(sorted(data.skipped))} (the next run "
            "tries the good ones again)"
        )
    return data


def _new_reviews(store: Store | None, product: str, since: datetime | None) -> int | None:
    """Reviews recorded after ``since`` (any label); None when there is no cut-off (all new).
    A restored review carried over from an earlier run shows in the training-image count."""
    if since is None:
        return None
    recorded = (
        store.reviewed(product, ["good", "defect", "false_alarm"], since=since) if store else []
    )
    return len(recorded)


def _nothing_new(run: _Run, ctx: _Context, champion: ModelRecord | None, data: RunData) -> str:
    """Why the challenger could only repeat the champion (same config, no review since it was
    made, as many training images as it had); '' when it could not."""
    if champion is None or ctx.overrides or ctx.replace_config or run.new_reviews != 0:
        return ""
    images = data.original_train + len(data.learned) + len(data.reviewed_good)
    if images != champion.train_image_count():
        return ""
    return (
        f"nothing new since {run.champion}: no review since it was made and the same {images} "
        "training images; kept the champion, no version registered"
    )


def _kept(run: _Run, ctx: _Context, reason: str, details: dict[str, Any]) -> RetrainResult:
    """End a run that compared nothing (nothing new, or no export gate passed the challenger):
    the champion stays, and the ``retrain`` event says why."""
    run.stage = "done"
    _record_event(ctx.registry, run, reason, "keep", "kept", reasons=[reason])
    ctx.say(f"decision: kept; {reason}")
    return RetrainResult(
        run.product, run.run_id, "kept", "", run.champion, Decision(False, [reason]), None, details
    )


def _train(run: _Run, ctx: _Context, source: ModelRecord, data: RunData) -> ModelRecord:
    challenger_cfg = adapters.challenger_config(source, ctx.overrides, ctx.replace_config)
    run.stage = "train"
    ctx.say(
        f"training the challenger ({challenger_cfg.kind}, same config as {source.model_version})"
    )
    record = adapters.train_challenger(
        challenger_cfg, data.train_root, product=run.product, registry=ctx.registry,
        progress=ctx.train_progress, configs_dir=ctx.site.configs,
    )  # fmt: skip
    run.challenger_version = record.version
    return record


def _incremental(
    run: _Run, ctx: _Context, champion: ModelRecord | None, data: RunData
) -> ModelRecord | None:
    """The challenger as the champion's bank plus the new reviewed-good images, or ``None``
    (full training) when ``_new_good_images`` finds none to add that way."""
    images = _new_good_images(run, ctx, champion, data)
    if champion is None or not images:
        return None
    run.stage = "train"
    ctx.say(
        f"updating {champion.model_version}'s memory bank with {len(images)} reviewed-good images"
    )
    try:
        record = adapters.update_challenger(ctx.registry, champion, images, data.train_root)
    except (DatasetError, ConfigError) as exc:
        ctx.say(f"incremental update not possible ({exc}); training in full")
        return None
    run.challenger_version = record.version
    run.training = f"incremental from {champion.version}"
    return record


def _new_good_images(
    run: _Run, ctx: _Context, champion: ModelRecord | None, data: RunData
) -> list[Path]:
    incremental = ctx.config.incremental and not ctx.overrides and not ctx.replace_config
    if champion is None or not incremental or not adapters.memory_bank(champion.model_kind):
        return []
    if data.teaching_defect or data.original_labelled:
        return []  # labelled defects teach the mixed model: a full fit, never a bank update
    if champion.global_context() is not None or champion.tiling() is not None:
        return []
    known = set(_champion_reviewed_good(ctx.registry, run.product, run.champion))
    new = [i for i in data.reviewed_good if i not in known]
    trained_on = champion.train_image_count()
    if not new or trained_on is None:
        return []  # nothing new, or the champion recorded no image count: full refit
    if data.original_train + len(data.learned) + len(data.reviewed_good) != trained_on + len(new):
        return []  # the original training images changed: full refit
    good_dir = data.train_root / "train" / "good"
    return [path for i in new for path in sorted(good_dir.glob(f"review-{i}.*"))]


def _export(run: _Run, ctx: _Context, record: ModelRecord, data: RunData) -> str | None:
    """The challenger's bundle id: the first of ``export.precisions`` its export gate passed
    (registered and signed as ``inspection export`` does, never forced); None when none did."""
    run.stage = "export"
    precisions = ctx.config.export.precisions
    ctx.say(
        f"exporting {record.model_version} ({', '.join(precisions)}: the first its gate passes)"
    )
    result, run.export_refused = adapters.export_challenger(
        ctx.registry, record, data.train_root, ctx.config.export,
        progress=lambda m: ctx.say(f"export: {m}"), configs_dir=ctx.site.configs,
        refine=ctx.refine,
    )  # fmt: skip
    for precision, why in run.export_refused.items():
        ctx.say(f"{precision} not registered: {why}")
    if result is None:
        return None
    run.challenger_bundle = result.bundle_id
    run.int8_image_auroc_drop = result.metadata.export_record().image_auroc_drop
    return result.bundle_id


def _report(
    run: _Run,
    ctx: _Context,
    record: ModelRecord,
    status: str,
    decision: Decision,
    evaluations: Mapping[str, Any],
    data: RunData,
) -> Path:
    run.stage = "report"
    report_dir = Path(ctx.site.reports_dir) / "retrain" / run.product / run.run_id
    write_report(
        report_dir, run=_run_info(run, record, status), decision=decision,
        policy=ctx.config.gate, evaluations=evaluations, data=data,
    )  # fmt: skip
    ctx.say(f"decision: {status}; report in {report_dir}")
    return report_dir


def _finish(
    registry: Registry,
    run: _Run,
    decision: Decision,
    evaluations: Mapping[str, Any],
    report_dir: Path,
    status: str,
) -> None:
    """Promote (if the gate passed), then append the ``retrain`` audit event."""
    run.stage = "promote"
    bundle = run.challenger_bundle or ""
    if decision.promote:
        registry.journal.promote(
            run.product, bundle, actor=run.actor,
            reason=f"retrain {run.run_id}: challenger passed the gate against {run.champion or 'no champion'}",
        )  # fmt: skip
    run.stage = "done"
    _record_event(
        registry, run, "; ".join(decision.reasons), "promote" if decision.promote else "keep",
        status, challenger=bundle, reasons=decision.reasons,
        metrics={role: e.gate_metrics() for role, e in evaluations.items()},
        report=str(report_dir), reviewed_good_ids=list(run.reviewed_good_ids),
    )  # fmt: skip


def _record_failure(registry: Registry, run: _Run, exc: BaseException) -> None:
    """Audit a failed run; never masks the original error."""
    reason = f"failed during {run.stage}: {type(exc).__name__}: {exc}"
    try:
        _record_event(registry, run, reason, "failed", "failed", stage=run.stage)
    except Exception:  # the registry itself may be what failed
        log.exception("could not record the failed retrain of %s", run.product)


def _record_event(
    registry: Registry, run: _Run, reason: str, decision: str, status: str, **fields: Any
) -> None:
    """The run's ``retrain`` audit event (``core.retrain_report.RetrainEvent`` reads it);
    ``fields`` add to or replace the run's own entries."""
    entries = {
        "run": run.run_id,
        "champion": run.champion,
        "challenger": run.challenger_bundle,
        "challenger_version": run.challenger_version,
        "skipped_review_ids": list(run.skipped_review_ids),
        "learned_images": list(run.learned_images),
        "reviews_until": run.reviews_until,
        "export_refused": run.export_refused,
    }
    registry.journal.record_event(run.product, "retrain", actor=run.actor, reason=reason,
                          decision=decision, status=status, **(entries | fields))  # fmt: skip


# ------------------------------------------------------------------------ helpers
def _champion(registry: Registry, run: _Run) -> tuple[ModelRecord | None, Path | None]:
    """The live bundle's model version and bundle folder (``None``s before the first model)."""
    live = registry.journal.live(run.product)
    if live is None:
        return None, None
    run.champion = bundle = live.bundle_id
    return registry.bundles.bundle_record(run.product, bundle), registry.bundles.bundle_dir(
        run.product, bundle
    )


def _champion_reviewed_good(registry: Registry, product: str, champion: str | None) -> list[str]:
    """Reviewed-good inspection ids the champion was trained with (from its retrain event)."""
    if champion is None:
        return []
    for run in _runs(registry, product):
        if run.status == "promoted" and run.challenger == champion:
            return list(run.reviewed_good_ids)
    return []


def _skipped_last_run(registry: Registry, product: str) -> list[str]:
    """Reviewed inspections the last retrain run left out for a missing or unreadable image:
    tried again (a restored blob joins training; a review never vanishes behind the cut-off)."""
    last = next(_runs(registry, product), None)
    return [] if last is None else list(last.skipped_review_ids)


def _runs(registry: Registry, product: str) -> Iterator[RetrainEvent]:
    """The product's retrain events, newest first, each read when reached."""
    for event in reversed(registry.journal.events(product)):
        if event.get("action") == "retrain":
            yield RetrainEvent.from_event(event, f"{product} retrain event")


def _check_trained(registry: Registry, product: str) -> None:
    """Refuse a product without a trained version before anything is written (a typo would
    leave a registry folder with a failed event, which ``--all`` would retrain every time)."""
    if registry.bundles.versions(product):
        return
    known = (
        ", ".join(p for p in registry.bundles.products() if registry.bundles.versions(p)) or "none"
    )
    raise ConfigError(
        f"product {product!r} has no trained model in the registry {registry.root} "
        f"(trained there: {known}): check the name, or train a first model with "
        f"`inspection train --product {product}` (the challenger reuses its config)"
    )


def _since(
    registry: Registry, product: str, config: RetrainConfig, champion: ModelRecord | None
) -> datetime | None:
    """Reviews after this are new: after the version ``reviewed_since`` names was made, or after
    its run read the reviews if earlier (a review made during that run is in no training set)."""
    if config.reviewed_since == "all":
        return None
    if config.reviewed_since == "champion":
        record = champion
    else:
        versions = registry.bundles.versions(product)
        record = versions[-1] if versions else None
    if record is None:
        return None
    made = datetime.fromisoformat(record.created_at)
    read = _reviews_read_until(registry, product, record.version)
    return made if read is None else min(made, read)


def _reviews_read_until(registry: Registry, product: str, version: str) -> datetime | None:
    """When the retrain run that made ``version`` read the reviews; ``None`` when no run
    made it (``inspection train``) or its event predates the field."""
    for run in _runs(registry, product):
        if run.challenger_version == version:
            until = run.reviews_until
            return None if until is None else datetime.fromisoformat(until)
    return None


def _open_store(site: SiteConfig, store: Store | ReviewSource | None) -> Store | None:
    if store is not ReviewSource.SITE:
        return store
    opened = Store(site.store_url, site.blob_dir)
    opened.check_schema()
    return opened


def _run_info(run: _Run, record: ModelRecord, status: str) -> dict[str, Any]:
    return {
        "product": run.product,
        "run": run.run_id,
        "actor": run.actor,
        "started_at": run.started_at,
        "finished_at": utc_now(),
        "status": status,
        "champion_bundle": run.champion,
        "challenger_version": record.version,
        "challenger_bundle": run.challenger_bundle,
        "challenger_config": record.config,
        "int8_image_auroc_drop": run.int8_image_auroc_drop,
        "export_refused": run.export_refused,
        "training": run.training,
    }


def _sayer(run: _Run, progress: Progress | None) -> Progress:
    def say(message: str) -> None:
        log.info("retrain %s/%s: %s", run.product, run.run_id, message)
        if progress is not None:
            progress(message)

    return say


def _run_id(folder: Path) -> str:
    base = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    run_id, n = base, 1
    while (folder / run_id).exists():
        n += 1
        run_id = f"{base}-{n}"
    return run_id


def unsigned_refusal(
    decision: Decision, bundles: Mapping[str, Path], registry_dir: str | Path
) -> Decision:
    """``decision``, unless it would promote an unsigned challenger where stations expect
    signed bundles (a signed champion, or a site public key): they would refuse it."""

    def signed(role: str) -> bool:
        return role in bundles and (bundles[role] / SIGNATURE_FILE).is_file()

    expected = signed("champion") or site_public_key(registry_dir) is not None
    if not decision.promote or signed("challenger") or not expected:
        return decision
    reason = (
        f"challenger is unsigned: no signing key at {site_keys_dir(registry_dir)} on this "
        "machine, and stations that pin the site key refuse unsigned bundles; keeping the "
        "champion (put the site key there, see 'inspection keys init --site')"
    )
    log.error(reason)
    return Decision(promote=False, reasons=[*decision.reasons, reason])


def _prune_run_dirs(folder: Path, keep: int) -> None:
    """Remove all but the newest ``keep`` run folders (their training sets); at least the
    newest one (the run just finished, whose version may now be live) always stays."""
    if not folder.is_dir():
        return
    runs = sorted(p for p in folder.iterdir() if p.is_dir())
    for old in runs[: max(0, len(runs) - max(1, keep))]:
        shutil.rmtree(old, ignore_errors=True)
        log.info("removed old run folder %s", old)

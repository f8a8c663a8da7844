"""Model health: is a product's live bundle LINE-READY at the threshold it runs at?

Measured, never assumed: the live bundle's labelled held-out scores are judged at the live
threshold, with the live threshold's false-reject certificate, by ``core.readiness`` (the verdict
every command prints). ``outcomes`` lists each held-out image with what the threshold did to it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from inspection.core.bundle import read_bundle_metadata
from inspection.core.certificate import Certificate
from inspection.core.decisions import refusal
from inspection.core.errors import BundleError, ConfigError, InspectionError, RegistryError
from inspection.core.images import DEFAULT_SOURCE_BITS, read_image, read_mask
from inspection.core.operating_point import KindMiss, OperatingPoint, miss_at
from inspection.core.product_config import load_product_config
from inspection.core.readiness import NOT_READY, READY, HeldOut, Readiness, line_readiness
from inspection.core.registry import Registry
from inspection.core.signing import (
    Keyring,
    PublicKeys,
    SigningError,
    dashboard_key_path,
    load_public_key,
    site_public_key,
)
from inspection.core.threshold import is_ng
from inspection.core.validation_scores import ValidationScores, read_validation_scores
from inspection.dashboard.review import outline
from inspection.dashboard.thresholds import current_threshold_value, kinds_of
from inspection.station.certify import product_certificate
from inspection.station.config import read_trust, station_configs_in

GOOD = "good"


@dataclass(frozen=True)
class ModelHealth:
    """The live bundle of ``product`` at its live ``threshold`` (``bundle_id`` None: nothing
    live); ``kinds``: per defect kind, missed of n with a 95 % interval."""

    product: str
    bundle_id: str | None
    threshold: float
    point: OperatingPoint
    split: str = ""
    n_good: int = 0
    rejected_good: int = 0
    kinds: tuple[KindMiss, ...] = ()
    problem: str = ""
    not_held_out: str = ""
    """Why the judged split is not held out for this threshold ('': it is): a threshold set by
    value on the Thresholds page, where that split is shown, may have been chosen on it."""
    certificate: Certificate | None = None
    """The false-reject certificate of the live threshold (None: none, or not a budget)."""

    @property
    def reject_rate(self) -> float:
        return self.rejected_good / self.n_good if self.n_good else float("nan")

    @property
    def n_defective(self) -> int:
        return sum(k.n for k in self.kinds)

    @property
    def missed(self) -> int:
        return sum(k.missed for k in self.kinds)

    @property
    def known(self) -> bool:
        return self.bundle_id is not None and not self.problem and self.n_good > 0

    @cached_property  # a page asks for it several times; each asks SciPy for intervals
    def readiness(self) -> Readiness | None:
        """The LINE-READY verdict at the live threshold (None: health unknown)."""
        if not self.known:
            return None
        budgeted = self.point.policy == "false_reject_budget"
        return line_readiness(
            HeldOut(
                f"{self.product}/{self.bundle_id}", self.n_good, self.rejected_good,
                {k.kind: k for k in self.kinds}, self.point.budget if budgeted else None,
                self.point.miss_bound, self.certificate,
            )
        )  # fmt: skip

    @property
    def reasons(self) -> tuple[str, ...]:
        """Why the bundle is not line-ready, one sentence each (empty: line-ready)."""
        if self.bundle_id is None:
            return (f"no bundle of {self.product} is live",)
        if self.readiness is None:
            return (self.problem or "no labelled good parts to measure the reject rate on",)
        return self.readiness.lacks

    @property
    def advice(self) -> tuple[str, ...]:
        """What lowers the misses or shows the rates (empty: line-ready or unknown)."""
        return () if self.readiness is None else tuple(dict.fromkeys(self.readiness.advice))

    @property
    def line_ready(self) -> bool:
        return self.readiness is not None and self.readiness.ready

    def summary(self) -> str:
        where = f"{self.product} `{self.bundle_id}`" if self.bundle_id else self.product
        caveat = f"; not held-out: {self.not_held_out}" if self.not_held_out else ""
        if self.readiness is not None and self.line_ready:
            return (
                f"{where}: {READY} at threshold {self.threshold:.4g} — "
                f"{self.readiness.summary}; held-out parts: the {self.split} split{caveat}"
            )
        state = "health unknown" if not self.known else NOT_READY
        return f"{where}: {state} — " + "; ".join(self.reasons) + caveat


def operating_point(product: str, configs_dir: Path | None = None) -> OperatingPoint:
    """The product's configured operating point, else the default false-reject budget."""
    try:
        point = getattr(load_product_config(product, configs_dir), "operating_point", None)
    except (ConfigError, OSError):
        point = None
    return point if isinstance(point, OperatingPoint) else OperatingPoint()


def live_scores(
    registry: Registry, product: str
) -> tuple[str | None, ValidationScores | None, str]:
    """(live bundle id, its labelled held-out scores or None, why there are none)."""
    live = registry.journal.live(product)
    if live is None:
        return None, None, ""
    bundle_id = live.bundle_id
    try:
        data = read_validation_scores(registry.bundles.bundle_dir(product, bundle_id))
    except (BundleError, RegistryError) as exc:
        return bundle_id, None, f"validation scores of `{bundle_id}` refused: {exc}"
    shipped = data is not None
    return bundle_id, data, "" if shipped else f"`{bundle_id}` ships no labelled held-out scores"


def _refusals(registry: Registry, product: str, public_key: PublicKeys | None) -> dict[str, str]:
    """Per kind, why a station pinning ``public_key`` refuses the newest record it would
    follow (live pointer, threshold, each kind of decision)."""
    if public_key is None:
        return {}
    newest: dict[str, object] = {"live": registry.journal.live(product)}
    newest["threshold"] = registry.journal.current_threshold(product)
    for decision in registry.journal.decisions(product):
        newest[decision.kind if decision.kind != "force" else "gate"] = decision
    found = {kind: refusal(r, public_key) for kind, r in newest.items() if r is not None}
    return {kind: why for kind, why in found.items() if why}


def _station_keyrings(
    registry: Registry, configs_dir: Path | None
) -> dict[str, Keyring | SigningError | None]:
    """What each station config of the site pins, by file name (a replaced key file: the
    error the station stops on); without one, the site's key files."""
    keyrings: dict[str, Keyring | SigningError | None] = {}
    for path in station_configs_in(configs_dir) if configs_dir else []:
        try:
            trust = read_trust(path)
            if trust.signing_keys:
                keyrings[path.name] = Keyring.pinned(trust.signing_keys, trust.revoked)
        except (ConfigError, SigningError, OSError) as exc:
            keyrings[path.name] = SigningError(str(exc))
    return keyrings or {"site keys": _site_keyring(registry)}


def _station_refusals(registry: Registry, product: str, configs_dir: Path | None) -> dict[str, str]:
    """``_refusals`` over the site's stations, naming the config that pins the keys."""
    refused: dict[str, str] = {}
    for where, keyring in _station_keyrings(registry, configs_dir).items():
        named = "" if where == "site keys" else f" ({where})"
        if isinstance(keyring, SigningError):
            refused.setdefault("keys", f"{keyring}{named}")
            continue
        for kind, why in _refusals(registry, product, keyring).items():
            refused.setdefault(kind, f"{why}{named}")
    return refused


def _site_keyring(registry: Registry) -> Keyring | None:
    """What the site's stations pin by default: the site key and the dashboard's decision
    key when there is one (None: the site signs nothing)."""
    site = site_public_key(registry.root)
    if site is None:
        return None
    dashboard = dashboard_key_path(registry.root).with_suffix(".pub")
    decisions = (load_public_key(dashboard),) if dashboard.is_file() else ()
    return Keyring((load_public_key(site),), decisions)


def model_health(
    registry: Registry,
    product: str,
    *,
    point: OperatingPoint | None = None,
    threshold: float | None = None,
    configs_dir: Path | None = None,
) -> ModelHealth:
    """Health of the live bundle at the live threshold (or ``threshold``, for what-ifs)."""
    point = point or operating_point(product, configs_dir)
    bundle_id, data, missing = live_scores(registry, product)
    caveat = ""
    if threshold is None:
        threshold = current_threshold_value(registry, product, bundle_id)
        caveat = _chosen_on_split(registry, product)
    base = ModelHealth(product, bundle_id, float(threshold), point, not_held_out=caveat)
    if bundle_id is None:
        return base
    refused = _station_refusals(registry, product, configs_dir)
    if refused:
        listed = "; ".join(f"{kind}: {why}" for kind, why in refused.items())
        return replace(
            base, problem=f"signed records refused (stations keep the last good): {listed}"
        )
    if data is None:
        return replace(base, problem=missing)
    scores = np.asarray(data.scores, dtype=np.float64)
    labels = np.asarray(data.labels, dtype=np.int8)
    kinds = kinds_of(data)
    good = labels == 0
    miss = miss_at(scores, labels, kinds, threshold) if (~good).any() else {}
    return replace(
        base,
        certificate=live_certificate(registry, product),
        split=data.split,
        n_good=int(good.sum()),
        rejected_good=int(is_ng(scores[good], threshold).sum()),
        kinds=tuple(miss[k] for k in sorted(miss)),
    )


def _chosen_on_split(registry: Registry, product: str) -> str:
    """Why the live threshold may have been chosen on the held-out split ('': it was not):
    a version set by value (no budget, no certificate) on the Thresholds page, which shows
    that split's rates; a budget is chosen on the audit sample, a certificate on audit parts
    and the bundle's calibration scores."""
    version = registry.journal.current_threshold(product)
    if version is None or version.budget is not None or version.certificate is not None:
        return ""
    return (
        f"threshold v{version.number} was set by value on the Thresholds page, where the "
        "held-out split it is judged on is shown; set it at a budget (chosen on the audit "
        "sample) or certify it for a held-out judgement"
    )


def live_certificate(registry: Registry, product: str) -> Certificate | None:
    """The certificate the live threshold runs at (a certified threshold version's, else the
    live bundle's own; None: none readable)."""
    try:
        return product_certificate(registry, None, product).certificate
    except (InspectionError, OSError):
        return None


def kind_table(health: ModelHealth) -> pd.DataFrame:
    """The confusion table at the live threshold: a row for good parts and one per defect
    kind, with the error rate and, for defects, its 95 % interval."""
    n, rejected = health.n_good, health.rejected_good
    rows = [(GOOD, n, rejected, n - rejected, "false alarm", health.reject_rate, "")] if n else []
    rows += [
        (k.kind, k.n, k.n - k.missed, k.missed, "missed", k.rate,
         f"{k.interval.low:.0%}–{k.interval.high:.0%}")
        for k in health.kinds
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=["kind", "n", "NG", "OK", "error", "rate", "95% interval"])


@dataclass(frozen=True)
class Outcome:
    """One held-out image at the live threshold, its file and ground-truth mask when on disk,
    read at the live bundle's ``source_bits`` and ``source_range``."""

    name: str
    kind: str
    score: float
    outcome: str
    path: Path | None
    mask: Path | None = None
    bits: int = DEFAULT_SOURCE_BITS
    value_range: tuple[float, float] | None = None


def outcomes(
    registry: Registry, product: str, datasets_dir: Path, threshold: float | None = None
) -> list[Outcome]:
    """Every held-out image of the live bundle with its outcome, worst first per outcome."""
    bundle_id, data, _missing = live_scores(registry, product)
    if data is None:
        return []
    if threshold is None:
        threshold = current_threshold_value(registry, product, bundle_id)
    names = data.names or tuple(f"#{i}" for i in range(len(data.scores)))
    reading = source_reading(registry, product, bundle_id)
    folder = Path(datasets_dir) / product / data.split
    truth = Path(datasets_dir) / product / "ground_truth"
    result = []
    for name, kind, score, label in zip(
        names, kinds_of(data), data.scores, data.labels, strict=True
    ):
        flagged = bool(is_ng(np.float64(score), threshold))
        outcome = {(1, False): "missed", (0, True): "false_alarm", (1, True): "caught"}.get(
            (label, flagged), "passed"
        )
        path, mask = folder / kind / name, truth / kind / f"{Path(name).stem}_mask.png"
        if not mask.is_file():  # MVTec LOCO: a folder of masks per image
            mask = truth / kind / Path(name).stem
        shown = (path if path.is_file() else None, mask if mask.exists() else None)
        result.append(Outcome(name, kind, float(score), outcome, *shown, *reading))
    worst_first = {"missed": 1, "passed": 1, "false_alarm": -1, "caught": -1}
    return sorted(result, key=lambda o: (o.outcome, o.kind, worst_first[o.outcome] * o.score))


def source_reading(
    registry: Registry, product: str, bundle_id: str | None
) -> tuple[int, tuple[float, float] | None]:
    """The bundle's (``source_bits``, ``source_range``) (16 and None when it is gone or
    unreadable)."""
    if bundle_id is None:
        return DEFAULT_SOURCE_BITS, None
    try:
        bundle = read_bundle_metadata(registry.bundles.bundle_dir(product, bundle_id))
    except (BundleError, RegistryError):
        return DEFAULT_SOURCE_BITS, None
    return bundle.preprocessing.source_bits, bundle.preprocessing.source_range


def picture(example: Outcome) -> np.ndarray | None:
    """The example's image with its ground-truth defect outlined in red."""
    if example.path is None:
        return None
    image = read_image(example.path, bits=example.bits, value_range=example.value_range)
    if example.mask is None:
        return image
    return outline(image, read_mask(example.mask, image.shape[:2]))

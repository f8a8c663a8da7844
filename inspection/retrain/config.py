"""Retraining settings from ``retrain.yaml`` beside the site config: schedules, gate policy,
retries."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from inspection.core.bundle import PRECISIONS
from inspection.core.config import configs_folder, deep_merge, from_mapping, read_yaml
from inspection.core.errors import ConfigError
from inspection.core.export_gate import GateTolerances
from inspection.retrain.gate import GatePolicy

RETRAIN_CONFIG_FILE = "retrain.yaml"
ReviewedSince = Literal["champion", "latest_version", "all"]


@dataclass(frozen=True)
class ProductJob:
    """One product's retraining job: ``dataset`` defaults to ``<datasets_dir>/<product>``;
    ``memory_gb``: its Ray task's budget; ``timeout_minutes``: a fleet run stops it after this."""

    schedule: str = "0 2 * * 0"
    dataset: Path | None = None
    enabled: bool = True
    memory_gb: float | None = None
    timeout_minutes: float | None = None

    def __post_init__(self) -> None:
        for name in ("memory_gb", "timeout_minutes"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be a number > 0, got {value}")


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff: wait ``initial_delay_s * factor**k`` (capped) before attempt k+2."""

    attempts: int = 3
    initial_delay_s: float = 60.0
    factor: float = 2.0
    max_delay_s: float = 900.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {self.attempts}")
        bounds = (("initial_delay_s", 0.0), ("max_delay_s", 0.0), ("factor", 1.0))
        for key, minimum in bounds:
            value = getattr(self, key)
            if not (value >= minimum and math.isfinite(value)):
                raise ValueError(f"{key} must be a number >= {minimum:g}, got {value}")

    def delay(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failed attempt (1-based)."""
        return min(self.max_delay_s, self.initial_delay_s * self.factor ** (failures - 1))


@dataclass(frozen=True)
class ChallengerExport:
    """The challenger's export: each of ``precisions`` in order, never forced, through its own
    gate (``tolerances`` against FP32); the first that passes is the challenger, else the
    champion stays."""

    precisions: tuple[str, ...] = ("int8", "fp32")
    tolerances: GateTolerances = field(default_factory=GateTolerances)

    def __post_init__(self) -> None:
        unknown = [p for p in self.precisions if p not in PRECISIONS]
        if not self.precisions or unknown:
            raise ValueError(
                f"precisions must name one or more of {', '.join(PRECISIONS)}, got "
                f"{list(self.precisions)}"
            )


@dataclass(frozen=True)
class RetrainConfig:
    """Everything ``inspection retrain`` and ``inspection scheduler`` read. ``reviewed_since``:
    ``champion`` (reviews since the live version plus those it trained with), ``latest_version`` or
    ``all``; ``warmup``: inferences before latency is measured; ``incremental``: a memory-bank
    champion with only new reviewed-good images gets its bank extended, not refit."""

    products: dict[str, ProductJob] = field(default_factory=dict)
    gate: GatePolicy = field(default_factory=GatePolicy)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    reviewed_since: ReviewedSince = "champion"
    work_dir: Path = Path("var/retrain")
    keep_work_dirs: int = 3
    warmup: int = 2
    poll_seconds: float = 30.0
    incremental: bool = True
    export: ChallengerExport = field(default_factory=ChallengerExport)

    def __post_init__(self) -> None:
        # keep_work_dirs < 1 would prune the run folder of the version just promoted
        for key, minimum in (("keep_work_dirs", 1), ("warmup", 0)):
            value = getattr(self, key)
            if value < minimum:
                raise ValueError(f"{key} must be at least {minimum}, got {value}")
        if not (self.poll_seconds > 0 and math.isfinite(self.poll_seconds)):
            raise ValueError(f"poll_seconds must be a number > 0, got {self.poll_seconds}")

    def job(self, product: str) -> ProductJob:
        """The product's job; a product without an entry gets the defaults."""
        return self.products.get(product, ProductJob())


def retrain_config_from_mapping(
    data: dict[str, Any], where: str = "retrain config"
) -> RetrainConfig:
    """Build a ``RetrainConfig``; every problem becomes a ``ConfigError`` naming the key."""
    data = dict(data)
    raw_products = data.pop("products", None) or {}
    if not isinstance(raw_products, dict):
        raise ConfigError(f"{where}.products: expected a mapping of product name to job")
    try:
        products = {
            str(name): from_mapping(ProductJob, job or {}, where=f"{where}.products.{name}")
            for name, job in raw_products.items()
        }
        for name, job in products.items():
            _check_schedule(job.schedule, f"{where}.products.{name}.schedule")
        config = from_mapping(RetrainConfig, data, where=where)
    except ValueError as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{where}: {exc}") from exc
    return RetrainConfig(**{**config.__dict__, "products": products})


def load_retrain_config(
    path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    *,
    configs_dir: Path | None = None,
) -> RetrainConfig:
    """Read ``path`` (default: the site's ``retrain.yaml``, if any) and merge ``overrides``."""
    if path is None:
        path = configs_folder(configs_dir) / RETRAIN_CONFIG_FILE
        data = read_yaml(path) if path.is_file() else {}
    else:
        data = read_yaml(path)
    return retrain_config_from_mapping(deep_merge(data, overrides or {}), str(path))


def _check_schedule(expression: str, where: str) -> None:
    # deferred: croniter (optional)
    from croniter import croniter

    if not croniter.is_valid(expression):
        raise ConfigError(
            f"{where}: {expression!r} is not a cron expression "
            "(five fields: minute hour day-of-month month day-of-week, e.g. '0 2 * * 0')"
        )

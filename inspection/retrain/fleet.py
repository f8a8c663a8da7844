"""Retrain many products at once: Ray tasks with a CPU budget each, or in-process.

Every task runs the ordinary ``retrain_product``, so results are those of ``inspection
retrain``; a task that raises or whose worker dies never promotes (promotion is a run's last
write). Under a memory budget the product retrains in a child process that alone holds the limit.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import multiprocessing
import os
import re
import resource
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Literal

from inspection.core.config import SiteConfig
from inspection.core.errors import InspectionError
from inspection.core.registry import Registry
from inspection.retrain.config import RetrainConfig
from inspection.retrain.lock import RetrainBusy

log = logging.getLogger(__name__)
FleetStatus = Literal["promoted", "kept", "skipped", "failed"]


@dataclass(frozen=True)
class FleetOptions:
    """``ray_address``: ``None`` runs in this process, else ``"auto"`` or ``host:port``.
    ``cpus_per_task``: Ray request and thread count. ``memory_gb``: each task's budget (a
    product's own in retrain.yaml wins), Ray's request and the ``RLIMIT_DATA`` of its process."""

    ray_address: str | None = None
    cpus_per_task: float = 1.0
    actor: str = "fleet"
    overrides: tuple[str, ...] = ()
    memory_gb: float | None = None

    def __post_init__(self) -> None:
        if self.cpus_per_task <= 0:
            raise InspectionError(f"cpus per task must be > 0, got {self.cpus_per_task}")
        if self.memory_gb is not None and self.memory_gb <= 0:
            raise InspectionError(f"memory per task must be > 0 GB, got {self.memory_gb}")
        if self.memory_gb is not None and self.ray_address is None:
            raise InspectionError("a memory budget per task needs --ray (a worker per product)")


@dataclass(frozen=True)
class FleetOutcome:
    """One product's result (``where``: host:pid of the worker; ``peak_rss_gb``: Ray only)."""

    product: str
    status: FleetStatus
    detail: str
    seconds: float
    challenger_bundle: str | None = None
    where: str = ""
    peak_rss_gb: float | None = None

    def summary(self) -> str:
        peak = f", peak {self.peak_rss_gb:.2f} GB" if self.peak_rss_gb is not None else ""
        where = self.where or "lost worker"
        return (
            f"{self.product}: {self.status} in {self.seconds:.0f} s ({where}{peak}): {self.detail}"
        )


class FleetTaskFailed(InspectionError):
    """A product's task failed (its run recorded why; the champion stays live)."""


def retrain_one(
    product: str, site: SiteConfig, config: RetrainConfig, options: FleetOptions
) -> FleetOutcome:
    """One product through the fleet (the scheduler's job); raises when the task failed, so
    retry policies apply, and ``RetrainBusy`` when another run holds the product."""
    [outcome] = run_fleet([product], site, config, options)
    if outcome.status == "skipped":
        raise RetrainBusy(outcome.detail)
    if outcome.status == "failed":
        raise FleetTaskFailed(outcome.detail)
    return outcome


def retrain_task(
    product: str, site: SiteConfig, config: RetrainConfig, options: FleetOptions
) -> FleetOutcome:
    """Retrain one product (in a Ray worker or in-process); never raises. Under a memory
    budget or a time limit it runs in a child process, which alone holds the memory limit
    (Ray's threads starved of memory could hang the fleet) and can be stopped in time."""
    budget = memory_budget_gb(product, config, options)
    minutes = config.job(product).timeout_minutes
    if budget is None and minutes is None:
        with _limited_threads(options.cpus_per_task):
            return _retrain(product, site, config, options)
    started = time.perf_counter()
    spawn = multiprocessing.get_context("spawn")  # never fork a process running Ray's threads
    receive, send = spawn.Pipe(duplex=False)
    args = (send, budget, product, site, config, options)
    child = spawn.Process(target=_retrain_within, args=args, name=f"retrain-{product}")
    child.start()
    send.close()  # the child holds the only sending end: its death ends recv()
    try:
        if receive.poll(None if minutes is None else minutes * 60):
            outcome: FleetOutcome = receive.recv()
        else:
            child.kill()
            outcome = _lost_child(product, site, options, child, started, minutes=minutes or 0.0)
    except EOFError:  # died without a word: killed (the OOM killer) or aborted
        outcome = _lost_child(product, site, options, child, started, budget=budget)
    child.join()
    return outcome


def _retrain_within(
    send: Connection,
    budget: float | None,
    product: str,
    site: SiteConfig,
    config: RetrainConfig,
    options: FleetOptions,
) -> None:
    """The child: dies with its parent (a lost worker's run never promotes later), sets
    ``RLIMIT_DATA`` to ``budget`` GB (if any), retrains and sends the outcome."""
    # deferred: alembic, skimage, sqlalchemy, torch; loaded before the limit, counted in it
    import inspection.retrain.pipeline  # noqa: F401

    threading.Thread(target=_exit_with_parent, daemon=True).start()
    with _limited_threads(options.cpus_per_task):
        if budget is None:
            outcome = _retrain(product, site, config, options)
        elif (held := _data_in_use_gb()) >= budget:  # the first allocation would fail, unrecorded
            detail = (
                f"its libraries already take {held:.2f} GB, over {_budget_hint(product, budget)}"
            )
            _record_failure(site, product, options.actor, detail, stage="budget")
            outcome = FleetOutcome(product, "failed", detail, 0.0, where=_here())
        else:
            resource.setrlimit(resource.RLIMIT_DATA, (int(budget * 1e9), resource.RLIM_INFINITY))
            outcome = _retrain(product, site, config, options, budget)
    send.send(outcome)


def _retrain(
    product: str,
    site: SiteConfig,
    config: RetrainConfig,
    options: FleetOptions,
    budget: float | None = None,
) -> FleetOutcome:
    """``retrain_product`` as a fleet outcome (``budget``: the limit this process runs under)."""
    # deferred: alembic, skimage, sqlalchemy
    from inspection.retrain.pipeline import retrain_product

    outcome = partial(FleetOutcome, product, where=_here())
    started = time.perf_counter()
    try:
        result = retrain_product(
            product, site=site, config=config, actor=options.actor, overrides=options.overrides
        )
    except RetrainBusy as exc:
        return outcome("skipped", str(exc), _since(started))
    except Exception as exc:  # recorded as a failed retrain event by retrain_product
        log.exception("retrain of %s failed", product)
        detail = f"{type(exc).__name__}: {exc}"
        if budget is not None and _out_of_memory(exc):
            detail = f"ran out of {_budget_hint(product, budget)}: {detail}"
        elif budget is not None:  # oneDNN says "could not create a primitive", for one
            detail += f" (if memory ran short: {_budget_hint(product, budget)})"
        return outcome("failed", detail, _since(started), peak_rss_gb=_peak_rss_gb(options))
    status: FleetStatus = "promoted" if result.status == "promoted" else "kept"
    return outcome(
        status, result.summary(), _since(started), result.challenger_bundle,
        peak_rss_gb=_peak_rss_gb(options),
    )  # fmt: skip


def _exit_with_parent() -> None:
    """In a child process: wait for its parent to end, then end this process."""
    if (parent := multiprocessing.parent_process()) is not None:
        wait([parent.sentinel])
        os._exit(1)


def _lost_child(
    product: str,
    site: SiteConfig,
    options: FleetOptions,
    child: BaseProcess,
    started: float,
    *,
    budget: float | None = None,
    minutes: float | None = None,
) -> FleetOutcome:
    """The recorded outcome of a child stopped after ``minutes``, or that died without one."""
    child.join()
    if minutes is not None:
        stage = "timeout"
        detail = (
            f"the retraining was stopped after {minutes:g} min (raise timeout_minutes for "
            f"{product} in retrain.yaml)"
        )
    else:
        stage, code = "process", child.exitcode or 0
        how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with {code}"
        detail = f"the retraining process {how}"
        if budget is not None:
            detail += f" (a process dies so when it runs out of {_budget_hint(product, budget)})"
    _record_failure(site, product, options.actor, detail, stage=stage)
    peak = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2, 2)
    where = f"{socket.gethostname()}:{child.pid}"
    return FleetOutcome(product, "failed", detail, _since(started), where=where, peak_rss_gb=peak)


def memory_budget_gb(product: str, config: RetrainConfig, options: FleetOptions) -> float | None:
    """The product's own ``memory_gb`` (retrain.yaml) or the fleet's; ``None``: no budget."""
    if options.ray_address is None:
        return None
    return config.job(product).memory_gb or options.memory_gb


def run_fleet(
    products: Iterable[str],
    site: SiteConfig,
    config: RetrainConfig,
    options: FleetOptions,
    *,
    on_outcome: Callable[[FleetOutcome], None] | None = None,
) -> list[FleetOutcome]:
    """Retrain ``products``; outcomes in completion order (Ray) or product order."""
    products = list(dict.fromkeys(products))
    site, config = absolute_site(site), absolute_config(config)
    report = on_outcome or (lambda outcome: None)
    if options.ray_address is None:
        outcomes = []
        for product in products:
            outcomes.append(retrain_task(product, site, config, options))
            report(outcomes[-1])
        return outcomes
    return _run_on_ray(products, site, config, options, report)


def _run_on_ray(
    products: list[str],
    site: SiteConfig,
    config: RetrainConfig,
    options: FleetOptions,
    report: Callable[[FleetOutcome], None],
) -> list[FleetOutcome]:
    # deferred: ray (optional)
    import ray
    from ray.exceptions import RayError

    connect_ray(options.ray_address)
    # a fresh worker per task: its peak memory is the task's own, its memory limit dies with it
    task = ray.remote(num_cpus=options.cpus_per_task, max_retries=0, max_calls=1)(retrain_task)
    started = time.perf_counter()
    pending = {}
    for product in products:
        budget = memory_budget_gb(product, config, options)
        request = task.options(memory=int(budget * 1e9)) if budget else task
        pending[request.remote(product, site, config, options)] = product
    outcomes = []
    while pending:
        [ready], _ = ray.wait(list(pending), num_returns=1)
        product = pending.pop(ready)
        try:
            outcome = ray.get(ready)
        except RayError as exc:  # the worker died (OOM, kill -9, node lost)
            detail = f"worker lost: {type(exc).__name__}: {str(exc).splitlines()[0]}"
            if budget := memory_budget_gb(product, config, options):  # may have ended it
                detail += f" (a worker may die when it runs out of {_budget_hint(product, budget)})"
            outcome = FleetOutcome(product, "failed", detail, _since(started))
            _record_failure(site, product, options.actor, detail)
        outcomes.append(outcome)
        report(outcome)
    return outcomes


OUT_OF_MEMORY = re.compile(r"allocate( \d+ bytes of)? memory", re.IGNORECASE)
RAY_AUTH_MODE = "RAY_AUTH_MODE"
RAY_DEFAULT_TOKEN = Path("~/.ray/auth_token")


def connect_ray(address: str) -> None:
    """Join the Ray cluster at ``address`` with this package on the path, token-authenticated."""
    os.environ.setdefault(RAY_AUTH_MODE, "token")
    # deferred: ray (optional)
    import ray
    from ray._raylet import Config

    if ray.is_initialized():
        return
    if os.environ[RAY_AUTH_MODE] == "token":
        require_ray_token()
    Config.initialize("")  # Ray caches RAY_AUTH_MODE at import; re-read it (as Ray itself does)
    package_root = str(Path(__file__).resolve().parents[2])
    python_path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
    try:
        env = {"env_vars": {"PYTHONPATH": python_path}}
        ray.init(
            address=address, runtime_env=env, log_to_driver=False, logging_level=logging.WARNING
        )
    except ConnectionError as exc:
        raise InspectionError(
            f"no Ray cluster at {address} accepted this driver: start one (scripts/services.sh, "
            "docs/deployment.md) or run without --ray; a head with token authentication also "
            f"refuses a driver whose token differs from its own ({exc})"
        ) from exc


def require_ray_token() -> None:
    """``InspectionError`` saying how to make one when Ray would find no token."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    token_file = Path(path) if path else RAY_DEFAULT_TOKEN.expanduser()
    try:
        if token_file.read_text(encoding="utf-8").strip():
            if token_file.stat().st_mode & 0o077:
                log.warning(
                    "the Ray token %s is readable by other users (`ray get-auth-token "
                    "--generate` writes it so): chmod 600 it", token_file,
                )  # fmt: skip
            return
    except OSError:
        pass
    raise InspectionError(
        f"the Ray fleet uses token authentication and {token_file} holds no token: copy the "
        "head's token there (or set RAY_AUTH_TOKEN_PATH), or create one for a new head with "
        "`RAY_AUTH_MODE=token ray get-auth-token --generate`; RAY_AUTH_MODE=disabled turns "
        "authentication off (anyone reaching the head's port can then run code on it)"
    )


def _record_failure(
    site: SiteConfig, product: str, actor: str, detail: str, *, stage: str = "worker"
) -> None:
    try:
        Registry(site.registry_dir).journal.record_event(
            product, "retrain", actor=actor, reason=detail, decision="failed", status="failed",
            stage=stage,
        )  # fmt: skip
    except Exception:
        log.exception("could not record the failed retrain of %s", product)


# ------------------------------------------------------------------------ helpers
def absolute_site(site: SiteConfig) -> SiteConfig:
    """Workers may start in another directory: every path (and a SQLite URL) made absolute."""
    store_url = site.store_url
    prefix = "sqlite:///"
    if store_url.startswith(prefix) and not store_url[len(prefix) :].startswith("/"):
        store_url = prefix + str(Path(store_url[len(prefix) :]).resolve())
    folders = ("registry_dir", "blob_dir", "reports_dir", "datasets_dir")
    paths = {name: Path(getattr(site, name)).resolve() for name in folders}
    return dataclasses.replace(
        site, **paths, configs_dir=site.configs.resolve(), store_url=store_url
    )


def absolute_config(config: RetrainConfig) -> RetrainConfig:
    products = {
        name: dataclasses.replace(job, dataset=Path(job.dataset).resolve() if job.dataset else None)
        for name, job in config.products.items()
    }
    return dataclasses.replace(config, work_dir=Path(config.work_dir).resolve(), products=products)


@contextmanager
def _limited_threads(cpus: float) -> Iterator[None]:
    """Run on ``cpus`` threads (torch and the BLAS/OpenMP variables), then put the caller's back:
    an in-process task leaves its caller as found (a process left on one thread changes its later
    trainings' rounding, and their speed)."""
    threads = max(1, int(cpus))
    names = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
    before = {name: os.environ.get(name) for name in names}
    os.environ.update(dict.fromkeys(names, str(threads)))
    import torch  # deferred: the training stack, which every retraining runs

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _budget_hint(product: str, budget: float) -> str:
    return (
        f"its memory budget of {budget:g} GB (raise memory_gb for {product} in retrain.yaml, "
        "or --memory-gb)"
    )


def _out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` or its cause is a refused allocation (MemoryError, ENOMEM, "allocate")."""
    while exc is not None:
        enomem = isinstance(exc, OSError) and exc.errno == errno.ENOMEM
        if enomem or isinstance(exc, MemoryError) or OUT_OF_MEMORY.search(str(exc)):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _peak_rss_gb(options: FleetOptions) -> float | None:
    """This worker's peak RSS (Linux: KiB); ``None`` in-process (the driver's would hide it)."""
    if options.ray_address is None:
        return None
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 2)


def _data_in_use_gb() -> float:
    """This process's data segment (Linux ``/proc/self/statm``), what ``RLIMIT_DATA`` counts."""
    pages = int(Path("/proc/self/statm").read_text().split()[5])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e9


def _here() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _since(started: float) -> float:
    return round(time.perf_counter() - started, 2)

"""The retraining fleet: products fanned out as Ray tasks, or in-process without Ray."""

from __future__ import annotations

import multiprocessing
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from inspection.core.config import SiteConfig
from inspection.core.errors import InspectionError
from inspection.core.registry import Registry
from inspection.retrain.config import retrain_config_from_mapping
from inspection.retrain.fleet import (
    RAY_DEFAULT_TOKEN,
    FleetOptions,
    connect_ray,
    retrain_task,
    run_fleet,
)
from inspection.store.store import Store

from .helpers import FP32, scratch_site

RAY_ADDRESS = os.environ.get("INSPECTION_TEST_RAY", "127.0.0.1:6390")
SIZE = [
    "image_size=[96, 96]", "coreset_sampling_ratio=0.05", "backbone.weights=random",
    "operating_point.policy=f1",  # 4 good test parts: one reject fails a 1 % budget's gate
]  # fmt: skip
GATE = {"metrics": [{"name": "image_auroc", "tolerance": 1.0}], "latency_tolerance": 10.0}


def _config(tmp_path: Path):
    return retrain_config_from_mapping(
        {"gate": GATE, "work_dir": str(tmp_path / "work"), "warmup": 1}
    )


def test_in_process_a_failed_product_never_promotes(
    tmp_path: Path, tiny_product: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    site = scratch_site(tmp_path, tiny_product.parent)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    before = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    torch.set_num_threads(2)
    try:
        outcomes = run_fleet(["ghost", "ghost"], site, _config(tmp_path), FleetOptions())
        # the task ran on its one thread and left this process's threads as it found them
        assert (torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")) == (2, before[1])
        assert "MKL_NUM_THREADS" not in os.environ
    finally:
        torch.set_num_threads(before[0])
    [ghost] = outcomes  # each product once
    assert ghost.status == "failed" and "'ghost' has no trained model" in ghost.detail
    assert ghost.where.endswith(f":{os.getpid()}")
    registry = Registry(site.registry_dir)
    assert registry.journal.live("ghost") is None
    assert registry.journal.events("ghost") == [] and "ghost" not in registry.bundles.products()


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The address of a running Ray head: the services' (``scripts/services.sh``) when one
    answers, else one started here as that script starts it (token authentication on, the
    token in Ray's default file, ``--block`` under a PID of its own) and stopped after this
    file's tests by that PID: no head outlives the tests that started it."""
    pytest.importorskip("ray")
    host, port = RAY_ADDRESS.rsplit(":", 1)
    if _answers(host, int(port)):
        yield RAY_ADDRESS
        return
    ray_bin = Path(sys.executable).with_name("ray")
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    if not RAY_DEFAULT_TOKEN.expanduser().is_file():
        subprocess.run([str(ray_bin), "get-auth-token", "--generate"], env=env, check=True,
                       capture_output=True, timeout=60)  # fmt: skip
    RAY_DEFAULT_TOKEN.expanduser().chmod(0o600)
    log = tmp_path_factory.mktemp("ray-head") / "ray.log"
    with log.open("w") as out:
        head = subprocess.Popen(
            [str(ray_bin), "start", "--head", "--block", f"--node-ip-address={host}",
             f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
             "--disable-usage-stats"],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while not _answers(host, int(port)):
            if head.poll() is not None or time.monotonic() > deadline:
                pytest.skip(f"Ray cannot start here: {log.read_text()[-300:]}")
            time.sleep(0.5)
        yield RAY_ADDRESS
    finally:
        os.killpg(head.pid, signal.SIGTERM)  # the head and every process it started
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()


def _answers(host: str, port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((host, port)) == 0


def _libraries_gb() -> float:
    """The data segment a budgeted child holds before retraining (its libraries loaded)."""
    probe = (
        "import inspection.retrain.pipeline, torch; "
        "from inspection.retrain.fleet import _data_in_use_gb; print(_data_in_use_gb())"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    return float(done.stdout.split()[-1])


@pytest.mark.timeout(120)
def test_a_budget_below_the_libraries_is_refused_in_the_child(
    tmp_path: Path, tiny_product: Path
) -> None:
    """The product retrains in a child process that alone holds the limit: a budget its
    libraries already exceed is refused there and recorded; this process is never limited."""
    site = scratch_site(tmp_path, tiny_product.parent)
    options = FleetOptions("127.0.0.1:1", 1.0, "fleet-test", memory_gb=0.01)
    before = resource.getrlimit(resource.RLIMIT_DATA)
    outcome = retrain_task("brick", site, _config(tmp_path), options)
    assert resource.getrlimit(resource.RLIMIT_DATA) == before
    assert outcome.status == "failed" and "its memory budget of 0.01 GB" in outcome.detail
    assert "its libraries already take" in outcome.detail
    assert not outcome.where.endswith(f":{os.getpid()}"), "the budget ran in this process"
    [event] = Registry(site.registry_dir).journal.events("brick")
    assert (event["status"], event["stage"]) == ("failed", "budget")


@pytest.mark.timeout(120)
def test_a_child_that_dies_is_recorded_and_the_task_returns(
    tmp_path: Path, tiny_product: Path
) -> None:
    """A child killed before it answers (as the kernel's OOM killer kills) ends the task with
    the signal named and a ``process`` failure recorded, instead of waiting for an outcome."""
    site = scratch_site(tmp_path, tiny_product.parent)
    options = FleetOptions("127.0.0.1:1", 1.0, "fleet-test", memory_gb=4.0)
    with ThreadPoolExecutor(1) as pool:
        task = pool.submit(retrain_task, "brick", site, _config(tmp_path), options)
        child = _child_named("retrain-brick")
        os.kill(child.pid, signal.SIGKILL)
        outcome = task.result(timeout=60)
    assert outcome.status == "failed" and "was killed by SIGKILL" in outcome.detail
    assert outcome.where.endswith(f":{child.pid}")
    [event] = Registry(site.registry_dir).journal.events("brick")
    assert (event["status"], event["stage"]) == ("failed", "process")


@pytest.mark.timeout(120)
def test_a_retraining_past_its_time_is_stopped_and_recorded(
    tmp_path: Path, tiny_product: Path
) -> None:
    """``timeout_minutes`` in retrain.yaml: the product retrains in a child that is killed
    when its time is up; the task returns a ``timeout`` failure and nothing is promoted."""
    site, registry, _ = _site_with_champions(tmp_path, tiny_product, ["brick"])
    champion = registry.journal.live("brick")
    config = retrain_config_from_mapping(
        {"gate": GATE, "work_dir": str(tmp_path / "work"), "warmup": 1,
         "products": {"brick": {"timeout_minutes": 0.02}}}  # 1.2 s: imports and training take more
    )  # fmt: skip
    with ThreadPoolExecutor(1) as pool:
        task = pool.submit(retrain_task, "brick", site, config, FleetOptions(overrides=SIZE))
        child = _child_named("retrain-brick")
        outcome = task.result(timeout=60)
    assert outcome.status == "failed" and "stopped after 0.02 min" in outcome.detail
    assert not child.is_alive() and outcome.where.endswith(f":{child.pid}")
    [event] = [e for e in registry.journal.events("brick") if e["action"] == "retrain"]
    assert (event["status"], event["stage"]) == ("failed", "timeout")
    assert registry.journal.live("brick") == champion


def _site_with_champions(
    tmp_path: Path, tiny_product: Path, products: list[str]
) -> tuple[SiteConfig, Registry, dict[str, str]]:
    """A scratch site whose ``products`` each have a live FP32 champion (bundle ids returned)
    and whose results store is migrated, with no reviews yet."""
    from inspection.core.product_config import load_model_config
    from inspection.retrain.demo import train_champion

    site = scratch_site(tmp_path, tiny_product.parent)
    registry = Registry(site.registry_dir)
    config = load_model_config("patchcore", overrides=SIZE)
    champions = {
        product: train_champion(config, tiny_product, product=product, registry=registry,
                                actor="test", export=FP32)
        for product in products
    }  # fmt: skip
    Store.migrated(site.store_url, site.blob_dir).engine.dispose()
    return site, registry, champions


def _with_one_more_good(product: Path, tmp_path: Path) -> Path:
    """A copy of ``product`` with one more good training image (a mirrored one): a retrain of
    its champion has something new to learn."""
    from PIL import Image

    grown = shutil.copytree(product, tmp_path / "grown" / product.name)
    first = sorted((grown / "train" / "good").iterdir())[0]
    Image.open(first).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(first.with_stem("mirrored"))
    return grown


def _child_named(name: str, seconds: float = 30.0) -> multiprocessing.process.BaseProcess:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for child in multiprocessing.active_children():
            if child.name == name and child.pid is not None:
                return child
        time.sleep(0.01)
    raise AssertionError(f"no child process {name} started within {seconds} s")


@pytest.mark.slow
@pytest.mark.timeout(900)  # a worker starved of memory once hung the fleet for good
def test_ray_fleet_retrains_through_the_registry(
    tmp_path: Path, tiny_product: Path, ray_head: str
) -> None:
    """Three products in Ray workers: one retrained, one without a model, one with a memory
    budget (``memory_gb`` in retrain.yaml) above its libraries but too small to retrain: it
    fails alone, its reason recorded, and the run ends."""
    import ray

    address = ray_head
    site, registry, champions = _site_with_champions(tmp_path, tiny_product, ["brick", "twin"])
    budget = round(_libraries_gb() + 0.35, 2)  # a Ray child holds more; too little to retrain
    grown = str(_with_one_more_good(tiny_product, tmp_path))  # something new to learn
    products = {"twin": {"dataset": grown, "memory_gb": budget}, "brick": {"dataset": grown}}
    retrain_config = retrain_config_from_mapping(
        {"gate": GATE, "work_dir": str(tmp_path / "work"), "warmup": 1, "products": products}
    )
    options = FleetOptions(address, 1.0, "fleet-test", memory_gb=4.0)
    try:
        outcomes = run_fleet(["brick", "ghost", "twin"], site, retrain_config, options)
    finally:
        ray.shutdown()
        shutil.rmtree(tmp_path / "work", ignore_errors=True)
    by_product = {o.product: o for o in outcomes}
    assert by_product["ghost"].status == "failed"
    assert registry.journal.live("ghost") is None
    brick = by_product["brick"]
    assert brick.status == "promoted", brick.detail  # the gate tolerates anything here
    assert not brick.where.endswith(f":{os.getpid()}"), "the task ran in the driver"
    assert 0.2 < brick.peak_rss_gb < 4.0, brick.peak_rss_gb  # its own worker's peak, in budget
    assert registry.journal.live("brick").bundle_id == brick.challenger_bundle != champions["brick"]
    [event] = [e for e in registry.journal.events("brick") if e["action"] == "retrain"]
    assert (event["status"], event["actor"]) == ("promoted", "fleet-test")
    twin_outcome = by_product["twin"]
    assert twin_outcome.status == "failed", twin_outcome.detail
    assert f"its memory budget of {budget:g} GB" in twin_outcome.detail, twin_outcome.detail
    assert registry.journal.live("twin").bundle_id == champions["twin"]
    [failed] = [e for e in registry.journal.events("twin") if e["action"] == "retrain"]
    assert (failed["status"], failed["stage"] != "budget") == ("failed", True), failed


@pytest.mark.slow
def test_the_ray_head_refuses_a_driver_without_its_token(ray_head: str) -> None:
    """The services head runs with token authentication: without it, anyone reaching the
    port runs code there. A driver with a wrong token is refused. The driver tries twice
    (``RAY_NUM_REDIS_GET_RETRIES``, 1 s apart) instead of Ray's 20: each refusal names the
    token, and the twenty took ~20 s."""
    probe = f"import ray; ray.init(address={ray_head!r}, logging_level='ERROR')"
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "0" * 64,
           "RAY_NUM_REDIS_GET_RETRIES": "2"}  # fmt: skip
    refused = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=180
    )
    assert refused.returncode != 0
    assert "Authentication token is missing or incorrect" in refused.stderr


def test_the_fleet_driver_says_how_to_get_a_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a token anywhere, --ray stops before connecting and says what to do."""
    pytest.importorskip("ray")
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "no-token"))
    with pytest.raises(InspectionError, match="ray get-auth-token --generate"):
        connect_ray("127.0.0.1:1")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], "either --product NAME or --all"),
        (["--product", "brick", "--all"], "either --product NAME or --all"),
        (["--product", "brick", "--ray", "auto"], "use it with --all"),
        (["--all", "--memory-gb", "4"], "budgets each"),
    ],
)
def test_retrain_cli_rejects_ambiguous_targets(args: list[str], expected: str) -> None:
    from typer.testing import CliRunner

    from inspection.cli import app

    result = CliRunner().invoke(app, ["retrain", *args])
    assert result.exit_code == 2
    assert expected in " ".join(result.output.split())


def test_retrain_one_raises_for_the_scheduler(tmp_path: Path, tiny_product: Path) -> None:
    """The scheduler's Ray job: a failed task raises (retries apply), never promotes."""
    from inspection.retrain.fleet import FleetTaskFailed, retrain_one

    site = scratch_site(tmp_path, tiny_product.parent)
    with pytest.raises(FleetTaskFailed, match="'ghost' has no trained model"):
        retrain_one("ghost", site, _config(tmp_path), FleetOptions())
    assert Registry(site.registry_dir).journal.live("ghost") is None

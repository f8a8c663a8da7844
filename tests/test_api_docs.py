"""docs/api.md runs as written against a real ``inspection serve`` process.

The ``shell`` blocks' ``inspection tokens create`` lines issue the tokens; every ``bash`` block
is a request, run in bash in a scratch site (the ``export``-ed token variables set, the port
the station got), and the ``json`` block after it is its answer: the test checks the same keys
at every level and the same values where a value does not depend on the run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mktestdocs import grab_code_blocks

from bench._shared import copy_bundle
from inspection.core.registry import Registry

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"
DOC_ADDRESS = "127.0.0.1:8080"
BIN = Path(sys.executable).parent
STABLE = {"product", "station_id", "label", "reviewer", "status", "source", "http_code"}
STABLE |= {"content_type", "bundle_id", "actor", "value", "verdict_known", "part_id"}
"""Keys whose documented value every run must give (the others: ids, times, scores)."""
STATION_YAML = """\
core:
  products: [brick]
  store_url: sqlite:///var/inspection.db
  blob_dir: var/blobs
  registry_dir: var/registry
  registry_poll_seconds: 0.5
  allow_unsigned_bundles: true
host: 127.0.0.1
port: {port}
"""


def requests_and_answers() -> list[tuple[str, Any]]:
    """Each ``bash`` request of the doc with the ``json`` answer written after it."""
    text = DOC.read_text(encoding="utf-8")
    requests, answers = grab_code_blocks(text, lang="bash"), grab_code_blocks(text, lang="json")
    assert len(requests) == len(answers), "every bash request in docs/api.md needs a json answer"
    return [
        (request, json.loads(answer)) for request, answer in zip(requests, answers, strict=True)
    ]


def token_commands() -> list[str]:
    """The ``inspection tokens create`` lines of the doc's ``shell`` blocks."""
    lines = "\n".join(grab_code_blocks(DOC.read_text(encoding="utf-8"), lang="shell")).splitlines()
    return [line.split("#")[0].strip() for line in lines if line.startswith("inspection tokens")]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, fp32_bundle: Path, tiny_product: Path) -> Path:
    """A scratch site: the brick dataset, a registry with v0001-fp32 live and v0002-fp32 beside
    it, and ``configs/station.yaml`` on a free port."""
    root = tmp_path_factory.mktemp("api-docs")
    shutil.copytree(tiny_product, root / "datasets" / "brick")
    registry = Registry(root / "var" / "registry")
    registry.bundles.add_bundle("brick", fp32_bundle, "v0001-fp32")
    registry.journal.promote("brick", "v0001-fp32", actor="tests", reason="initial")
    registry.bundles.add_bundle(
        "brick", copy_bundle(fp32_bundle, root / "v2", "v0002-fp32"), "v0002-fp32"
    )
    (root / "configs").mkdir()
    (root / "configs" / "station.yaml").write_text(STATION_YAML.format(port=_free_port()))
    return root


@pytest.fixture(scope="module")
def station(site: Path) -> Iterator[dict[str, str]]:
    """``inspection serve`` running in ``site``; yields the environment the doc's blocks run
    in (``PATH`` with ``inspection``, the tokens its commands issued)."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    for command in token_commands():
        issued = subprocess.run(
            command.split(), cwd=site, env=env, capture_output=True, text=True, check=True
        )
        role = re.search(r"--role (\w+)", command)
        name = f"{role.group(1).upper()}_TOKEN" if role else "TOKEN"
        env[name] = issued.stdout.splitlines()[1].strip()  # the line after "token id ..."
    port = re.search(r"port: (\d+)", (site / "configs/station.yaml").read_text()).group(1)
    log = (site / "serve.log").open("w")
    server = subprocess.Popen(
        [BIN / "inspection", "serve", "--config", "configs/station.yaml"],
        cwd=site, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        _wait_healthy(f"http://127.0.0.1:{port}/healthz", server, site / "serve.log")
        yield env | {"PORT": port}
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()


def _wait_healthy(url: str, server: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"inspection serve exited {server.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    pytest.fail(f"inspection serve did not answer {url} within {timeout} s:\n{log.read_text()}")


def same_shape(documented: Any, answered: Any, where: str = "answer") -> list[str]:
    """Differences between a documented and a real answer: keys at every level, the type of
    each value, the value itself under a ``STABLE`` key, and a list documented with items
    answered with some (compared by its first)."""
    if isinstance(documented, dict):
        if not isinstance(answered, dict):
            return [f"{where}: documented an object, got {answered!r}"]
        if set(documented) != set(answered):
            return [f"{where}: documented keys {sorted(documented)}, got {sorted(answered)}"]
        problems = []
        for key, value in documented.items():
            problems += same_shape(value, answered[key], f"{where}.{key}")
            if key in STABLE and not isinstance(value, (dict, list)) and value != answered[key]:
                problems.append(f"{where}.{key}: documented {value!r}, got {answered[key]!r}")
        return problems
    if isinstance(documented, list):
        if not isinstance(answered, list) or (documented and not answered):
            return [f"{where}: documented {documented!r}, got {answered!r}"]
        return same_shape(documented[0], answered[0], f"{where}[0]") if documented else []
    if documented is None or answered is None or isinstance(documented, str):
        return []  # optional values come and go; strings are ids, times and messages
    if isinstance(documented, bool) != isinstance(answered, bool) or not isinstance(
        answered, (int, float)
    ):
        return [f"{where}: documented {documented!r}, got {answered!r}"]
    return []


@pytest.mark.slow
def test_api_doc_requests_answer_as_documented(site: Path, station: dict[str, str]) -> None:
    pairs = requests_and_answers()
    assert len(pairs) >= 11, "docs/api.md shows one request per endpoint"
    env = dict(station)
    for request, documented in pairs:
        script = request.replace(DOC_ADDRESS, f"127.0.0.1:{station['PORT']}")
        run = subprocess.run(
            ["bash", "-e", "-u", "-o", "pipefail", "-c", script],
            cwd=site, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert run.returncode == 0, f"{request}\nexit {run.returncode}: {run.stderr}"
        answered = json.loads(run.stdout)
        assert not same_shape(documented, answered), (request, same_shape(documented, answered))
        if isinstance(answered, dict) and "id" in answered and "ID" not in env:
            env["ID"] = answered["id"]  # later requests name the first inspection
            env["SHA"] = answered["blobs"]["image"]


def test_every_route_of_the_app_is_documented(tmp_path: Path) -> None:
    """Each path of the station's OpenAPI appears in a request of the doc."""
    from inspection.service.app import create_app
    from tests.service.helpers import station_config

    (tmp_path / "registry").mkdir()
    app = create_app(station_config(tmp_path))  # its routes only: never started
    requested = "\n".join(request for request, _ in requests_and_answers())
    for path in app.openapi()["paths"]:
        pattern = re.sub(r"\\\{\w+\\\}", r"[^/\\s\"]+", re.escape(path)) + r"(\?|\"|\s|$)"
        assert re.search(pattern, requested), f"{path} has no request in docs/api.md"

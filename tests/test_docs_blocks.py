"""Every shell block of the README and ``docs/*.md`` runs in ``make test``, or its doc says why not.

``scripts/newcomer_walk.py`` (``command_blocks``) reads each fenced ``bash`` block with its mark:
the README's ``walkthrough`` and ``first-use`` sections (``tests/test_readme_walkthrough.py``,
``tests/dashboard/test_first_use.py``) and docs/api.md's requests (``tests/test_api_docs.py``)
run in tests of their own. Here, in scratch sites through the walk's own shell: ``run: mvtec``
(the README's own-data block, on a demo folder in the category's place) and ``run: plant``
(docs/deployment.md: the central host on a fresh test PostgreSQL database, then ``registry
serve`` and a line PC's ``station sync --watch`` as two processes). ``run: walkthrough`` is a
copy of a walkthrough block; ``checked: options`` is a list whose commands and options are
checked against the CLI; ``not run`` says why in the text before it. ``MARKS`` counts the blocks
per file and mark: a block that loses its mark, or a new unmarked one, fails here.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer

from inspection.cli import app
from inspection.core.registry import Registry
from tests.conftest import _drop_postgres_database, _fresh_postgres_database
from tests.dashboard.scripts import load_script

REPO = Path(__file__).resolve().parents[1]
MARKS = {
    "README.md": {"not run": 2, "walkthrough": 8, "first-use": 1, "run: mvtec": 1},
    "docs/api.md": {"": 14},  # every block of the file: tests/test_api_docs.py
    "docs/commands.md": {"checked: options": 1},
    "docs/deployment.md": {"run: plant": 4, "not run": 1},
    "docs/line-integration.md": {"run: walkthrough": 1},
    "docs/masks.md": {"checked: options": 1},
    "docs/scheduling.md": {"checked: options": 1},
}  # fmt: skip
SAYS_WHY = "*not run by `make test`*"
BOTTLE = "models:\n  patchcore: {image_size: [64, 64], coreset_sampling_ratio: 0.1}\n"
"""``configs/products/bottle.yaml`` of the scratch site: the smallest model that still trains,
calibrates and exports (``tests/conftest.py``'s ``TINY_PATCHCORE``)."""


def _docs() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def _blocks(mark: str, doc: str) -> list[str]:
    walk = load_script("newcomer_walk")
    return [block.code for block in walk.command_blocks(REPO / doc) if block.step == mark]


def test_every_shell_block_is_marked_and_counted() -> None:
    walk = load_script("newcomer_walk")
    found = {}
    for doc in _docs():
        if blocks := walk.command_blocks(doc):
            found[str(doc.relative_to(REPO))] = dict(Counter(block.step for block in blocks))
    assert found == MARKS


def test_a_block_not_run_says_why_in_the_text_before_it() -> None:
    for doc in _docs():
        text = doc.read_text(encoding="utf-8")
        for mark in re.finditer(r"<!-- (not run|checked: options) -->", text):
            before = text[max(mark.start() - 500, 0) : mark.start()]
            assert SAYS_WHY in before, f"{doc.name}: a block marked {mark.group(1)!r} must say "
            f"{SAYS_WHY} and why in the paragraph before it"


def test_a_walkthrough_copy_is_a_block_the_walkthrough_runs() -> None:
    walk = load_script("newcomer_walk")
    walked = [block.code for block in walk.walkthrough_blocks(REPO / "README.md")]
    for doc in _docs():
        for code in _blocks("run: walkthrough", str(doc.relative_to(REPO))):
            assert code in walked, f"{doc.name}: {code!r} is not a README walkthrough block"


def _command_lines(doc: str) -> list[str]:
    lines = "\n".join(_blocks("checked: options", doc)).replace("\\\n", " ").splitlines()
    return [line.split("  #")[0] for line in lines if line.startswith("inspection ")]


def _unknown_options(line: str) -> list[str]:
    """The subcommand path and options of ``line`` the CLI does not have."""
    command = typer.main.get_command(app)  # typer's own click: groups have .commands
    words = shlex.split(line.replace("[", " ").replace("]", " "))[1:]
    while hasattr(command, "commands") and words and words[0] in command.commands:
        command = command.commands[words.pop(0)]
    if hasattr(command, "commands"):
        return [f"{line}: {command.name} needs a subcommand"]
    known = {name for param in command.params for name in getattr(param, "opts", [])}
    options = [word.split("=")[0] for word in words if word.startswith("-")]
    return [f"{line}: {option}" for option in options if option not in known]


@pytest.mark.parametrize("doc", ["docs/commands.md", "docs/masks.md", "docs/scheduling.md"])
def test_a_command_list_names_commands_and_options_the_cli_has(doc: str) -> None:
    lines = _command_lines(doc)
    assert len(lines) >= 2, f"{doc}: its command list is gone"
    assert [problem for line in lines for problem in _unknown_options(line)] == []


@pytest.mark.slow
def test_the_readme_own_data_block_runs_as_written(tmp_path: Path, tiny_product: Path) -> None:
    """On the session's demo brick, in the category's place."""
    walk = load_script("newcomer_walk")
    [block] = [b for b in walk.command_blocks(REPO / "README.md") if b.step == "run: mvtec"]
    site = tmp_path / "site"
    ports = walk.prepare_site(site, small=False)
    (site / "configs" / "products" / "bottle.yaml").write_text(BOTTLE, encoding="utf-8")
    shutil.copytree(tiny_product, tmp_path / "mvtec_ad" / "bottle")
    replace = {"/data/mvtec_ad": str(tmp_path / "mvtec_ad")}
    done = walk.run_walk(site, [block], ports, timeout=600, replace=replace)
    assert done.returncode == 0, done.log[-4000:]
    assert (site / "var" / "registry" / "bottle" / "live.json").is_file(), done.log[-4000:]


# ---------------------------------------------------------------- docs/deployment.md's plant
CENTRAL_URL = (  # site.yaml's, below
    "postgresql+psycopg://inspection:***@127.0.0.1/inspection"
    "?sslrootcert=/srv/inspection/pki/site-ca.pem"
)
CENTRAL_STATION_URL = (  # password: libpq
    "postgresql+psycopg://inspection@127.0.0.1/inspection?sslrootcert=pki/site-ca.pem"
)


@pytest.fixture
def central_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh database on the test PostgreSQL, its password where libpq finds it."""
    url, name = _fresh_postgres_database()
    monkeypatch.setenv("PGPASSWORD", url.split("//")[1].split("@")[0].split(":")[1])
    yield url
    _drop_postgres_database(name)


def _host(root: Path) -> Path:
    """A host's working folder: the checkout's configs (no trust file)."""
    ignore = shutil.ignore_patterns("site-trust.*")
    shutil.copytree(REPO / "configs", root / "configs", ignore=ignore)
    return root


def _central_host(root: Path, url: str) -> Path:
    """The central host's folder: ``configs/site.yaml`` as docs/deployment.md writes it and
    ``configs/central-station.yaml``, both on the test database ``url``."""
    configs = _host(root) / "configs"
    text = (REPO / "docs" / "deployment.md").read_text(encoding="utf-8")
    site = text.split("`configs/site.yaml` on the central host:")[1].split("```yaml\n")[1]
    site = site.split("```")[0].replace(CENTRAL_URL, url).replace("/srv/inspection", str(root))
    (configs / "site.yaml").write_text(site, encoding="utf-8")
    station = configs / "central-station.yaml"
    no_password = url.replace(f":{os.environ['PGPASSWORD']}@", "@")
    station.write_text(station.read_text().replace(CENTRAL_STATION_URL, no_password))
    return root


def _run(command: str, cwd: Path) -> str:
    walk = load_script("newcomer_walk")
    done = subprocess.run(
        shlex.split(command), cwd=cwd, env=walk.walk_env(), capture_output=True, text=True
    )
    assert done.returncode == 0, f"{command}: {done.stdout}{done.stderr}"
    return done.stdout


def _signed_live_bundle(central: Path, line: Path, bundle: Path) -> None:
    """What set-up and ``export --promote`` leave (docs/security.md): the site key, pinned on
    the line PC by fingerprint, and a bundle it signed live in the central registry."""
    init = _run("inspection keys init --site configs/site.yaml", central)
    fingerprint = re.search(r"keys pin \S+ --expect (\S+)", init)[1]
    key = central / "keys" / "site-signing.pub"
    _run(f"inspection keys pin {key} --expect {fingerprint} -c configs/station.yaml", line)
    _run(f"inspection bundle sign {bundle} --site configs/site.yaml", central)
    registry = Registry(central / "registry")
    registry.bundles.add_bundle("brick", bundle, "v0001-fp32")
    registry.journal.promote("brick", "v0001-fp32", actor="tests", reason="export --promote")


@pytest.mark.slow
@pytest.mark.postgres
def test_the_plant_blocks_run_on_two_hosts(
    tmp_path: Path, central_url: str, fp32_bundle: Path
) -> None:
    walk = load_script("newcomer_walk")
    central, line = _central_host(tmp_path / "central", central_url), _host(tmp_path / "line")
    port = walk.free_port()
    replace = {
        "/srv/inspection": str(central), "/etc/inspection/": f"{line}/etc/",
        "central:8700": f"127.0.0.1:{port}", "--port 8700": f"--port {port}",
    }  # fmt: skip
    role, setup, serve, sync = _blocks("run: plant", "docs/deployment.md")

    # the central host: its store, the catalog token, the line's role (re-keyed with --writes)
    done = walk.run_walk(central, [walk.Block("", setup), walk.Block("", role)], {}, 120, replace)
    assert done.returncode == 0, done.log[-4000:]
    assert "may write rows of line-07, watch-07" in done.outputs[1]
    (line / "etc").mkdir()
    token = re.search(r"^insp_\S+", done.outputs[0], re.MULTILINE)[0]
    (line / "etc" / "registry.token").write_text(token, encoding="utf-8")
    _signed_live_bundle(central, line, shutil.copytree(fp32_bundle, tmp_path / "v0001-fp32"))

    # the catalog and the line's sync: two processes, each running until stopped; the line
    # starts once the catalog listens (a sync that finds it down retries after --interval 10 s)
    logs = [tmp_path / "serve.log", tmp_path / "sync.log"]
    processes = [_start(serve, central, replace, logs[0])]
    try:
        _wait_listening(port, processes[0], logs[0])
        processes.append(_start(sync, line, replace, logs[1]))
        _wait_live(line / "var" / "registry" / "brick" / "live.json", processes, logs)
    finally:
        for process in processes:
            _stop(process)
    assert "signature verified" in logs[1].read_text()


def _wait_live(live: Path, processes: list[subprocess.Popen], logs: list[Path]) -> None:
    """Until ``live`` names v0001-fp32, both processes running all along."""
    deadline = time.monotonic() + 120
    while not (live.is_file() and "v0001-fp32" in live.read_text()):
        said = "".join(log.read_text() for log in logs)
        assert all(process.poll() is None for process in processes), f"one ended:\n{said}"
        assert time.monotonic() < deadline, f"nothing synced within 120 s:\n{said}"
        time.sleep(0.5)
    assert all(process.poll() is None for process in processes), "a --watch process ended"


def _wait_listening(port: int, process: subprocess.Popen, log: Path) -> None:
    """Until something accepts connections on ``port``, ``process`` running all along."""
    deadline = time.monotonic() + 120
    while True:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        assert process.poll() is None, f"it ended:\n{log.read_text()}"
        assert time.monotonic() < deadline, (
            f"nothing listens on {port} after 120 s:\n{log.read_text()}"
        )
        time.sleep(0.2)


def _start(code: str, cwd: Path, replace: dict[str, str], log: Path) -> subprocess.Popen:
    walk = load_script("newcomer_walk")
    for old, new in replace.items():
        code = code.replace(old, new)
    with log.open("w") as out:
        return subprocess.Popen(
            ["bash", "-euo", "pipefail", "-c", code], cwd=cwd, env=walk.walk_env(),
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to the block's process group, SIGKILL after 30 s."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


# ------------------------------------------------------------- the README's own numbers
def test_the_readme_numbers_are_todays() -> None:
    """What the README says LINE-READY takes, and its own length, as the code and file are."""
    from inspection.core.operating_point import (
        DEFAULT_BUDGET,
        DEFAULT_MISS_BOUND,
        conformal_bound,
        conformal_rank,
        defects_needed,
        folder_count,
        n_needed,
    )
    from inspection.data.dataset import held_out_count

    text = (REPO / "README.md").read_text(encoding="utf-8")
    flat = " ".join(text.split())
    assert f"within the product's budget ({DEFAULT_BUDGET * 100:.0f} % by default)" in flat
    assert f"missed at most {DEFAULT_MISS_BOUND * 100:.0f} % " in flat
    assert f"{defects_needed(DEFAULT_MISS_BOUND)} images of a kind with none missed" in flat
    bound = conformal_bound(17, conformal_rank(17, DEFAULT_BUDGET))
    assert (
        f"17 good images bound them at {bound:.2%}, {n_needed(DEFAULT_BUDGET)} are needed" in flat
    )
    assert f"(20 images: {held_out_count(20)})" in flat
    assert f"36 held-out images of each defect kind: {folder_count(36)} in `test/<defect>/`" in flat
    [row] = [line for line in text.splitlines() if line.startswith("| This README")]
    lines, words = re.search(r"\| ([\d,]+) lines, ([\d,]+) words \|", row).groups()
    assert (int(lines.replace(",", "")), int(words.replace(",", ""))) == (
        len(text.splitlines()),
        len(text.split()),
    ), "update the README's own length in its figures table (reports/docs/readme_length.md)"


def test_the_readme_demo_verdicts_follow_from_its_demo_table() -> None:
    """The verdict lines under the README's `make demo` table are what ``core.readiness`` says
    for the table's own counts (the demo prints both; the README must not drift from either)."""
    from inspection.core.certificate import Certificate
    from inspection.core.operating_point import DEFAULT_MISS_BOUND, conformal_rank
    from inspection.core.readiness import HeldOut, kind_misses, line_readiness

    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## What `make demo` shows") : text.index("## Your first day")]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "/" in line]
    verdicts = re.findall(r"^(?:NOT )?LINE-READY \S+: .*$", section, re.MULTILINE)
    assert rows and len(verdicts) == len(rows), (rows, verdicts)
    headline = {}  # the README's first paragraph quotes these counts
    for row, verdict in zip(rows, verdicts, strict=True):
        bundle, point, rejected, misses = (cell.strip() for cell in row.strip("|").split("|"))
        budget, n, bound = re.search(r"budget ([\d.]+)%, n=(\d+), bound ([\d.]+)%", point).groups()
        needed = re.search(r"(\d+) good needed", point)
        cert = Certificate(
            bundle.strip("`"), float(budget) / 100, int(n), 0,
            conformal_rank(int(n), float(budget) / 100), float(bound) / 100,
            int(needed.group(1)) if needed else None,
        )  # fmt: skip
        good_rejected, n_good = (int(x) for x in rejected.split("/"))
        counts = {
            kind: (int(missed), int(of))
            for kind, missed, of in re.findall(r"(\w+) (\d+)/(\d+)", misses)
        }
        held = HeldOut(
            bundle.strip("`"), n_good, good_rejected, kind_misses(counts), float(budget) / 100,
            DEFAULT_MISS_BOUND, cert,
        )  # fmt: skip
        assert line_readiness(held).line().split(" Next: ")[0] == verdict  # advice left out
        product = bundle.strip("`").split("/")[0]
        missed = sum(m for m, _ in counts.values())
        headline[product] = (good_rejected, n_good, missed, sum(n for _, n in counts.values()))
    brick, grass, gravel = (headline[p] for p in ("brick", "grass", "gravel"))
    flat = " ".join(text.split())
    assert (
        f"rejects {brick[0]} of {brick[1]} good held-out parts and misses {brick[2]} of "
        f"{brick[3]} defects; on grass and gravel it misses {grass[2]} and {gravel[2]} of "
        f"{grass[3]}" in flat
    ) and grass[3] == gravel[3]

"""The README's first day runs as written: its walkthrough blocks, in order, in one shell in a
scratch site (``scripts/newcomer_walk.py``; brick trains at 128 px here). A block that stops
working fails the suite. The PLC block needs Mosquitto: without it the walk leaves that block out
locally and fails in CI (``scripts/services.sh`` installs it)."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

from tests.dashboard.scripts import load_script

REPO = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def test_the_walkthrough_is_seven_ordered_steps_with_the_service_block_marked() -> None:
    walk = load_script("newcomer_walk")
    blocks = walk.walkthrough_blocks(REPO / "README.md")
    steps = list(dict.fromkeys(block.step for block in blocks))
    assert [step.split(".")[0] for step in steps] == [str(n) for n in range(1, 8)], steps
    code = "\n".join(block.code for block in blocks)
    for command in ("inspection train", "inspection export", "inspection serve", "curl",
                    "inspection dashboard", "scripts/softplc_local.sh"):  # fmt: skip
        assert command in code, f"the walkthrough lost its `{command}` step"
    assert [block.needs for block in blocks if "softplc" in block.code] == ["mosquitto"]
    assert "*needs Mosquitto*" in (REPO / "README.md").read_text(encoding="utf-8")


@pytest.mark.slow
def test_readme_walkthrough_runs_as_written(tmp_path: Path) -> None:
    walk = load_script("newcomer_walk")
    blocks, skipped = walk.runnable(walk.walkthrough_blocks(REPO / "README.md"))
    if skipped and IN_CI:
        pytest.fail(f"{skipped}: run scripts/services.sh")
    ports = walk.prepare_site(tmp_path / "site", small=True)
    done = walk.run_walk(tmp_path / "site", blocks, ports, timeout=600)

    assert done.returncode == 0, f"{done.failed_block}\n{done.log[-4000:]}"
    assert len(done.outputs) == len(blocks)
    answered = _output_of(done, "curl -sf").splitlines()
    answer = json.loads(next(line for line in answered if line.startswith('{"id"')))
    assert answer["product"] == "brick" and answer["verdict"] in ("OK", "NG")
    assert answer["station_id"] == "line1-cam1" and answer["threshold"] == 0.5
    quoted = _readme_answer()  # the answer the README shows is today's, field by field
    assert set(quoted) >= {"product", "station_id", "source", "bundle_id", "threshold"}
    assert {key: str(answer[key]) for key in quoted if key != "verdict"} == {
        key: value for key, value in quoted.items() if key != "verdict"
    }
    assert quoted["verdict"] in ("OK", "NG")  # at 128 px here, the verdict may differ
    assert done.dashboard_stopped, "the dashboard kept serving after `kill` of its process"
    if not skipped:
        plc = _output_of(done, "softplc_local.sh")
        assert len(re.findall(r"^opcua plc-\d: (OK|NG) ", plc, re.MULTILINE)) == 3, plc
        assert len(re.findall(r"^mqtt  mqtt-\d: (OK|NG)", plc, re.MULTILINE)) == 3, plc
        for quoted_line in _readme_plc_lines():  # the README's example has today's form
            assert re.search(_line_form(quoted_line), plc, re.MULTILINE), (quoted_line, plc)


def _output_of(done: object, command: str) -> str:
    """What the block running ``command`` printed (the background jobs' lines mixed in)."""
    pairs = zip(done.blocks, done.outputs, strict=True)
    return next(output for block, output in pairs if command in block.code)


def _readme_example(step: str) -> str:
    """The ```text example that follows README walkthrough ``step`` (its bold heading)."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    after = text[text.index(step) :]
    start = after.index("```text") + len("```text")
    return after[start : after.index("```", start)]


def _readme_answer() -> dict[str, str]:
    """The fields README step 5's example answer quotes in full (``…`` ones left out)."""
    block = _readme_example("**5. A request and its answer.**")
    fields = re.findall(r'"(\w+)":("[^"…]*"|[0-9.]+)[,}]', block)
    return {key: value.strip('"') for key, value in fields}


def _readme_plc_lines() -> list[str]:
    """The lines README step 7's example output quotes (its notes and ``…`` left out)."""
    block = _readme_example("**7. A PLC trial**")
    return [line.split("   ")[0].rstrip() for line in block.splitlines() if line.strip("… ")]


def _line_form(line: str) -> str:
    """A pattern for a printed line shaped like ``line``: its numbers and verdict may differ."""
    form = re.sub(r"\d+(\\\.\d+)?", lambda _: r"\d+(\.\d+)?", re.escape(line))
    return "^" + form.replace("NG", "(OK|NG)")


@pytest.mark.parametrize("job", ["sleep 60 & sleep 60 & wait", "trap '' TERM; sleep 60 & sleep 60"])
def test_the_walk_returns_only_when_its_group_has_stopped(job: str) -> None:
    """``_stop_group`` returns once no process of the walk's group runs: at once where SIGTERM
    ends them, after SIGKILL where the jobs ignore it (``trap '' TERM`` is inherited)."""
    import subprocess

    walk = load_script("newcomer_walk")
    shell = subprocess.Popen(["bash", "-c", job], start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while len(_group(shell.pid)) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(_group(shell.pid)) == 3  # the shell and its two jobs
        walk._stop_group(shell.pid, grace_s=0.5)
        assert not walk._running_in_group(shell.pid) and _group(shell.pid) == []
    finally:
        shell.wait(timeout=10)


def _group(pgid: int) -> list[int]:
    """The pids of group ``pgid`` that have not exited (``ps``'s view, not the walk's)."""
    import subprocess

    listed = subprocess.run(["ps", "-eo", "pid=,pgid=,stat="], capture_output=True, text=True)
    rows = [line.split() for line in listed.stdout.splitlines()]
    return [int(pid) for pid, group, stat in rows if int(group) == pgid and stat[0] != "Z"]

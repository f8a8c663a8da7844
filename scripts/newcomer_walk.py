"""Walk the README's first day (CLI and API) exactly as written, then a first week, in a
scratch site; writes reports/newcomer_walk.md.

The README's ``<!-- walkthrough -->`` blocks run in order in one bash shell in a temporary
folder with a copy of ``configs/``; only the ports and the password on stdin change. Before the
last block (which stops the servers) it runs ``FIRST_WEEK`` (``--no-week``: not). The tests
``test_readme_walkthrough.py`` and ``test_first_week.py`` run the same walk at 128 px.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field, replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
REPORT = REPO / "reports" / "newcomer_walk.md"
START, END = "<!-- walkthrough -->", "<!-- /walkthrough -->"
PASSWORD = "first day password"
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MARK = "@@walk-block"
"""The line the walk's shell prints before each block (with the clock), to time the steps."""
SMALL_BRICK = """\
data: datasets/brick
models:
  patchcore: {image_size: [128, 128]}
"""


FIRST_WEEK = [
    (
        "Week: a camera left at 12 bits",
        """\
"$PYTHON" -c "import numpy as np; from PIL import Image; Image.fromarray(np.asarray(Image.open(
'datasets/brick/test/good/000.png').convert('L'), np.uint16) << 4).save('cam12.tiff')"
curl -s -o refused.json -w "HTTP %{http_code}\\n" -X POST -H "Authorization: Bearer $TOKEN" \
  "http://127.0.0.1:8080/v1/inspect?product=brick" -F "image=@cam12.tiff"
cat refused.json""",
    ),
    (
        "Week: new good parts (train --update)",
        """\
inspection data demo --products brick --out line --seed 11 --train 6 --test-good 0 --per-defect 0
"$PYTHON" -c "from PIL import Image; Image.open('datasets/brick/test/good/000.png').save('leak.jpg')"
mkdir -p leak added && mv leak.jpg leak/ && cp line/brick/train/good/00[0-2].png added/
inspection train --update brick --images leak || true   # a held-out part, re-saved: refused
inspection train --update brick --images added""",
    ),
    (
        "Week: export, promote",
        """\
inspection export --product brick --version v0002 --precision fp32
inspection export --product brick --version v0002 --precision fp32 || true   # exists: says how on
inspection promote brick v0002-fp32 --promote-not-ready   # a trial: recorded with who""",
    ),
    ("Week: retrain with nothing new", "inspection retrain --product brick"),
    (
        "Week: parts judged and reviewed",
        """\
REVIEWER=$(inspection tokens create --station qa --role reviewer | grep '^insp_')
for part in line/brick/train/good/00[3-5].png datasets/brick/test/good/001.png; do
  ID=$(curl -sf -X POST -H "Authorization: Bearer $TOKEN" -F "image=@$part" \
    "http://127.0.0.1:8080/v1/inspect?product=brick" | "$PYTHON" -c "import json,sys; print(json.load(sys.stdin)['id'])")
  curl -sf -X POST -H "Authorization: Bearer $REVIEWER" -H "Content-Type: application/json" \
    -d '{"label": "good"}' "http://127.0.0.1:8080/v1/inspections/$ID/review"; echo
done""",
    ),
    ("Week: retrain", "inspection retrain --product brick"),
    ("Week: a busy port", "inspection serve --config configs/station.yaml || true"),
]
"""The first week after the README's first day: (step, shell code), run before its last block."""


class WalkError(RuntimeError):
    """The README has no walkthrough section, or its blocks cannot be read."""


@dataclass(frozen=True)
class Block:
    """One shell block of a document: its mark (the walkthrough: its step), code, the service
    it needs, the section around it and the last numbered step before it."""

    step: str
    code: str
    needs: str = ""
    section: str = ""
    heading: str = ""


@dataclass
class Walk:
    """What a walk did: per block its seconds and output, the exit code, the whole log."""

    blocks: list[Block]
    seconds: list[float] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    returncode: int | None = None
    log: str = ""
    dashboard_stopped: bool | None = None
    total_seconds: float = 0.0

    @property
    def failed_block(self) -> Block | None:
        """The block the shell was in when it failed (None when it ran to the end)."""
        if self.returncode == 0:
            return None
        return self.blocks[max(len(self.outputs) - 1, 0)]


def walkthrough_blocks(readme: Path = README) -> list[Block]:
    """The shell blocks of the README's walkthrough section, in order, each named by its step."""
    text = readme.read_text(encoding="utf-8")
    if text.count(START) != 1 or text.count(END) != 1:
        raise WalkError(f"{readme}: expected one {START} ... {END} section")
    blocks = [
        replace(block, step=block.heading)
        for block in command_blocks(readme)
        if block.section == "walkthrough"
    ]
    if not blocks:
        raise WalkError(f"{readme}: the walkthrough has no ```bash block")
    return blocks


SHELLS = "bash|sh|shell|console"
SECTIONS = ("walkthrough", "first-use")
"""README sections whose blocks a test of their own runs in order (``<!-- walkthrough -->``)."""
STEP = r"\*\*(\d+\. [^*]+?)\.?\*\*"


def command_blocks(doc: Path) -> list[Block]:
    """Every fenced shell block of ``doc``, each with its mark: the comment right before its
    fence (``<!-- run: plant -->``, ...) or the section around it; ``""`` when unmarked."""
    text = doc.read_text(encoding="utf-8")
    blocks = []
    pattern = rf"(?:<!-- ([\w: -]+?) -->\n)?```(?:{SHELLS})\n(.*?)```"
    for match in re.finditer(pattern, text, re.DOTALL):
        before = text[: match.start()]
        opened = {
            s: before.count(f"<!-- {s} -->") + before.count(f"<!-- /{s} -->") for s in SECTIONS
        }
        section = next((s for s in SECTIONS if opened[s] % 2), "")
        mark = match.group(1) or section
        needs = mark.removeprefix("needs: ") if mark.startswith("needs: ") else ""
        steps = re.findall(STEP, before)
        heading = steps[-1] if steps else ""
        blocks.append(Block(section if needs else mark, match.group(2), needs, section, heading))
    return blocks


def free_port() -> int:
    """A free loopback port."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def prepare_site(site: Path, *, small: bool) -> dict[str, int]:
    """A scratch site in ``site`` (``small``: brick at 128 px); returns its free ports."""
    site.mkdir(parents=True, exist_ok=True)
    shutil.copytree(
        REPO / "configs", site / "configs", ignore=shutil.ignore_patterns("site-trust.*")
    )
    (site / "scripts").symlink_to(REPO / "scripts")
    ports = {"serve": free_port(), "dashboard": free_port()}
    station = site / "configs" / "station.yaml"
    text = re.sub(r"(?m)^port: 8080", f"port: {ports['serve']}", station.read_text())
    station.write_text(text, encoding="utf-8")
    if small:
        (site / "configs" / "products" / "brick.yaml").write_text(SMALL_BRICK, encoding="utf-8")
    return ports


def walk_replacements(ports: dict[str, int]) -> dict[str, str]:
    """What the walk changes in the README's blocks: the free ports of ``prepare_site``."""
    return {
        "127.0.0.1:8080": f"127.0.0.1:{ports['serve']}",
        "127.0.0.1:8501": f"127.0.0.1:{ports['dashboard']}",
        "inspection dashboard": f"inspection dashboard --port {ports['dashboard']}",
    }


def shell_script(blocks: list[Block], replace: dict[str, str]) -> str:
    """The blocks as one bash script, each after a ``MARK`` line with the clock (on a line of
    its own: curl's answer ends without a newline)."""
    lines = ["set -euo pipefail"]
    for number, block in enumerate(blocks):
        code = block.code
        for old, new in replace.items():
            code = code.replace(old, new)
        lines += [f'printf "\\n{MARK} {number} %s\\n" "$(date +%s.%N)"', code]
    lines.append(f'printf "\\n{MARK} end %s\\n" "$(date +%s.%N)"')
    return "\n".join(lines) + "\n"


def walk_env() -> dict[str, str]:
    """This interpreter's ``inspection`` first on ``PATH``, no caller's site, offline."""
    env = {key: value for key, value in os.environ.items() if key != "INSPECTION_SITE_CONFIG"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHON"] = sys.executable  # scripts/softplc_local.sh
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


def run_walk(
    site: Path, blocks: list[Block], ports: dict[str, int], timeout: float,
    replace: dict[str, str] | None = None,
) -> Walk:  # fmt: skip
    """Run ``blocks`` in ``site``; every process the walk started is stopped at the end."""
    env = walk_env()
    walk = Walk(blocks)
    log_path = site / "walk.log"
    started = time.monotonic()
    with log_path.open("w+", encoding="utf-8") as log:
        script = shell_script(blocks, replace or walk_replacements(ports))
        shell = subprocess.Popen(
            ["bash", "-c", script], cwd=site, env=env, text=True,
            stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            shell.communicate(f"{PASSWORD}\n{PASSWORD}\n", timeout=timeout)
        except subprocess.TimeoutExpired:
            print(f"the walk took over {timeout:.0f} s: stopped", file=sys.stderr)
        walk.returncode = shell.poll()
        walk.total_seconds = time.monotonic() - started
        if walk.returncode == 0 and "dashboard" in ports:
            walk.dashboard_stopped = _stops_serving(ports["dashboard"])
        _stop_group(shell.pid)
    walk.log = log_path.read_text(encoding="utf-8", errors="replace")
    _split_log(walk)
    return walk


def _stops_serving(port: int, within_s: float = 15.0) -> bool:
    """True once nothing answers on ``port`` (the dashboard after ``kill``)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1)
        except OSError:
            return True
        time.sleep(0.5)
    return False


def _stop_group(pgid: int, grace_s: float = 2.0) -> None:
    """SIGTERM, then SIGKILL after ``grace_s``, to the walk's own process group (its shell
    and ``&`` jobs); returns once none of them runs (a zombie waiting for its parent's reap
    has stopped)."""
    for signum in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, signum)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace_s
        while _running_in_group(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not _running_in_group(pgid):
            return


def _running_in_group(pgid: int) -> bool:
    """Whether a process of group ``pgid`` is running (``/proc/<pid>/stat``: state, ppid,
    pgrp after the command's closing parenthesis; ``Z`` has exited)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):  # exited while read
            continue
        if fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            return True
    return False


def _split_log(walk: Walk) -> None:
    """Each block's output and seconds, from the ``MARK`` lines of the log."""
    marks = list(re.finditer(rf"^{MARK} (\S+) ([\d.]+)$", walk.log, re.MULTILINE))
    for this, after in zip(marks, [*marks[1:], None], strict=True):
        if this.group(1) == "end":
            break
        end = after.start() if after else len(walk.log)
        walk.outputs.append(walk.log[this.end() : end].strip())
        walk.seconds.append(float(after.group(2)) - float(this.group(2)) if after else float("nan"))


def runnable(blocks: list[Block]) -> tuple[list[Block], list[str]]:
    """The blocks this machine can run, and why the others cannot."""
    missing = {"mosquitto": not Path(MOSQUITTO).is_file()}
    kept = [block for block in blocks if not missing.get(block.needs, False)]
    reasons = [f"{block.step}: needs {block.needs}" for block in blocks if block not in kept]
    return kept, reasons


def report(walk: Walk, skipped: list[str], small: bool) -> str:
    """The walk as markdown: one row per block with its seconds, then each block's output."""
    sys.path.insert(0, str(REPO / "bench"))
    from _report import cpu_description, load_average, table

    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    state = "ran to the end" if walk.returncode == 0 else f"FAILED in {walk.failed_block.step}"
    rows = [
        (block.step, f"`{block.code.strip().splitlines()[0]}`", f"{seconds:.1f}")
        for block, seconds in zip(walk.blocks, walk.seconds, strict=False)
    ]
    outputs = [
        f"### {block.step}\n\n```bash\n{block.code.strip()}\n```\n\n```text\n{_tail(out)}\n```"
        for block, out in zip(walk.blocks, walk.outputs, strict=False)
    ]
    return "\n".join([
        "# The README's first day and a first week, walked as written",
        "",
        f"`python scripts/newcomer_walk.py` at {commit}: the README's walkthrough blocks, with "
        "the first week's (`FIRST_WEEK`) before the last, in one shell in a scratch site"
        f"{' (brick at 128 px)' if small else ''}; {state} in "
        f"**{walk.total_seconds:.1f} s**. CPU: {cpu_description()}; load after: {load_average()}.",
        f"The dashboard stopped serving after `kill`: {walk.dashboard_stopped}."
        + (f" Not run here: {'; '.join(skipped)}." if skipped else ""),
        "",
        *table(("step", "first line", "seconds"), rows),
        "",
        "## What each block printed (last lines)",
        "",
        *outputs,
        "",
    ])  # fmt: skip


def _tail(output: str, lines: int = 12) -> str:
    kept = [line for line in output.splitlines() if line.strip()]
    return "\n".join(kept[-lines:]) or "(nothing)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", type=Path, default=REPORT, help="Markdown log to write.")
    parser.add_argument("--small", action="store_true", help="Train at 128 px, as the suite.")
    parser.add_argument("--timeout", type=float, default=900.0, help="Seconds for the whole walk.")
    parser.add_argument("--no-week", action="store_true", help="The README's blocks only.")
    args = parser.parse_args()
    blocks, skipped = runnable(walkthrough_blocks())
    if not args.no_week:
        week = [Block(step, code, heading="first week") for step, code in FIRST_WEEK]
        blocks = [*blocks[:-1], *week, *blocks[-1:]]  # the last block stops the servers
    with tempfile.TemporaryDirectory(prefix="newcomer-") as scratch:
        ports = prepare_site(Path(scratch), small=args.small)
        walk = run_walk(Path(scratch), blocks, ports, args.timeout)
    args.report.write_text(report(walk, skipped, args.small), encoding="utf-8")
    print(f"{args.report}: {walk.total_seconds:.1f} s, exit {walk.returncode}")
    return 0 if walk.returncode == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())

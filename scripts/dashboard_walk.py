"""Walk the dashboard's first-use path exactly as the README writes it, in headless Chromium.

    python scripts/dashboard_walk.py            # refresh the README screenshots on purpose
    python scripts/dashboard_walk.py --shots /tmp/shots

On a copy of this checkout's ``make demo`` site it runs the README's ``<!-- first-use -->``
shell lines as written (only the ports changed, the password on stdin), then drives the
dashboard: a deep link through sign-in, a reload, the grass alarm, a best-F1 threshold saved (no audit sample for a budget yet), an item
reviewed, sign-out. ``tests/dashboard/test_first_use.py`` asserts on what it saw.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from inspection.line.mosquitto import free_port

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
SHOTS = REPO / "reports" / "dashboard" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
MARKER = "<!-- first-use -->"
USER, PASSWORD = "alice", "first use password"
ALARM_PRODUCT = "grass"
"""The demo product whose live bundle the README says is not line-ready."""
WATCHED = 30
"""Images the README line copies into the watch folder (datasets/grass/test/hole)."""


class WalkError(RuntimeError):
    """The walk could not run (no demo site, no browser) or a step did not happen."""


@dataclass
class Walk:
    """What the walk saw; ``steps`` in order, ``server_log`` the dashboard's whole output."""

    steps: list[str] = field(default_factory=list)
    alarm: str = ""
    threshold_before: str = ""
    threshold_after: str = ""
    saved_message: str = ""
    reviews: int = 0
    server_log: str = ""
    shots: list[Path] = field(default_factory=list)
    seconds: float = 0.0


def readme_lines(readme: Path = README) -> list[str]:
    """The shell lines of the README's first-use block, without comments."""
    text = readme.read_text(encoding="utf-8")
    parts = text.split(MARKER)
    if len(parts) != 3:
        raise WalkError(f"{readme}: expected one block between two {MARKER!r} markers")
    block = re.search(r"```bash\n(.*?)```", parts[1], re.DOTALL)
    if block is None:
        raise WalkError(f"{readme}: the first-use block has no ```bash fence")
    lines = [re.sub(r"\s+#.*$", "", line).strip() for line in block.group(1).splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def has_demo_site(root: Path) -> bool:
    """True when ``make demo`` has run in ``root`` (its live grass bundle and datasets exist)."""
    return (root / "var" / "registry" / ALARM_PRODUCT / "live.json").is_file() and (
        root / "datasets" / ALARM_PRODUCT / "test"
    ).is_dir()


def build_demo_site(workdir: Path, repo: Path = REPO) -> Path:
    """``make demo``, PatchCore only, in ``workdir``: for a clean clone without a demo site."""
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copytree(repo / "configs", workdir / "configs")
    command = [sys.executable, "-m", "inspection", "demo", "--models", "patchcore"]
    done = subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=1200)
    if done.returncode != 0 or not has_demo_site(workdir):
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-20:])
        raise WalkError(f"the demo did not build a site in {workdir}:\n{tail}")
    return workdir


def copy_demo(repo: Path, workdir: Path) -> None:
    """A fresh copy of the demo's state: registry and keys, not a store or watch folder."""
    leave_out = shutil.ignore_patterns(
        "inspection.db*", "blobs", "watch", "dashboard-session.key", "dashboard-demo"
    )
    shutil.copytree(repo / "var", workdir / "var", ignore=leave_out)
    shutil.copytree(repo / "configs", workdir / "configs")
    (workdir / "datasets").symlink_to(repo / "datasets")
    tools = workdir / "bin"
    tools.mkdir()
    (tools / "inspection").write_text(
        f'#!/bin/sh\nexec "{sys.executable}" -m inspection "$@"\n', encoding="utf-8"
    )
    (tools / "inspection").chmod(0o755)


@contextmanager
def running(workdir: Path, lines: list[str], logs: Path) -> Iterator[str]:
    """Run the README lines in ``workdir``; yields the dashboard URL while its server runs."""
    env = dict(os.environ)
    env["PATH"] = f"{workdir / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env.pop("INSPECTION_SITE_CONFIG", None)
    background: list[subprocess.Popen] = []
    url = ""
    try:
        for index, line in enumerate(lines):
            if line.startswith("inspection dashboard"):
                port = free_port()
                url = f"http://127.0.0.1:{port}"
                log = (logs / "dashboard.log").open("wb")
                background.append(_spawn(f"{line} --port {port}", workdir, env, log))
                _wait_healthy(url, background[-1], logs / "dashboard.log")
            elif line.endswith("&"):
                command = line[:-1].strip()
                if command.startswith("inspection serve"):
                    command += f" --port {free_port()}"
                log = (logs / f"background-{index}.log").open("wb")
                background.append(_spawn(command, workdir, env, log))
            else:
                feed = f"{PASSWORD}\n{PASSWORD}\n" if "users add" in line else None
                done = subprocess.run(
                    ["bash", "-c", line], cwd=workdir, env=env, input=feed, text=True,
                    capture_output=True, timeout=120, start_new_session=True,
                )  # fmt: skip
                if done.returncode != 0:
                    raise WalkError(f"`{line}` failed:\n{done.stdout}{done.stderr}")
        if not url:
            raise WalkError("the README block has no `inspection dashboard` line")
        yield url
    finally:
        for process in reversed(background):
            os.killpg(process.pid, 15)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)


def _spawn(command: str, cwd: Path, env: dict[str, str], log) -> subprocess.Popen:
    return subprocess.Popen(
        ["bash", "-c", f"exec {command}"], cwd=cwd, env=env, stdout=log,
        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip


def _wait_healthy(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.read() == b"ok":
                    return
        except OSError:
            pass
        if process.poll() is not None:
            break
        time.sleep(0.5)
    raise WalkError(f"the dashboard did not start:\n{log.read_text(errors='replace')[-3000:]}")


def wait_for_watch(workdir: Path, product: str, count: int, timeout: float = 90) -> None:
    """Wait until the watch folder has inspected ``count`` files of ``product``."""
    done = workdir / "var" / "watch" / "done" / product
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done.is_dir() and len(list(done.iterdir())) >= count:
            return
        time.sleep(0.5)
    found = len(list(done.iterdir())) if done.is_dir() else 0
    raise WalkError(f"the watch folder inspected {found} of {count} {product} images")


# ------------------------------------------------------------------------------- browser
@contextmanager
def browser() -> Iterator[object]:
    """Headless Chromium via Selenium (scripts/services.sh installs chromium + chromedriver)."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as exc:
        raise WalkError("selenium is not installed (pip install selenium)") from exc
    for binary in (CHROMIUM, CHROMEDRIVER):
        if not Path(binary).is_file():
            raise WalkError(f"{binary} not found; run scripts/services.sh")
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", f"--user-data-dir={profile}", "--window-size=1500,1300",
        "--force-device-scale-factor=1",
    ):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    watch(driver)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


DRAWN_JS = """
(() => {
  if (window.__drawn) return;
  const seen = window.__drawn = {action: performance.timeOrigin, changed: Date.now(),
                                 drawn: Date.now(), long: [], messages: [], running: false};
  new MutationObserver(() => {
    seen.changed = Date.now();  // after the frame that shows it: painted
    requestAnimationFrame(() => setTimeout(() => { seen.drawn = Date.now(); }, 0));
  }).observe(document, {subtree: true, childList: true, characterData: true, attributes: true});
  addEventListener("click", () => { seen.action = Date.now(); }, true);
  addEventListener("keydown", (e) => { if (e.key === "Enter") seen.action = Date.now(); }, true);
  try {
    new PerformanceObserver((list) => list.getEntries().forEach((e) => seen.long.push(
      [performance.timeOrigin + e.startTime, e.duration]))).observe({type: "longtask"});
  } catch (e) {}
  const kind = (data) => {  // ForwardMsg's top-level fields: 4 new_session, 6 script_finished
    const bytes = new Uint8Array(data);
    let i = 0;
    const varint = () => {
      let value = 0, shift = 0, byte;
      do { byte = bytes[i++]; value += (byte & 0x7f) * 2 ** shift; shift += 7; } while (byte & 0x80);
      return value;
    };
    while (i < bytes.length) {
      const tag = varint(), field = Math.floor(tag / 8), wire = tag & 7;
      if (field === 4 || field === 6) return field;
      const skip = wire === 0 ? (varint(), 0) : wire === 2 ? varint() : {1: 8, 5: 4}[wire];
      if (skip === undefined) return 0;
      i += skip;  // after varint() moved i: `i += varint()` would read i first
    }
    return 0;
  };
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener("message", (e) => {
        seen.messages.push([Date.now() / 1000, e.data.byteLength ?? e.data.size ?? 0]);
        if (e.data instanceof ArrayBuffer) {
          const field = kind(e.data);
          if (field) seen.running = field === 4;
        }
      });
    }
  };
})();
"""
"""Records in the page (ms, the page's clock): the last click or Enter (``action``), DOM
mutation (``changed``) and frame painted after it (``drawn``), long tasks, websocket messages,
and whether a script run is under way (``running``; seen only when installed before the page's
code, ``watch``). Reading these costs the page nothing; reading its text would lay it out."""
BUSY_CSS = '[data-testid="stStatusWidget"], [data-stale="true"], [data-testid="stSkeleton"]'
"""Streamlit's script run is not finished while one of these shows."""


def watch(driver) -> None:
    """Install ``DRAWN_JS`` in the open page and every document the driver opens later."""
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": DRAWN_JS})
    driver.execute_script(DRAWN_JS)


def settle(driver, timeout: float = 60, quiet: float = 0.8) -> float:
    """Wait until Streamlit's script run finished and the page stopped changing for ``quiet``
    s; returns when (``time.monotonic()``) it last painted a change (``DRAWN_JS``)."""
    probe = f"""const seen = window.__drawn;
        return seen && [seen.running || !!document.querySelector('{BUSY_CSS}'),
                        Math.max(seen.changed, seen.drawn), Date.now()];"""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = driver.execute_script(probe)
        except Exception:  # a navigation in between: ask again
            state = None
        if state is None:
            with suppress(Exception):
                driver.execute_script(DRAWN_JS)
        elif not state[0] and state[2] - state[1] >= quiet * 1000:
            return time.monotonic() - (state[2] - state[1]) / 1000
        time.sleep(0.1)
    raise WalkError(f"the page did not settle within {timeout} s")


def wait_text(driver, css: str, text: str, timeout: float = 45) -> str:
    """The text of the first element matching ``css`` that contains ``text`` (waits for it)."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def find(d):
        for element in d.find_elements(By.CSS_SELECTOR, css):
            if text in element.text:
                return element.text
        return False

    try:
        return WebDriverWait(
            driver, timeout, 0.25, ignored_exceptions=(StaleElementReferenceException,)
        ).until(find)
    except Exception as exc:
        seen = [e.text[:200] for e in driver.find_elements(By.CSS_SELECTOR, css)]
        raise WalkError(f"no {css!r} containing {text!r}; saw {seen}") from exc


def _re_rendering() -> tuple[type[Exception], ...]:
    """What Selenium raises while Streamlit re-renders an element: gone (stale), or mounted but
    not yet interactable (hidden, disabled, or covered while the rerun runs)."""
    from selenium.common.exceptions import (
        ElementClickInterceptedException,
        ElementNotInteractableException,
        InvalidElementStateException,
        StaleElementReferenceException,
    )

    return (
        StaleElementReferenceException,
        ElementNotInteractableException,
        ElementClickInterceptedException,
        InvalidElementStateException,
    )


def click(driver, label: str, timeout: float = 30) -> None:
    """Click the first enabled button whose text starts with ``label``; a button Streamlit
    re-rendered between finding and clicking is found again."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def clicked(d):
        for candidate in d.find_elements(By.CSS_SELECTOR, "button"):
            if candidate.text.strip().startswith(label) and candidate.is_enabled():
                candidate.click()
                return True
        return False

    WebDriverWait(driver, timeout, 0.25, ignored_exceptions=_re_rendering()).until(
        clicked, f"no enabled button {label!r}"
    )


def type_into(driver, label: str, text: str, submit: bool = False, timeout: float = 30) -> None:
    """Type ``text`` into the input labelled ``label``. Streamlit may re-render the input between
    finding and typing (a rerun after the last click); an input that is stale, hidden or not yet
    interactable is found again and the text typed afresh until the input holds it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    def typed(d):
        found = [
            e
            for e in d.find_elements(By.CSS_SELECTOR, f'input[aria-label="{label}"]')
            if e.is_displayed() and e.is_enabled()
        ]
        if not found:
            return False
        if found[0].get_attribute("value") != text:
            found[0].send_keys(Keys.CONTROL, "a")
            found[0].send_keys(text)
        return found[0].get_attribute("value") == text and found[0]

    element = WebDriverWait(driver, timeout, 0.25, ignored_exceptions=_re_rendering()).until(
        typed, f"no input {label!r} holding the typed text"
    )
    if submit:
        element.send_keys(Keys.ENTER)


PAINT_S = 1.2
"""Seconds a screenshot waits for charts to paint on their canvas after the text settled."""


def shot(driver, shots: Path, name: str, walk: Walk, paint_s: float = PAINT_S) -> None:
    shots.mkdir(parents=True, exist_ok=True)
    time.sleep(paint_s)
    path = shots / f"{name}.png"
    driver.save_screenshot(str(path))
    walk.shots.append(path)


def open_page(driver, title: str, timeout: float = 60) -> float:
    """Click the sidebar link ``title``; returns when the page last changed (``settle``)."""
    from selenium.webdriver.common.by import By

    links = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stSidebarNavLink"]')
    link = next((a for a in links if a.text.strip().splitlines()[-1].strip() == title), None)
    if link is None:
        raise WalkError(f"no sidebar link {title!r}")
    link.click()
    wait_text(driver, "h1", title, timeout=timeout)
    return settle(driver, timeout=timeout)


def sign_in(driver, name: str, password: str) -> None:

    wait_text(driver, "h1", "Sign in")
    settle(driver)
    type_into(driver, "Name", name)
    type_into(driver, "Password", password, submit=True)


def drive(driver, url: str, shots: Path, walk: Walk, paint_s: float = PAINT_S) -> None:
    """The browser part of the first-use path (see the module docstring); each screenshot
    waits ``paint_s`` for the charts (0: the page as the walk's checks saw it)."""

    alert = '[data-testid="stAlertContainer"], [data-testid="stAlert"]'
    driver.get(f"{url}/thresholds?product={ALARM_PRODUCT}")  # a deep link, before signing in
    sign_in(driver, USER, PASSWORD)
    wait_text(driver, "h1", "Thresholds")
    settle(driver)
    walk.steps.append("deep link kept through sign-in")
    driver.refresh()
    wait_text(driver, "h1", "Thresholds")
    settle(driver)
    walk.steps.append("reload stayed signed in")
    walk.alarm = wait_text(driver, alert, "NOT LINE-READY")
    walk.threshold_before = wait_text(driver, '[data-testid="stCaptionContainer"]', "Current")
    walk.steps.append("grass alarm on Thresholds")

    # A fresh site has no reviewed audit parts: no budget is chosen on the held-out split that
    # model health judges (#93); the engineer picks the best-F1 threshold and says why.
    wait_text(driver, '[data-testid="stCaptionContainer"]', "A budget needs reviewed good parts")
    click(driver, "Use best F1")
    settle(driver)
    type_into(driver, "Why", "first use: best F1 until the audit sample is reviewed")
    click(driver, "Save threshold")
    walk.saved_message = wait_text(driver, alert, "Saved threshold version")
    settle(driver)
    walk.threshold_after = wait_text(driver, '[data-testid="stCaptionContainer"]', "Current")
    walk.steps.append("no audit sample for a budget; best-F1 threshold saved, page updated")
    shot(driver, shots, "thresholds_budget", walk, paint_s)

    open_page(driver, "Overview")
    wait_text(driver, alert, "NOT LINE-READY")
    shot(driver, shots, "alarm", walk, paint_s)
    driver.get(f"{url}/defects?product={ALARM_PRODUCT}&outcome=missed")  # the alarm's link
    wait_text(driver, "h1", "Defect kinds")
    settle(driver)
    walk.steps.append("deep link to the images behind the rates, signed in by the cookie")
    shot(driver, shots, "defect_kinds", walk, paint_s)

    open_page(driver, "Review queue")
    click(driver, "True defect")
    wait_text(driver, alert, "recorded")
    settle(driver)
    walk.steps.append("reviewed an item")
    shot(driver, shots, "dashboard", walk, paint_s)  # the README's top picture

    click(driver, "Sign out")
    wait_text(driver, "h1", "Sign in")
    driver.refresh()
    wait_text(driver, "h1", "Sign in")
    walk.steps.append("signed out, and a reload stays signed out")


def walk_first_use(
    workdir: Path, shots: Path, repo: Path = REPO, demo: Path | None = None,
    paint_s: float = PAINT_S,
) -> Walk:  # fmt: skip
    """Run the whole walk in an empty ``workdir`` on a copy of ``demo`` (default: this one);
    ``paint_s``: ``drive``'s wait before each screenshot (the README's pictures keep it)."""
    started = time.monotonic()
    walk = Walk()
    if demo is None and not has_demo_site(repo):
        raise WalkError(f"no demo site in {repo}: run `make demo` first")
    copy_demo(demo or repo, workdir)
    logs = workdir / "logs"
    logs.mkdir()
    lines = readme_lines(repo / "README.md")
    try:
        with running(workdir, lines, logs) as url, browser() as driver:
            wait_for_watch(workdir, ALARM_PRODUCT, WATCHED)
            walk.steps.append(f"README lines ran: {len(lines)}")
            try:
                drive(driver, url, shots, walk, paint_s)
            except Exception:
                shots.mkdir(parents=True, exist_ok=True)
                driver.save_screenshot(str(shots / "failure.png"))  # what the browser showed
                raise
    finally:
        log = logs / "dashboard.log"
        walk.server_log = log.read_text(errors="replace") if log.is_file() else ""
    walk.reviews = _reviews_by(workdir, USER)
    walk.seconds = time.monotonic() - started
    return walk


def _reviews_by(workdir: Path, reviewer: str) -> int:
    import sqlite3

    with sqlite3.connect(workdir / "var" / "inspection.db") as connection:
        query = "SELECT count(*) FROM reviews WHERE reviewer = ?"
        return int(connection.execute(query, (reviewer,)).fetchone()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shots", type=Path, default=SHOTS, help="where screenshots go")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dashboard-walk-") as tmp:
        walk = walk_first_use(Path(tmp), args.shots)
    for step in walk.steps:
        print(f"ok  {step}")
    alarm = [line for line in walk.alarm.splitlines() if "LINE-READY" in line]
    print(f"alarm: {alarm[0] if alarm else '(none)'}")
    print(f"{walk.threshold_before.strip()} -> {walk.threshold_after.strip()}")
    print(f"screenshots: {', '.join(str(p) for p in walk.shots)} ({walk.seconds:.0f} s)")
    warnings = [line for line in walk.server_log.splitlines() if "warning" in line.lower()]
    print(f"dashboard log: {len(walk.server_log.splitlines())} lines, {len(warnings)} warnings")
    for line in warnings[:20]:
        print(f"  {line}")


if __name__ == "__main__":
    main()

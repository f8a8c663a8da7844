"""End to end: ``streamlit run`` on a seeded tmp site, driven in headless Chromium via Selenium.

Signs in through the login form, clicks through every page, labels an inspection in the review queue with a keyboard-free click,
checks the label reached the store, and saves screenshots to a temporary folder (the README's
are refreshed on purpose by ``scripts/dashboard_walk.py``).
Without Chromium/chromedriver/selenium (the ``browser`` fixture, conftest) the test skips, except in CI (``CI=true``) where it fails.
"""

from __future__ import annotations

import itertools
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from inspection.cli.dashboard import dashboard_env, streamlit_command
from inspection.core.config import load_site_config
from inspection.store.store import Store
from tests.dashboard.scripts import walk_module
from tests.line.helpers import free_port

REPO = Path(__file__).resolve().parents[2]
SHOTS = Path(tempfile.mkdtemp(prefix="dashboard-shots-"))
"""Never a tracked folder: tests leave the checkout as they found it."""
PAGES = [
    "Overview",
    "Thresholds",
    "Review queue",
    "Models",
    "Defect kinds",
    "Retraining",
    "Regions of interest",
]
PASSWORD = "browser test password"

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def served(seeded_site: Path) -> Iterator[str]:
    """``streamlit run`` of the dashboard on 127.0.0.1 for the seeded site; yields its URL."""
    with serving(seeded_site) as url:
        yield url


@contextmanager
def serving(site: Path) -> Iterator[str]:
    """``streamlit run`` of the dashboard on 127.0.0.1 for ``site`` (its log beside it)."""
    from inspection.cli.dashboard import APP

    port = free_port()
    with (site.parent / "dashboard.log").open("w+b") as log:  # a tmp site: not tracked
        process = subprocess.Popen(
            streamlit_command(APP, host="127.0.0.1", port=port),
            env=dashboard_env(site),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=site.parent,
        )
        try:
            yield _wait_healthy(f"http://127.0.0.1:{port}", process, log)
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


def _wait_healthy(url: str, process: subprocess.Popen, log) -> str:
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.read() == b"ok":
                    return url
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            log.seek(0)
            pytest.fail(f"streamlit did not start:\n{log.read().decode()[-3000:]}")
        time.sleep(0.5)


def _settle(driver) -> None:
    """Wait until Streamlit has finished the script run and the page stopped changing."""
    walk_module().settle(driver, timeout=90, quiet=1.0)


def _wait_text(driver, css: str, text: str, timeout: float = 60) -> None:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(
        driver, timeout, poll_frequency=0.25, ignored_exceptions=(StaleElementReferenceException,)
    ).until(
        lambda d: any(text in e.text for e in d.find_elements(By.CSS_SELECTOR, css)),
        f"no {css} showing {text!r} within {timeout} s",
    )


def _open_page(driver, title: str) -> None:
    from selenium.webdriver.common.by import By

    links = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stSidebarNavLink"]')
    link = next((a for a in links if _link_text(a) == title), None)
    assert link is not None, f"no sidebar link {title!r}; found {[a.text for a in links]}"
    link.click()
    _wait_text(driver, "h1", title)
    _settle(driver)


def _button(driver, label: str, timeout: float = 30):
    """The button whose text starts with ``label`` (waits for it to render)."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def find(d):
        for button in d.find_elements(By.CSS_SELECTOR, "button"):
            if button.text.strip().startswith(label):
                return button
        return False

    return WebDriverWait(
        driver, timeout, poll_frequency=0.25, ignored_exceptions=(StaleElementReferenceException,)
    ).until(find, f"no button {label!r} on the page")


def _no_exception(driver) -> None:
    from selenium.webdriver.common.by import By

    errors = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]')
    assert not errors, f"the page shows an exception: {errors[0].text[:800]}"


def _link_text(link) -> str:
    """A sidebar link's label (its text also holds the icon's ligature name on the first line)."""
    return link.text.strip().splitlines()[-1].strip()


def _shot(driver, name: str) -> Path:
    """The page as the test's checks saw it (no wait for charts to paint: no test reads these
    pictures, and the README's come from ``scripts/dashboard_walk.py``, which waits)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def test_click_through_pages_and_review(browser, served: str, seeded_site: Path) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    store = Store(load_site_config(seeded_site).store_url, seeded_site.parent / "blobs")
    driver = browser
    _signed_in(driver, served, store, "browser-bot", "admin")
    links = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stSidebarNavLink"]')
    links = [_link_text(a) for a in links]
    assert links == PAGES
    metrics = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stMetricValue"]')
    assert metrics and metrics[0].text.replace(",", "") == "600"
    _shot(driver, "overview")

    for title in PAGES[1:]:
        _open_page(driver, title)
        _no_exception(driver)
        _shot(driver, title.lower().replace(" ", "_"))

    # Review: signed in as browser-bot, label the first queued inspection as a true defect.
    _open_page(driver, "Review queue")
    before = {r.id for r in _reviews_by(store, "browser-bot")}
    assert not before
    _no_exception(driver)
    _canvas(driver)  # the region canvas reports its background's fit once loaded: a rerun
    _settle(driver)
    button = _button(driver, "True defect")
    button.click()
    _wait_text(driver, '[data-testid="stAlertContentSuccess"]', "recorded")
    _settle(driver)
    _no_exception(driver)
    _shot(driver, "review_after_label")
    reviewed = _reviews_by(store, "browser-bot")
    assert len(reviewed) == 1 and reviewed[0].label == "defect"
    inspection = store.get_inspection(reviewed[0].inspection_id)
    assert inspection.review_label == "defect" and inspection.reviewed_by == "browser-bot"

    # The next item by keyboard: F marks a false alarm.
    driver.find_element(By.TAG_NAME, "h1").click()  # focus the page, not an input
    ActionChains(driver).send_keys("f").perform()
    _wait_text(driver, '[data-testid="stAlertContentSuccess"]', "False alarm recorded")
    _settle(driver)
    labels = sorted(r.label for r in _reviews_by(store, "browser-bot"))
    assert labels == ["defect", "false_alarm"]
    store.engine.dispose()
    log = (seeded_site.parent / "dashboard.log").read_text(errors="replace")
    warnings = [line for line in log.splitlines() if "warning" in line.lower()]
    assert warnings == [], warnings  # every page visited: no deprecation or other warning


def _sign_in(driver, name: str, password: str) -> None:
    """Fill the dashboard's login form (shown before any page) and submit it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    _wait_text(driver, "h1", "Sign in")
    _settle(driver)
    user, secret = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stMain"] input')[:2]
    user.send_keys(name)
    secret.send_keys(password)
    _shot(driver, "login")
    secret.send_keys(Keys.ENTER)


def _signed_in(
    driver, url: str, store: Store, user: str, role: str, page: str = "Overview"
) -> None:
    """Add ``user`` with ``role`` to the site's store, open ``url`` and sign in; waits until
    ``page`` has settled."""
    from inspection.store.users import add_user

    add_user(store, user, role, PASSWORD)
    driver.get(url)
    _sign_in(driver, user, PASSWORD)
    _wait_text(driver, "h1", page)
    _settle(driver)


def _reviews_by(store: Store, reviewer: str):
    from sqlalchemy import select

    from inspection.store.models import Review

    with store.session() as session:
        return list(session.scalars(select(Review).where(Review.reviewer == reviewer)))


def _stored_review(driver, store: Store, button: str, reviewer: str):
    """Click ``button`` on the review page; ``reviewer``'s one review once the store holds it
    (the store is the proof here: the emptied queue's message is test_pages.py's)."""
    from selenium.webdriver.support.ui import WebDriverWait

    _button(driver, button).click()
    WebDriverWait(driver, 60, poll_frequency=0.5).until(
        lambda _: _reviews_by(store, reviewer), f"{reviewer}'s review not stored within 60 s"
    )
    _settle(driver)
    _no_exception(driver)
    (saved,) = _reviews_by(store, reviewer)
    return saved


def test_a_reviewer_paints_the_defect_region_and_it_is_stored(
    browser, served: str, seeded_site: Path
) -> None:
    """Paint a stroke on the review page's canvas with the driver's mouse, confirm NG, and
    find the stored review's mask painted where the stroke went (in image pixels), on top of
    the model's region the canvas started from."""
    from inspection.core.images import defect_pixels, mask_levels

    store = Store(load_site_config(seeded_site).store_url, seeded_site.parent / "blobs")
    driver = browser
    _signed_in(driver, served, store, "painter", "reviewer")
    _open_page(driver, "Review queue")
    stroke = paint(driver, [(0.2, 0.3), (0.8, 0.3)])  # across the upper third, left to right
    _settle(driver)
    _shot(driver, "review_painted")
    _button(driver, "True defect").click()
    _wait_text(driver, '[data-testid="stAlertContentSuccess"]', "True defect recorded")
    _settle(driver)
    _no_exception(driver)
    (saved,) = _reviews_by(store, "painter")
    inspection = store.get_inspection(saved.inspection_id)
    assert saved.label == "defect" and inspection.review_region_sha == saved.region_sha
    region = defect_pixels(mask_levels(store.blobs.get(saved.region_sha)))
    model = defect_pixels(mask_levels(store.blobs.get(inspection.mask_sha)))
    assert region.shape == model.shape == (inspection.height, inspection.width)
    band = _stroke_band(region.shape, stroke, (0.2, 0.8), 0.3)
    assert region[band["inner"]].mean() > 0.95  # painted along the stroke
    assert region[model].mean() > 0.95  # the model's region it started from is kept
    assert not region[~(band["outer"] | _grown(model))].any()  # nothing anywhere else
    store.engine.dispose()


def _stroke_band(shape, stroke: dict[str, float], span: tuple[float, float], at: float) -> dict:
    """(H, W) bool masks of a horizontal brush stroke from ``span[0]`` to ``span[1]`` of the
    width at ``at`` of the height: ``inner`` surely painted, ``outer`` at most painted."""
    height, width = shape
    half = stroke["brush"] / 2 * height / stroke["height"]  # the brush's half width, in rows
    rows, columns = np.mgrid[0:height, 0:width]
    centre, left, right = at * height, span[0] * width, span[1] * width
    inner = (abs(rows + 0.5 - centre) <= half - 1) & (columns >= left + 1) & (columns < right - 1)
    reach = half + 2
    outer = (
        (abs(rows + 0.5 - centre) <= reach) & (columns >= left - reach) & (columns < right + reach)
    )
    return {"inner": inner, "outer": outer}


def _grown(mask: np.ndarray, pixels: int = 2) -> np.ndarray:
    import cv2

    kernel = np.ones((2 * pixels + 1, 2 * pixels + 1), np.uint8)
    return cv2.dilate(mask.astype(np.uint8), kernel) > 0


def _canvas(driver):
    """The drawing canvas's top layer (fabric.js ``upper-canvas``), inside the component's
    shadow root when it has one."""
    from selenium.webdriver.support.ui import WebDriverWait

    def find(d):
        found = d.execute_script(
            """const seek = (root) => {
                 const hit = root.querySelector('canvas.upper-canvas');
                 if (hit) return hit;
                 for (const el of root.querySelectorAll('*'))
                   if (el.shadowRoot) { const deep = seek(el.shadowRoot); if (deep) return deep; }
                 return null; };
               return seek(document);"""
        )
        return found or False

    return WebDriverWait(driver, 30, poll_frequency=0.25).until(find, "no drawing canvas")


def paint(driver, points: list[tuple[float, float]], steps: int = 12) -> dict[str, float]:
    """Drag the mouse over the canvas through ``points`` (fractions of its width and height);
    returns the canvas's size and brush (CSS pixels)."""
    from selenium.webdriver.common.action_chains import ActionChains

    from inspection.dashboard import regions

    canvas = _canvas(driver)
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", canvas)
    size = canvas.size
    brush = float(regions.BRUSH)  # the page's default brush width

    def offset(fx: float, fy: float) -> tuple[int, int]:  # from the element's centre
        return round((fx - 0.5) * size["width"]), round((fy - 0.5) * size["height"])

    actions = ActionChains(driver, duration=20)
    actions.move_to_element_with_offset(canvas, *offset(*points[0])).click_and_hold()
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        for step in range(1, steps + 1):
            t = step / steps
            actions.move_to_element_with_offset(
                canvas, *offset(x0 + (x1 - x0) * t, y0 + (y1 - y0) * t)
            )
    actions.release().perform()
    return {"width": size["width"], "height": size["height"], "brush": brush}


def test_the_session_cookie_is_set_by_the_server_httponly(
    browser, served: str, seeded_site: Path
) -> None:
    """The page never holds the session token: the server sets the cookie (HttpOnly,
    SameSite=Strict), and a reload is signed in by it."""
    from inspection.store.users import add_user

    store = Store(load_site_config(seeded_site).store_url, seeded_site.parent / "blobs")
    add_user(store, "cookie-bot", "reviewer", PASSWORD)
    store.engine.dispose()
    driver = browser
    driver.get(served)
    _sign_in(driver, "cookie-bot", PASSWORD)
    _wait_text(driver, "h1", "Overview")
    deadline = time.monotonic() + 10
    while not (
        cookies := [c for c in driver.get_cookies() if c["name"].startswith("inspection_session_")]
    ):
        assert time.monotonic() < deadline, driver.get_cookies()
        time.sleep(0.2)
    [cookie] = cookies
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and not cookie["secure"]  # http
    assert "inspection_session_" not in driver.execute_script("return document.cookie")
    driver.refresh()
    _wait_text(driver, "h1", "Overview")  # signed in again by the cookie alone


def test_the_localhost_opening_is_refused_behind_a_proxy(browser, seeded_site: Path, open_mode):
    """``dashboard_open_on_localhost`` on a loopback bind: a browser on this host gets in
    without a login, one whose requests a reverse proxy forwarded does not."""
    with serving(open_mode(seeded_site)) as url:
        driver = browser
        driver.get(url)
        _wait_text(driver, "h1", "Overview")  # local: open
        driver.execute_cdp_cmd("Network.enable", {})
        forwarded = {"headers": {"X-Forwarded-For": "10.0.0.5"}}  # what nginx adds
        driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", forwarded)
        try:
            driver.get(url)
            _wait_text(driver, "h1", "Sign in")
        finally:
            driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {}})

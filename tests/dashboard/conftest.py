"""Dashboard fixtures: seeded tmp sites (see scripts/seed_dashboard.py) and an empty one."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.dashboard.scripts import load_script

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "apps" / "dashboard" / "app.py"
if str(REPO) not in sys.path:  # AppTest runs pages in this process; they import `inspection`
    sys.path.insert(0, str(REPO))


@pytest.fixture(autouse=True)
def _main_module_restored() -> Iterator[None]:
    """AppTest leaves the script it ran as ``sys.modules["__main__"]``; a later ``spawn`` child
    would re-run that page instead of its target (the line heartbeat test's station never
    started in the full suite)."""
    main = sys.modules["__main__"]
    yield
    sys.modules["__main__"] = main


def load_seed_module() -> ModuleType:
    return load_script("seed_dashboard")


@pytest.fixture(scope="session")
def seed() -> ModuleType:
    return load_seed_module()


@pytest.fixture(scope="session")
def seeded_site_template(seed: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seeded demo site written once per session (600 inspections, 60 reviews)."""
    root = tmp_path_factory.mktemp("seeded-site")
    seed.seed_site(root, inspections=600, reviews=60, pictures_each=3, size=128)
    return root


@pytest.fixture
def seeded_site(seeded_site_template: Path, seed: ModuleType, tmp_path: Path) -> Path:
    """A private copy of the seeded site (tests write to it); returns its site YAML."""
    import shutil

    root = tmp_path / "site"
    shutil.copytree(seeded_site_template, root)
    return seed.write_site(root, ["brick", "grass"])


@pytest.fixture
def empty_site(seed: ModuleType, tmp_path: Path) -> Path:
    """A set-up site (store schema current) with no inspections and no registry."""
    from inspection.core.config import load_site_config
    from inspection.store.store import Store

    site = seed.write_site(tmp_path / "empty", [])
    config = load_site_config(site)
    Store.migrated(config.store_url, config.blob_dir).engine.dispose()
    return site


@pytest.fixture
def unmigrated_site(seed: ModuleType, tmp_path: Path) -> Path:
    """A site whose results database was never upgraded; returns its site YAML."""
    return seed.write_site(tmp_path / "unmigrated", [])


@pytest.fixture
def site_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[callable]:
    """Point the dashboard at a site YAML through ``INSPECTION_SITE_CONFIG``."""
    from inspection.dashboard.context import SITE_ENV

    def use(site: Path) -> None:
        monkeypatch.setenv(SITE_ENV, str(site))

    yield use


@pytest.fixture
def open_mode() -> Iterator[callable]:
    """Serve on 127.0.0.1 with ``dashboard_open_on_localhost: true`` added to a site YAML."""
    from streamlit import config

    before = config.get_option("server.address")

    def use(site: Path) -> Path:
        site.write_text(site.read_text() + "dashboard_open_on_localhost: true\n")
        config.set_option("server.address", "127.0.0.1")
        return site

    yield use
    config.set_option("server.address", before)


# ------------------------------------------------------------------ Chromium
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _missing(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"browser test cannot run in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture
def browser() -> Iterator[object]:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing("selenium is not installed (pip install selenium)")
    for binary in (CHROMIUM, CHROMEDRIVER):
        if not Path(binary).is_file():
            _missing(f"{binary} not found; run scripts/services.sh (apt chromium chromium-driver)")
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--window-size=1600,1000",
        "--force-device-scale-factor=1",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    load_script("dashboard_walk").watch(
        driver
    )  # settle() then knows when the server's script run finished
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)

"""The README's first-use path, walked in headless Chromium from this checkout's demo site.

``scripts/dashboard_walk.py`` copies ``make demo``'s ``var/`` into a temporary folder, runs the
README's first-use lines there as written (free ports aside) and drives the dashboard: deep link
through the sign-in, reload, the grass alarm, no budget without an audit sample, a best-F1 threshold saved, the images behind the rates, a
review, sign-out. Screenshots go to a temporary folder. A checkout without a demo site (a
clean clone, as in CI) builds one first (PatchCore only). Without a browser the test skips,
except in CI (``CI=true``) where it fails.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.dashboard.scripts import walk_module

REPO = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_readme_block_is_what_the_walk_runs() -> None:
    lines = walk_module().readme_lines(REPO / "README.md")
    assert lines[0].startswith("inspection users add") and lines[-1].startswith(
        "inspection dashboard"
    )
    assert any(line.startswith("inspection serve") and line.endswith("&") for line in lines)
    # copied after the walkthrough, a `make demo` here retrained and replaced step 3's bundle
    assert not any(line.startswith("make ") for line in lines), lines


@pytest.mark.timeout(1500)  # a clone without `make demo` builds its demo site first (up to 1200 s)
def test_first_use_path_from_the_readme(tmp_path: Path) -> None:
    walk = walk_module()
    for binary in (walk.CHROMIUM, walk.CHROMEDRIVER):
        if not Path(binary).is_file():
            if IN_CI:
                pytest.fail(f"{binary} missing; run scripts/services.sh")
            pytest.skip(f"{binary} missing; run scripts/services.sh")
    # A clean clone (CI) has no demo site: `make demo`, the README's first command, runs first.
    demo = REPO if walk.has_demo_site(REPO) else walk.build_demo_site(tmp_path / "demo")
    # no test reads the screenshots: taken as the walk's checks saw each page, no paint wait
    seen = walk.walk_first_use(tmp_path / "site", tmp_path / "shots", REPO, demo=demo, paint_s=0)

    assert seen.steps[1:] == [
        "deep link kept through sign-in",
        "reload stayed signed in",
        "grass alarm on Thresholds",
        "no audit sample for a budget; best-F1 threshold saved, page updated",
        "deep link to the images behind the rates, signed in by the cookie",
        "reviewed an item",
        "signed out, and a reload stays signed out",
    ]
    assert "grass" in seen.alarm and "NOT LINE-READY" in seen.alarm
    assert seen.saved_message and seen.threshold_before != seen.threshold_after
    saved = seen.saved_message.split(" = ")[1].split(" ")[0]
    assert f"Current threshold: {saved}" in seen.threshold_after  # the page shows the save
    assert seen.reviews == 1
    warnings = [line for line in seen.server_log.splitlines() if "warning" in line.lower()]
    assert warnings == [], warnings
    assert seen.seconds < 120
    assert all(p.is_relative_to(tmp_path) for p in seen.shots)


def test_the_watch_station_config_of_the_readme_loads() -> None:
    from inspection.service.config import load_station_config

    config = load_station_config(REPO / "configs" / "station-watch.yaml")
    assert config.watch.enabled and "grass" in config.core.products
    assert not config.core.allow_unsigned_bundles  # secure by default, like station.yaml

"""The audit view in real Chromium: OK and NG audit parts look alike (no verdict, no score, the
image alone), and the window they fill counts for certification only once every part in it is
labelled good or defect (``core.certificate.select_audited``; an unsure label holds it open)."""

from __future__ import annotations

from pathlib import Path

import pytest

from inspection.core.certificate import select_audited
from inspection.dashboard import review, thresholds
from inspection.dashboard.context import open_dashboard
from inspection.store import queries
from tests.dashboard.test_browser import (
    _button,
    _no_exception,
    _reviews_by,
    _settle,
    _signed_in,
    serving,
)
from tests.dashboard.test_pages import _audited

pytestmark = [pytest.mark.browser, pytest.mark.slow]
PARTS = 8
"""Audit parts added (the 8th scores NG), older than every seeded one: the queue's first."""


def _pane_text(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, '[data-testid="stMain"]').text


def _images(driver) -> int:
    from selenium.webdriver.common.by import By

    return len(driver.find_elements(By.CSS_SELECTOR, '[data-testid="stImage"]'))


def _label(driver, store, button: str, count: int) -> None:
    """Click ``button`` and wait until the reviewer's ``count``-th review is stored."""
    from selenium.webdriver.support.ui import WebDriverWait

    _button(driver, button).click()
    WebDriverWait(driver, 90, poll_frequency=0.5).until(
        lambda _: len(_reviews_by(store, "auditor")) >= count, f"review {count} not stored"
    )
    _settle(driver)
    _no_exception(driver)


def test_the_audit_view_is_blind_and_a_window_counts_only_when_whole(
    browser, seeded_site: Path
) -> None:
    _audited(seeded_site, PARTS, reviewed=False)
    board = open_dashboard(seeded_site)
    store = board.store
    scale = thresholds.bundle_scale(board.registry, "brick", "v0002-int8")
    mine = [p for p in queries.audit_parts(store, "brick") if p.scale == scale][:PARTS]
    assert [p.verdict for p in mine] == ["OK"] * (PARTS - 1) + ["NG"]

    def window():
        ids = {p.inspection_id for p in mine}
        parts = [p for p in queries.audit_parts(store, "brick") if p.inspection_id in ids]
        return select_audited(parts, "v0002-int8", scale)

    with serving(seeded_site) as url:
        _signed_in(browser, f"{url}/review?show=audit", store, "auditor", "reviewer", "Review")
        for count in range(1, PARTS + 1):  # oldest first: ours, the NG one last
            text = _pane_text(browser)
            assert "Audit part" in text and "score 0." not in text and "NG ·" not in text
            assert "threshold 0." not in text and "OK ·" not in text, text
            assert "Anomaly map" not in text and _images(browser) == 1, text
            _label(browser, store, "Good part" if count < PARTS else "Unsure", count)
    assert (len(window().good), window().held_open) == (0, PARTS)  # unsure holds it open
    unsure = next(r for r in _reviews_by(store, "auditor") if r.label == "unsure")
    review.submit(store, unsure.inspection_id, label="defect", reviewer="auditor")
    whole = window()
    assert (len(whole.good), whole.held_open) == (PARTS - 1, 0)
    store.engine.dispose()

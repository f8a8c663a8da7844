"""Dashboard login under AppTest: the form, Argon2id verification, lockout, roles per action,
sessions that end when the account goes, and the open-on-localhost switch."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from inspection.core.config import load_site_config
from inspection.core.registry import Registry
from inspection.dashboard.context import login_free
from inspection.store.store import Store
from inspection.store.users import FREE_ATTEMPTS, add_user, remove_user

from .test_pages import APP, PASSWORD, TIMEOUT, _open


def _store(site: Path) -> Store:
    config = load_site_config(site)
    return Store(config.store_url, config.blob_dir)


def _sign_in(at: AppTest, name: str, password: str) -> AppTest:
    at.text_input(key="login_name").set_value(name)
    at.text_input(key="login_password").set_value(password)
    return at.button(key="FormSubmitter:login-Sign in").click().run()


def test_pages_need_a_login_and_a_right_password(seeded_site, site_env) -> None:
    site_env(seeded_site)
    add_user(_store(seeded_site), "erin", "reviewer", PASSWORD)
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    assert [t.value for t in at.title] == ["Sign in"] and not at.metric
    _sign_in(at, "erin", "not the password")
    assert [e.value for e in at.error] == ["wrong name or password"] and not at.metric
    # The sign-in warms the Overview's reads while the hash is checked: none of it is drawn.
    assert not at.table and not at.get("vega_lite_chart")
    _sign_in(at, "erin", PASSWORD)
    # The seeded bundles have too few defect images per kind to bound their miss rates: the
    # only errors a signed-in page may show are those line-readiness findings.
    assert not at.exception
    assert all("NOT LINE-READY" in e.value for e in at.error), [e.value for e in at.error]
    assert at.metric and "Signed in as **erin** (reviewer)" in [m.value for m in at.markdown]
    assert at.table and at.get("vega_lite_chart")
    at.button(key="sign_out").click().run()
    assert [t.value for t in at.title] == ["Sign in"]


def test_a_source_reload_keeps_the_login(seeded_site, site_env, monkeypatch) -> None:
    """Streamlit's file watcher drops every watched module (all of ``inspection``) when a
    source file changes, so the next run imports fresh classes: the tab stays signed in (its
    cookie cannot carry it: the tab's connection predates the login that set it)."""
    site_env(seeded_site)
    add_user(_store(seeded_site), "erin", "reviewer", PASSWORD)
    at = _sign_in(AppTest.from_file(str(APP), default_timeout=TIMEOUT).run(), "erin", PASSWORD)
    for name in [m for m in sys.modules if m.split(".")[0] == "inspection"]:
        monkeypatch.delitem(sys.modules, name)  # restored after the test
    at.run()
    assert not at.exception and [t.value for t in at.title] != ["Sign in"]
    assert "Signed in as **erin** (reviewer)" in [m.value for m in at.markdown]


def test_repeated_failures_lock_the_login(seeded_site, site_env) -> None:
    site_env(seeded_site)
    add_user(_store(seeded_site), "erin", "reviewer", PASSWORD)
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    for _ in range(FREE_ATTEMPTS):
        _sign_in(at, "erin", "guess guess guess")
    assert any("locked for 30 s after 5 failures" in e.value for e in at.error)
    fresh = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()  # a new session
    _sign_in(fresh, "erin", PASSWORD)
    assert any("too many failed logins for 'erin'" in e.value for e in fresh.error)
    assert not fresh.metric


def test_a_reviewer_cannot_save_thresholds_or_promote(seeded_site, site_env) -> None:
    site_env(seeded_site)
    registry = Registry(load_site_config(seeded_site).registry_dir)
    at = _open("thresholds", user="rita", role="reviewer")
    assert at.button(key="th_save").disabled
    at = _open("models", user="rita", role="reviewer")
    assert at.button(key="FormSubmitter:promote-Promote").disabled
    assert at.button(key="FormSubmitter:rollback-Roll back").disabled
    # a label is a reviewer's job
    at = _open("review", user="rita", role="reviewer")
    at.button(key="rv_btn_good").click().run()
    assert any("recorded" in s.value and "by rita" in s.value for s in at.success)
    assert registry.journal.live("brick").bundle_id == "v0002-int8"


def test_a_demoted_admin_is_refused_on_the_next_click(seeded_site, site_env) -> None:
    """The role is read from the store on every run, before the page: a click on a page
    rendered for an admin does nothing once the account is a reviewer."""
    site_env(seeded_site)
    store = _store(seeded_site)
    registry = Registry(load_site_config(seeded_site).registry_dir)
    history = len(registry.journal.threshold_history("brick"))
    at = _open("thresholds", user="otto", role="admin")
    at.text_input(key="th_reason").set_value("before the demotion")
    remove_user(store, "otto")
    add_user(store, "otto", "reviewer", PASSWORD)
    at.button(key="th_save").click().run()
    assert not at.exception and not any("Saved threshold" in m.value for m in at.success)
    assert any("Saving a threshold is for admin users" in c.value for c in at.caption)
    assert len(registry.journal.threshold_history("brick")) == history

    at = _open("models", user="olga", role="admin")
    at.selectbox(key="md_bundle").set_value("v0002-fp32")
    at.text_input(key="md_promote_reason").set_value("before the demotion")
    remove_user(store, "olga")
    add_user(store, "olga", "reviewer", PASSWORD)
    at.button(key="FormSubmitter:promote-Promote").click().run()
    assert not at.exception and not any("is live for" in m.value for m in at.success)
    assert registry.journal.live("brick").bundle_id == "v0002-int8"
    assert registry.journal.events("brick")[-1]["actor"] != "olga"


def test_a_removed_account_ends_its_session(seeded_site, site_env) -> None:
    site_env(seeded_site)
    at = _open("overview", user="gone", role="admin")
    assert at.metric
    remove_user(_store(seeded_site), "gone")
    at.run()
    assert [t.value for t in at.title] == ["Sign in"]
    assert any("account was removed" in w.value for w in at.warning)


def test_open_mode_is_loopback_and_opt_in_only(seeded_site, open_mode) -> None:
    site = load_site_config(seeded_site)
    assert not login_free(site, "127.0.0.1")  # not configured: login everywhere
    opened = load_site_config(open_mode(seeded_site))
    assert login_free(opened, "127.0.0.1") and login_free(opened, "::1")
    for address in ("0.0.0.0", "10.0.0.5", "", None):
        assert not login_free(opened, address)
    for header in ("X-Forwarded-For", "Forwarded", "X-Real-IP", "x-forwarded-for"):
        # a local reverse proxy: its clients are not on this host
        assert not login_free(opened, "127.0.0.1", {header: "10.0.0.5", "Host": "line"})
    assert login_free(opened, "127.0.0.1", {"Host": "127.0.0.1:8501"})


@pytest.mark.parametrize("address", ["0.0.0.0", None])
def test_open_mode_still_asks_off_loopback(seeded_site, site_env, open_mode, address) -> None:
    from streamlit import config

    site_env(open_mode(seeded_site))
    config.set_option("server.address", address)
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    assert [t.value for t in at.title] == ["Sign in"]

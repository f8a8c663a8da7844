"""Every dashboard page under Streamlit's AppTest, on an empty site and on a seeded one.

Writes (threshold, review label, promotion, rollback) go through the page widgets and are read
back from the registry and the store.
"""

from __future__ import annotations

import io
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from inspection.core.config import load_site_config
from inspection.core.registry import Registry
from inspection.dashboard import review, thresholds
from inspection.dashboard.context import SITE_ENV, open_dashboard
from inspection.store.models import StationBacklog
from inspection.store.queries import QueueQuery
from inspection.store.store import InspectionFilter, Store
from inspection.store.users import add_user, user_identity

APP = Path(__file__).resolve().parents[2] / "apps" / "dashboard" / "app.py"
TIMEOUT = 60
PAGES = {
    "overview": "views/overview.py",
    "thresholds": "views/thresholds.py",
    "review": "views/review.py",
    "models": "views/models.py",
    "retraining": "views/retraining.py",
    "roi": "views/roi.py",
}


PASSWORD = "a long test password"


def _open(page: str, *, user: str | None = "dana", role: str = "reviewer") -> AppTest:
    """The page as ``user`` signed in with ``role`` (created in the site's store if missing);
    ``user=None``: not signed in (the login form, or open mode)."""
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    if user is not None:
        _ensure_user(user, role)
        at.session_state["identity"] = (user, role)  # as app_state keeps it
        at.session_state["login_at"] = datetime.now(timezone.utc)
    at.switch_page(PAGES[page]).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _ensure_user(name: str, role: str) -> None:
    store = _store(Path(os.environ[SITE_ENV]))
    if user_identity(store, name) is None:
        add_user(store, name, role, PASSWORD)
    store.engine.dispose()


def _store(site: Path) -> Store:
    config = load_site_config(site)
    return Store(config.store_url, config.blob_dir)


def test_first_use_creates_the_schema_of_an_empty_site(unmigrated_site, site_env) -> None:
    site_env(unmigrated_site)
    at = _open("overview", user=None)
    assert [t.value for t in at.title] == ["Sign in"] and not at.error
    assert "dashboard_users" in _tables(unmigrated_site)


def test_an_older_schema_is_named_not_migrated(unmigrated_site, site_env) -> None:
    from alembic import command

    from inspection.store.store import _alembic_config

    store = _store(unmigrated_site)
    config = _alembic_config()
    with store.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0004")
    store.engine.dispose()
    site_env(unmigrated_site)
    at = _open("overview", user=None)
    assert any(
        "has revision 0004" in e.value and "inspection db upgrade" in e.value for e in at.error
    )
    assert "dashboard_users" not in _tables(unmigrated_site)


def _errors(at: AppTest) -> list[str]:
    """Error messages other than the model-health alarm (which seeded brick may raise)."""
    return [e.value for e in at.error if "LINE-READY" not in e.value]


def _frame_with(at: AppTest, column: str):
    """The first table or dataframe on the page with ``column``."""
    frames = [d.value for d in [*at.table, *at.dataframe]]
    return next(f for f in frames if column in f.columns)


def _tables(site: Path) -> list[str]:
    from sqlalchemy import create_engine
    from sqlalchemy import inspect as sql_inspect

    return sql_inspect(
        create_engine(f"sqlite:///{site.parent / 'inspection.db'}")
    ).get_table_names()


@pytest.mark.parametrize(
    ("page", "hint"),
    [
        ("overview", "No inspections in this window yet"),
        ("thresholds", "No products yet"),
        ("review", "Nothing to review with these filters"),
        ("models", "The registry has no models yet"),
        ("retraining", "No retraining runs on this site yet"),
    ],
)
def test_empty_site_shows_a_helpful_empty_state(empty_site, site_env, page, hint) -> None:
    site_env(empty_site)
    at = _open(page)
    assert any(hint in info.value for info in at.info), [i.value for i in at.info]


def test_overview_counts_and_station_health(seeded_site, site_env) -> None:
    site_env(seeded_site)
    at = _open("overview")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Inspections"] == "600"
    store = _store(seeded_site)
    ng = store.count_inspections(InspectionFilter(verdict="NG"))
    assert metrics["NG"] == f"{ng:,}"
    assert at.table[0].value["station"].tolist() == ["line1-cam1", "line1-cam2", "line2-cam1"]
    assert any("PSI" in md.value for md in at.markdown)
    # The score charts draw only when asked: the first paint has volume and NG rate.
    assert len(at.get("vega_lite_chart")) == 2
    at.toggle(key="ov_drift_charts").set_value(True).run()
    assert len(at.get("vega_lite_chart")) > 2 and not at.exception

    at.selectbox(key="ov_product").set_value("grass").run()
    assert not at.exception
    grass = {m.label: m.value for m in at.metric}["Inspections"]
    assert 0 < int(grass.replace(",", "")) < 600


def test_overview_lists_forwarding_stations_and_alarms_a_late_backlog(
    seeded_site, site_env
) -> None:
    store = _store(seeded_site)
    now = datetime.now(timezone.utc)
    with store.session() as session:
        for station, oldest in [("line1-pc", None), ("line2-pc", 900.0)]:
            session.add(
                StationBacklog(
                    station_id=station, backlog_rows=0 if oldest is None else 4_000,
                    backlog_bytes=0 if oldest is None else 80_000_000, oldest_age_s=oldest,
                    rate_per_s=0.0, alarm_after_s=300.0, reported_at=now,
                )
            )  # fmt: skip
    store.engine.dispose()
    site_env(seeded_site)
    at = _open("overview")
    alarms = [e.value for e in at.error if "forwarding backlog alarm" in e.value]
    assert alarms == [
        "**Station line2-pc: forwarding backlog alarm** — oldest waiting 15 min (alarm after 5 min)"
    ]
    backlog = at.table[1].value
    assert backlog["station"].tolist() == ["line1-pc", "line2-pc"]
    assert backlog["alarm"].tolist() == ["ok", "⚠ oldest waiting 15 min (alarm after 5 min)"]
    assert backlog["waiting"].tolist() == ["0", "4,000"]
    assert backlog["bytes"].tolist() == ["0 B", "80.0 MB"]


def _brick_scores(site: Path) -> thresholds.LabelledScores:
    """What the thresholds page shows for brick by default: live bundle's validation + reviews."""
    board = open_dashboard(site)
    return thresholds.combine(
        [
            thresholds.validation_scores(board.registry, "brick", "v0002-int8"),
            thresholds.audit_scores(board.store, "brick"),
        ],
        "held-out + audit sample",
    )


def _audited(site: Path, n: int = 40, *, reviewed: bool = True) -> thresholds.LabelledScores:
    """``n`` random-audit brick parts the live bundle scored on its signed scale (every 8th
    NG), added to ``site``'s store, reviewed good or defect (``reviewed``); the sample a
    budget is chosen on."""
    board = open_dashboard(site)
    scale = thresholds.bundle_scale(board.registry, "brick", "v0002-int8")
    picture = io.BytesIO()
    Image.new("RGB", (8, 8), (90, 60, 40)).save(picture, format="PNG")
    sha = board.store.blobs.put(picture.getvalue(), ".png")
    for i in range(n):
        score = 0.9 if i % 8 == 7 else 0.05 + 0.4 * i / n
        row = board.store.add_inspection(
            created_at=datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(minutes=i),
            product="brick",
            station_id="line1-cam1", score=score, threshold=0.5,
            verdict="NG" if score >= 0.5 else "OK", model_version="brick/v0002",
            bundle_id="v0002-int8", latency_ms=10.0, width=8, height=8, image_sha=sha,
            audit_sample=True, audit_rate=200, score_scale=scale,
        )  # fmt: skip
        if reviewed:
            label = "defect" if score >= 0.5 else "good"
            review.submit(board.store, row.id, label=label, reviewer="qa")
    return thresholds.audit_scores(board.store, "brick", "v0002-int8", scale)


def test_threshold_slider_shows_tradeoffs_and_save_creates_a_version(seeded_site, site_env) -> None:
    site_env(seeded_site)
    at = _open("thresholds", user="alice", role="admin")
    at.slider(key="th_value_brick").set_value(0.62).run()
    assert not at.exception

    data = _brick_scores(seeded_site)
    expected = thresholds.tradeoff(data, 0.62)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Good parts rejected"] == f"{expected.false_alarm_rate:.1%}"
    assert metrics["Defects missed"] == f"{expected.miss_rate:.1%}"
    assert len(at.get("vega_lite_chart")) >= 4  # operating curve, histogram, ROC, PR

    at.text_input(key="th_reason").set_value("fewer false alarms on line 1")
    at.button(key="th_save").click().run()
    assert not at.exception and not _errors(at), _errors(at)
    current = Registry(load_site_config(seeded_site).registry_dir).journal.current_threshold(
        "brick"
    )
    assert (current.value, current.actor, current.reason) == (
        0.62,
        "alice",
        "fewer false alarms on line 1",
    )
    assert current.bundle_id == "v0002-int8"
    # the same run already shows the saved value: no stale "current" line or deltas
    assert any("Current threshold: **0.6200**" in c.value for c in at.caption)
    newest = _frame_with(at, "who").iloc[0]  # the history, newest version first
    assert (newest["version"], newest["value"], newest["who"]) == (
        current.number,
        "0.6200",
        "alice",
    )
    assert all(not m.delta for m in at.metric if m.label == "Good parts rejected"), [
        (m.label, m.delta) for m in at.metric
    ]


def test_threshold_save_needs_a_name(seeded_site, site_env, open_mode) -> None:
    site_env(open_mode(seeded_site))
    at = _open("thresholds", user=None)
    before = len(
        Registry(load_site_config(seeded_site).registry_dir).journal.threshold_history("brick")
    )
    at.text_input(key="th_reason").set_value("why not")
    at.button(key="th_save").click().run()
    assert any("Enter your name" in e.value for e in at.error)
    after = len(
        Registry(load_site_config(seeded_site).registry_dir).journal.threshold_history("brick")
    )
    assert after == before


@pytest.mark.parametrize(
    ("button", "suggest"),
    [
        ("use_f1", lambda data: thresholds.suggest_max_f1(data)),
        ("use_miss", lambda data: thresholds.suggest_for_miss_rate(data, 0.01)),
        ("use_budget", lambda data: thresholds.suggest_for_budget(data, 0.01)[0]),
    ],
)
def test_a_suggestion_applies_exactly_what_it_quotes(seeded_site, site_env, button, suggest):
    """A budget is chosen on the random audit sample alone, never on the held-out split the
    page's rates (and model health) judge it on."""
    audit = _audited(seeded_site)
    site_env(seeded_site)
    at = _open("thresholds")
    at.button(key=button).click().run()
    quoted = suggest(audit if button == "use_budget" else _brick_scores(seeded_site))
    applied = at.slider(key="th_value_brick").value
    assert applied == quoted.threshold == round(applied, thresholds.SAVED_DECIMALS)
    shown = thresholds.tradeoff(_brick_scores(seeded_site), applied)
    metrics = {m.label: m.value for m in at.metric}  # the page's rates at the applied value
    assert metrics["Good parts rejected"] == f"{shown.false_alarm_rate:.1%}"
    assert metrics["Defects missed"] == f"{shown.miss_rate:.1%}"


def test_a_save_at_the_budget_controls_value_records_the_budget(seeded_site, site_env) -> None:
    """Saved as the budget control chose it: the version records the budget (a station that
    re-calibrates the bundle re-derives the threshold at it); moved by hand: none."""
    audit = _audited(seeded_site)
    site_env(seeded_site)
    registry = Registry(load_site_config(seeded_site).registry_dir)
    at = _open("thresholds", user="alice", role="admin")
    at.button(key="use_budget").click().run()
    at.text_input(key="th_reason").set_value("1 % budget")
    at.button(key="th_save").click().run()
    assert not at.exception and not _errors(at), _errors(at)
    saved = registry.journal.current_threshold("brick")
    quoted = thresholds.suggest_for_budget(audit, 0.01)[0]
    assert (saved.value, saved.budget) == (quoted.threshold, 0.01)
    assert any("(false-reject budget 1.0%)" in m.value for m in at.success)
    assert _frame_with(at, "budget")["budget"].tolist()[0] == "1.0%"

    at.button(key="use_budget").click().run()
    at.slider(key="th_value_brick").set_value(0.62).run()  # by hand, then back by hand
    at.slider(key="th_value_brick").set_value(quoted.threshold).run()
    at.text_input(key="th_reason").set_value("by hand")
    at.button(key="th_save").click().run()
    assert not at.exception and not _errors(at), _errors(at)
    saved = registry.journal.current_threshold("brick")
    assert (saved.value, saved.budget) == (quoted.threshold, None)
    assert _frame_with(at, "budget")["budget"].tolist()[:2] == ["", "1.0%"]


def test_review_label_reaches_the_store(seeded_site, site_env) -> None:
    site_env(seeded_site)
    at = _open("review", user="bob", role="reviewer")
    assert len(at.image) == 3  # image, anomaly overlay, mask outline
    caption = next(c.value for c in at.caption if "inspections" in c.value)
    total_before = int(caption.split(" inspections")[0].replace(",", ""))
    first_id = at.dataframe[0].value["id"].iloc[0]

    at.selectbox(key="rv_defect_type").set_value("crack")
    at.button(key="rv_btn_defect").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("True defect recorded" in s.value for s in at.success)

    store = _store(seeded_site)
    row = store.get_inspection(first_id)
    assert (row.review_label, row.review_defect_type, row.reviewed_by) == ("defect", "crack", "bob")
    assert [r.reviewer for r in store.reviews_of(first_id)] == ["bob"]
    caption = next(c.value for c in at.caption if "inspections" in c.value)
    assert int(caption.split(" inspections")[0].replace(",", "")) == total_before - 1


def test_the_audit_sample_is_reviewed_blind_and_oldest_first(seeded_site, site_env) -> None:
    """No verdict, score or threshold and the same artefacts (the image alone) for OK and NG
    audit parts alike, oldest first (an AppTest run of the page, not a browser)."""
    _audited(seeded_site, 16, reviewed=False)
    site_env(seeded_site)
    at = _open("review", user="bob", role="reviewer")
    at.selectbox(key="rv_product").set_value("brick").run()
    at.selectbox(key="rv_kind").set_value("Audit sample").run()
    assert not at.exception
    frame = at.dataframe[0].value
    assert not {"score", "threshold", "verdict"} & set(frame.columns)
    store = _store(seeded_site)
    rows = [store.get_inspection(i) for i in frame["id"]]
    assert {r.verdict for r in rows} == {"OK", "NG"}  # NG parts are listed, not shown as NG
    assert [r.created_at for r in rows] == sorted(r.created_at for r in rows)
    for position in range(len(rows)):
        at.session_state["rv_cursor"] = position
        at.run()
        assert len(at.image) == 1  # the image alone, whatever the verdict
        text = " ".join(m.value for m in at.markdown)
        assert "score" not in text and ":red[NG]" not in text and "threshold" not in text
    assert any("windows of 50" in i.value for i in at.info)


def test_labelling_the_last_item_still_says_it_was_recorded(seeded_site, site_env) -> None:
    site_env(seeded_site)
    store = _store(seeded_site)
    pending = review.queue_page(store, QueueQuery(), page_size=10_000).rows
    for row in pending[1:]:  # everything but one already labelled
        store.add_review(row.id, label="good", reviewer="carl")
    at = _open("review", user="bob", role="reviewer")
    at.button(key="rv_btn_false_alarm").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("False alarm recorded" in s.value for s in at.success)
    assert any("Nothing to review" in i.value for i in at.info)
    assert store.get_inspection(pending[0].id).review_label == "false_alarm"


def test_review_needs_a_name(seeded_site, site_env, open_mode) -> None:
    site_env(open_mode(seeded_site))
    at = _open("review", user=None)
    first_id = at.dataframe[0].value["id"].iloc[0]
    at.button(key="rv_btn_false_alarm").click().run()
    assert any("Enter your name" in e.value for e in at.error)
    assert _store(seeded_site).get_inspection(first_id).review_label is None


def test_review_paging(seeded_site, site_env) -> None:
    site_env(seeded_site)
    at = _open("review")
    first_page = at.dataframe[0].value["id"].tolist()
    at.button(key="rv_next_page").click().run()
    assert not at.exception
    second_page = at.dataframe[0].value["id"].tolist()
    assert second_page and not set(first_page) & set(second_page)
    at.button(key="rv_prev_page").click().run()
    assert at.dataframe[0].value["id"].tolist() == first_page


def test_models_promote_and_rollback_with_audit(seeded_site, site_env) -> None:
    site_env(seeded_site)
    registry = Registry(load_site_config(seeded_site).registry_dir)
    at = _open("models", user="carol", role="admin")
    table = _frame_with(at, "bundle")
    assert set(table["bundle"]) == {"v0001-fp32", "v0001-int8", "v0002-fp32", "v0002-int8"}
    assert table.loc[table["live"], "bundle"].tolist() == ["v0002-int8"]
    comparison = _frame_with(at, "Δ int8 vs fp32")
    assert "fp32" in comparison.columns

    at.selectbox(key="md_bundle").set_value("v0002-fp32")
    at.text_input(key="md_promote_reason").set_value("compare FP32 on line 1")
    at.button(key="FormSubmitter:promote-Promote").click().run()
    # 60 held-out good parts cannot show a 1 % budget: serving it takes an explicit choice (#94)
    refused = [e.value for e in at.error if "not promoted" in e.value]
    assert refused and "is NOT LINE-READY" in refused[0], [e.value for e in at.error]
    assert registry.journal.live("brick").bundle_id == "v0002-int8"
    at.checkbox(key="md_not_ready").check()
    at.button(key="FormSubmitter:promote-Promote").click().run()
    assert not at.exception and not _errors(at), _errors(at)
    assert registry.journal.live("brick").bundle_id == "v0002-fp32"
    event = registry.journal.events("brick")[-1]
    assert event["actor"] == "carol" and "; promoted NOT LINE-READY (" in event["reason"]

    at.text_input(key="md_rollback_reason").set_value("back to INT8")
    at.button(key="FormSubmitter:rollback-Roll back").click().run()
    assert not _errors(at), _errors(at)
    assert registry.journal.live("brick").bundle_id == "v0002-int8"
    assert registry.journal.events("brick")[-1]["action"] == "rollback"


def test_models_page_opens_on_the_product_its_link_names(seeded_site, site_env) -> None:
    """models?product=grass shows grass, as thresholds?product=grass does, and the address
    follows the product chosen."""
    site_env(seeded_site)
    _ensure_user("dana", "reviewer")
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.session_state["identity"] = ("dana", "reviewer")
    at.session_state["login_at"] = datetime.now(timezone.utc)
    at.query_params["product"] = "grass"
    at.switch_page(PAGES["models"]).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="md_product").value == "grass"
    at.selectbox(key="md_product").set_value("brick").run()
    assert at.query_params["product"] == "brick"


def test_models_promote_needs_who_and_why(seeded_site, site_env) -> None:
    site_env(seeded_site)
    at = _open("models", user="carol", role="admin")
    at.button(key="FormSubmitter:promote-Promote").click().run()
    assert any("needs who" in e.value for e in at.error)
    registry = Registry(load_site_config(seeded_site).registry_dir)
    assert registry.journal.live("brick").bundle_id == "v0002-int8"


def test_retraining_shows_champion_vs_challenger(seeded_site, site_env) -> None:
    site_env(seeded_site)
    at = _open("retraining")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics == {"Decision": "promoted", "Champion": "v0001-fp32", "Challenger": "v0002-int8"}
    comparison = at.dataframe[1].value
    assert comparison.loc["image_auroc", "Δ"] == pytest.approx(0.981 - 0.962)


def test_roi_page_offers_only_this_sites_products(seeded_site, site_env) -> None:
    site_env(seeded_site)  # brick and grass: their configs name no reference image
    at = _open("roi", user="rita", role="reviewer")
    assert any("No product of this site names a reference image" in i.value for i in at.info)


def test_roi_page_reads_the_sites_own_product_configs(seed, tmp_path, site_env) -> None:
    """The checkout's configs/products/plate.yaml (the working directory's) is not this site's:
    its folder has no product configs, so nothing is offered (or saved over another site's)."""
    from inspection.store.store import Store

    site = seed.write_site(tmp_path / "plate-site", ["plate"])
    config = load_site_config(site)
    Store.migrated(config.store_url, config.blob_dir).engine.dispose()
    site_env(site)
    at = _open("roi", user="rita", role="reviewer")
    assert any("No product of this site names a reference image" in i.value for i in at.info)


def test_roi_page_on_a_plate_site(seed, tmp_path, site_env, open_mode) -> None:
    import shutil

    from inspection.core.product_config import load_product_config
    from inspection.store.store import Store

    site = seed.write_site(tmp_path / "plate-site", ["plate"])
    (site.parent / "products").mkdir()
    shutil.copy(APP.parents[2] / "configs" / "products" / "plate.yaml", site.parent / "products")
    config = load_site_config(site)
    Store.migrated(config.store_url, config.blob_dir).engine.dispose()
    site_env(open_mode(site))  # no login on localhost: the typed name is recorded
    at = _open("roi", user=None)
    assert at.selectbox(key="roi_product").value == "plate"
    reference = Path(load_product_config("plate", config.configs).reference)
    if not reference.is_file():  # `inspection data hires` not run here: say where it belongs
        assert any(str(reference) in w.value for w in at.warning), [w.value for w in at.warning]
        return
    assert '"reference_size": [2048, 2048]' in at.text_area(key="roi_text").value
    at.button(key="roi_save").click().run()
    assert any("who" in e.value for e in at.error), [e.value for e in at.error]


def test_no_page_has_a_bare_string_streamlit_would_render() -> None:
    """Streamlit's magic writes a page's bare expressions to the page: the docstring of
    ``TEXT_COLUMNS`` ("The bundle table's columns that are not figures.") was shown on every
    Models page. Only the module docstring, Streamlit leaves out, may be a bare string."""
    import ast

    def bare_strings(body: list[ast.stmt]) -> list[ast.Expr]:
        """Bare string statements Streamlit's magic reaches: the page's top level and the
        blocks under it (``with``, ``if``, ``for``), not function or class bodies."""
        found = []
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            value = getattr(node, "value", None)
            if isinstance(node, ast.Expr) and isinstance(value, ast.Constant):
                found += [node] if isinstance(value.value, str) else []
            for field in ("body", "orelse", "finalbody", "handlers"):
                found += bare_strings(getattr(node, field, []))
        return found

    shown = [
        f"{page.name}:{node.lineno}: {node.value.value[:60]!r}"
        for page in sorted((APP.parent / "views").glob("*.py"))
        for node in bare_strings(ast.parse(page.read_text(encoding="utf-8")).body[1:])
    ]
    assert shown == []

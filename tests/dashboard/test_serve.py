"""The server's warm-up and the sign-in's warm-up run one list of the Overview's reads
(``app_state.read_overview``); the server's keeps no result."""

from __future__ import annotations

import gc

from sqlalchemy import event

from inspection.dashboard import app_state, serve


def _statements(site: str, call) -> int:
    """How many SQL statements ``call()`` sends to the site's store."""
    sent = []
    engine = app_state.dashboard().store.engine
    listener = lambda *args: sent.append(args[2])  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        call()
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    return len(sent)


def test_overview_reads_are_cached_once_and_the_server_keeps_none(seeded_site, site_env) -> None:
    site_env(seeded_site)
    site = app_state.site_key()
    app_state.invalidate()
    assert _statements(site, lambda: app_state.read_overview(site)) > 0
    assert _statements(site, lambda: app_state.read_overview(site)) == 0  # all from the cache
    serve.warm_up()
    gc.unfreeze()
    assert _statements(site, lambda: app_state.read_overview(site)) > 0  # nothing kept
    app_state.invalidate()

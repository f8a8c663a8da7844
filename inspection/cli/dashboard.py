"""``inspection dashboard``: run the Streamlit review dashboard for a site."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from inspection.cli._site import SITE_OPTION
from inspection.cli.console import check_port_free
from inspection.core.config import SiteConfig, load_site_config
from inspection.core.errors import ConfigError
from inspection.core.signing import SIGNING_KEY_ENV, dashboard_key_path

REPO_ROOT = Path(__file__).resolve().parents[2]
APP = REPO_ROOT / "apps" / "dashboard" / "asgi.py"
commands = typer.Typer()


def streamlit_command(app: Path, *, host: str, port: int) -> list[str]:
    """``streamlit run`` of ``app`` on ``host:port`` (headless, no file watcher), through
    ``inspection.dashboard.serve``: the pages' imports are done before a browser comes."""
    options = {
        "server.address": host,
        "server.port": str(port),
        "server.headless": "true",
        "browser.gatherUsageStats": "false",
        "client.toolbarMode": "minimal",
        "server.fileWatcherType": "none",
    }
    flags = [item for name, value in options.items() for item in (f"--{name}", value)]
    return [sys.executable, "-m", "inspection.dashboard.serve", "run", str(app), *flags]


def dashboard_env(site: Path | None) -> dict[str, str]:
    """Environment for the dashboard process: site config, an importable ``inspection``, and
    the dashboard's own decision key when the site has one (never the site's bundle key)."""
    # deferred: SQLAlchemy and Alembic, not needed for --help
    from inspection.dashboard.context import SITE_ENV

    env = dict(os.environ)
    if site is not None:
        env[SITE_ENV] = str(site.resolve())
    own_key = dashboard_key_path(load_site_config(site).registry_dir)
    if own_key.is_file():
        env.setdefault(SIGNING_KEY_ENV, str(own_key.resolve()))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    return env


PORT_OPTION = typer.Option(8501, "--port", help="Port to serve on.")
HOST_OPTION = typer.Option("127.0.0.1", "--host", help="Address to bind (loopback by default).")


def check_bind(host: str, users: int, *, open_on_localhost: bool = False) -> str:
    """Refuse a bind nobody could log in to; returns a warning for the operator ('' if none)."""
    # deferred: SQLAlchemy and Alembic, not needed for --help
    from inspection.dashboard.context import LOOPBACK

    if host in LOOPBACK and open_on_localhost:
        return "no login on localhost (dashboard_open_on_localhost: true in the site config)"
    if users == 0 and host not in LOOPBACK:
        raise ConfigError(
            f"the dashboard on {host!r} needs a login, and this site has no dashboard users: "
            "add one with 'inspection users add NAME --role admin' first"
        )
    if users == 0:
        return "no dashboard users yet: add one with 'inspection users add NAME --role admin'"
    return ""


def _user_count(site: SiteConfig) -> int:
    # deferred: SQLAlchemy and Alembic, not needed for --help
    from inspection.store.store import Store
    from inspection.store.users import list_users

    store = Store(site.store_url, site.blob_dir)
    try:
        store.ensure_schema()  # first use creates the schema
        return len(list_users(store))
    finally:
        store.engine.dispose()


@commands.command("dashboard")
def dashboard(site: Path = SITE_OPTION, port: int = PORT_OPTION, host: str = HOST_OPTION) -> None:
    """Open the review dashboard: overview, thresholds, review queue, models, retraining.

    Reviewers and admins sign in (``inspection users add``); reviewers label, admins also
    change thresholds and live bundles. Every write is recorded with the signed-in name.
    """
    check_port_free(host, port)
    site_config = load_site_config(site)  # fail here, with the key's name, not in the browser
    warning = check_bind(
        host, _user_count(site_config), open_on_localhost=site_config.dashboard_open_on_localhost
    )
    if warning:
        typer.echo(f"note: {warning}")
    if not APP.is_file():
        raise ConfigError(
            f"dashboard app not found at {APP}; reinstall inspection (its wheel has it)"
        )
    typer.echo(f"dashboard on http://{host}:{port} (Ctrl+C to stop)")
    # Streamlit takes this process's place: stopping it (Ctrl+C, kill, systemd) stops the server,
    # where a child process kept serving after its parent was killed.
    command, env = streamlit_command(APP, host=host, port=port), dashboard_env(site)
    os.execve(command[0], command, env)

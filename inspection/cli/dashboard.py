"""``inspection dashboard``: run the Streamlit review dashboard for a site."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import typer

from inspection.core.config import load_site_config
from inspection.core.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]
APP = REPO_ROOT / "apps" / "dashboard" / "app.py"


def streamlit_command(app: Path, *, host: str, port: int) -> list[str]:
    """The ``streamlit run`` command line for ``app`` on ``host:port`` (headless, no telemetry)."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(app),
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--client.toolbarMode",
        "minimal",
    ]


def dashboard_env(site: Path | None) -> dict[str, str]:
    """Environment for the dashboard process: site config and an importable ``inspection``."""
    from inspection.dashboard.context import SITE_ENV

    env = dict(os.environ)
    if site is not None:
        env[SITE_ENV] = str(site.resolve())
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    return env


SITE_OPTION = typer.Option(None, "--site", help="Site config YAML (default: configs/site.yaml).")
PORT_OPTION = typer.Option(8501, "--port", help="Port to serve on.")
HOST_OPTION = typer.Option("127.0.0.1", "--host", help="Address to bind (loopback by default).")
NO_LOGIN_OPTION = typer.Option(
    False,
    "--insecure-no-login",
    help="Allow a non-loopback address although the dashboard has no login "
    "(only behind an authenticating proxy).",
)
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def check_bind(host: str, insecure_no_login: bool) -> None:
    """The dashboard writes labels and thresholds and has no login: loopback only, unless
    the operator states that an authenticating proxy sits in front."""
    if host not in LOOPBACK and not insecure_no_login:
        raise ConfigError(
            f"the dashboard has no login; binding it to {host!r} would let anyone on the network "
            "label results and change thresholds. Keep --host 127.0.0.1 and use an SSH tunnel, "
            "or put an authenticating proxy in front and pass --insecure-no-login"
        )


def dashboard(
    site: Path = SITE_OPTION,
    port: int = PORT_OPTION,
    host: str = HOST_OPTION,
    insecure_no_login: bool = NO_LOGIN_OPTION,
) -> None:
    """Open the review dashboard: overview, thresholds, review queue, models, retraining."""
    check_bind(host, insecure_no_login)
    if site is not None:
        load_site_config(site)  # fail here, with the key's name, rather than in the browser
    if not APP.is_file():
        raise ConfigError(f"dashboard app not found at {APP}; run from a source checkout")
    typer.echo(f"dashboard on http://{host}:{port} (Ctrl+C to stop)")
    try:
        completed = subprocess.run(
            streamlit_command(APP, host=host, port=port), env=dashboard_env(site), check=False
        )
    except KeyboardInterrupt:
        return
    raise typer.Exit(completed.returncode)


def register(app: typer.Typer) -> None:
    app.command("dashboard")(dashboard)

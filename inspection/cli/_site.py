"""``--site``, the option of every command that works on a site: the YAML given, else
``INSPECTION_SITE_CONFIG`` (announced on stderr), else ``configs/site.yaml``; ``site_registry``
opens its registry. ``ProductArg`` is the product argument, ``group`` a module's command group.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape

from inspection.cli.console import screen
from inspection.core.config import DEFAULT_SITE_CONFIG, SITE_CONFIG_ENV, load_site_config
from inspection.core.registry import Registry

err_console = screen(stderr=True)


def site_option(what: str = "Site config YAML", *, announce: bool = True) -> Any:
    """The ``--site`` option; ``what`` starts its help text. ``announce=False``: the command
    says itself which site it used (``announce_env_site``)."""
    return typer.Option(
        None,
        "--site",
        envvar=SITE_CONFIG_ENV,
        show_envvar=True,
        callback=_announce if announce else None,
        help=f"{what} (default: ${SITE_CONFIG_ENV}, else {DEFAULT_SITE_CONFIG}).",
    )


def group(name: str, help: str) -> typer.Typer:
    """A command group ``inspection <name> ...`` (found by ``inspection.cli``)."""
    return typer.Typer(name=name, help=help, no_args_is_help=True)


def _announce(ctx: typer.Context, param: typer.CallbackParam, value: Any) -> Any:
    if value is not None and param.name and site_from_env(ctx, param.name):
        announce_env_site(value)
    return value


def announce_env_site(site: object) -> None:
    err_console.print(
        f"[dim]site config: {escape(str(site))} (from {SITE_CONFIG_ENV})[/]",
        highlight=False,
        soft_wrap=True,
    )


def site_from_env(ctx: typer.Context, name: str = "site") -> bool:
    """Whether the command's ``--site`` value came from ``INSPECTION_SITE_CONFIG`` (not given)."""
    source = ctx.get_parameter_source(name)  # typer's own click: compare the enum by name
    return getattr(source, "name", None) == "ENVIRONMENT"


SITE_OPTION = site_option()
ProductArg = Annotated[str, typer.Argument(help="Product name.")]


def site_registry(site: str | None) -> Registry:
    """The registry of the site config ``site`` names."""
    return Registry(load_site_config(site).registry_dir)

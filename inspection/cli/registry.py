"""``inspection registry serve``: the central catalog stations pull live bundles from."""

from __future__ import annotations

import typer

from inspection.cli._site import group, site_option
from inspection.core.config import load_site_config

SITE_OPTION = site_option()

registry_app = group("registry", "The central model registry over HTTP.")


@registry_app.command("serve")
def serve(
    site: str = SITE_OPTION,
    host: str = typer.Option("127.0.0.1", help="Bind address (0.0.0.0 to serve the plant LAN)."),
    port: int = typer.Option(8700, min=1, max=65535, help="Port."),
) -> None:
    """Serve live bundles per product to stations (bearer tokens from `inspection tokens`)."""
    # deferred: uvicorn, alembic, fastapi, sqlalchemy, starlette
    import uvicorn

    from inspection.distribution.server import create_catalog_app
    from inspection.store.store import Store

    site_config = load_site_config(site)
    store = Store.migrated(site_config.store_url, site_config.blob_dir)  # like serve
    app = create_catalog_app(site_config.registry_dir, store)
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)

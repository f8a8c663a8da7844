"""The catalog over HTTP (``inspection registry serve``): every route but ``/healthz`` needs a
station token (``inspection tokens create``) as ``Authorization: Bearer <token>``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import FileResponse, JSONResponse

from inspection.core.errors import InspectionError, RegistryError
from inspection.core.registry import Registry
from inspection.distribution.catalog import CATALOG_SCHEMA_VERSION, archive_for, live_entry
from inspection.service.auth import bearer_token
from inspection.service.errors import RequestError
from inspection.store.store import Store
from inspection.store.tokens import station_for_token

log = logging.getLogger(__name__)


def authenticate(request: Request) -> str:
    """The station id of the request's bearer token; 401 otherwise."""
    token = bearer_token(request)
    if token is None:
        raise RequestError(401, "missing API token: send 'Authorization: Bearer <token>'")
    station_id = station_for_token(request.app.state.store, token)
    if station_id is None:
        raise RequestError(401, "invalid or revoked API token")
    return station_id


StationId = Annotated[str, Depends(authenticate)]
Products = Annotated[list[str] | None, Query(alias="product")]


def create_catalog_app(registry_dir: str | Path, store: Store) -> FastAPI:
    """The catalog app for the registry at ``registry_dir``; tokens are checked in ``store``."""
    app = FastAPI(title="inspection registry catalog", version=str(CATALOG_SCHEMA_VERSION))
    app.state.store = store
    app.state.registry = Registry(registry_dir)
    _install_handlers(app)
    _add_routes(app, app.state.registry)
    return app


def _install_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestError)
    async def _request_error(_request: Request, exc: RequestError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(InspectionError)
    async def _inspection_error(_request: Request, exc: InspectionError) -> JSONResponse:
        status = 404 if isinstance(exc, RegistryError) else 500
        return JSONResponse({"detail": str(exc)}, status_code=status)


def _add_routes(app: FastAPI, registry: Registry) -> None:
    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "products": registry.bundles.products()}

    @app.get("/v1/catalog")
    def catalog(station: StationId, products: Products = None) -> dict[str, Any]:
        wanted = products or registry.bundles.products()
        entries = {name: live_entry(registry, name) for name in wanted}
        log.debug("catalog for %s: %s", station, sorted(entries))
        return {
            "schema_version": CATALOG_SCHEMA_VERSION,
            "bundles": {k: e.to_mapping() for k, e in entries.items() if e is not None},
            "not_live": sorted(k for k, e in entries.items() if e is None),
        }

    @app.get("/v1/catalog/{product}")
    def catalog_product(product: str, _station: StationId) -> dict[str, Any]:
        entry = live_entry(registry, product)
        if entry is None:
            raise RequestError(404, f"product {product!r} has no live bundle on this registry")
        return entry.to_mapping()

    @app.get("/v1/bundles/{product}/{bundle_id}/archive")
    def archive(product: str, bundle_id: str, _station: StationId) -> FileResponse:
        tar_path, manifest = archive_for(registry, product, bundle_id)
        return FileResponse(
            tar_path,
            media_type="application/x-tar",
            headers={"X-Archive-Sha256": manifest.archive_sha256},
        )

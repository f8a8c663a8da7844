"""The dashboard's handles on a site: its config, results store and model registry."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from inspection.core.config import SITE_CONFIG_ENV, SiteConfig, load_site_config
from inspection.core.registry import Registry
from inspection.store.queries import distinct_values
from inspection.store.store import Store

LOOPBACK: tuple[str, ...] = ("127.0.0.1", "localhost", "::1")
SITE_ENV = SITE_CONFIG_ENV
"""Environment variable naming the site YAML the dashboard opens (default configs/site.yaml)."""


@dataclass(frozen=True)
class Dashboard:
    """Everything a page reads from or writes to."""

    site: SiteConfig
    store: Store
    registry: Registry

    @property
    def products(self) -> list[str]:
        """Products known to the site config, the registry or the store, sorted."""
        names = set(self.site.products) | set(self.registry.bundles.products())
        names |= set(distinct_values(self.store, "product"))
        return sorted(names)


def open_dashboard(site_path: str | Path | None = None) -> Dashboard:
    """Open the site's store (an empty one gets its schema; an older one raises) and registry."""
    site = load_site_config(site_path or None)
    store = Store(site.store_url, site.blob_dir)
    store.ensure_schema()
    return Dashboard(site=site, store=store, registry=Registry(site.registry_dir))


FORWARDED: tuple[str, ...] = ("x-forwarded-for", "forwarded", "x-real-ip")
"""Headers a reverse proxy adds: a request bearing one came from beyond the loopback."""


def login_free(
    site: SiteConfig, address: str | None, headers: Mapping[str, str] | None = None
) -> bool:
    """Whether a dashboard bound to ``address`` may run without login: only on loopback, when
    the site config says so, and never for a request a reverse proxy forwarded."""
    proxied = any(name.lower() in FORWARDED for name in (headers or {}))
    return site.dashboard_open_on_localhost and (address or "") in LOOPBACK and not proxied

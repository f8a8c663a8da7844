"""Every link to a PostgreSQL store: TLS verified against the site CA (``verify-full``), or
plaintext only when the config says so, warned at each start. The forwarder's CA is
``central.ca_file`` (``link_args``); every other engine's its ``store_url``'s ``sslrootcert``
(``store_link_args``; ``sslmode=disable`` in the URL is the development opt-out)."""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import make_url

from inspection.core.errors import ConfigError

log = logging.getLogger(__name__)

PLAINTEXT_WARNING = (
    "central.allow_plaintext: true: the link to the central store at %s is NOT verified TLS; "
    "anyone on the wire can read the station's password and results or pose as the server. "
    "Set central.ca_file to the site CA instead."
)
STORE_PLAINTEXT_WARNING = (
    "store_url asks sslmode=disable: the link to the PostgreSQL store at %s is NOT verified "
    "TLS; anyone on the wire can read its password and results or pose as the server. Put "
    "sslrootcert=<the site CA> in store_url instead."
)


def store_link_args(url: str) -> dict[str, str]:
    """libpq arguments for a ``store_url`` engine: ``verify-full`` against the URL's
    ``sslrootcert`` (``sslmode=disable``: the warned development opt-out); else ConfigError."""
    parsed = make_url(url)
    if parsed.query.get("sslmode") == "disable":
        log.warning(STORE_PLAINTEXT_WARNING, parsed.host)
        return {}
    if not parsed.query.get("sslrootcert"):
        raise ConfigError(
            "store_url: no site CA to verify the PostgreSQL server's certificate: add "
            "?sslrootcert=<the CA that signed it> to store_url (or ?sslmode=disable, "
            "development only)"
        )
    return link_args(url, None, setting="store_url")


def link_args(
    url: str, ca_file: Path | None, *, allow_plaintext: bool = False, setting: str = "central.url"
) -> dict[str, str]:
    """libpq arguments for the central ``url``: ``verify-full`` against ``ca_file`` (or the URL's
    ``sslrootcert``); ConfigError for a weaker mode or no CA, unless ``allow_plaintext`` (warned)."""
    parsed = make_url(url)
    if allow_plaintext:
        log.warning(PLAINTEXT_WARNING, parsed.host)
        return {}
    mode = parsed.query.get("sslmode", "verify-full")
    if mode != "verify-full":
        raise ConfigError(
            f"{setting} asks sslmode={mode}: a store link is TLS verified against the site CA "
            "(verify-full); drop sslmode from the URL, or switch plaintext on (development only)"
        )
    root = ca_file or parsed.query.get("sslrootcert")
    if not root:
        raise ConfigError(
            "central: no site CA to verify the central PostgreSQL's certificate: set "
            "central.ca_file to the CA that signed it (or central.allow_plaintext: true, "
            "development only)"
        )
    if not Path(str(root)).is_file():
        raise ConfigError(f"central.ca_file {root}: no such file")
    return {"sslmode": "verify-full", "sslrootcert": str(root)}

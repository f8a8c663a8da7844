"""The station's link to the central PostgreSQL: TLS verified against the site CA
(``sslmode=verify-full``: the server's certificate must chain to the CA and name the host), or
plaintext only when the station's config switches it on, logged as a warning at each start."""

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


def link_args(url: str, ca_file: Path | None, *, allow_plaintext: bool = False) -> dict[str, str]:
    """libpq connection arguments for the central ``url``: ``verify-full`` against ``ca_file``
    (or the URL's own ``sslrootcert``). Raises ConfigError for a URL asking a weaker
    ``sslmode`` or a missing CA, unless ``allow_plaintext`` (then warns and adds nothing)."""
    parsed = make_url(url)
    if allow_plaintext:
        log.warning(PLAINTEXT_WARNING, parsed.host)
        return {}
    mode = parsed.query.get("sslmode", "verify-full")
    if mode != "verify-full":
        raise ConfigError(
            f"central.url asks sslmode={mode}: the central link is TLS verified against the site "
            "CA (verify-full); drop sslmode from the URL, or set central.allow_plaintext: true "
            "(development only)"
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

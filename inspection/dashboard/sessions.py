"""Dashboard sessions that survive a reload: a signed, expiring token kept in a browser cookie.

After a login the page sets a cookie holding an ``itsdangerous`` token (the user's name, signed
with the site's session secret and time-stamped); a reload's new Streamlit session reads it
back from ``st.context.cookies`` for ``SESSION_HOURS``. Signing out clears the cookie.

The secret lives beside the site's blobs (``dashboard-session.key``, mode 0600), created on
first use; ``INSPECTION_DASHBOARD_SECRET`` overrides it (several dashboard replicas).
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from itsdangerous import BadSignature, URLSafeTimedSerializer

from inspection.core.config import SiteConfig

SESSION_HOURS = 8
"""A login lasts this long; then the form asks again."""
SECRET_ENV = "INSPECTION_DASHBOARD_SECRET"
SECRET_FILE = "dashboard-session.key"
_SALT = "inspection-dashboard-session"


def secret_path(site: SiteConfig) -> Path:
    """Where the site's session secret is kept: beside its blob folder."""
    return Path(site.blob_dir).resolve().parent / SECRET_FILE


def session_secret(site: SiteConfig) -> str:
    """The site's session-signing secret (env override, else the file, created 0600 once)."""
    override = os.environ.get(SECRET_ENV, "").strip()
    if override:
        return override
    path = secret_path(site)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process created it first
        else:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(secrets.token_hex(32))
    return path.read_text(encoding="utf-8").strip()


def _serializer(secret: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret, salt=_SALT)


def issue_token(secret: str, name: str) -> str:
    """A URL-safe signed token naming ``name``, time-stamped now."""
    return _serializer(secret).dumps({"user": name})


def verify_token(secret: str, token: str | None, *, max_age_s: float) -> str | None:
    """The user name in ``token`` when its signature is good and it is younger than
    ``max_age_s`` seconds; ``None`` otherwise (tampered, expired, another site's, empty)."""
    if not token:
        return None
    try:
        data = _serializer(secret).loads(token, max_age=max_age_s)
    except BadSignature:  # SignatureExpired is a BadSignature
        return None
    name = data.get("user") if isinstance(data, dict) else None
    return name if isinstance(name, str) and name else None


def cookie_name(port: int | str) -> str:
    """Cookies are per host, not per port: each dashboard port keeps its own."""
    return f"inspection_session_{port}"


def cookie_script(name: str, token: str, max_age_s: int) -> str:
    """A ``<script>`` that stores ``token`` in cookie ``name`` (``max_age_s`` 0 clears it)."""
    value = json.dumps(f"{name}={token}; Max-Age={int(max_age_s)}; Path=/; SameSite=Strict")
    return f"<script>document.cookie = {value};</script>"

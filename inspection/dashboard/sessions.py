"""Dashboard sessions that survive a reload: a signed, expiring token kept in a browser cookie.

The cookie holds an ``itsdangerous`` token (the user's name, signed and time-stamped) for
``SESSION_HOURS``. The server sets it, never the page's JavaScript, so it is ``HttpOnly``: the
page posts a one-time nonce (``hand_over``) to ``SESSION_PATH`` and the answer carries the
``Set-Cookie``. The secret lives beside the site's blobs (0600) unless the environment gives it.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from pathlib import Path

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from inspection.core.config import SiteConfig

SESSION_PATH = "/_inspection/session"
"""Where the page posts a ``hand_over`` nonce for the server to set the session cookie."""
HANDOVER_S = 60.0
"""A nonce not posted within this long sets nothing."""
_HANDOVERS: dict[str, tuple[str, str, int, float]] = {}
"""nonce -> (cookie name, token, max age in s, monotonic expiry)."""
_LOCK = threading.Lock()
SESSION_HOURS = 8
"""A login lasts this long; then the form asks again."""
SECRET_ENV = "INSPECTION_DASHBOARD_SECRET"
SECRET_FILE = "dashboard-session.key"
_SALT = "inspection-dashboard-session"


def secret_path(site: SiteConfig) -> Path:
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
    return _serializer(secret).dumps({"user": name})


def verify_token(secret: str, token: str | None, *, max_age_s: float) -> str | None:
    """The user name in ``token`` when signed here and younger than ``max_age_s``, else None."""
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


def hand_over(name: str, token: str, max_age_s: int) -> str:
    """A one-time nonce under which ``SESSION_PATH`` sets cookie ``name`` (max age 0: clear)."""
    nonce = secrets.token_urlsafe(24)
    now = time.monotonic()
    with _LOCK:
        for stale in [n for n, entry in _HANDOVERS.items() if entry[3] < now]:
            del _HANDOVERS[stale]
        _HANDOVERS[nonce] = (name, token, int(max_age_s), now + HANDOVER_S)
    return nonce


def cookie_script(nonce: str) -> str:
    """A ``<script>`` that posts ``nonce`` to ``SESSION_PATH`` (the server sets the cookie)."""
    path, body = json.dumps(SESSION_PATH), json.dumps(nonce)
    return (
        f"<script>fetch({path}, {{method: 'POST', body: {body}, credentials: 'same-origin'}});"
        "</script>"
    )


async def _set_cookie(request: Request) -> Response:
    """Answer a posted ``hand_over`` nonce with its ``Set-Cookie`` (403: unknown or expired)."""
    nonce = (await request.body()).decode(errors="replace")
    with _LOCK:
        entry = _HANDOVERS.pop(nonce, None)
    if entry is None or entry[3] < time.monotonic():
        return Response(status_code=403)
    name, token, max_age, _ = entry
    response = Response(status_code=204)
    response.set_cookie(
        name, token, max_age=max_age, path="/", httponly=True, samesite="strict",
        secure=request.url.scheme == "https",
    )  # fmt: skip
    return response


def session_route() -> Route:
    return Route(SESSION_PATH, _set_cookie, methods=["POST"])

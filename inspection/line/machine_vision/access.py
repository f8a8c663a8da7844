"""Who may do what on the OPC 40100 server: sessions only on a configured channel, checked
identities, methods authorised per role, every refusal logged (who, what, why).

asyncua 2.1 alone leaves these holes, closed here at its per-connection ``UaProcessor``
(``GatedProcessor``): a SecurityPolicy None channel serves every service (now: discovery
only); the channel's own client certificate is never checked (now at CreateSession); a session
activates on any channel (now: only on one with its creating certificate); authentication
tokens are a counter (now: 32 random bytes, ``secrets``); a session activated from another
channel is bound to it and its subscriptions re-pointed before the client signature is checked,
and stays bound when the activation fails (now: the signature verified first, the same user
required, nothing bound on failure); subscription services act on any session's ids (now: its
own, a transfer only the same user's, journalled, within ``Quotas`` of subscriptions and of
monitored items); and without a user manager any password passes (``StationUsers``: Anonymous
where configured, UserName as an Argon2id hash over SignAndEncrypt only, X509 signed by the site
CA and not revoked). ``ReadOnlyRuleset`` refuses Write and every address-space change.

Each request runs with its session's ``Caller`` in a context variable, read by ``authorize``.
The users file (``machine_vision.users_file``, default ``<pki_dir>/opcua-users.yaml``)::

    j.smith: {role: engineer, password_hash: "$argon2id$v=19$..."}  # UserName token
    mes-1: {role: operator, certificate: true}  # X509 token, certificate CN "mes-1"

``python -m inspection.line.machine_vision.access <file> <name> <role> [--certificate]``
adds one (the password from stdin).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import secrets
import socket
import sys
import time
import weakref
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, get_args

import yaml
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from asyncua import Server, ua
from asyncua.common.utils import ServiceError
from asyncua.crypto import uacrypto
from asyncua.crypto.permission_rules import USER_TYPES, PermissionRuleset, User, UserRole
from asyncua.server.binary_server_asyncio import BinaryServer, OPCUAProtocol
from asyncua.server.internal_session import InternalSession
from asyncua.server.uaprocessor import UaProcessor
from asyncua.server.user_managers import UserManager
from asyncua.ua.ua_binary import struct_from_binary, uatcp_to_binary
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import NameOID

from inspection.core.config import from_mapping
from inspection.core.errors import ConfigError
from inspection.line.config import OpcRole
from inspection.line.pki import LinePki, write_private
from inspection.store.users import lock_seconds

log = logging.getLogger(__name__)

ROLES: tuple[OpcRole, ...] = get_args(OpcRole)
DISCOVERY = {ua.NodeId(ua.ObjectIds.GetEndpointsRequest_Encoding_DefaultBinary),
             ua.NodeId(ua.ObjectIds.FindServersRequest_Encoding_DefaultBinary),
             ua.NodeId(ua.ObjectIds.CloseSecureChannelRequest_Encoding_DefaultBinary)}  # fmt: skip
CREATE_SESSION = ua.NodeId(ua.ObjectIds.CreateSessionRequest_Encoding_DefaultBinary)
ACTIVATE_SESSION = ua.NodeId(ua.ObjectIds.ActivateSessionRequest_Encoding_DefaultBinary)
REGISTER_SERVER = {ua.NodeId(ua.ObjectIds.RegisterServerRequest_Encoding_DefaultBinary),
                   ua.NodeId(ua.ObjectIds.RegisterServer2Request_Encoding_DefaultBinary)}  # fmt: skip
DENIED = ua.StatusCode(ua.StatusCodes.BadUserAccessDenied)
UNRECORDED = ua.StatusCode(ua.StatusCodes.BadResourceUnavailable)
FAILED = ua.StatusCode(ua.StatusCodes.BadUnexpectedError)
MISTYPED = ua.StatusCode(ua.StatusCodes.BadInvalidArgument)
STARTED = "Started"
CREATE_SUBSCRIPTION = ua.NodeId(ua.ObjectIds.CreateSubscriptionRequest_Encoding_DefaultBinary)
TRANSFER = ua.NodeId(ua.ObjectIds.TransferSubscriptionsRequest_Encoding_DefaultBinary)
CREATE_ITEMS = ua.NodeId(ua.ObjectIds.CreateMonitoredItemsRequest_Encoding_DefaultBinary)
TOKEN_BYTES = 32
"""An authentication token's random bytes: nobody guesses another session's from its own."""


def _one(params: Any) -> list[int]:
    return [params.SubscriptionId]


def _many(params: Any) -> list[int]:
    return list(params.SubscriptionIds)


def _acks(params: Any) -> list[int]:
    return [ack.SubscriptionId for ack in params.SubscriptionAcknowledgements]


NAMING_SUBSCRIPTIONS: dict[ua.NodeId, tuple[type, Callable[[Any], list[int]]]] = {
    ua.NodeId(getattr(ua.ObjectIds, f"{service}Request_Encoding_DefaultBinary")): (
        getattr(ua, f"{service}Parameters"), ids)
    for service, ids in (
        ("ModifySubscription", _one), ("CreateMonitoredItems", _one),
        ("ModifyMonitoredItems", _one), ("DeleteMonitoredItems", _one),
        ("SetMonitoringMode", _one), ("Republish", _one), ("DeleteSubscriptions", _many),
        ("SetPublishingMode", _many), ("TransferSubscriptions", _many), ("Publish", _acks),
    )
}  # fmt: skip
"""The services that name subscriptions: their parameters and the ids they name."""
_HASHER = PasswordHasher()
_DUMMY_HASH = _HASHER.hash("equalises the time of an unknown name")


@dataclass(frozen=True)
class OpcUser:
    """One entry of the users file: a role and how the user proves who it is."""

    role: OpcRole
    password_hash: str | None = None
    certificate: bool = False

    def __post_init__(self) -> None:
        if (self.password_hash is None) == (not self.certificate):
            raise ConfigError("an OPC 40100 user has either 'password_hash' or 'certificate: true'")


@dataclass
class Caller(User):
    """An authenticated session: asyncua's ``User`` (role ``User``: services, no address-space
    changes) with its station role and where it came from."""

    station_role: OpcRole = "observer"
    peer: str = ""

    def may(self, role: OpcRole) -> bool:
        return ROLES.index(self.station_role) >= ROLES.index(role)

    def __str__(self) -> str:
        return f"{self.name} ({self.station_role}) from {self.peer}"


Audit = Callable[[dict[str, Any]], None]
"""Where each control call goes: user, role, peer, method, arguments and result."""


@dataclass(frozen=True)
class _Request:
    """What the request being served came over: peer, token type, session user, audit trail."""

    peer: str
    token: type | None = None
    user: User | None = None
    audit: Audit | None = None
    moving: str | None = None
    """The user of a session being activated from another channel: only it may take it."""
    session: str = ""
    """The session's id, as the journal names it (refusals are limited per session)."""


_REQUEST: ContextVar[_Request | None] = ContextVar("opc40100_request", default=None)


def caller() -> Caller | None:
    """The authenticated caller of the request being served (``None``: none)."""
    request = _REQUEST.get()
    return request.user if request and isinstance(request.user, Caller) else None


def authorize(
    role: OpcRole, *, name: str = "", audited: bool = True
) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Any]]:
    """A method callback that only a caller of at least ``role`` runs (others get
    ``BadUserAccessDenied``, logged); each call, run or refused, goes to the audit trail when
    ``audited``, under ``name`` (default: the callback's, ``_prepare_recipe`` -> ``PrepareRecipe``,
    the NodeSet's method name). The journal decides: a call it admits is recorded ``Started``
    before it runs (a record that cannot be written refuses the call, ``BadResourceUnavailable``),
    then with its result, or ``BadUnexpectedError`` and the error when it raised. Arguments that
    are not the NodeSet's InputArguments (``VisionSpace.mistyped`` of the owner's ``space``) are
    refused, ``BadInvalidArgument``, before the method runs."""

    def wrap(method: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
        called = name or "".join(w.title() for w in method.__name__.strip("_").split("_"))

        @functools.wraps(method)
        async def checked(self: Any, parent: Any, *args: Any, **options: Any) -> Any:
            who = caller()
            if who is None or not who.may(role):
                refuse(who, called, f"needs role {role}")
                if audited:
                    _outcome(who, called, args, DENIED)
                return DENIED
            if audited:
                try:
                    audit(who, called, args, STARTED)
                except OSError as exc:
                    log.error("OPC 40100 %s by %s refused: the control journal cannot be "
                              "written (%s); fix the registry folder's disk or permissions",
                              called, who, exc)  # fmt: skip
                    return UNRECORDED
            if (mistyped := self.space.mistyped(called, args)) is not None:
                refuse(who, called, mistyped)
                if audited:
                    _outcome(who, called, args, MISTYPED)
                return MISTYPED
            try:
                result = await method(self, parent, *args, **options)
            except Exception as exc:
                if audited:
                    _outcome(who, called, (*args, repr(exc)), FAILED)
                raise
            if audited:
                _outcome(who, called, args, result)
            return result

        return checked

    return wrap


def _outcome(who: Caller | None, method: str, args: tuple[Any, ...], result: Any) -> None:
    """``audit`` of a call's outcome; a journal that fails now is an alarm (the call's
    ``Started`` record, or its refusal, stands in the log)."""
    try:
        audit(who, method, args, result)
    except OSError as exc:
        log.error("OPC 40100 %s by %s: %s not journalled (%s)", method, who, result, exc)


def audit(who: Caller | None, method: str, args: tuple[Any, ...], result: Any) -> None:
    """Hand one control call to the server's audit trail: who (user, role, peer), the method,
    its arguments as text and its result (a status name; ``Good`` for outputs, ``Started``
    before it runs). Raises ``OSError`` when the record cannot be written."""
    request = _REQUEST.get()
    if request is None or request.audit is None:
        return
    status = result.name if isinstance(result, ua.StatusCode) else (
        result if isinstance(result, str) else "Good")  # fmt: skip
    request.audit({
        "user": who.name if who else None, "role": who.station_role if who else None,
        "peer": who.peer if who else request.peer, "session": request.session, "method": method,
        "arguments": [str(getattr(a, "Value", a))[:200] for a in args], "result": status,
    })  # fmt: skip


class RefusalLimit:
    """A flood of refused calls from one session is journalled in aggregate: at most ``burst``
    refusal records per session per ``window_s``; past that each is counted, one aggregate
    record (``RefusedCalls``: count and methods) is written when the session's window ends (at
    its next call), and the flood is alarmed once per window (an error in the log)."""

    def __init__(self, burst: int = 10, window_s: float = 10.0) -> None:
        self.burst, self.window_s = burst, window_s
        self._windows: dict[str, tuple[float, int, dict[str, int]]] = {}  # start, seen, held

    def admit(self, call: dict[str, Any]) -> list[dict[str, Any]]:
        """The records to journal for ``call`` (a refusal, or any call of the session): itself
        and/or the aggregate of the window that ended; none while the session floods."""
        key, now = f"{call.get('session')}|{call.get('peer')}", time.monotonic()
        start, seen, held = self._windows.get(key, (now, 0, {}))
        records: list[dict[str, Any]] = []
        if now - start >= self.window_s:
            if held:
                records.append(call | {"method": "RefusedCalls", "result": "Aggregated",
                                       "arguments": [str(sum(held.values())), *(
                                           f"{m} x{n}" for m, n in sorted(held.items()))]})  # fmt: skip
            start, seen, held = now, 0, {}
        refused = call.get("result") not in ("Good", STARTED)
        if refused and seen >= self.burst:
            if not held:
                log.error("OPC 40100 refused-call flood: %s (%s) from %s, more than %d refusals "
                          "in %.0f s; journalled in aggregate", call.get("user"),
                          call.get("role"), call.get("peer"), self.burst, self.window_s)  # fmt: skip
            held = held | {call["method"]: held.get(call["method"], 0) + 1}
        else:
            records.append(call)
        self._windows[key] = (start, seen + refused, held)
        return records


class RefusalWarnings:
    """The log's share of a refusal flood: at most ``burst`` warnings per source (a user, a
    session or a channel, as ``refuse`` names it) per ``window_s``; the rest are counted and
    said in one line when that source's next refusal opens a new window. The journal keeps
    every refused control call (``RefusalLimit``), so the log need not."""

    def __init__(self, burst: int = 10, window_s: float = 10.0, sources: int = 1024) -> None:
        self.burst, self.window_s, self.sources = burst, window_s, sources
        self._windows: dict[str, tuple[float, int]] = {}  # source -> window start, refusals

    def warn(self, who: object, what: str, why: str) -> None:
        source, now = str(who or "no session"), time.monotonic()
        start, seen = self._windows.pop(source, (now, 0))
        if now - start >= self.window_s:
            if seen > self.burst:
                log.warning("OPC 40100 refused: %d more refusals by %s within %g s, not logged "
                            "one by one", seen - self.burst, source, self.window_s)  # fmt: skip
            start, seen = now, 0
        if seen < self.burst:
            log.warning("OPC 40100 refused: %s by %s: %s", what, source, why)
        if len(self._windows) >= self.sources:  # a flood from many peers: forget the oldest
            self._windows.pop(next(iter(self._windows)))
        self._windows[source] = (start, seen + 1)


_WARNINGS = RefusalWarnings()


def refuse(who: object, what: str, why: str) -> None:
    """Log a refusal (``RefusalWarnings``: a flood is counted, not written line by line)."""
    _WARNINGS.warn(who, what, why)


@dataclass(frozen=True)
class Quotas:
    """How many subscriptions one session and one user (all its sessions) may hold, and how many
    monitored items in them."""

    per_session: int = 5
    per_user: int = 10
    items_per_session: int = 200
    items_per_user: int = 400


def load_users(path: Path) -> dict[str, OpcUser]:
    """The users file's entries (none when it does not exist)."""
    if not path.exists():
        return {}
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of user names")
    return {str(n): from_mapping(OpcUser, e, where=f"{path}: {n}") for n, e in data.items()}


def add_user(path: Path, name: str, role: OpcRole, password: str | None) -> None:
    """Add (or replace) ``name``: a password user, or with ``password`` None a certificate
    user. The file is written readable by its owner only."""
    if password is not None and len(password) < 12:
        raise ConfigError("an OPC 40100 password needs at least 12 characters")
    entry = OpcUser(role, _HASHER.hash(password) if password else None, password is None)
    data = yaml.safe_load(path.read_text()) if path.exists() else {}
    data = (data or {}) | {name: {k: v for k, v in vars(entry).items() if v not in (None, False)}}
    write_private(path, yaml.safe_dump(data, sort_keys=True).encode())


class StationUsers(UserManager):
    """asyncua's user manager: the identity token of ActivateSession -> a ``Caller`` or
    ``None`` (``BadUserAccessDenied``), each refusal logged."""

    def __init__(
        self, users: dict[str, OpcUser], anonymous: OpcRole | None, pki: LinePki | None = None
    ) -> None:
        self.users, self.anonymous, self.pki = users, anonymous, pki
        self.ca = x509.load_pem_x509_certificate(pki.ca_file.read_bytes()) if pki else None
        self._failures: dict[str, tuple[int, float]] = {}  # user: failures, locked until

    def get_user(
        self, iserver: Any, username: str | None = None, password: str | None = None,
        certificate: Any = None,
    ) -> Caller | None:  # fmt: skip
        request = _REQUEST.get() or _Request("?")
        if request.token is ua.UserNameIdentityToken:
            name, role, why = self._password(username or "", password or "")
        elif request.token is ua.X509IdentityToken:
            name, role, why = self._certificate(certificate)
        else:
            name, role = "anonymous", self.anonymous
            why = "" if role else "anonymous sessions are not allowed"
        if role is not None and request.moving is not None and name != request.moving:
            role, why = None, f"the session is {request.moving}'s; it moves only with that user"
        if role is None:
            refuse(f"{name} from {request.peer}", "ActivateSession", why)
            return None
        log.info("OPC 40100 session of %s (%s) from %s", name, role, request.peer)
        return Caller(UserRole.User, name, station_role=role, peer=request.peer)

    def _password(self, name: str, password: str) -> tuple[str, OpcRole | None, str]:
        """A known user's repeated failures lock it (as the dashboard's: ``lock_seconds``)."""
        user, now = self.users.get(name), time.monotonic()
        failures, locked_until = self._failures.get(name, (0, 0.0))
        if now < locked_until:
            return name, None, f"locked for {locked_until - now:.0f} s after {failures} failures"
        try:  # an unknown name costs the same verification as a known one
            _HASHER.verify(user.password_hash if user and user.password_hash else _DUMMY_HASH,
                           password)  # fmt: skip
        except (VerificationError, InvalidHashError):
            if user is not None:
                self._failures[name] = (failures + 1, now + lock_seconds(failures + 1))
            return name, None, "wrong user name or password"
        if user is None or user.password_hash is None:
            return name, None, "wrong user name or password"
        self._failures.pop(name, None)
        return name, user.role, ""

    def _certificate(self, der: bytes | None) -> tuple[str, OpcRole | None, str]:
        if der is None or self.ca is None or self.pki is None:
            return "?", None, "no certificate or no site CA"
        cert = x509.load_der_x509_certificate(der)
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        name = str(names[0].value) if names else "?"
        try:
            cert.verify_directly_issued_by(self.ca)
        except (ValueError, TypeError, InvalidSignature):
            return name, None, "user certificate not signed by the site CA"
        if (why := _unusable(cert, self.ca, self.pki.crl_file)) is not None:
            return name, None, why
        user = self.users.get(name)
        if user is None or not user.certificate:
            return name, None, f"no certificate user {name!r} in the users file"
        return name, user.role, ""


def _unusable(cert: x509.Certificate, ca: x509.Certificate, crl_file: Path) -> str | None:
    """Why a user certificate the CA signed may not sign a session in (``None``: it may):
    outside its validity, revoked on the CA's CRL (read at each use: a revocation counts at
    once), or without the digitalSignature key usage an X509 token's signature needs."""
    now = datetime.now(timezone.utc)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        return "user certificate expired or not yet valid"
    crl = x509.load_der_x509_crl(crl_file.read_bytes())
    if not crl.is_signature_valid(ca.public_key()):  # type: ignore[arg-type]
        return "the site CRL is not signed by the site CA"
    if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
        return "user certificate revoked (site CRL)"
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return "user certificate without key usage (digitalSignature needed)"
    return None if usage.digital_signature else "user certificate may not sign (key usage)"


class ReadOnlyRuleset(PermissionRuleset):
    """The services an authenticated client may use: asyncua's user services without Write
    (the station's variables are its own; clients act through methods)."""

    allowed = frozenset(ua.NodeId(t) for t in USER_TYPES) - {
        ua.NodeId(ua.ObjectIds.WriteRequest_Encoding_DefaultBinary)
    }

    def check_validity(self, user: User, action_type_id: ua.NodeId, body: Any) -> bool:
        if isinstance(user, Caller) and action_type_id in self.allowed:
            return True
        refuse(user, f"service {action_type_id.Identifier}", "not allowed to clients")
        return False


class SessionBook:
    """What the gate knows of the external sessions: the certificate of the channel each was
    created on, each one's user (by session id), the subscription quotas and the audit trail."""

    def __init__(self, quotas: Quotas, audit: Audit | None) -> None:
        self.quotas, self.audit = quotas, audit
        self._channels: weakref.WeakKeyDictionary[InternalSession, bytes | None] = (
            weakref.WeakKeyDictionary()
        )
        self._sessions: weakref.WeakValueDictionary[ua.NodeId, InternalSession] = (
            weakref.WeakValueDictionary()
        )

    def created(self, session: InternalSession, channel_certificate: bytes | None) -> None:
        self._channels[session] = channel_certificate
        self._sessions[session.session_id] = session

    def on_its_channel(self, session: InternalSession, channel_certificate: bytes | None) -> bool:
        return self._channels.get(session, b"") == channel_certificate

    def user_of(self, session_id: ua.NodeId) -> str | None:
        session = self._sessions.get(session_id)
        return getattr(session.user, "name", None) if session is not None else None


class GatedProcessor(UaProcessor):
    """asyncua's per-connection processor with the gate of this module's docstring."""

    book: SessionBook

    def set_policies(self, policies: list[Any]) -> None:
        super().set_policies(policies)
        self.configured = {(p.cls.URI, p.mode) for p in policies}

    @property
    def _channel(self) -> tuple[str, ua.MessageSecurityMode]:
        policy = self._connection.security_policy
        return policy.URI, policy.Mode

    def open_secure_channel(self, algohdr: Any, seqhdr: Any, body: Any) -> None:
        """A policy or mode not offered: ``BadSecurityPolicyRejected`` and the connection
        closed (asyncua raised out of the read loop and left the client waiting)."""
        try:
            super().open_secure_channel(algohdr, seqhdr, body)
        except ua.UaError as exc:
            refuse(self.name, "OpenSecureChannel", str(exc))
            status = ua.StatusCode(ua.StatusCodes.BadSecurityPolicyRejected)
            error = ua.ErrorMessage(status, "security policy or mode not offered")
            self._transport.write(uatcp_to_binary(ua.MessageType.Error, error))
            self._transport.close()

    async def _process_message(self, typeid: Any, requesthdr: Any, seqhdr: Any, body: Any) -> Any:
        if typeid in REGISTER_SERVER:
            refuse(self.name, "RegisterServer", "this server is no discovery server")
            raise ServiceError(ua.StatusCodes.BadServiceUnsupported)
        if typeid not in DISCOVERY and self._channel not in self.configured:
            policy, mode = self._channel
            refuse(self.name, f"service {typeid.Identifier}", f"channel {policy} {mode.name}")
            raise ServiceError(ua.StatusCodes.BadSecurityPolicyRejected)
        token, moving = None, None
        if typeid == CREATE_SESSION:
            await self._check_channel_certificate(body.copy())
        elif typeid == ACTIVATE_SESSION:
            token = self._check_activation(requesthdr.AuthenticationToken, body.copy())
            if self.session is None:
                moving = self._check_move(requesthdr.AuthenticationToken, body.copy())
        user = self.session.user if self.session else None
        peer = f"{self.name[0]}:{self.name[1]}" if self.name else "?"
        session = str(self.session.session_id.Identifier) if self.session else ""
        _REQUEST.set(_Request(peer, token, user, self.book.audit, moving, session))
        if isinstance(user, Caller) and self.session is not None:
            self._check_subscriptions(user, typeid, body.copy())
        if moving is None:
            done = await super()._process_message(typeid, requesthdr, seqhdr, body)
        else:
            done = await self._move(typeid, requesthdr, seqhdr, body)
        if typeid == CREATE_SESSION and self.session is not None:
            self.book.created(self.session, self._connection.security_policy.peer_certificate)
        return done

    def _check_move(self, auth_token: ua.NodeId, body: Any) -> str:
        """A session activated from a channel it is not bound to: its client signature over the
        session's last nonce verified before anything is bound (asyncua binds the session and
        re-points its subscriptions first); the user the session belongs to."""
        session = self.iserver.lookup_external_session(auth_token)
        if session is None:
            refuse(self.name, "ActivateSession", "no such session")
            raise ServiceError(ua.StatusCodes.BadSessionIdInvalid)
        params = struct_from_binary(ua.ActivateSessionParameters, body)
        policy = self._connection.security_policy
        data = (policy.host_certificate or b"") + (session.nonce or b"")
        try:
            policy.asymmetric_cryptography.verify(data, params.ClientSignature.Signature)
        except (InvalidSignature, ValueError, TypeError, ua.UaError) as exc:
            refuse(self.name, "ActivateSession", f"client signature invalid ({exc!r})")
            raise ServiceError(ua.StatusCodes.BadApplicationSignatureInvalid) from exc
        return getattr(session.user, "name", None) or ""

    async def _move(self, typeid: ua.NodeId, requesthdr: Any, seqhdr: Any, body: Any) -> Any:
        """asyncua's activation on a new channel (it binds the session and re-points its
        subscriptions' callbacks); when the activation fails, all of that undone."""
        session = self.iserver.lookup_external_session(requesthdr.AuthenticationToken)
        subscriptions = [s for s in self.iserver.subscription_service.subscriptions.values()
                         if session is not None and s.session_id == session.session_id]  # fmt: skip
        before = [(s, s.pub_result_callback, s.pub_request_callback) for s in subscriptions]
        try:
            return await super()._process_message(typeid, requesthdr, seqhdr, body)
        except Exception:
            self.session = None
            for subscription, result, request in before:
                subscription.pub_result_callback = result
                subscription.pub_request_callback = request
            if self._session_watchdog_task is not None:
                self._session_watchdog_task.cancel()
                self._session_watchdog_task = None
            raise

    async def _check_channel_certificate(self, body: Any) -> None:
        """The channel's certificate, not only the one CreateSession names, on the trust list."""
        peer = self._connection.security_policy.peer_certificate
        validate = self.iserver.certificate_validator
        if peer is None or validate is None:
            return
        params = struct_from_binary(ua.CreateSessionParameters, body)
        if params.ClientCertificate and params.ClientCertificate != peer:
            refuse(self.name, "CreateSession", "certificate differs from the channel's")
            raise ServiceError(ua.StatusCodes.BadCertificateInvalid)
        try:
            await validate(x509.load_der_x509_certificate(peer), params.ClientDescription)
        except ServiceError as exc:
            refuse(self.name, "CreateSession", f"channel certificate: {exc}")
            raise

    def _check_activation(self, auth_token: ua.NodeId, body: Any) -> type:
        """The session on the channel it was created on; a password only encrypted. The
        identity token's type."""
        session = self.session or self.iserver.lookup_external_session(auth_token)
        peer = self._connection.security_policy.peer_certificate
        if session is not None and not self.book.on_its_channel(session, peer):
            refuse(self.name, "ActivateSession", "channel certificate is not the session's")
            raise ServiceError(ua.StatusCodes.BadSecurityChecksFailed)
        params = struct_from_binary(ua.ActivateSessionParameters, body)
        token = type(params.UserIdentityToken)
        if token is ua.ExtensionObject:  # a null token: anonymous (Part 4, 5.6.3)
            token = ua.AnonymousIdentityToken
        if not issubclass(token, self.iserver.supported_tokens):  # asyncua refuses it
            refuse(self.name, "ActivateSession", f"{token.__name__} not accepted here")
        encrypted = self._channel[1] == ua.MessageSecurityMode.SignAndEncrypt
        if token is ua.UserNameIdentityToken and not encrypted:
            refuse(self.name, "ActivateSession", "a password needs a SignAndEncrypt channel")
            raise ServiceError(ua.StatusCodes.BadIdentityTokenRejected)
        return token

    def _check_subscriptions(self, user: Caller, typeid: ua.NodeId, body: Any) -> None:
        """A session acts on its own subscriptions (moves only its user's) within quotas."""
        subscriptions = self.iserver.subscription_service.subscriptions
        mine = self.session.session_id
        if typeid == CREATE_SUBSCRIPTION:
            held = [s for s in subscriptions.values() if s.session_id == mine]
            users = [s for s in subscriptions.values()
                     if self.book.user_of(s.session_id) == user.name]  # fmt: skip
            quotas = self.book.quotas
            if len(held) >= quotas.per_session or len(users) >= quotas.per_user:
                why = (f"holds {len(held)} (session) / {len(users)} (user) subscriptions, "
                       f"quotas {quotas.per_session} / {quotas.per_user}")  # fmt: skip
                self._refuse_subscription(user, typeid, [], why,
                                          ua.StatusCodes.BadTooManySubscriptions)  # fmt: skip
            return
        if (named := NAMING_SUBSCRIPTIONS.get(typeid)) is None:
            return
        kind, ids_of = named
        params = struct_from_binary(kind, body)
        ids = ids_of(params)
        if typeid == CREATE_ITEMS:
            self._check_items(user, len(params.ItemsToCreate))
        for sid in ids:
            owner = getattr(subscriptions.get(sid), "session_id", mine)
            if owner == mine:  # its own, or none: asyncua answers BadSubscriptionIdInvalid
                continue
            if typeid == TRANSFER and self.book.user_of(owner) == user.name:
                # Part 4, 5.13.7: the same user takes its subscriptions over, journalled
                try:
                    audit(user, "TransferSubscriptions", ([sid], f"from session {owner}"), None)
                except OSError as exc:
                    refuse(user, "TransferSubscriptions", f"not journalled ({exc})")
                    raise ServiceError(ua.StatusCodes.BadResourceUnavailable) from exc
                continue
            status = ua.StatusCodes.BadUserAccessDenied if typeid == TRANSFER else (
                ua.StatusCodes.BadSubscriptionIdInvalid)  # fmt: skip
            self._refuse_subscription(user, typeid, ids, f"subscription {sid} is another "
                                      "session's", status)  # fmt: skip

    def _check_items(self, user: Caller, adding: int) -> None:
        """``adding`` monitored items within the session's and the user's item quotas."""
        subscriptions = self.iserver.subscription_service.subscriptions.values()
        mine = self.session.session_id

        def items(held: Any) -> int:
            return sum(len(s.monitored_item_srv._monitored_items) for s in held)

        session = items(s for s in subscriptions if s.session_id == mine)
        users = items(s for s in subscriptions if self.book.user_of(s.session_id) == user.name)
        quotas = self.book.quotas
        if session + adding > quotas.items_per_session or users + adding > quotas.items_per_user:
            why = (f"{adding} more monitored items on {session} (session) / {users} (user), "
                   f"quotas {quotas.items_per_session} / {quotas.items_per_user}")  # fmt: skip
            self._refuse_subscription(user, CREATE_ITEMS, [], why,
                                      ua.StatusCodes.BadTooManyMonitoredItems)  # fmt: skip

    def _refuse_subscription(
        self, user: Caller, typeid: ua.NodeId, ids: list[int], why: str, status: int
    ) -> None:
        service = _service_name(typeid)
        refuse(user, service, why)
        _outcome(user, service, (ids,), ua.StatusCode(status))
        raise ServiceError(status)


def _service_name(typeid: ua.NodeId) -> str:
    """``DeleteSubscriptions`` for the DeleteSubscriptionsRequest's encoding id."""
    name = ua.ObjectIdNames.get(typeid.Identifier, str(typeid.Identifier))
    return name.removesuffix("_Encoding_DefaultBinary").removesuffix("Request")


class _GatedProtocol(OPCUAProtocol):
    book: SessionBook

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self.processor is not None:  # before any message: the read loop has not run yet
            self.processor = GatedProcessor(self.iserver, self.transport, self.limits)
            self.processor.set_policies(self.policies)
            self.processor.book = self.book


class _GatedBinaryServer(BinaryServer):
    book: SessionBook

    def _make_protocol(self) -> OPCUAProtocol:
        protocol = _GatedProtocol(self.iserver, self._policies, self.clients,
                                  self.closing_tasks, self.limits)  # fmt: skip
        protocol.book = self.book
        return protocol


class GatedServer(Server):
    """asyncua's ``Server`` whose connections run ``GatedProcessor`` with ``book``."""

    def __init__(self, quotas: Quotas, audit: Audit | None) -> None:
        super().__init__()
        self.book = SessionBook(quotas, audit)
        self.iserver.create_session = self._create_session  # type: ignore[method-assign]

    def _create_session(
        self, name: str, user: User | None = None, external: bool = False
    ) -> InternalSession:
        """asyncua's ``InternalServer.create_session`` with an authentication token of
        ``TOKEN_BYTES`` random bytes (asyncua counts them up from 1000)."""
        iserver = self.iserver
        session = InternalSession(iserver, iserver.aspace, iserver.subscription_service, name,
                                  user=user or User(role=UserRole.Anonymous))  # fmt: skip
        session.auth_token = ua.NodeId(secrets.token_bytes(TOKEN_BYTES), 0,
                                       ua.NodeIdType.ByteString)  # fmt: skip
        if external:
            session.external = True
            iserver.register_external_session(session)
        return session

    async def start(self) -> None:
        """asyncua 2.1's ``Server.start`` (it builds its ``BinaryServer`` inline) with ours."""
        if self.iserver.certificate is not None:
            uacrypto.check_certificate(
                self.iserver.certificate, self._application_uri, socket.gethostname()
            )
        await self._setup_server_nodes()
        await self.iserver.start()
        try:
            host, port = self._get_bind_socket_info()
            self.bserver = _GatedBinaryServer(self.iserver, host, port, self.limits)
            self.bserver.book = self.book
            self.bserver.set_policies(self._policies)
            await self.bserver.start()
        except Exception:
            await self.iserver.stop()
            raise


def main() -> None:
    parser = argparse.ArgumentParser(description="Add an OPC 40100 user (password on stdin).")
    parser.add_argument("file", type=Path)
    parser.add_argument("name")
    parser.add_argument("role", choices=ROLES)
    parser.add_argument("--certificate", action="store_true", help="an X509 user (no password)")
    args = parser.parse_args()
    password = None if args.certificate else sys.stdin.readline().rstrip("\r\n")
    add_user(args.file, args.name, args.role, password)
    print(f"{args.file}: {args.role} {args.name!r}")


if __name__ == "__main__":
    main()

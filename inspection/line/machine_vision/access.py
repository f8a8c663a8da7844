"""Who may do what on the OPC 40100 server: sessions only on a configured channel, checked
identities, methods authorised per role, every refusal logged (who, what, why).

asyncua 2.1 alone leaves three holes, closed here at its per-connection ``UaProcessor``:

- A SecureChannel with SecurityPolicy None opens although the server offers none
  (``SecureConnection.select_policy`` falls back to the channel's initial None policy), and
  CreateSession, ActivateSession and every service are then served on it. ``GatedProcessor``
  serves only GetEndpoints and FindServers (discovery) on a channel whose (policy, mode) is not
  configured; anything else is ``BadSecurityPolicyRejected``.
- The client certificate is checked only when CreateSession repeats it: a channel opened with
  an untrusted certificate and a CreateSession without one got a session. ``GatedProcessor``
  checks the channel's own certificate against the trust list at CreateSession.
- Without a user manager any UserName and password is accepted. ``StationUsers`` checks
  Anonymous (only where configured), UserName (an Argon2id hash in the users file) and X509
  (a certificate the site CA signed, its common name a user of the file) tokens.

Each request runs with its session's ``Caller`` in a context variable; the methods of the
server read it through ``authorize`` (a role at least the method's) and ``caller``. Clients
never write: ``ReadOnlyRuleset`` refuses Write and every address-space change.

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
import socket
import sys
import time
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
from asyncua.server.uaprocessor import UaProcessor
from asyncua.server.user_managers import UserManager
from asyncua.ua.ua_binary import struct_from_binary, uatcp_to_binary
from cryptography import x509
from cryptography.x509.oid import NameOID

from inspection.core.config import from_mapping
from inspection.core.errors import ConfigError
from inspection.line.config import OpcRole
from inspection.line.pki import write_private
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


@dataclass(frozen=True)
class _Request:
    """What the request being served came over: peer, identity token type, session user."""

    peer: str
    token: type | None = None
    user: User | None = None


_REQUEST: ContextVar[_Request | None] = ContextVar("opc40100_request", default=None)


def caller() -> Caller | None:
    """The authenticated caller of the request being served (``None``: none)."""
    request = _REQUEST.get()
    return request.user if request and isinstance(request.user, Caller) else None


def authorize(role: OpcRole) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Any]]:
    """A method callback that only a caller of at least ``role`` runs; others get
    ``BadUserAccessDenied``, logged with who, what and why."""

    def wrap(method: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
        @functools.wraps(method)
        async def checked(self: Any, *args: Any, **options: Any) -> Any:
            who = caller()
            if who is None or not who.may(role):
                refuse(who, method.__name__.strip("_"), f"needs role {role}")
                return DENIED
            return await method(self, *args, **options)

        return checked

    return wrap


def refuse(who: object, what: str, why: str) -> None:
    log.warning("OPC 40100 refused: %s by %s: %s", what, who or "no session", why)


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
        self, users: dict[str, OpcUser], anonymous: OpcRole | None, ca: x509.Certificate | None
    ) -> None:
        self.users, self.anonymous, self.ca = users, anonymous, ca
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
        if der is None or self.ca is None:
            return "?", None, "no certificate or no site CA"
        cert = x509.load_der_x509_certificate(der)
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        name = str(names[0].value) if names else "?"
        try:
            cert.verify_directly_issued_by(self.ca)
        except (ValueError, TypeError, x509.InvalidSignature):
            return name, None, "user certificate not signed by the site CA"
        now = datetime.now(timezone.utc)
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            return name, None, "user certificate expired or not yet valid"
        user = self.users.get(name)
        if user is None or not user.certificate:
            return name, None, f"no certificate user {name!r} in the users file"
        return name, user.role, ""


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


class GatedProcessor(UaProcessor):
    """asyncua's per-connection processor with the gate of this module's docstring."""

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
        token = None
        if typeid == CREATE_SESSION:
            await self._check_channel_certificate(body.copy())
        elif typeid == ACTIVATE_SESSION:
            params = struct_from_binary(ua.ActivateSessionParameters, body.copy())
            token = type(params.UserIdentityToken)
            if token is ua.ExtensionObject:  # a null token: anonymous (Part 4, 5.6.3)
                token = ua.AnonymousIdentityToken
            if not issubclass(token, self.iserver.supported_tokens):  # asyncua refuses it
                refuse(self.name, "ActivateSession", f"{token.__name__} not accepted here")
        user = self.session.user if self.session else None
        _REQUEST.set(_Request(f"{self.name[0]}:{self.name[1]}" if self.name else "?", token, user))
        return await super()._process_message(typeid, requesthdr, seqhdr, body)

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


class _GatedProtocol(OPCUAProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self.processor is not None:  # before any message: the read loop has not run yet
            self.processor = GatedProcessor(self.iserver, self.transport, self.limits)
            self.processor.set_policies(self.policies)


class _GatedBinaryServer(BinaryServer):
    def _make_protocol(self) -> OPCUAProtocol:
        return _GatedProtocol(self.iserver, self._policies, self.clients, self.closing_tasks,
                              self.limits)  # fmt: skip


class GatedServer(Server):
    """asyncua's ``Server`` whose connections run ``GatedProcessor``."""

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

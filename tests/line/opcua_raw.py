"""OPC UA service calls one at a time, as an attacker sends them: no client library deciding
for us that an endpoint does not exist. Each step's outcome is recorded ("Good" or the status
name) and the next step is sent anyway. Used by tests/line/test_machine_vision.py and
bench/hostile_opcua.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asyncua import Client, ua
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256

from inspection.line.pki import LinePki


@dataclass(frozen=True)
class Attempt:
    """One connection's plan: the channel (``pki`` None: SecurityPolicy None; else
    Basic256Sha256 in ``mode`` with certificate ``name`` of ``pki``), whether CreateSession
    repeats the certificate, the identity token (``user`` None: anonymous; ``x509``: the
    certificate), and ``calls`` (object, method, arguments) made in the session."""

    pki: LinePki | None = None
    name: str = "mes"
    session_certificate: bool = True
    user: str | None = None
    password: str = ""
    x509: bool = False
    mode: ua.MessageSecurityMode = ua.MessageSecurityMode.SignAndEncrypt
    server_certificate: Path | None = None  # None: asked for with GetEndpoints (None channel)
    calls: tuple[tuple[ua.NodeId, ua.NodeId, tuple[Any, ...]], ...] = field(default=())


def _status(exc: BaseException) -> str:
    if isinstance(exc, ua.UaStatusCodeError):
        return ua.StatusCode(exc.code).name
    return type(exc).__name__


async def attempt(endpoint: str, plan: Attempt, timeout: float = 5.0) -> dict[str, str]:
    """Run ``plan``: GetEndpoints, CreateSession, ActivateSession, each call -> its status."""
    client = Client(endpoint, timeout=timeout)
    if plan.pki is not None:
        identity = plan.pki.identity(plan.name, f"urn:inspection:{plan.name}")
        client.application_uri = identity.uri
        await client.set_security(
            SecurityPolicyBasic256Sha256,
            str(identity.certificate),
            str(identity.private_key),
            server_certificate=str(plan.server_certificate) if plan.server_certificate else None,
            mode=plan.mode,
        )
        if plan.x509:
            await client.load_client_certificate(str(identity.certificate))
            await client.load_private_key(str(identity.private_key))
    seen: dict[str, str] = {}
    try:
        await client.connect_socket()
        await client.send_hello()
        await client.open_secure_channel()
        seen["OpenSecureChannel"] = "Good"
    except Exception as exc:  # the channel itself refused: nothing else can be sent
        seen["OpenSecureChannel"] = _status(exc)
        client.disconnect_socket()
        return seen
    try:
        for name, step in (("GetEndpoints", _endpoints), ("CreateSession", _create),
                           ("ActivateSession", _activate)):  # fmt: skip
            seen[name] = await _try(step(client, plan))
        for n, (parent, method, args) in enumerate(plan.calls):
            seen[f"Call {n} {method.Identifier}"] = await _try(_call(client, parent, method, args))
    finally:
        client.disconnect_socket()
    return seen


async def _try(step: Any) -> str:
    try:
        result = await step
    except Exception as exc:
        return _status(exc)
    return result if isinstance(result, str) else "Good"


async def _endpoints(client: Client, _plan: Attempt) -> None:
    await client.uaclient.get_endpoints(
        ua.GetEndpointsParameters(EndpointUrl=client.server_url.geturl())
    )


async def _create(client: Client, plan: Attempt) -> None:
    params = ua.CreateSessionParameters(
        ClientDescription=ua.ApplicationDescription(
            ApplicationUri=client.application_uri, ApplicationType=ua.ApplicationType.Client
        ),
        EndpointUrl=client.server_url.geturl(),
        SessionName="raw",
        ClientNonce=b"\x01" * 32,
        ClientCertificate=client.security_policy.host_certificate
        if plan.session_certificate
        else None,
        RequestedSessionTimeout=60000,
    )
    response = await client.uaclient.create_session(params)
    client._server_nonce = response.ServerNonce
    if client.security_policy.peer_certificate is None:
        client.security_policy.peer_certificate = response.ServerCertificate


async def _activate(client: Client, plan: Attempt) -> None:
    certificate = client.user_certificate if plan.x509 else None
    await client.activate_session(plan.user, plan.password, certificate)


async def _call(client: Client, parent: ua.NodeId, method: ua.NodeId, args: tuple[Any, ...]) -> str:
    request = ua.CallMethodRequest(ObjectId=parent, MethodId=method, InputArguments=list(args))
    (result,) = await client.uaclient.call([request])
    return result.StatusCode.name


def rogue(root: Path) -> LinePki:
    """A PKI whose CA the station does not trust."""
    return LinePki(root / "rogue-pki")

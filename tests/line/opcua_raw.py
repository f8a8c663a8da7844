"""OPC UA service calls one at a time, as an attacker sends them: no client library deciding
for us that an endpoint does not exist. Each step's outcome is recorded ("Good" or the status
name) and the next step is sent anyway. Used by tests/line/test_machine_vision.py and
bench/hostile_opcua.py."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
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
    certificate, or ``user_certificate``'s of ``pki``), and ``calls`` (object, method,
    arguments) made in the session."""

    pki: LinePki | None = None
    name: str = "mes"
    session_certificate: bool = True
    user: str | None = None
    password: str = ""
    x509: bool = False
    user_certificate: str | None = None
    mode: ua.MessageSecurityMode = ua.MessageSecurityMode.SignAndEncrypt
    server_certificate: Path | None = None  # None: asked for with GetEndpoints (None channel)
    calls: tuple[tuple[ua.NodeId, ua.NodeId, tuple[Any, ...]], ...] = field(default=())


def _status(exc: BaseException) -> str:
    if isinstance(exc, ua.UaStatusCodeError):
        return ua.StatusCode(exc.code).name
    return type(exc).__name__


Steps = Callable[[Client], Awaitable[dict[str, str]]]


async def attempt(
    endpoint: str, plan: Attempt, timeout: float = 5.0, then: Steps | None = None
) -> dict[str, str]:
    """Run ``plan``: GetEndpoints, CreateSession, ActivateSession, each call -> its status;
    then ``then``'s steps in the same session."""
    client = await _client(endpoint, plan, timeout)
    seen = {"OpenSecureChannel": await _try(_open(client))}
    if seen["OpenSecureChannel"] != "Good":  # the channel itself refused: nothing else can be sent
        client.disconnect_socket()
        return seen
    try:
        for name, step in (("GetEndpoints", _endpoints), ("CreateSession", _create),
                           ("ActivateSession", _activate)):  # fmt: skip
            seen[name] = await _try(step(client, plan))
        for n, (parent, method, args) in enumerate(plan.calls):
            seen[f"Call {n} {method.Identifier}"] = await _try(_call(client, parent, method, args))
        if then is not None:
            seen |= await then(client)
    finally:
        client.disconnect_socket()
    return seen


async def _client(endpoint: str, plan: Attempt, timeout: float) -> Client:
    client = Client(endpoint, timeout=timeout)
    if plan.pki is None:
        return client
    identity = plan.pki.identity(plan.name, f"urn:inspection:{plan.name}")
    client.application_uri = identity.uri
    await client.set_security(
        SecurityPolicyBasic256Sha256, str(identity.certificate), str(identity.private_key),
        server_certificate=str(plan.server_certificate) if plan.server_certificate else None,
        mode=plan.mode,
    )  # fmt: skip
    if plan.x509:
        name = plan.user_certificate or plan.name
        user = plan.pki.identity(name, f"urn:inspection:{name}")
        await client.load_client_certificate(str(user.certificate))
        await client.load_private_key(str(user.private_key))
    return client


async def _open(client: Client) -> None:
    await client.connect_socket()
    await client.send_hello()
    await client.open_secure_channel()


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


async def _first_bad(step: Awaitable[list[Any]]) -> str:
    """A per-id service's outcome: its first per-id status that is not Good, else Good."""
    for result in await step:
        status = getattr(result, "StatusCode", result)
        if not status.is_good():
            return status.name
    return "Good"


def on_subscription(subscription_id: int) -> Steps:
    """Every subscription service on ``subscription_id`` (another session's, for an
    attacker): SetPublishingMode off, ModifySubscription, TransferSubscriptions, then
    DeleteSubscriptions -> each one's status."""

    async def steps(client: Client) -> dict[str, str]:
        session, ids = client.uaclient, [subscription_id]
        return {
            "SetPublishingMode": await _try(_first_bad(session.set_publishing_mode(
                ua.SetPublishingModeParameters(PublishingEnabled=False, SubscriptionIds=ids)))),
            "ModifySubscription": await _try(session.update_subscription(
                ua.ModifySubscriptionParameters(SubscriptionId=subscription_id,
                                                RequestedPublishingInterval=60000))),
            "TransferSubscriptions": await _try(_first_bad(session.transfer_subscriptions(
                ua.TransferSubscriptionsParameters(SubscriptionIds=ids)))),
            "DeleteSubscriptions": await _try(_first_bad(session.delete_subscriptions(ids))),
        }  # fmt: skip

    return steps


def subscribe_until_refused(limit: int = 50) -> Steps:
    """CreateSubscription until refused (at most ``limit``): how many were made and the
    refusal's status."""

    async def steps(client: Client) -> dict[str, str]:
        params = ua.CreateSubscriptionParameters(
            RequestedPublishingInterval=1000, RequestedLifetimeCount=300,
            RequestedMaxKeepAliveCount=100, PublishingEnabled=True,
        )  # fmt: skip
        for made in range(limit):
            try:
                await client.uaclient.create_subscription(params, lambda *_: None)
            except ua.UaStatusCodeError as exc:
                return {"made": str(made), "refusal": _status(exc)}
        return {"made": str(limit), "refusal": "none"}

    return steps


async def activate_foreign(endpoint: str, victim: Client, plan: Attempt) -> str:
    """ActivateSession of ``victim``'s live session (its authentication token and nonce, as
    seen on the wire) from a fresh channel of ``plan`` (another certificate) with ``plan``'s
    user: its status."""
    client = await _client(endpoint, plan, 5.0)
    try:
        if (opened := await _try(_open(client))) != "Good":
            return f"OpenSecureChannel {opened}"
        client.uaclient.session.restore_authentication_token(
            victim.uaclient.session.authentication_token
        )
        client._server_nonce = victim._server_nonce
        client.security_policy.peer_certificate = victim.security_policy.peer_certificate
        return await _try(_activate(client, plan))
    finally:
        client.disconnect_socket()


def rogue(root: Path) -> LinePki:
    """A PKI whose CA the station does not trust."""
    return LinePki(root / "rogue-pki")

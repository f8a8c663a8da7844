"""Helpers the tests (``bench._shared``) and the benches (``_shared``) share; nothing here
imports ``tests``, so the import goes one way: a hand-built OpenVINO bundle, a line station in a
scratch folder, the site's MES on OPC 40100, and raw OPC UA sessions as an attacker sends them
(``attempt``: each step's status recorded, the next step sent anyway)."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import yaml
from asyncua import Client, ua
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256

from inspection.core.bundle import (
    BUNDLE_SCHEMA_VERSION,
    SIGNATURE_FILE,
    BundleMetadata,
    Preprocessing,
    read_bundle_metadata,
    write_bundle_metadata,
)
from inspection.core.calibration import Normalization
from inspection.core.registry import Registry
from inspection.core.signing import pin_file
from inspection.line.config import CameraConfig, LineConfig, LinkSecurity
from inspection.line.links import LINKS
from inspection.line.pki import LinePki
from inspection.line.security import trust_list_validator
from inspection.station.config import CORE_KEYS, StationCoreConfig


def write_mean_bundle(
    target: Path,
    *,
    input_size: tuple[int, int],
    product: str,
    source_bits: int = 16,
    **fields: Any,
) -> Path:
    """A tiny torch-free bundle in ``target``: its anomaly map the mean of the input channels,
    its score the map's maximum, normalised as identity on [0, 1] (a bright spot is a known
    defect, a brighter image a higher score); ``fields``: other ``BundleMetadata`` fields."""
    target.mkdir(parents=True, exist_ok=True)
    image = ops.parameter([-1, 3, *input_size], np.float32, name="image")
    amap = ops.reduce_mean(image, np.array([1]), keep_dims=True)
    score = ops.reduce_max(amap, np.array([1, 2, 3]), keep_dims=False)
    model = ov.Model([score, amap], [image], "mean_channels")
    model.outputs[0].get_tensor().set_names({"pred_score"})
    model.outputs[1].get_tensor().set_names({"anomaly_map"})
    ov.save_model(model, target / "model.xml")
    metadata = {
        "schema_version": BUNDLE_SCHEMA_VERSION,
        "bundle_id": "v0001-fp32",
        "product": product,
        "model_kind": "patchcore",
        "model_version": f"{product}/v0001",
        "precision": "fp32",
        "preprocessing": Preprocessing(
            input_size, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), source_bits=source_bits
        ),
        "normalization": Normalization(0.5, 0.5, 0.0, 1.0, 0.0, 1.0),  # identity on [0, 1]
    }
    write_bundle_metadata(target, BundleMetadata(**metadata | fields))
    return target


def copy_bundle(source: str | Path, target: str | Path, bundle_id: str) -> Path:
    """A copy of the bundle at ``source`` in ``target`` under a new ``bundle_id`` (and model
    version): the same weights standing in for a retrained challenger. The copy is unsigned
    (the source's signature no longer matches); sign it again."""
    target = Path(target)
    shutil.copytree(source, target)
    (target / SIGNATURE_FILE).unlink(missing_ok=True)
    metadata = read_bundle_metadata(target)
    model_version = f"{metadata.product}/{bundle_id.split('-', 1)[0]}"
    write_bundle_metadata(
        target, dataclasses.replace(metadata, bundle_id=bundle_id, model_version=model_version)
    )
    return target


# ----------------------------------------------------------------- a line station
def camera_folder(root: Path, tiny_product: Path, count: int = 4) -> Path:
    """``count`` real demo images (good and defective) in one folder."""
    folder = root / "camera"
    folder.mkdir(parents=True, exist_ok=True)
    images = sorted((tiny_product / "test").rglob("*.png"))
    for n, image in enumerate(images[:: max(1, len(images) // count)][:count]):
        shutil.copy(image, folder / f"{n:03d}.png")
    return folder


def line_config(
    root: Path, fp32_bundle: Path, camera: Path, *, loop: bool = True, **overrides
) -> LineConfig:
    """Serves ``brick`` (live) and ``grass`` (no live model); station id ``cam-1``; a PLC link's
    section by its name (``opcua=OpcUaTriggerConfig(...)``)."""
    registry = Registry(root / "registry")
    if not registry.bundles.bundle_ids("brick"):
        registry.bundles.add_bundle("brick", fp32_bundle, "v0001-fp32")
        registry.journal.promote("brick", "v0001-fp32", actor="tests", reason="line tests")
    core = {
        "products": ("brick", "grass"),
        "store_url": f"sqlite:///{root / 'line.db'}",
        "blob_dir": root / "blobs",
        "registry_dir": root / "registry",
        "registry_poll_seconds": 3600.0,
        "allow_unsigned_bundles": "bundle_public_key" not in overrides,
    }
    if "bundle_public_key" in overrides:  # the key file given, pinned by its fingerprint
        overrides["signing_keys"] = (pin_file(overrides.pop("bundle_public_key")),)
    core |= {key: value for key, value in overrides.items() if key in CORE_KEYS}
    values = {
        "station_id": "cam-1",
        "camera": CameraConfig(kind="file", path=camera, loop=loop),
        "inspect_timeout_s": 10.0,
        "security": LinkSecurity(pki_dir=root / "pki"),
    }
    values["links"] = {name: overrides.pop(name) for name in list(overrides) if name in LINKS}
    values |= {key: value for key, value in overrides.items() if key not in CORE_KEYS}
    return LineConfig(core=StationCoreConfig(**core), **values)


def line_yaml(root: Path, camera: Path, **sections: dict) -> Path:
    """A line config file serving brick from ``root``'s registry (``line_config`` made it),
    with ``sections`` (a PLC link's, say) on top."""
    core = {"products": ["brick"], "store_url": f"sqlite:///{root / 'line.db'}",
            "blob_dir": str(root / "blobs"), "registry_dir": str(root / "registry"),
            "allow_unsigned_bundles": True}  # fmt: skip
    data = {"station_id": "cam-1", "core": core, "camera": {"kind": "file", "path": str(camera)},
            "security": {"pki_dir": str(root / "pki")}, **sections}  # fmt: skip
    path = root / "line.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


# ------------------------------------------------------------------ OPC UA clients
async def mes_client(
    endpoint: str,
    pki: LinePki,
    mode: ua.MessageSecurityMode = ua.MessageSecurityMode.SignAndEncrypt,
) -> Client:
    """The site's MES, not yet connected: a certificate the site's CA signed (``pki``) as its
    channel and its user (``mes``, an admin), trusting the station through the trust list."""
    client = Client(endpoint, timeout=10)
    identity = pki.identity("mes", "urn:inspection:mes")
    client.application_uri = identity.uri
    await client.set_security(
        SecurityPolicyBasic256Sha256, str(identity.certificate), str(identity.private_key),
        mode=mode,
    )  # fmt: skip
    await client.load_client_certificate(str(identity.certificate))
    await client.load_private_key(str(identity.private_key))
    client.certificate_validator = (await trust_list_validator(pki, peer="server")).validate
    return client


def job_args(
    meas: str, part: str = "", recipe: str = "", product: str = ""
) -> tuple[ua.Variant, ...]:
    """OPC 40100 StartSingleJob / StartContinuous inputs (an empty id: the prepared recipe's)."""
    ids = (ua.MeasIdDataType(Id=meas), ua.PartIdDataType(Id=part),
           ua.RecipeIdExternalDataType(Id=recipe), ua.ProductIdDataType(Id=product))  # fmt: skip
    return (*(ua.Variant(i) for i in ids), ua.Variant([], ua.VariantType.Variant))


class Events:
    """An asyncua subscription handler: the events in a queue."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Any] = asyncio.Queue()

    def event_notification(self, event: Any) -> None:
        self.queue.put_nowait(event)


# ---------------------------------------------------- raw OPC UA sessions (attacks)
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


async def borrow(
    endpoint: str, victim: Client, plan: Attempt, *, nonce: bytes | None,
    calls: tuple[tuple[ua.NodeId, ua.NodeId, tuple[Any, ...]], ...] = (),
) -> list[str]:  # fmt: skip
    """ActivateSession of ``victim``'s session from a fresh channel of ``plan`` (the same
    application certificate: one HMI for several users) with its authentication token (guessed
    or seen) and ``nonce`` (None: the victim's own, as a key holder decrypts it), then ``calls``
    on that channel: each status, the activation's first."""
    client = await _client(endpoint, plan, 5.0)
    try:
        await _open(client)
        client.uaclient.session.restore_authentication_token(
            victim.uaclient.session.authentication_token
        )
        client._server_nonce = victim._server_nonce if nonce is None else nonce
        client.security_policy.peer_certificate = victim.security_policy.peer_certificate
        statuses = [await _try(_activate(client, plan))]
        for parent, method, args in calls:
            statuses.append(await _try(_call(client, parent, method, args)))
        return statuses
    finally:
        client.disconnect_socket()


def rogue(root: Path) -> LinePki:
    """A PKI whose CA the station does not trust."""
    return LinePki(root / "rogue-pki")

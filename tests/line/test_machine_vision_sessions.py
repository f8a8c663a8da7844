"""#92: OPC 40100 sessions that cannot be borrowed, against the running server with asyncua raw
service calls: random authentication tokens, the client signature checked before a session is
bound to a channel and nothing bound after a failed ActivateSession (one HMI certificate shared
by an engineer and an observer), same-user subscription transfers journalled, monitored-item
quotas per session and per user."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from asyncua import Client, ua
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256

from bench._shared import Attempt, Events, attempt, borrow, job_args
from inspection.line.machine_vision import RESULT_READY_EVENT, load_client_types
from inspection.line.machine_vision.access import TOKEN_BYTES
from inspection.line.pki import LinePki
from inspection.line.security import trust_list_validator
from inspection.line.station import LineStation

from .helpers import secure
from .test_machine_vision import PASSWORD, _build, _controls, _endpoint


@pytest.fixture
def station(tmp_path: Path, fp32_bundle: Path, tiny_product: Path):
    built = _build(tmp_path, fp32_bundle, tiny_product)
    yield built
    built.stop()


async def _hmi(endpoint: str, pki: LinePki, user: str) -> Client:
    """A client on the shared HMI's application certificate, logged in as ``user``."""
    client = Client(endpoint, timeout=30)  # a loaded CI machine
    identity = pki.identity("hmi", "urn:inspection:hmi")
    client.application_uri = identity.uri
    await client.set_security(
        SecurityPolicyBasic256Sha256, str(identity.certificate), str(identity.private_key)
    )
    client.certificate_validator = (await trust_list_validator(pki, peer="server")).validate
    client.set_user(user)
    client.set_password(PASSWORD)
    await client.connect()
    return client


def test_a_session_cannot_be_borrowed_through_a_shared_certificate(
    station: LineStation, tmp_path: Path
) -> None:
    """The engineer and an observer share the HMI's certificate. The observer activates the
    engineer's session from a channel of its own with the engineer's token (unguessable now:
    assume it leaked), first without the session's nonce, then with it (a holder of the shared
    key can read it): both refused, nothing bound: PrepareRecipe(grass) on that channel refused,
    no record under the engineer's name, and the engineer's events still reach the engineer."""
    endpoint, pki = _endpoint(station), LinePki(secure(tmp_path).pki_dir)
    thief = Attempt(pki, name="hmi", user="obs", password=PASSWORD)

    async def run() -> dict:
        engineer = await _hmi(endpoint, pki, "eng")
        observer = await _hmi(endpoint, pki, "obs")
        try:
            mv = await load_client_types(engineer)
            system = await engineer.nodes.objects.get_child("1:VisionSystem")
            machine = await system.get_child(f"{mv}:VisionStateMachine")
            recipes = await system.get_child(f"{mv}:RecipeManagement")
            automatic = await machine.get_child(f"{mv}:AutomaticModeStateMachine")
            await machine.call_method(f"{mv}:SelectModeAutomatic")
            await recipes.call_method(f"{mv}:PrepareRecipe", ua.RecipeIdExternalDataType(Id="brick"),
                                      ua.RecipeIdInternalDataType(Id=""))  # fmt: skip
            events = Events()
            subscription = await engineer.create_subscription(20, events)
            await subscription.subscribe_events(system, ua.NodeId(RESULT_READY_EVENT, mv))
            prepare = (recipes.nodeid, (await recipes.get_child(f"{mv}:PrepareRecipe")).nodeid,
                       (ua.Variant(ua.RecipeIdExternalDataType(Id="grass")),
                        ua.Variant(ua.RecipeIdInternalDataType(Id=""))))  # fmt: skip
            tokens = [c.uaclient.session.authentication_token for c in (engineer, observer)]
            seen = {
                "tokens": tokens,
                "without nonce": await borrow(endpoint, engineer, thief, nonce=b"\0" * 32,
                                              calls=(prepare,)),
                "with nonce": await borrow(endpoint, engineer, thief, nonce=None,
                                           calls=(prepare,)),
            }  # fmt: skip
            await automatic.call_method(f"{mv}:StartSingleJob", *job_args("b-1"))
            event = await asyncio.wait_for(events.queue.get(), 20)
            seen["event"] = event.Result.ProductId.Id if hasattr(event, "Result") else "received"
            return seen
        finally:
            await observer.disconnect()
            await engineer.disconnect()

    seen = asyncio.run(run())
    for token in seen["tokens"]:
        assert token.NodeIdType == ua.NodeIdType.ByteString and len(token.Identifier) == TOKEN_BYTES
    assert seen["tokens"][0] != seen["tokens"][1]
    assert seen["without nonce"] == ["BadApplicationSignatureInvalid", "BadUserAccessDenied"]
    assert seen["with nonce"] == ["BadUserAccessDenied", "BadUserAccessDenied"]
    assert seen["event"]  # the engineer's subscription still answers the engineer
    calls = [(c["user"], c["method"], c["arguments"]) for c in _controls(station)]
    assert not any("grass" in " ".join(arguments) for _, _, arguments in calls), calls
    rows = station.core.store.count_inspections()
    assert rows == 1  # the job ran as brick: the recipe was never switched


def test_same_user_transfers_are_journalled_and_monitored_items_have_quotas(
    station: LineStation, tmp_path: Path
) -> None:
    """An operator moves its own subscription to its second session (allowed, Part 4 5.13.7):
    journalled. An observer asks for 6,500 monitored items in each of three sessions: refused past 200 per session and
    400 per user (``BadTooManyMonitoredItems``), each refusal journalled."""
    endpoint, pki = _endpoint(station), LinePki(secure(tmp_path).pki_dir)
    operator = Attempt(pki, name="op-client", user="op-a", password=PASSWORD)
    observer = Attempt(pki, name="obs-client", user="obs", password=PASSWORD)
    node = ua.NodeId(ua.ObjectIds.Server_ServerStatus_CurrentTime)

    def items(count: int) -> ua.CreateMonitoredItemsParameters:
        return ua.CreateMonitoredItemsParameters(ItemsToCreate=[
            ua.MonitoredItemCreateRequest(
                ItemToMonitor=ua.ReadValueId(NodeId=node, AttributeId=ua.AttributeIds.Value),
                MonitoringMode=ua.MonitoringMode.Reporting,
                RequestedParameters=ua.MonitoringParameters(ClientHandle=n, SamplingInterval=100,
                                                            QueueSize=1))
            for n in range(count)])  # fmt: skip

    async def flood(client: Client) -> dict[str, str]:
        subscription = await client.uaclient.create_subscription(
            ua.CreateSubscriptionParameters(RequestedPublishingInterval=1000,
                                            RequestedLifetimeCount=300,
                                            RequestedMaxKeepAliveCount=100,
                                            PublishingEnabled=True), lambda *_: None)  # fmt: skip
        made, refusal = 0, "none"
        for _ in range(65):  # 6,500 asked for per session, 100 at a time
            params = items(100)
            params.SubscriptionId = subscription.SubscriptionId
            try:
                made += len(await client.uaclient.create_monitored_items(params))
            except ua.UaStatusCodeError as exc:
                refusal = ua.StatusCode(exc.code).name
                break
        return {"made": str(made), "refusal": refusal}

    async def transfer(client: Client) -> dict[str, str]:
        own = await client.uaclient.create_subscription(
            ua.CreateSubscriptionParameters(RequestedPublishingInterval=1000,
                                            RequestedLifetimeCount=300,
                                            RequestedMaxKeepAliveCount=100,
                                            PublishingEnabled=True), lambda *_: None)  # fmt: skip

        async def take(second: Client) -> dict[str, str]:
            results = await second.uaclient.transfer_subscriptions(
                ua.TransferSubscriptionsParameters(SubscriptionIds=[own.SubscriptionId])
            )
            return {"transfer": results[0].StatusCode.name}

        return await attempt(endpoint, operator, then=take)

    async def run() -> list[dict[str, str]]:
        flooded = [await attempt(endpoint, observer, then=flood) for _ in range(3)]
        return [*flooded, await attempt(endpoint, operator, then=transfer)]

    *flooded, moved = asyncio.run(run())
    assert [(f["made"], f["refusal"]) for f in flooded] == [
        ("200", "BadTooManyMonitoredItems"), ("200", "BadTooManyMonitoredItems"),
        ("0", "BadTooManyMonitoredItems"),  # the user's 400 held by its two other sessions
    ]  # fmt: skip
    assert moved["transfer"] == "Good", moved
    journal = [(c["user"], c["method"], c["result"]) for c in _controls(station)]
    assert journal.count(("obs", "CreateMonitoredItems", "BadTooManyMonitoredItems")) == 3
    assert ("op-a", "TransferSubscriptions", "Good") in journal

"""OPC 40100 server mode against real clients, security on: asyncua (this module run as a
MES process of its own: ``python -m tests.line.test_machine_vision <endpoint> <pki>``) and
node-opcua (``node/machine_vision_client.mjs``), an implementation nobody here wrote. Browse
to the VisionSystem, prepare a recipe, run a single job, receive ResultReady, read the result
and check it against the store; an untrusted client is refused. Raw service calls
(``bench._shared.attempt``) check that no session, identity or method gets past the gate unchecked."""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from asyncua import Client, ua
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bench._shared import (
    Attempt,
    Events,
    activate_foreign,
    attempt,
    camera_folder,
    job_args,
    line_config,
    mes_client,
    on_subscription,
    rogue,
    subscribe_until_refused,
)
from inspection.core.errors import ConfigError
from inspection.core.signing import load_public_key, verify_record
from inspection.line.config import LinkSecurity, MachineVisionConfig
from inspection.line.handshake import Answer, part_answer
from inspection.line.machine_vision import RESULT_READY_EVENT, VISION_SYSTEM_TYPE, load_client_types
from inspection.line.machine_vision.access import OpcUser, StationUsers, add_user, load_users
from inspection.line.machine_vision.model import ERROR_EVENT
from inspection.line.machine_vision.results import JobIds, VisionResults
from inspection.line.payload import SIGNED_RECORD, ResultPayload
from inspection.line.pki import LinePki, write_private
from inspection.line.station import LineStation
from inspection.store.models import OutboxEntry
from inspection.store.outbox import Outbox
from inspection.store.store import Store

from .helpers import free_port, secure

NODE_DIR = Path(__file__).parent / "node"
REPO = Path(__file__).resolve().parents[2]
PASSWORD = "a long operator password"
IMAGES = "https://cam-1.plant.example"  # the sinks' image links: the served payload's too
CAUSE = (ua.Variant(0, ua.VariantType.Int32), ua.Variant("test", ua.VariantType.String))


def _users(pki_dir: Path) -> None:
    """``mes``, ``mes-node`` and ``mes-old``: certificate users, admin, engineer and admin;
    ``op-a``/``op-b``: operators, ``eng``: an engineer, ``obs``: an observer, with
    ``PASSWORD``."""
    write_private(pki_dir / "opcua-users.yaml", _users_file())


@functools.cache
def _users_file() -> bytes:
    """The users file ``_users`` writes, made once per process: its four argon2 hashes took
    ~1 s of every station's start."""
    with tempfile.TemporaryDirectory() as scratch:
        users = Path(scratch) / "opcua-users.yaml"
        add_user(users, "mes", "admin", None)
        add_user(users, "mes-node", "engineer", None)
        add_user(users, "mes-old", "admin", None)
        for name, role in (("op-a", "operator"), ("op-b", "operator"), ("eng", "engineer"),
                           ("obs", "observer")):  # fmt: skip
            add_user(users, name, role, PASSWORD)
        return users.read_bytes()


def _build(tmp_path: Path, fp32_bundle: Path, tiny_product: Path, **options) -> LineStation:
    camera = camera_folder(tmp_path, tiny_product, count=options.pop("count", 4))
    _users(secure(tmp_path).pki_dir)
    config = MachineVisionConfig(enabled=True, port=free_port())
    built = LineStation.build(
        line_config(tmp_path, fp32_bundle, camera, machine_vision=config, **options)
    )
    built.start()
    return built


@pytest.fixture(scope="module")
def shared_station(tmp_path_factory: pytest.TempPathFactory, fp32_bundle: Path, tiny_product: Path):
    """One station for this module's tests that start from Preoperational with no job running
    (``station`` puts it back there): a station's start is ~5 s, most of it asyncua's address
    space and the OPC 40100 nodeset."""
    root = tmp_path_factory.mktemp("machine-vision")
    built = _build(root, fp32_bundle, tiny_product, image_base_url=IMAGES)
    yield built
    built.stop()


@pytest.fixture
def station(shared_station: LineStation):
    """``shared_station``; after the test an admin MES resets it (Reset: jobs end, the recipe
    is unprepared, Preoperational). Results and the control journal stay: a test reads the
    journal's rows from ``_mark`` on and counts its own stored results."""
    yield shared_station
    endpoint, pki = _endpoint(shared_station), _pki(shared_station)
    ids = asyncio.run(_ids(endpoint, pki))
    plan = Attempt(pki, x509=True, calls=((ids["machine"], ids["Reset"], CAUSE),))
    assert _calls_of(asyncio.run(attempt(endpoint, plan))) == ["Good"] * 5, "reset refused"


def _endpoint(station: LineStation) -> str:
    return station.links["machine_vision"].endpoint


def _pki(station: LineStation) -> LinePki:
    """The station's PKI (its site CA, CRL, and the MES users' identities)."""
    return LinePki(station.config.security.pki_dir)


def _mark(station: LineStation) -> int:
    """How many rows the station's control journal holds: ``_controls(station, since=...)``
    reads the rows written after."""
    return len(station.core.models.registry.journal.controls())


async def _flow(endpoint: str, pki: LinePki) -> dict:
    client = await mes_client(endpoint, pki)
    async with client:
        mv = await load_client_types(client)  # a MES without the server's types in memory
        systems = [
            node
            for node in await client.nodes.objects.get_children()
            if await node.read_type_definition() == ua.NodeId(VISION_SYSTEM_TYPE, mv)
        ]
        assert len(systems) == 1, "one VisionSystemType object under Objects"
        system = systems[0]
        machine = await system.get_child(f"{mv}:VisionStateMachine")
        automatic = await machine.get_child(f"{mv}:AutomaticModeStateMachine")
        recipes = await system.get_child(f"{mv}:RecipeManagement")
        results = await system.get_child(f"{mv}:ResultManagement")

        async def states() -> tuple[str, str]:
            values = [
                await (await m.get_child("0:CurrentState")).read_value()
                for m in (machine, automatic)
            ]
            return values[0].Text, values[1].Text

        assert await states() == ("Preoperational", "")
        await machine.call_method(f"{mv}:SelectModeAutomatic")
        assert await states() == ("Operational", "Initialized")
        internal, completed, error = await recipes.call_method(
            f"{mv}:PrepareRecipe",
            ua.RecipeIdExternalDataType(Id="brick"),
            ua.RecipeIdInternalDataType(Id=""),
        )
        assert (completed, error, internal.Id) == (True, 0, "brick")
        assert internal.Version == "v0001-fp32"  # the live bundle
        assert await states() == ("Operational", "Ready")

        events = Events()
        subscription = await client.create_subscription(20, events)
        await subscription.subscribe_events(system, ua.NodeId(RESULT_READY_EVENT, mv))
        job, _error = await automatic.call_method(
            f"{mv}:StartSingleJob", *job_args("m-1", "part-1")
        )
        event = await asyncio.wait_for(events.queue.get(), 30)
        _handle, result, _error = await results.call_method(
            f"{mv}:GetResultById", event.ResultId, ua.Variant(1000, ua.VariantType.Int32)
        )
        after_job = await states()
        await automatic.call_method(f"{mv}:StartContinuous", *job_args("c-1"))
        continuous = [await asyncio.wait_for(events.queue.get(), 30) for _ in range(2)]
        await automatic.call_method(f"{mv}:Stop", ua.Variant(0, ua.VariantType.Int32), "test")
        after_stop = await states()
        with pytest.raises(ua.UaStatusCodeError, match="BadInvalidState"):  # only in a job
            await automatic.call_method(f"{mv}:Abort", ua.Variant(0, ua.VariantType.Int32), "")
        with pytest.raises(ua.UaStatusCodeError, match="BadUserAccessDenied"):  # not by clients
            await (await machine.get_child("0:CurrentState")).write_value(ua.LocalizedText("x"))
        await machine.call_method(f"{mv}:Reset", ua.Variant(0, ua.VariantType.Int32), "test")
        after_reset = await states()  # from Operational: Reset is always executable
        await machine.call_method(f"{mv}:SelectModeAutomatic")  # Reset unprepared the recipe
        await recipes.call_method(
            f"{mv}:PrepareRecipe",
            ua.RecipeIdExternalDataType(Id="brick"),
            ua.RecipeIdInternalDataType(Id=""),
        )
        safety = await system.get_child(f"{mv}:SafetyStateManagement")
        await automatic.call_method(f"{mv}:StartContinuous", *job_args("s-1"))
        await safety.call_method(f"{mv}:ReportSafetyState", True, "light curtain")
        after_safety = await states()
        with pytest.raises(ua.UaStatusCodeError, match="BadInvalidState"):
            await automatic.call_method(f"{mv}:StartSingleJob", *job_args("m-3"))
        reported = await (await safety.get_child(f"{mv}:VisionSafetyInformation")).read_value()
        await safety.call_method(f"{mv}:ReportSafetyState", False, "")
        for unknown in ("gravel", "grass"):  # not served here; served without a live model
            with pytest.raises(ua.UaStatusCodeError, match="BadNotFound"):
                await recipes.call_method(
                    f"{mv}:PrepareRecipe",
                    ua.RecipeIdExternalDataType(Id=unknown),
                    ua.RecipeIdInternalDataType(Id=""),
                )
        await machine.call_method(f"{mv}:Halt", ua.Variant(0, ua.VariantType.Int32), "test")
        with pytest.raises(ua.UaStatusCodeError, match="BadInvalidState"):
            await automatic.call_method(f"{mv}:StartSingleJob", *job_args("m-2"))
        halted = await states()
        await machine.call_method(f"{mv}:Reset", ua.Variant(0, ua.VariantType.Int32), "test")
        return {  # as JSON: tuples become lists
            "job": job.Id,
            "event": (event.ResultId.Id, event.ResultState, event.JobId.Id),
            "result": (result.ResultId.Id, result.ResultState, result.MeasId.Id),
            "content": result.ResultContent[0].Value,
            "continuous": [e.JobId.Id for e in continuous],
            "states": (after_job, after_stop, after_reset, halted, await states()),
            "safety": (after_safety, reported),
        }


def _check_against_store(station: LineStation, result_id: str, state: int, content: str) -> None:
    """The served content is the payload as the station signed and stored it, byte for byte
    (the sinks' payload, image links and all), never one rebuilt from the row."""
    row = station.core.store.get_inspection(result_id)
    assert content == Outbox(station.core.store).payload(result_id, SIGNED_RECORD)
    payload = ResultPayload.from_json(content)
    payload.verify(load_public_key(station.config.security.pki_dir / "signing" / "cam-1.pub"))
    assert payload.images["image"] == f"{IMAGES}/v1/inspections/{row.id}/image"
    assert (payload.inspection_id, payload.verdict) == (row.id, row.verdict)
    assert (payload.bundle_id, payload.score) == (row.bundle_id, round(row.score, 6))
    assert len(payload.regions) == len(row.regions)
    assert state == 1  # ResultStateDataType Completed, OK or NG alike: the verdict is the content


def test_asyncua_client_runs_a_job_and_reads_the_signed_result(station: LineStation) -> None:
    """The MES is a process of its own: it has only the types the server describes."""
    command = [sys.executable, "-m", "tests.line.test_machine_vision", _endpoint(station)]
    done = subprocess.run(
        [*command, str(_pki(station).root)],
        capture_output=True, text=True, timeout=180, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    result_id, state, job = seen["event"]
    assert job == seen["job"] != "m-1"  # the station's job id; the MES's MeasId below
    assert seen["result"] == [result_id, state, "m-1"]
    _check_against_store(station, result_id, state, seen["content"])
    row = station.core.store.get_inspection(result_id)
    assert (row.request_id, row.part_id, row.source) == ("cam-1/m-1", "part-1", "opcua-40100")
    assert len(set(seen["continuous"])) == 1 and len(seen["continuous"]) == 2  # one job
    assert station.handler.product == "brick"  # refused recipes left the selection alone
    assert seen["safety"] == [["Operational", "Ready"], "light curtain"]  # continuous stopped
    assert seen["states"] == [
        ["Operational", "Ready"],
        ["Operational", "Ready"],
        ["Preoperational", ""],
        ["Halted", ""],
        ["Preoperational", ""],
    ]


async def _server_state(connect) -> int:
    async with await connect() as client:
        return await client.nodes.server_state.read_value()


def test_untrusted_and_plain_clients_are_refused(station: LineStation, tmp_path: Path) -> None:
    endpoint = _endpoint(station)

    async def trusted() -> Client:
        return await mes_client(endpoint, _pki(station))

    async def foreign() -> Client:  # a certificate the site's CA did not sign
        client = await mes_client(endpoint, _pki(station))
        identity = LinePki(tmp_path / "rogue").identity("mes", "urn:inspection:mes")
        await client.set_security(
            SecurityPolicyBasic256Sha256, str(identity.certificate), str(identity.private_key)
        )
        return client

    async def plain() -> Client:  # security policy None
        return Client(endpoint, timeout=10)

    assert asyncio.run(_server_state(trusted)) == 0
    with pytest.raises(ua.UaStatusCodeError, match="BadCertificateUntrusted"):
        asyncio.run(_server_state(foreign))
    with pytest.raises(ua.UaStatusCodeError, match="BadSecurityPolicyRejected"):  # the server
        asyncio.run(_server_state(plain))


def test_without_link_security_the_endpoint_is_plain(
    tmp_path: Path, fp32_bundle: Path, tiny_product: Path
) -> None:
    camera = camera_folder(tmp_path, tiny_product, count=1)
    vision = MachineVisionConfig(enabled=True, port=free_port(), anonymous="observer")
    config = line_config(
        tmp_path, fp32_bundle, camera, machine_vision=vision,
        security=LinkSecurity(mode="none", pki_dir=tmp_path / "pki"),
    )  # fmt: skip
    station = LineStation.build(config)
    station.start()
    try:

        async def plain() -> Client:
            return Client(_endpoint(station), timeout=10)

        assert asyncio.run(_server_state(plain)) == 0  # anonymous, as configured
        machine = ua.NodeId("VisionSystem.VisionStateMachine", 1)
        halt = (machine, ua.NodeId("VisionSystem.VisionStateMachine.Halt", 1), CAUSE)
        steps = asyncio.run(attempt(_endpoint(station), Attempt(None, calls=(halt,))))
        assert _calls_of(steps) == ["Good"] * 4 + ["BadUserAccessDenied"]  # an observer
    finally:
        station.stop()


def test_sign_mode_signs_without_encrypting(
    tmp_path: Path, fp32_bundle: Path, tiny_product: Path
) -> None:
    """``security.mode: sign``: Basic256Sha256 Sign only; a SignAndEncrypt client finds no
    endpoint of its mode."""
    camera = camera_folder(tmp_path, tiny_product, count=1)
    security = LinkSecurity(mode="sign", pki_dir=secure(tmp_path).pki_dir)
    _users(security.pki_dir)
    config = line_config(
        tmp_path, fp32_bundle, camera,
        machine_vision=MachineVisionConfig(enabled=True, port=free_port()), security=security,
    )  # fmt: skip
    station = LineStation.build(config)
    station.start()
    try:
        pki, endpoint = LinePki(security.pki_dir), _endpoint(station)

        async def signing() -> Client:
            return await mes_client(endpoint, pki, ua.MessageSecurityMode.Sign)

        async def encrypting() -> Client:
            return await mes_client(endpoint, pki)

        assert asyncio.run(_server_state(signing)) == 0
        with pytest.raises(ua.UaError, match="No matching endpoints"):
            asyncio.run(_server_state(encrypting))
        password = Attempt(pki, user="op-a", password=PASSWORD, mode=ua.MessageSecurityMode.Sign,
                           server_certificate=pki.root / "station-cam-1-server.pem")  # fmt: skip
        steps = asyncio.run(attempt(endpoint, password))
        assert steps["ActivateSession"] == "BadIdentityTokenRejected", steps  # readable blob
    finally:
        station.stop()


def test_the_section_is_checked_by_key() -> None:
    with pytest.raises(ConfigError, match=r"machine_vision: port must be in 1\.\.65535, got 0"):
        MachineVisionConfig(port=0)


def _node_client() -> list[str]:
    """The node-opcua client's command; node-opcua is installed into ``node/node_modules``
    (git-ignored) by ``scripts/services.sh``, or here when missing. Skips without node/npm."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node/npm not installed: no node-opcua interoperability test")
    if not (NODE_DIR / "node_modules" / "node-opcua").is_dir():
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--prefix", str(NODE_DIR)],
            check=True, capture_output=True, timeout=600,
        )  # fmt: skip
    return [node, str(NODE_DIR / "machine_vision_client.mjs")]


def _run_node(command: list[str], **options) -> dict:
    done = subprocess.run(
        [*command, json.dumps(options)],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ | {"NODE_NO_WARNINGS": "1"},
    )
    lines = done.stdout.strip().splitlines()
    assert lines, f"node-opcua client printed nothing; stderr: {done.stderr[-2000:]}"
    return json.loads(lines[-1])


def test_node_opcua_client_runs_a_job_and_bad_ones_are_refused(
    station: LineStation, tmp_path: Path
) -> None:
    """The site CA and the CRL the line PKI publishes are all node-opcua needs."""
    command = _node_client()
    pki = _pki(station)
    identity = pki.identity("mes-node", "urn:inspection:mes-node")
    site = {"endpoint": _endpoint(station), "ca": str(pki.trusted_dir / "ca.der"),
            "crl": str(pki.crl_file)}  # fmt: skip
    trusted = site | {"certificate": str(identity.certificate),
                      "privateKey": str(identity.private_key), "uri": identity.uri}  # fmt: skip
    seen = _run_node(
        command, **trusted, pki=str(tmp_path / "node-pki"), flow=True, user="eng",
        password=PASSWORD,
    )  # fmt: skip
    assert "error" not in seen, seen["error"]
    assert seen["recipe"] == {"id": "brick", "version": "v0001-fp32", "completed": True}
    event, result = seen["event"], seen["result"]
    assert seen["job"] == event["jobId"]  # the station's job id
    assert result["measId"] == "n-1"
    assert (result["resultId"], result["resultState"]) == (event["resultId"], event["resultState"])
    _check_against_store(station, result["resultId"], result["resultState"], result["content"])
    row = station.core.store.get_inspection(result["resultId"])
    assert (row.part_id, row.source) == ("node-part", "opcua-40100")

    probes = {  # each refused: its own self-signed certificate, no user, a wrong password
        "untrusted": site | {"user": "eng", "password": PASSWORD},
        "anonymous": trusted,
        "wrong password": trusted | {"user": "eng", "password": "not the password"},
    }
    refusals = {}
    for name, options in probes.items():
        probe = _run_node(command, **options, pki=str(tmp_path / f"node-{name}"), flow=False)
        assert probe["connected"] is False, (name, probe)
        refusals[name] = probe["error"]
    assert "BadCertificateUntrusted" in refusals["untrusted"], refusals
    assert "ANONYMOUS user token policy" in refusals["anonymous"], refusals  # none offered
    assert "BadUserAccessDenied" in refusals["wrong password"], refusals


async def _ids(endpoint: str, pki: LinePki) -> dict[str, ua.NodeId]:
    """The NodeIds of the VisionSystem's objects and methods, browsed by the admin MES."""
    async with await mes_client(endpoint, pki) as client:
        mv = await client.get_namespace_index("http://opcfoundation.org/UA/MachineVision")
        children = await client.nodes.objects.get_children()
        names = [(await n.read_browse_name()).Name for n in children]
        system = children[names.index("VisionSystem")]
        machine = await system.get_child(f"{mv}:VisionStateMachine")
        automatic = await machine.get_child(f"{mv}:AutomaticModeStateMachine")
        ids = {"machine": machine.nodeid, "automatic": automatic.nodeid}
        for parent, name in ((machine, "Halt"), (machine, "Reset"), (automatic, "StartContinuous"),
                             (automatic, "Stop"), (machine, "SelectModeAutomatic")):  # fmt: skip
            ids[name] = (await parent.get_child(f"{mv}:{name}")).nodeid
        return ids


def _calls_of(attempted: dict[str, str]) -> list[str]:
    return list(attempted.values())


def test_raw_service_calls_get_no_session_identity_or_method_unchecked(
    tmp_path: Path, fp32_bundle: Path, tiny_product: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Each service sent whatever the one before answered, as an attacker does. A station of
    its own: it revokes a user, locks another and reads the whole journal."""
    station = _build(tmp_path, fp32_bundle, tiny_product, image_base_url=IMAGES)
    try:
        _raw_calls(station, tmp_path, caplog)
    finally:
        station.stop()


def _raw_calls(station: LineStation, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    endpoint, pki = _endpoint(station), _pki(station)
    ids = asyncio.run(_ids(endpoint, pki))
    halt = (ids["machine"], ids["Halt"], CAUSE)
    select = (ids["machine"], ids["SelectModeAutomatic"], ())
    bad_policy, good = "BadSecurityPolicyRejected", "Good"
    cases = {  # plan -> OpenSecureChannel, GetEndpoints, CreateSession, ActivateSession, Call
        "None channel": (Attempt(None, calls=(halt,)), [good, good, *[bad_policy] * 3]),
        "Sign channel (only SignAndEncrypt offered)": (
            Attempt(pki, mode=ua.MessageSecurityMode.Sign, calls=(halt,),
                    server_certificate=pki.root / "station-cam-1-server.pem"), [bad_policy]),
        "anonymous": (Attempt(pki, calls=(halt,)),
                      [good, good, good, "BadIdentityTokenRejected", "BadUserAccessDenied"]),
        "wrong password": (Attempt(pki, user="op-a", password="not it", calls=(halt,)),
                           [good, good, good, "BadUserAccessDenied", "BadUserAccessDenied"]),
        "unknown user": (Attempt(pki, user="nobody", password=PASSWORD, calls=(halt,)),
                         [good, good, good, "BadUserAccessDenied", "BadUserAccessDenied"]),
        "untrusted channel, no certificate in CreateSession": (
            Attempt(rogue(tmp_path), session_certificate=False, calls=(halt,)),
            [good, good, "BadCertificateUntrusted", "BadSessionIdInvalid",
             "BadUserAccessDenied"]),
        "operator calls Halt": (Attempt(pki, user="op-a", password=PASSWORD, calls=(halt,)),
                                [good] * 4 + ["BadUserAccessDenied"]),
        "operator selects the mode": (Attempt(pki, user="op-a", password=PASSWORD,
                                              calls=(select,)), [good] * 4 + ["BadUserAccessDenied"]),
        "engineer selects the mode": (Attempt(pki, user="eng", password=PASSWORD,
                                              calls=(select,)), [good] * 5),
        "admin (X509 user) halts": (Attempt(pki, x509=True, calls=(halt,)), [good] * 5),
        "revoked X509 user halts": (Attempt(pki, x509=True, user_certificate="mes-old",
                                            calls=(halt,)),
                                    [good, good, good, "BadUserAccessDenied",
                                     "BadUserAccessDenied"]),
    }  # fmt: skip
    pki.revoke(pki.identity("mes-old", "urn:inspection:mes-old").certificate)
    seen = {
        name: _calls_of(asyncio.run(attempt(endpoint, plan))) for name, (plan, _) in cases.items()
    }
    assert seen == {name: expected for name, (_, expected) in cases.items()}
    refusals = [r.getMessage() for r in caplog.records if "OPC 40100 refused" in r.getMessage()]
    for what in (
        "service",
        "ActivateSession",
        "CreateSession",
        "OpenSecureChannel",
        "Halt by op-a (operator)",
    ):
        assert any(what in message for message in refusals), (what, refusals)
    assert any("wrong user name or password" in m for m in refusals)
    assert any("mes-old from" in m and "revoked (site CRL)" in m for m in refusals)
    calls = [(c["user"], c["role"], c["method"], c["arguments"], c["result"])
             for c in _controls(station)]  # fmt: skip
    assert calls == [  # every method call that reached a session, in order, run or refused
        ("op-a", "operator", "Halt", ["0", "test"], "BadUserAccessDenied"),
        ("op-a", "operator", "SelectModeAutomatic", [], "BadUserAccessDenied"),
        ("eng", "engineer", "SelectModeAutomatic", [], "Good"),
        ("mes", "admin", "Halt", ["0", "test"], "Good"),
    ]

    def op_b(password: str) -> str:
        plan = Attempt(pki, user="op-b", password=password)
        return asyncio.run(attempt(endpoint, plan))["ActivateSession"]

    guesses = [op_b(f"guess number {n}") for n in range(5)]
    assert guesses == ["BadUserAccessDenied"] * 5
    assert op_b(PASSWORD) == "BadUserAccessDenied"  # locked after 5 failures, for 30 s
    assert re.search(r"op-b from .*: locked for (29|30) s after 5 failures", caplog.text)


def _controls(station: LineStation, since: int = 0) -> list[dict]:
    """The station's control journal's outcomes from row ``since`` on (``_mark``; a call it
    admitted is recorded ``Started`` first, just before): each row's signature checked with its
    public key, the chain whole."""
    public = load_public_key(station.config.security.pki_dir / "signing" / "cam-1.pub")
    journal = station.core.models.registry.journal
    rows = journal.controls()
    for row in rows:
        verify_record(row, public, "control call")
        assert row["station"] == "cam-1" and row["peer"].startswith("127.0.0.1:")
    assert [check for _, check in journal.control_checks("cam-1")] == ["verified"] * len(rows)
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))
    for before, row in itertools.pairwise(rows):  # a call that ran was journalled first
        if row["result"] == "Good" and row["method"] != "TransferSubscriptions":
            assert (before["method"], before["result"]) == (row["method"], "Started"), row
    return [row for row in rows[since:] if row["result"] != "Started"]


async def _machine(client: Client) -> tuple[int, dict]:
    """The MES's view: the namespace and the VisionSystem's nodes; Operational, brick ready."""
    mv = await load_client_types(client)
    system = await client.nodes.objects.get_child("1:VisionSystem")  # the server URI namespace
    machine = await system.get_child(f"{mv}:VisionStateMachine")
    nodes = {"system": system, "machine": machine,
             "automatic": await machine.get_child(f"{mv}:AutomaticModeStateMachine"),
             "recipes": await system.get_child(f"{mv}:RecipeManagement"),
             "results": await system.get_child(f"{mv}:ResultManagement")}  # fmt: skip
    await machine.call_method(f"{mv}:SelectModeAutomatic")
    await nodes["recipes"].call_method(f"{mv}:PrepareRecipe",
                                       ua.RecipeIdExternalDataType(Id="brick"),
                                       ua.RecipeIdInternalDataType(Id=""))  # fmt: skip
    return mv, nodes


async def _single_jobs(mv: int, nodes: dict, events: Events, count: int) -> int:
    """``count`` single jobs one after another: how many ResultReady events arrived."""
    received = 0
    for n in range(count):
        await nodes["automatic"].call_method(f"{mv}:StartSingleJob", *job_args(f"a-{n}"))
        try:
            await asyncio.wait_for(events.queue.get(), 10)
        except TimeoutError:
            continue
        received += 1
        await _until_ready(nodes["automatic"])
    return received


async def _until_ready(automatic) -> None:
    for _ in range(100):
        if (await (await automatic.get_child("0:CurrentState")).read_value()).Text == "Ready":
            return
        await asyncio.sleep(0.05)


def test_a_session_acts_only_on_its_own_subscriptions_within_quotas(
    station: LineStation, tmp_path: Path
) -> None:
    """An observer (asyncua raw calls, then node-opcua) goes for the MES's subscription, fills
    its quotas and activates the MES's session from channels of its own; the MES still gets
    every result, and each refusal is in the control journal."""
    endpoint, pki, mark = _endpoint(station), _pki(station), _mark(station)
    observer = Attempt(pki, name="obs-client", user="obs", password=PASSWORD)
    node = _node_client()
    node_identity = pki.identity("mes-node", "urn:inspection:mes-node")
    node_options = {"endpoint": endpoint, "ca": str(pki.trusted_dir / "ca.der"),
                    "crl": str(pki.crl_file), "certificate": str(node_identity.certificate),
                    "privateKey": str(node_identity.private_key), "uri": node_identity.uri,
                    "pki": str(tmp_path / "node-pki"), "user": "obs",
                    "password": PASSWORD}  # fmt: skip

    async def run() -> dict:
        async with await mes_client(endpoint, pki) as client:
            mv, nodes = await _machine(client)
            events = Events()
            subscription = await client.create_subscription(20, events)
            await subscription.subscribe_events(nodes["system"], ua.NodeId(RESULT_READY_EVENT, mv))
            sid = subscription.subscription_id
            seen = {
                "asyncua": await attempt(endpoint, observer, then=on_subscription(sid)),
                "node-opcua": await asyncio.to_thread(_run_node, node, **node_options,
                                                      attack=sid),
                "quota": [(await attempt(endpoint, observer, then=subscribe_until_refused()))
                          for _ in range(3)],
                "self-signed channel": await activate_foreign(
                    endpoint, client, Attempt(rogue(tmp_path), user="op-a", password=PASSWORD)),
                "site-CA channel": await activate_foreign(
                    endpoint, client, Attempt(pki, name="other", user="op-a", password=PASSWORD)),
            }  # fmt: skip
            mes_more = await client.create_subscription(20, Events())  # its own quota is free
            seen["events"] = await _single_jobs(mv, nodes, events, 3)
            await mes_more.delete()
            return seen

    seen = asyncio.run(run())
    attacks = ("SetPublishingMode", "ModifySubscription", "TransferSubscriptions",
               "DeleteSubscriptions")  # fmt: skip
    refused = ["BadSubscriptionIdInvalid", "BadSubscriptionIdInvalid", "BadUserAccessDenied",
               "BadSubscriptionIdInvalid"]  # fmt: skip
    assert [seen["asyncua"][a] for a in attacks] == refused, seen["asyncua"]
    assert [seen["node-opcua"].get(a) for a in attacks] == refused, seen["node-opcua"]
    quota = [(q["made"], q["refusal"]) for q in seen["quota"]]
    assert quota == [("5", "BadTooManySubscriptions")] * 2 + [("0", "BadTooManySubscriptions")]
    assert seen["self-signed channel"] == seen["site-CA channel"] == "BadSecurityChecksFailed"
    assert seen["events"] == 3  # the MES heard every result
    journal = [(c["user"], c["method"], c["result"]) for c in _controls(station, mark)]
    for attack, status in zip(attacks, refused, strict=True):
        assert journal.count(("obs", attack, status)) == 2, journal  # asyncua and node-opcua
    assert journal.count(("obs", "CreateSubscription", "BadTooManySubscriptions")) == 3


def test_a_client_stops_only_its_own_job_unless_admin(station: LineStation) -> None:
    endpoint, pki, mark = _endpoint(station), _pki(station), _mark(station)
    ids = asyncio.run(_ids(endpoint, pki))
    asyncio.run(attempt(endpoint, Attempt(pki, x509=True, calls=(
        (ids["machine"], ids["SelectModeAutomatic"], ()),))))  # fmt: skip
    asyncio.run(_prepare(endpoint, pki))
    start = (ids["automatic"], ids["StartContinuous"], job_args("c-own"))
    stop = (ids["automatic"], ids["Stop"], CAUSE)

    def run(user: str, *calls: tuple) -> list[str]:
        plan = Attempt(pki, user=user, password=PASSWORD, calls=calls)
        return _calls_of(asyncio.run(attempt(endpoint, plan)))[4:]

    assert run("op-a", start) == ["Good"]
    assert run("op-b", stop) == ["BadUserAccessDenied"]  # another operator's job
    assert run("op-a", stop) == ["Good"]  # its owner
    assert run("op-a", start) == ["Good"]
    admin = Attempt(pki, x509=True, calls=(stop,))
    assert _calls_of(asyncio.run(attempt(endpoint, admin)))[4:] == ["Good"]  # an admin
    jobs = [(c["user"], c["method"], c["result"]) for c in _controls(station, mark)
            if c["method"] in ("StartContinuous", "Stop")]  # fmt: skip
    assert jobs == [("op-a", "StartContinuous", "Good"), ("op-b", "Stop", "BadUserAccessDenied"),
                    ("op-a", "Stop", "Good"), ("op-a", "StartContinuous", "Good"),
                    ("mes", "Stop", "Good")]  # fmt: skip


async def _prepare(endpoint: str, pki: LinePki) -> None:
    async with await mes_client(endpoint, pki) as client:
        mv = await load_client_types(client)
        system = await client.nodes.objects.get_child("1:VisionSystem")  # the server URI namespace
        recipes = await system.get_child(f"{mv}:RecipeManagement")
        await recipes.call_method(
            f"{mv}:PrepareRecipe",
            ua.RecipeIdExternalDataType(Id="brick"),
            ua.RecipeIdInternalDataType(Id=""),
        )


async def _jobs(endpoint: str, pki: LinePki, jobs: list[tuple[str, str, str, str]]) -> list:
    """Each (MeasId, PartId, RecipeId, ProductId) as a single job: its ResultReady event
    (ResultId, ResultState, MeasId), the status name of a refused call, and the states and
    ErrorEventType messages after all."""
    async with await mes_client(endpoint, pki) as client:
        mv, nodes = await _machine(client)
        system, automatic = nodes["system"], nodes["automatic"]
        results, errors = Events(), Events()
        for handler, event_type in ((results, RESULT_READY_EVENT), (errors, ERROR_EVENT)):
            subscription = await client.create_subscription(20, handler)
            await subscription.subscribe_events(system, ua.NodeId(event_type, mv))
        seen: list = []
        for meas, part, recipe, product in jobs:
            try:
                await automatic.call_method(
                    f"{mv}:StartSingleJob", *job_args(meas, part, recipe, product)
                )
            except ua.UaStatusCodeError as exc:
                seen.append(ua.StatusCode(exc.code).name)
                continue
            event = await asyncio.wait_for(results.queue.get(), 30)
            seen.append((event.ResultId.Id, event.ResultState, event.MeasId.Id))
            for _ in range(100):  # back in Ready
                state = await (await automatic.get_child("0:CurrentState")).read_value()
                if state.Text == "Ready":
                    break
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # the last ErrorEventType
        error_events = []
        while not errors.queue.empty():
            error_events.append((await errors.queue.get()).Message.Text)
        state = await (await automatic.get_child("0:CurrentState")).read_value()
        return [seen, state.Text, error_events]


def test_jobs_name_their_recipe_and_a_reused_meas_id_is_a_new_part(station: LineStation) -> None:
    """RecipeId / ProductId must be the prepared recipe; a reused MeasId gets a new capture
    and ResultId (OPC 40100-1: no assumption about its uniqueness), even with the same part:
    a job never replays."""
    endpoint, pki = _endpoint(station), _pki(station)
    seen, state, errors = asyncio.run(_jobs(endpoint, pki, [
        ("r-1", "p-1", "", ""), ("r-1", "p-2", "", ""), ("r-1", "p-2", "", ""),
        ("r-2", "", "grass", ""), ("r-3", "", "", "gravel"), ("r-4", "", "brick", "brick"),
    ]))  # fmt: skip
    first, second, retry, recipe, product, named = seen
    assert [s[1:] for s in (first, second, retry)] == [(1, "r-1")] * 3
    assert len({first[0], second[0], retry[0]}) == 3
    rows = {station.core.store.get_inspection(i[0]).part_id for i in (first, second)}
    assert rows == {"p-1", "p-2"}
    assert (recipe, product) == ("BadInvalidArgument", "BadInvalidArgument")
    assert named[1:] == (1, "r-4") and state == "Ready" and errors == []


async def _continuous_twice(endpoint: str, pki: LinePki, meas: str, parts: int) -> list[list]:
    """StartContinuous with MeasId ``meas`` for ``parts`` results, Stop, and at once again with
    the same MeasId: each run's (ResultId, MeasId) of every ResultReady event."""
    async with await mes_client(endpoint, pki) as client:
        mv, nodes = await _machine(client)
        system, automatic = nodes["system"], nodes["automatic"]
        events = Events()
        subscription = await client.create_subscription(20, events)
        await subscription.subscribe_events(system, ua.NodeId(RESULT_READY_EVENT, mv))
        runs = []
        for _ in range(2):
            await automatic.call_method(f"{mv}:StartContinuous", *job_args(meas))
            seen = [await asyncio.wait_for(events.queue.get(), 30) for _ in range(parts)]
            await automatic.call_method(f"{mv}:Stop", *CAUSE)  # after the part in flight
            await asyncio.sleep(0.3)  # its event
            while not events.queue.empty():
                seen.append(events.queue.get_nowait())
            runs.append([(e.ResultId.Id, e.MeasId.Id) for e in seen])
        return runs


def test_a_continuous_job_restarted_with_the_same_meas_id_captures_every_part(
    station: LineStation,
) -> None:
    """The second run's parts carry the first run's MeasIds (c-1, c-1-1...) but each is a
    capture of its own with a new ResultId, never the first run's verdict."""
    endpoint, pki = _endpoint(station), _pki(station)
    stored = station.core.store.count_inspections()
    first, second = asyncio.run(_continuous_twice(endpoint, pki, "c-1", parts=4))
    assert [m for _, m in second[:4]] == [m for _, m in first[:4]] == [
        "c-1", "c-1-1", "c-1-2", "c-1-3"
    ]  # fmt: skip
    ids = [r for r, _ in first + second]
    assert len(set(ids)) == len(ids)
    assert station.core.store.count_inspections() - stored == len(ids)  # one per result


def test_a_failed_part_ends_ready_with_an_error_event(
    tmp_path: Path, fp32_bundle: Path, tiny_product: Path
) -> None:
    """A camera out of images: ResultState 4 (Failed), an ErrorEventType event, Ready."""
    built = _build(tmp_path, fp32_bundle, tiny_product, count=1, loop=False)
    try:
        endpoint, pki = _endpoint(built), LinePki(secure(tmp_path).pki_dir)
        seen, state, errors = asyncio.run(
            _jobs(endpoint, pki, [("f-1", "", "", ""), ("f-2", "", "", "")])
        )
    finally:
        built.stop()
    assert [s[1:] for s in seen] == [(1, "f-1"), (4, "f-2")]
    assert state == "Ready"
    assert len(errors) == 1 and "f-2" in errors[0] and "error 1" in errors[0], errors  # NO_IMAGE


def test_a_part_past_its_timeout_is_fetched_under_the_id_the_mes_was_given(
    tmp_path: Path, fp32_bundle: Path, tiny_product: Path
) -> None:
    """``inspect_timeout_s`` shorter than an inspection: the MES is told at once (Processing,
    a signed answer), then its stored verdict follows under the same ResultId with every id
    the job was started with."""
    built = _build(
        tmp_path, fp32_bundle, tiny_product, inspect_timeout_s=0.001, image_base_url=IMAGES
    )
    endpoint, pki = _endpoint(built), LinePki(secure(tmp_path).pki_dir)

    async def run() -> tuple:
        async with await mes_client(endpoint, pki) as client:
            mv, nodes = await _machine(client)
            events = Events()
            subscription = await client.create_subscription(20, events)
            await subscription.subscribe_events(nodes["system"], ua.NodeId(RESULT_READY_EVENT, mv))
            job = job_args("t-1", "part-t", "brick")
            await nodes["automatic"].call_method(f"{mv}:StartSingleJob", *job)
            told, late = [await asyncio.wait_for(events.queue.get(), 30) for _ in range(2)]
            _handle, result, _error = await nodes["results"].call_method(
                f"{mv}:GetResultById", told.ResultId, ua.Variant(1000, ua.VariantType.Int32)
            )
            return told, late, result

    try:
        told, late, result = asyncio.run(run())
    finally:
        built.stop()
    assert (told.ResultState, late.ResultState, result.ResultState) == (2, 1, 1)
    assert told.ResultId.Id == late.ResultId.Id == result.ResultId.Id
    public = load_public_key(built.config.security.pki_dir / "signing" / "cam-1.pub")
    answer = json.loads(getattr(told.ResultContent[0], "Value", told.ResultContent[0]))
    verify_record(answer, public, "timed-out answer")
    assert (answer["error_code"], answer["request_id"]) == (4, "t-1")  # TIMEOUT
    row_id = ResultPayload.from_json(result.ResultContent[0].Value).inspection_id
    assert row_id != result.ResultId.Id  # the row's own id is in the signed payload
    _check_against_store(built, row_id, result.ResultState, result.ResultContent[0].Value)
    for carried in (late, result):
        assert (carried.MeasId.Id, carried.PartId.Id, carried.ExternalRecipeId.Id,
                carried.ProductId.Id, carried.JobId.Id) == (
                    "t-1", "part-t", "brick", "brick", told.JobId.Id)  # fmt: skip
    assert result.ProcessingTimes.EndTime >= result.ProcessingTimes.StartTime


def _user_certificate(pki: LinePki, name: str, *, sign: bool) -> bytes:
    """A certificate of the site CA for user ``name`` (DER), with or without the
    digitalSignature key usage."""
    ca, ca_key = pki._load_ca()
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    usage = x509.KeyUsage(digital_signature=sign, content_commitment=False,
                          key_encipherment=True, data_encipherment=False, key_agreement=False,
                          key_cert_sign=False, crl_sign=False, encipher_only=False,
                          decipher_only=False)  # fmt: skip
    built = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca.subject)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - timedelta(minutes=1)).not_valid_after(now + timedelta(days=1))
             .add_extension(usage, critical=True).sign(ca_key, hashes.SHA256()))  # fmt: skip
    return built.public_bytes(serialization.Encoding.DER)


def test_an_x509_user_needs_a_certificate_that_may_sign_and_is_not_revoked(
    tmp_path: Path,
) -> None:
    pki = LinePki(tmp_path / "pki")
    users = StationUsers({"mes": OpcUser("admin", certificate=True)}, None, pki)
    signing = _user_certificate(pki, "mes", sign=True)
    assert users._certificate(signing) == ("mes", "admin", "")
    assert users._certificate(_user_certificate(pki, "mes", sign=False)) == (
        "mes", None, "user certificate may not sign (key usage)")  # fmt: skip
    foreign = _user_certificate(LinePki(tmp_path / "rogue"), "mes", sign=True)  # same CA name
    assert users._certificate(foreign) == (
        "mes",
        None,
        "user certificate not signed by the site CA",
    )
    pem = tmp_path / "mes.pem"
    pem.write_bytes(
        x509.load_der_x509_certificate(signing).public_bytes(serialization.Encoding.PEM)
    )
    pki.revoke(pem)
    assert users._certificate(signing) == ("mes", None, "user certificate revoked (site CRL)")


def test_a_part_of_several_views_is_served_as_signed_text_only(tmp_path: Path) -> None:
    """Its answer signed as a record with the station key, then each view's stored payload."""
    store = Store.migrated(f"sqlite:///{tmp_path / 'line.db'}", tmp_path / "blobs")
    key = LinePki(tmp_path / "pki").signing_key("cam-1")
    views = []
    for view, verdict in (("top", "NG"), ("side", "OK")):
        payload = f'{{"signed": "payload of {view}"}}'
        row = store.add_inspection(
            product="brick", station_id="cam-1", score=0.7, threshold=0.5, verdict=verdict,
            model_version="brick/v0001", bundle_id="v0001-fp32", latency_ms=1.0, width=8,
            height=8, image_sha="0" * 64, request_id=f"p-1.{view}",
            outbox=[OutboxEntry(SIGNED_RECORD, f"p-1.{view}", payload, delivered=True)],
        )  # fmt: skip
        views.append((view, Answer(f"p-1.{view}", 0, product="brick", verdict=verdict,
                                   score=0.7, inspection_id=row.id)))  # fmt: skip
    answer = part_answer("p-1", views, 12.0)
    ids = JobIds("job-1", "brick", "brick", "carrier-7")
    content = VisionResults(None, store, "cam-1", key).content(answer, ids)  # type: ignore[arg-type]
    assert content[1:] == ['{"signed": "payload of top"}', '{"signed": "payload of side"}']
    record = json.loads(content[0])
    verify_record(record, key.public_key(), "part answer")
    assert (record["verdict"], [v["view"] for v in record["views"]]) == ("NG", ["top", "side"])
    assert (record["job_id"], record["part_id"]) == ("job-1", "carrier-7")


def test_the_users_file_is_checked_by_key(tmp_path: Path) -> None:
    users = tmp_path / "users.yaml"
    add_user(users, "j.smith", "engineer", PASSWORD)
    add_user(users, "mes-1", "operator", None)
    loaded = load_users(users)
    assert (loaded["j.smith"].role, loaded["mes-1"].certificate) == ("engineer", True)
    assert loaded["j.smith"].password_hash.startswith("$argon2id$")
    assert oct(users.stat().st_mode & 0o777) == "0o600"
    with pytest.raises(ConfigError, match="at least 12 characters"):
        add_user(users, "short", "operator", "too short")
    for entry, message in (
        ({"role": "boss", "certificate": True}, "must be one of"),
        ({"role": "operator"}, "either 'password_hash' or 'certificate: true'"),
        ({"role": "operator", "certificat": True}, "certificat"),
    ):
        users.write_text(json.dumps({"x": entry}))
        with pytest.raises(ConfigError, match=message):
            load_users(users)


if __name__ == "__main__":  # the asyncua MES process: <endpoint> <pki dir> -> JSON line
    print(json.dumps(asyncio.run(_flow(sys.argv[1], LinePki(Path(sys.argv[2]))))))

"""OPC 40100 server mode against real clients, security on: asyncua (this module run as a
MES process of its own: ``python -m tests.line.test_machine_vision <endpoint> <pki>``) and
node-opcua (``node/machine_vision_client.mjs``), an implementation nobody here wrote. Browse
to the VisionSystem, prepare a recipe, run a single job, receive ResultReady, read the result
and check it against the store; an untrusted client is refused."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from asyncua import Client, ua
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from inspection.core.errors import ConfigError
from inspection.core.signing import load_public_key
from inspection.line.config import LinkSecurity, MachineVisionConfig
from inspection.line.machine_vision import RESULT_READY_EVENT, VISION_SYSTEM_TYPE, load_client_types
from inspection.line.payload import ResultPayload
from inspection.line.pki import LinePki
from inspection.line.security import trust_list_validator
from inspection.line.station import LineStation

from .helpers import free_port, secure
from .station_env import camera_folder, line_config

NODE_DIR = Path(__file__).parent / "node"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def station(tmp_path: Path, fp32_bundle: Path, tiny_product: Path):
    camera = camera_folder(tmp_path, tiny_product, count=4)
    config = MachineVisionConfig(enabled=True, port=free_port())
    built = LineStation.build(line_config(tmp_path, fp32_bundle, camera, machine_vision=config))
    built.start()
    yield built
    built.stop()


def _endpoint(station: LineStation) -> str:
    assert station.machine_vision is not None
    return station.machine_vision.endpoint


async def _mes(
    endpoint: str,
    pki: LinePki,
    mode: ua.MessageSecurityMode = ua.MessageSecurityMode.SignAndEncrypt,
) -> Client:
    """A MES client with a certificate the site's CA signed (``pki``), trusting the station."""
    client = Client(endpoint, timeout=10)
    identity = pki.identity("mes", "urn:inspection:mes")
    client.application_uri = identity.uri
    await client.set_security(
        SecurityPolicyBasic256Sha256, str(identity.certificate), str(identity.private_key),
        mode=mode,
    )  # fmt: skip
    client.certificate_validator = (await trust_list_validator(pki, peer="server")).validate
    return client


class _Events:
    def __init__(self) -> None:
        self.queue: asyncio.Queue = asyncio.Queue()

    def event_notification(self, event) -> None:
        self.queue.put_nowait(event)


def _job_arguments(meas_id: str, part_id: str = "") -> list:
    """StartSingleJob / StartContinuous inputs: MeasId, PartId, RecipeId, ProductId (empty:
    the prepared recipe), Parameters."""
    return [
        ua.MeasIdDataType(Id=meas_id),
        ua.PartIdDataType(Id=part_id),
        ua.RecipeIdExternalDataType(Id=""),
        ua.ProductIdDataType(Id=""),
        ua.Variant([], ua.VariantType.Variant),
    ]


async def _flow(endpoint: str, pki: LinePki) -> dict:
    client = await _mes(endpoint, pki)
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

        events = _Events()
        subscription = await client.create_subscription(20, events)
        await subscription.subscribe_events(system, ua.NodeId(RESULT_READY_EVENT, mv))
        job, _error = await automatic.call_method(
            f"{mv}:StartSingleJob", *_job_arguments("m-1", "part-1")
        )
        event = await asyncio.wait_for(events.queue.get(), 30)
        _handle, result, _error = await results.call_method(
            f"{mv}:GetResultById", event.ResultId, ua.Variant(1000, ua.VariantType.Int32)
        )
        after_job = await states()
        await automatic.call_method(f"{mv}:StartContinuous", *_job_arguments("c-1"))
        continuous = [await asyncio.wait_for(events.queue.get(), 30) for _ in range(2)]
        await automatic.call_method(f"{mv}:Stop", ua.Variant(0, ua.VariantType.Int32), "test")
        after_stop = await states()
        safety = await system.get_child(f"{mv}:SafetyStateManagement")
        await automatic.call_method(f"{mv}:StartContinuous", *_job_arguments("s-1"))
        await safety.call_method(f"{mv}:ReportSafetyState", True, "light curtain")
        after_safety = await states()
        with pytest.raises(ua.UaStatusCodeError, match="BadInvalidState"):
            await automatic.call_method(f"{mv}:StartSingleJob", *_job_arguments("m-3"))
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
            await automatic.call_method(f"{mv}:StartSingleJob", *_job_arguments("m-2"))
        halted = await states()
        await machine.call_method(f"{mv}:Reset", ua.Variant(0, ua.VariantType.Int32), "test")
        return {  # as JSON: tuples become lists
            "job": job.Id,
            "event": (event.ResultId.Id, event.ResultState, event.JobId.Id),
            "result": (result.ResultId.Id, result.ResultState, result.MeasId.Id),
            "content": result.ResultContent[0].Value,
            "continuous": [e.JobId.Id for e in continuous],
            "states": (after_job, after_stop, halted, await states()),
            "safety": (after_safety, reported),
        }


def _check_against_store(station: LineStation, result_id: str, state: int, content: str) -> None:
    row = station.core.store.get_inspection(result_id)
    payload = ResultPayload.from_json(content)
    payload.verify(load_public_key(station.config.security.pki_dir / "signing" / "cam-1.pub"))
    assert (payload.inspection_id, payload.verdict) == (row.id, row.verdict)
    assert (payload.bundle_id, payload.score) == (row.bundle_id, round(row.score, 6))
    assert len(payload.regions) == len(row.regions)
    assert state == {"OK": 1, "NG": 2}[row.verdict]


def test_asyncua_client_runs_a_job_and_reads_the_signed_result(
    station: LineStation, tmp_path: Path
) -> None:
    """The MES is a process of its own: it has only the types the server describes."""
    command = [sys.executable, "-m", "tests.line.test_machine_vision", _endpoint(station)]
    done = subprocess.run(
        [*command, str(secure(tmp_path).pki_dir)],
        capture_output=True, text=True, timeout=180, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    result_id, state, job = seen["event"]
    assert job == seen["job"] == "m-1"
    assert seen["result"] == [result_id, state, "m-1"]
    _check_against_store(station, result_id, state, seen["content"])
    row = station.core.store.get_inspection(result_id)
    assert (row.request_id, row.part_id, row.source) == ("cam-1/m-1", "part-1", "opcua-40100")
    assert seen["continuous"] == ["c-1", "c-1"]  # one job, a result per part
    assert station.handler.product == "brick"  # refused recipes left the selection alone
    assert seen["safety"] == [["Operational", "Ready"], "light curtain"]  # continuous stopped
    assert seen["states"] == [
        ["Operational", "Ready"],
        ["Operational", "Ready"],
        ["Halted", ""],
        ["Preoperational", ""],
    ]


async def _server_state(connect) -> int:
    async with await connect() as client:
        return await client.nodes.server_state.read_value()


def test_untrusted_and_plain_clients_are_refused(station: LineStation, tmp_path: Path) -> None:
    endpoint = _endpoint(station)

    async def trusted() -> Client:
        return await _mes(endpoint, LinePki(secure(tmp_path).pki_dir))

    async def foreign() -> Client:  # a certificate the site's CA did not sign
        client = await _mes(endpoint, LinePki(secure(tmp_path).pki_dir))
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
    with pytest.raises(ua.UaError, match="No matching endpoints"):
        asyncio.run(_server_state(plain))


def test_without_link_security_the_endpoint_is_plain(
    tmp_path: Path, fp32_bundle: Path, tiny_product: Path
) -> None:
    camera = camera_folder(tmp_path, tiny_product, count=1)
    config = line_config(
        tmp_path, fp32_bundle, camera,
        machine_vision=MachineVisionConfig(enabled=True, port=free_port()),
        security=LinkSecurity(mode="none", pki_dir=tmp_path / "pki"),
    )  # fmt: skip
    station = LineStation.build(config)
    station.start()
    try:

        async def plain() -> Client:
            return Client(_endpoint(station), timeout=10)

        assert asyncio.run(_server_state(plain)) == 0
    finally:
        station.stop()


def test_sign_mode_signs_without_encrypting(
    tmp_path: Path, fp32_bundle: Path, tiny_product: Path
) -> None:
    """``security.mode: sign``: Basic256Sha256 Sign only; a SignAndEncrypt client finds no
    endpoint of its mode."""
    camera = camera_folder(tmp_path, tiny_product, count=1)
    security = LinkSecurity(mode="sign", pki_dir=secure(tmp_path).pki_dir)
    config = line_config(
        tmp_path, fp32_bundle, camera,
        machine_vision=MachineVisionConfig(enabled=True, port=free_port()), security=security,
    )  # fmt: skip
    station = LineStation.build(config)
    station.start()
    try:
        pki, endpoint = LinePki(security.pki_dir), _endpoint(station)

        async def signing() -> Client:
            return await _mes(endpoint, pki, ua.MessageSecurityMode.Sign)

        async def encrypting() -> Client:
            return await _mes(endpoint, pki)

        assert asyncio.run(_server_state(signing)) == 0
        with pytest.raises(ua.UaError, match="No matching endpoints"):
            asyncio.run(_server_state(encrypting))
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


def _empty_crl(pki: LinePki, path: Path) -> Path:
    """The site CA's (empty) revocation list, DER: node-opcua refuses a CA-signed certificate
    whose CA has none (the line PKI publishes no CRL yet: docs/line-integration.md)."""
    ca = x509.load_pem_x509_certificate(pki.ca_file.read_bytes())
    key = serialization.load_pem_private_key((pki.root / "ca.key").read_bytes(), password=None)
    now = datetime.now(timezone.utc)
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.subject)
        .last_update(now - timedelta(minutes=5))
        .next_update(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(crl.public_bytes(serialization.Encoding.DER))
    return path


def _run_node(command: list[str], *args: str) -> dict:
    done = subprocess.run(
        [*command, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ | {"NODE_NO_WARNINGS": "1"},
    )
    lines = done.stdout.strip().splitlines()
    assert lines, f"node-opcua client printed nothing; stderr: {done.stderr[-2000:]}"
    return json.loads(lines[-1])


def test_node_opcua_client_runs_a_job_and_an_untrusted_one_is_refused(
    station: LineStation, tmp_path: Path
) -> None:
    command = _node_client()
    pki = LinePki(secure(tmp_path).pki_dir)
    identity = pki.identity("mes-node", "urn:inspection:mes-node")
    site = [str(pki.trusted_dir / "ca.der"), str(_empty_crl(pki, tmp_path / "ca.crl"))]
    seen = _run_node(
        command, _endpoint(station), str(tmp_path / "node-pki"), *site,
        str(identity.certificate), str(identity.private_key), identity.uri,
    )  # fmt: skip
    assert "error" not in seen, seen["error"]
    assert seen["recipe"] == {"id": "brick", "version": "v0001-fp32", "completed": True}
    event, result = seen["event"], seen["result"]
    assert seen["job"] == event["jobId"] == result["measId"] == "n-1"
    assert (result["resultId"], result["resultState"]) == (event["resultId"], event["resultState"])
    _check_against_store(station, result["resultId"], result["resultState"], result["content"])
    row = station.core.store.get_inspection(result["resultId"])
    assert (row.part_id, row.source) == ("node-part", "opcua-40100")

    # its own self-signed certificate (the site's CA did not sign it): the station refuses it
    refused = _run_node(command, _endpoint(station), str(tmp_path / "node-untrusted"), *site)
    assert refused["connected"] is False and "BadCertificateUntrusted" in refused["error"], refused


if __name__ == "__main__":  # the asyncua MES process: <endpoint> <pki dir> -> JSON line
    print(json.dumps(asyncio.run(_flow(sys.argv[1], LinePki(Path(sys.argv[2]))))))

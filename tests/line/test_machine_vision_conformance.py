"""OPC 40100 as the vendored NodeSet types it, against the running station: every Id output
argument and ResultReady field travels as its own DataType (its Default Binary encoding), read
by node-opcua (``node/machine_vision_client.mjs``, conformance) and by raw asyncua decoding (this
module run as a process without the MachineVision types: ``python -m
tests.line.test_machine_vision_conformance <endpoint> <pki>``, its inputs encoded by hand); the
start-up log has no browse-name collision; Halt, Reset and the mode selection follow the NodeSet's
transitions and state descriptions (OPC 40100-1 8.2); a failed part's signed content names the job's PartId. The expected types are read
from the NodeSet file, not from the server."""

from __future__ import annotations

import asyncio
import json
import logging
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from asyncua import ua

from bench._shared import Events, camera_folder, line_config, mes_client
from inspection.core.signing import SigningError, load_public_key, verify_record
from inspection.line.config import MachineVisionConfig
from inspection.line.machine_vision.access import add_user
from inspection.line.machine_vision.model import NODESET
from inspection.line.pki import LinePki
from inspection.line.station import LineStation

from .helpers import free_port, secure
from .test_machine_vision import PASSWORD, REPO, _node_client, _run_node, _users

UA = "{http://opcfoundation.org/UA/2011/03/UANodeSet.xsd}"
TYPES = "{http://opcfoundation.org/UA/2008/02/Types.xsd}"
EVENT_FIELDS = ("ResultId", "ResultState", "MeasId", "PartId", "JobId", "ExternalRecipeId",
                "InternalRecipeId", "ProductId", "InternalConfigurationId", "IsPartial",
                "IsSimulated", "CreationTime", "ProcessingTimes", "ResultContent")  # fmt: skip
"""The ResultReadyEventType fields a job fills (ExternalConfigurationId: none is supplied)."""
BUILT_IN_SUBTYPES = {"i=294": "i=13", "i=290": "i=11"}
"""UtcTime travels as DateTime, Duration as Double (OPC 10000-3 base types)."""
METHODS = {"PrepareRecipe": "1004", "StartSingleJob": "1021", "GetResultById": "1007"}
"""The methods with outputs a job's flow calls, by the NodeSet type (ns=1;i=...) they belong to."""


class NodeSet:
    """The vendored NodeSet file read as XML: each DataType's wire form (``MV:<DataType>`` for a
    structure, ``UA:<built-in id>`` for a built-in or a subtype of one) and its Default Binary
    encoding; method arguments and event fields by name."""

    def __init__(self) -> None:
        root = ET.parse(NODESET).getroot()
        self.nodes = {n.get("NodeId"): n for n in root if n.get("NodeId")}
        self.aliases = {a.get("Alias"): a.text for a in root.find(f"{UA}Aliases")}

    def _refs(self, node_id: str, kind: str, forward: bool = True) -> list[str]:
        refs = self.nodes[node_id].find(f"{UA}References")
        return [r.text for r in refs if r.get("ReferenceType") == kind
                and (r.get("IsForward") != "false") == forward]  # fmt: skip

    def wire(self, data_type: str) -> str:
        """``MV:3002`` for RecipeIdExternalDataType, ``UA:6`` for ResultStateDataType (Int32)."""
        data_type = self.aliases.get(data_type, data_type)
        while data_type.startswith("ns=1;"):
            node = self.nodes[data_type]
            if node.find(f"{UA}Definition") is not None and self._structure(data_type):
                return f"MV:{data_type.removeprefix('ns=1;i=')}"
            data_type = self._refs(data_type, "HasSubtype", forward=False)[0]
        return f"UA:{BUILT_IN_SUBTYPES.get(data_type, data_type).removeprefix('i=')}"

    def _structure(self, data_type: str) -> bool:
        while data_type.startswith("ns=1;"):
            data_type = self._refs(data_type, "HasSubtype", forward=False)[0]
        return data_type == "i=22"

    def encoding(self, data_type: str) -> str:
        """The Default Binary encoding a structure of ``MV:<id>`` travels under."""
        node_id = f"ns=1;i={data_type.removeprefix('MV:')}"
        for target in self._refs(node_id, "HasEncoding"):
            if self.nodes[target].get("BrowseName") == "Default Binary":
                return f"MV:{target.removeprefix('ns=1;i=')}"
        raise AssertionError(f"{node_id} has no Default Binary encoding")

    def _child(self, parent: str, name: str) -> str:
        children = self._refs(parent, "HasComponent") + self._refs(parent, "HasProperty")
        return next(c for c in children if self.nodes[c].get("BrowseName").endswith(f":{name}")
                    or self.nodes[c].get("BrowseName") == name)  # fmt: skip

    def outputs(self, method: str) -> list[str]:
        """The wire forms of ``method``'s OutputArguments."""
        arguments = self._child(self._child(f"ns=1;i={METHODS[method]}", method),
                                "OutputArguments")  # fmt: skip
        return [self.wire(a.find(f"{TYPES}DataType/{TYPES}Identifier").text)
                for a in self.nodes[arguments].iter(f"{TYPES}Argument")]  # fmt: skip

    def event_field(self, name: str) -> str:
        field = self.nodes[self._child("ns=1;i=1024", name)]
        return self.wire(field.get("DataType", "i=24"))


@pytest.fixture
def station(
    tmp_path: Path, fp32_bundle: Path, tiny_product: Path, caplog: pytest.LogCaptureFixture
):
    """One image (no loop): a station's second job fails (NO_IMAGE). ``adm``: an admin. Its
    start-up log is kept from INFO up."""
    caplog.set_level(logging.INFO)
    camera = camera_folder(tmp_path, tiny_product, count=1)
    pki_dir = secure(tmp_path).pki_dir
    _users(pki_dir)
    add_user(pki_dir / "opcua-users.yaml", "adm", "admin", PASSWORD)
    config = line_config(tmp_path, fp32_bundle, camera, loop=False,
                         machine_vision=MachineVisionConfig(enabled=True, port=free_port()))  # fmt: skip
    built = LineStation.build(config)
    built.start()
    yield built
    built.stop()


def _options(station: LineStation, tmp_path: Path) -> dict:
    pki = LinePki(secure(tmp_path).pki_dir)
    identity = pki.identity("mes-node", "urn:inspection:mes-node")
    return {"endpoint": station.links["machine_vision"].endpoint,
            "ca": str(pki.trusted_dir / "ca.der"), "crl": str(pki.crl_file),
            "certificate": str(identity.certificate), "privateKey": str(identity.private_key),
            "uri": identity.uri, "pki": str(tmp_path / "node-pki"), "user": "adm",
            "password": PASSWORD}  # fmt: skip


def test_node_opcua_reads_each_id_as_the_nodeset_types_it(
    station: LineStation, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    nodeset = NodeSet()
    seen = _run_node(_node_client(), **_options(station, tmp_path), conformance=True,
                     fields=list(EVENT_FIELDS))  # fmt: skip
    assert "error" not in seen, seen["error"]
    started = caplog.get_records("setup")  # the station's start-up log
    assert [r for r in started if "OPC 40100 VisionSystem at" in r.getMessage()]
    assert not [r for r in started if "collision" in r.getMessage().lower()]

    expected = {method: nodeset.outputs(method) for method in METHODS}
    assert expected["PrepareRecipe"][0] == "MV:3013"  # RecipeIdInternalDataType, not its base
    assert {m: seen["outputs"][m] for m in METHODS} == expected
    assert seen["events"] == {name: nodeset.event_field(name) for name in EVENT_FIELDS}
    ok, failed = seen["results"]
    result_fields = {"resultId": "ResultId", "measId": "MeasId", "partId": "PartId",
                     "externalRecipeId": "ExternalRecipeId", "productId": "ProductId",
                     "internalRecipeId": "InternalRecipeId", "jobId": "JobId",
                     "internalConfigurationId": "InternalConfigurationId",
                     "processingTimes": "ProcessingTimes"}  # fmt: skip
    for result in (ok, failed):
        assert result["fields"] == {f: nodeset.event_field(n) for f, n in result_fields.items()}

    # a failed part (NO_IMAGE): its signed content names the job's part
    assert (ok["resultState"], failed["resultState"]) == (1, 4)
    record = json.loads(failed["content"])
    public = load_public_key(station.config.security.pki_dir / "signing" / "cam-1.pub")
    verify_record(record, public, "failed part")
    assert (record["schema"], record["part_id"], record["request_id"]) == (
        "inspection.job-answer/1", "node-part", "k-2")  # fmt: skip
    assert record["error_code"] == 1 and record["job_id"]  # NO_IMAGE
    forged = record | {"part_id": "another part"}
    with pytest.raises(SigningError, match="bad signature"):
        verify_record(forged, public, "failed part")

    assert seen["machine"] == [  # (call, status, VisionStateMachine, AutomaticModeStateMachine)
        ["StartSingleJob, MeasId a String", "BadInvalidArgument", "Operational", "Ready"],
        ["Reset", "Good", "Preoperational", ""],
        ["Reset again", "Good", "Preoperational", ""],  # always executable
        ["PrepareRecipe preoperational", "BadInvalidState", "Preoperational", ""],  # no recipes
        ["SelectModeAutomatic", "Good", "Operational", "Initialized"],  # the recipe was reset
        ["StartSingleJob unprepared", "BadInvalidState", "Operational", "Initialized"],
        ["PrepareRecipe", "Good", "Operational", "Ready"],
        ["Halt", "Good", "Halted", ""],
        ["Halt again", "Good", "Halted", ""],  # without effect
        ["SelectModeAutomatic halted", "BadInvalidState", "Halted", ""],
        ["PrepareRecipe halted", "BadInvalidState", "Halted", ""],
        ["GetResultById halted", "Good", "Halted", ""],  # results survive a Halt
        ["Reset halted", "Good", "Preoperational", ""],
        ["SelectModeAutomatic after", "Good", "Operational", "Initialized"],  # a recipe does not
    ]
    calls = [(c["user"], c["method"], c["result"])
             for c in station.core.models.registry.journal.controls()]  # fmt: skip
    assert ("adm", "StartSingleJob", "BadInvalidArgument") in calls
    assert ("adm", "PrepareRecipe", "BadInvalidState") in calls


def test_raw_asyncua_decoding_sees_each_nodeset_encoding(
    station: LineStation, tmp_path: Path
) -> None:
    """A MES process that never loads the MachineVision types: each structure arrives as an
    ExtensionObject under the Default Binary encoding of the DataType the NodeSet gives it."""
    command = [sys.executable, "-m", "tests.line.test_machine_vision_conformance"]
    done = subprocess.run(
        [*command, station.links["machine_vision"].endpoint, str(secure(tmp_path).pki_dir)],
        capture_output=True, text=True, timeout=180, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    nodeset = NodeSet()

    def on_wire(form: str) -> str:
        return nodeset.encoding(form) if form.startswith("MV:") else form

    expected = {m: [on_wire(f) for f in nodeset.outputs(m)] for m in METHODS}
    assert {m: seen["outputs"][m] for m in METHODS} == expected
    assert seen["events"] == {n: on_wire(nodeset.event_field(n)) for n in EVENT_FIELDS}


def _raw_id(encoding: int, mv: int, text: str, optional: bool = True) -> ua.Variant:
    """An Id structure encoded by hand: its optional-field mask (none set), then ``Id``."""
    body = (struct.pack("<I", 0) if optional else b"") + struct.pack("<i", len(text.encode()))
    body += text.encode()
    return ua.Variant(ua.ExtensionObject(TypeId=ua.NodeId(encoding, mv), Body=body))


def _wire(variant: ua.Variant, mv: int) -> str:
    """``MV:<encoding>`` of an undecoded structure (anything decoded: ``decoded:<class>``), or
    ``UA:<built-in id>``; an array by its first element."""
    value = variant.Value[0] if variant.is_array and variant.Value else variant.Value
    if variant.VariantType == ua.VariantType.Variant:
        return "UA:24"  # BaseDataType: an array of Variants
    if variant.VariantType != ua.VariantType.ExtensionObject:
        return f"UA:{variant.VariantType.value}"
    if not isinstance(value, ua.ExtensionObject):
        return f"decoded:{type(value).__name__}"
    prefix = "MV" if value.TypeId.NamespaceIndex == mv else str(value.TypeId.NamespaceIndex)
    return f"{prefix}:{value.TypeId.Identifier}"


async def _raw_flow(endpoint: str, pki: LinePki) -> dict:
    async with await mes_client(endpoint, pki) as client:
        mv = await client.get_namespace_index("http://opcfoundation.org/UA/MachineVision")
        system = await client.nodes.objects.get_child("1:VisionSystem")
        machine = await system.get_child(f"{mv}:VisionStateMachine")
        automatic = await machine.get_child(f"{mv}:AutomaticModeStateMachine")
        recipes = await system.get_child(f"{mv}:RecipeManagement")
        results = await system.get_child(f"{mv}:ResultManagement")
        outputs: dict[str, list[str]] = {}

        async def call(parent, name: str, *args: ua.Variant) -> list[ua.Variant]:
            request = ua.CallMethodRequest(
                ObjectId=parent.nodeid,
                MethodId=(await parent.get_child(f"{mv}:{name}")).nodeid,
                InputArguments=list(args),
            )
            (result,) = await client.uaclient.call([request])
            result.StatusCode.check()
            outputs[name] = [_wire(v, mv) for v in result.OutputArguments]
            return result.OutputArguments

        await call(machine, "SelectModeAutomatic")
        await call(recipes, "PrepareRecipe", _raw_id(5002, mv, "brick"), _raw_id(5268, mv, ""))
        events = Events()
        subscription = await client.create_subscription(20, events)
        await subscription.subscribe_events(system, ua.NodeId(1024, mv))
        await call(automatic, "StartSingleJob", _raw_id(5006, mv, "raw-1"),
                   _raw_id(5013, mv, "raw-part"), _raw_id(5002, mv, ""), _raw_id(5224, mv, ""),
                   ua.Variant())  # fmt: skip  # Parameters: a null array
        event = await asyncio.wait_for(events.queue.get(), 30)
        fields = event.get_event_props_as_fields_dict()
        result_id = fields["ResultId"].Value  # an ExtensionObject: sent back as it came
        await call(results, "GetResultById", ua.Variant(result_id),
                   ua.Variant(1000, ua.VariantType.Int32))  # fmt: skip
        return {"outputs": outputs,
                "events": {name: _wire(fields[name], mv) for name in EVENT_FIELDS}}  # fmt: skip


if __name__ == "__main__":  # the raw MES process: <endpoint> <pki dir> -> JSON line
    print(json.dumps(asyncio.run(_raw_flow(sys.argv[1], LinePki(Path(sys.argv[2]))))))

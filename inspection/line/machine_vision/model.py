"""The MachineVision information model as this station uses it: NodeIds of the vendored
NodeSet (OPC 40100-1 1.0.0), ResultState values, and the NodeSet as asyncua imports it."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from asyncua import Client, ua

from inspection.line.handshake import Answer
from inspection.station.errors import ErrorCode

NODESET = Path(__file__).parents[1] / "nodesets" / "Opc.Ua.MachineVision.NodeSet2.xml"
MV_URI = "http://opcfoundation.org/UA/MachineVision"
_UA = "http://opcfoundation.org/UA/2011/03/UANodeSet.xsd"
# NodeIds (namespace MachineVision) of the types and of the states CurrentState.Id names
VISION_SYSTEM_TYPE, RECIPE_MANAGEMENT_TYPE, RESULT_MANAGEMENT_TYPE = 1003, 1004, 1007
SAFETY_STATE_MANAGEMENT_TYPE = 1009
AUTOMATIC_MODE_TYPE, RESULT_READY_EVENT, SELECT_MODE_AUTOMATIC = 1021, 1024, 7095
ERROR_EVENT = 1019
STATES = {"Preoperational": 5028, "Halted": 5029, "Error": 5030, "Operational": 5031}
AUTOMATIC_STATES = {"Initialized": 5056, "Ready": 5057, "SingleExecution": 5058,
                    "ContinuousExecution": 5059}  # fmt: skip
RUNNING = ("SingleExecution", "ContinuousExecution")
COMPLETED, PROCESSING, FAILED = 1, 2, 4
"""ResultStateDataType (OPC 40100-1 12.19): 1 Completed (processing carried out: OK or NG, the
verdict is in ResultContent), 2 Processing (no verdict within ``inspect_timeout_s``: the final
result follows under the same ResultId), 4 Failed (no verdict); 0 Undefined, 3 Aborted are not
used."""
_ID = ua.VariantType.ExtensionObject
EVENT_FIELDS = {  # ResultReadyEventType's fields that this station fills, as ResultDataType's
    "ResultId": _ID, "ResultState": ua.VariantType.Int32, "MeasId": _ID, "PartId": _ID,
    "JobId": _ID, "ExternalRecipeId": _ID, "InternalRecipeId": _ID, "ProductId": _ID,
    "InternalConfigurationId": _ID, "IsPartial": ua.VariantType.Boolean,
    "IsSimulated": ua.VariantType.Boolean, "CreationTime": ua.VariantType.DateTime,
    "ProcessingTimes": _ID, "ResultContent": ua.VariantType.Variant,
}  # fmt: skip


def result_state(answer: Answer) -> int:
    """The ResultState of a part's answer: Completed with a verdict, Processing while its
    inspection overruns, Failed without."""
    if answer.verdict is not None:
        return COMPLETED
    return PROCESSING if answer.error_code == ErrorCode.TIMEOUT else FAILED


def nodeset_xml() -> str:
    """The vendored NodeSet with each structure DataType that adds no field of its own given its
    parent's fields. OPC 40100-1 1.0.0 leaves the ``Definition`` of BinaryIdBaseDataType's three
    subtypes (RecipeIdExternal, RecipeIdInternal, ConfigurationId) empty; asyncua 2.1 imports
    such a type as an alias of its abstract parent, so its values travel under the parent's
    encoding and the start-up log warns of a browse-name collision. With the fields, each is
    a structure of its own: its own class, its Default Binary encoding, a DataTypeDefinition a
    client (node-opcua, asyncua) builds it from."""
    ET.register_namespace("", _UA)
    root = ET.parse(NODESET).getroot()
    types = {t.get("NodeId"): t for t in root.iter(f"{{{_UA}}}UADataType")}
    for datatype in types.values():
        definition = datatype.find(f"{{{_UA}}}Definition")
        parent = next((r.text for r in datatype.iter(f"{{{_UA}}}Reference")
                       if r.get("ReferenceType") == "HasSubtype"
                       and r.get("IsForward") == "false"), None)  # fmt: skip
        inherited = types[parent].find(f"{{{_UA}}}Definition") if parent in types else None
        if definition is not None and len(definition) == 0 and inherited is not None:
            definition.extend(inherited)
    return ET.tostring(root, encoding="unicode")


async def load_client_types(client: Client) -> int:
    """The MachineVision types for an asyncua client in a process without this server (built
    from the DataTypeDefinitions the server serves), and the namespace index."""
    await client.load_data_type_definitions()
    return await client.get_namespace_index(MV_URI)


def ok(*values: ua.Variant) -> list[ua.Variant]:
    """Method outputs ending with the spec's ``Error`` (Int32, 0: none)."""
    return [*values, ua.Variant(0, ua.VariantType.Int32)]

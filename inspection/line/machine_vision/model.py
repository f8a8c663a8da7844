"""The MachineVision information model as this station uses it: NodeIds of the vendored
NodeSet (OPC 40100-1 1.0.0), ResultState values, and the BinaryId subtypes asyncua misses."""

from __future__ import annotations

import logging
from dataclasses import make_dataclass
from pathlib import Path

from asyncua import Client, ua

from inspection.line.handshake import Answer
from inspection.station.errors import ErrorCode

NODESET = Path(__file__).parents[1] / "nodesets" / "Opc.Ua.MachineVision.NodeSet2.xml"
MV_URI = "http://opcfoundation.org/UA/MachineVision"
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
BINARY_IDS = {  # BinaryIdBaseDataType's subtypes: (DataType, its Default Binary encoding)
    "RecipeIdExternalDataType": (3002, 5002),
    "RecipeIdInternalDataType": (3013, 5268),
    "ConfigurationIdDataType": (3008, 5090),
}


def result_state(answer: Answer) -> int:
    """The ResultState of a part's answer: Completed with a verdict, Processing while its
    inspection overruns, Failed without."""
    if answer.verdict is not None:
        return COMPLETED
    return PROCESSING if answer.error_code == ErrorCode.TIMEOUT else FAILED


def register_binary_ids(mv: int) -> None:
    """Give each BinaryIdBaseDataType subtype its own class. asyncua 2.1 makes the three
    (no fields of their own) aliases of the base: a value then travels under the base's
    encoding, and one a client sends under the subtype's (node-opcua does) is not decoded."""
    for name, (type_id, encoding) in BINARY_IDS.items():
        subtype = make_dataclass(
            name, [], bases=(ua.BinaryIdBaseDataType,),
            namespace={"data_type": ua.NodeId(type_id, mv)},
        )  # fmt: skip
        ua.register_extension_object(name, ua.NodeId(encoding, mv), subtype, ua.NodeId(type_id, mv))


async def load_client_types(client: Client) -> int:
    """The MachineVision types for an asyncua client in a process without this server, and the
    namespace index: loaded, the BinaryIdBaseDataType subtypes given their classes, loaded again
    (a structure with such a field, ``ResultDataType``, is left out by the first load)."""
    mv = await client.get_namespace_index(MV_URI)
    noisy = [logging.getLogger(f"asyncua.{n}") for n in ("common.structures104", "ua.uatypes")]
    for logger in noisy:
        logger.disabled = True
    try:
        await client.load_data_type_definitions()
        register_binary_ids(mv)
        await client.load_data_type_definitions()
    finally:
        for logger in noisy:
            logger.disabled = False
    return mv


def ok(*values: ua.Variant) -> list[ua.Variant]:
    """Method outputs ending with the spec's ``Error`` (Int32, 0: none)."""
    return [*values, ua.Variant(0, ua.VariantType.Int32)]

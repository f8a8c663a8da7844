"""OPC 40100 (OPC UA for Machine Vision) server mode: the station as a VisionSystem.

``server`` (the state machines, recipes and jobs), ``space`` (its address space, channels and
identities), ``results`` (each part's result and events), ``access`` (sessions and roles),
``model`` (the NodeSet's ids and the types a client loads).
"""

from inspection.line.machine_vision.model import (
    RESULT_READY_EVENT,
    VISION_SYSTEM_TYPE,
    load_client_types,
)
from inspection.line.machine_vision.server import VisionSystemServer

__all__ = ["RESULT_READY_EVENT", "VISION_SYSTEM_TYPE", "VisionSystemServer", "load_client_types"]

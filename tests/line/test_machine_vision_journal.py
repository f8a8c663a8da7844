"""#92: the control journal decides, against the running OPC 40100 server with asyncua raw
service calls: a call is journalled before it takes effect and refused when the record cannot
be written; a call with wrongly typed arguments has no effect and is recorded as failed; a
refused-call flood is journalled in aggregate and alarmed; records are chained and signed, and a
forged or deleted one shows as such."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path

import pytest
from asyncua import ua
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench._shared import Attempt, attempt, job_args
from inspection.core.registry import Registry
from inspection.dashboard import models
from inspection.line.machine_vision.access import RefusalLimit, RefusalWarnings
from inspection.line.pki import LinePki
from inspection.line.station import LineStation

from .helpers import secure
from .test_machine_vision import PASSWORD, _build, _controls, _endpoint, _ids

EXTERNAL = "http://opcfoundation.org/UA/MachineVision"


@pytest.fixture
def station(tmp_path: Path, fp32_bundle: Path, tiny_product: Path):
    built = _build(tmp_path, fp32_bundle, tiny_product)
    yield built
    built.stop()


async def _more_ids(endpoint: str, pki: LinePki, ids: dict) -> dict:
    """PrepareRecipe, StartSingleJob and ReportSafetyState beside ``_ids``'s."""
    from bench._shared import mes_client

    async with await mes_client(endpoint, pki) as client:
        mv = await client.get_namespace_index(EXTERNAL)
        system = await client.nodes.objects.get_child("1:VisionSystem")
        recipes = await system.get_child(f"{mv}:RecipeManagement")
        safety = await system.get_child(f"{mv}:SafetyStateManagement")
        automatic = await client.get_node(ids["automatic"]).get_child(f"{mv}:StartSingleJob")
        return ids | {
            "recipes": recipes.nodeid,
            "PrepareRecipe": (await recipes.get_child(f"{mv}:PrepareRecipe")).nodeid,
            "safety": safety.nodeid,
            "ReportSafetyState": (await safety.get_child(f"{mv}:ReportSafetyState")).nodeid,
            "StartSingleJob": automatic.nodeid,
        }


def test_the_journal_decides(
    station: LineStation, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    endpoint, pki = _endpoint(station), LinePki(secure(tmp_path).pki_dir)
    ids = asyncio.run(_more_ids(endpoint, pki, asyncio.run(_ids(endpoint, pki))))
    select = (ids["machine"], ids["SelectModeAutomatic"], ())

    def prepare(product: str) -> tuple:
        return (ids["recipes"], ids["PrepareRecipe"],
                (ua.Variant(ua.RecipeIdExternalDataType(Id=product)),
                 ua.Variant(ua.RecipeIdInternalDataType(Id=""))))  # fmt: skip

    job = (ids["automatic"], ids["StartSingleJob"], job_args("j-1"))
    safety = (
        ids["safety"],
        ids["ReportSafetyState"],
        (ua.Variant("yes", ua.VariantType.String), ua.Variant(5, ua.VariantType.Int32)),
    )

    def run(user: str, *calls: tuple) -> list[str]:
        plan = Attempt(pki, user=user, password=PASSWORD, calls=calls)
        return list(asyncio.run(attempt(endpoint, plan)).values())[4:]

    assert run("eng", select, prepare("brick")) == ["Good", "Good"]
    journal_file = station.core.models.registry.journal.root / "control-cam-1.jsonl"
    kept = journal_file.read_bytes()
    journal_file.unlink()
    journal_file.mkdir()  # unwritable, even for root
    try:
        unrecorded = run("eng", prepare("grass")) + run("op-a", job)
    finally:
        journal_file.rmdir()
        journal_file.write_bytes(kept)
    assert unrecorded == ["BadResourceUnavailable"] * 2
    assert station.handler.product == "brick" and station.core.store.count_inspections() == 0
    assert "the control journal cannot be written" in caplog.text

    assert run("op-a", safety) == ["BadInvalidArgument"]
    assert station.links["machine_vision"]._safety_triggered is False
    with caplog.at_level(logging.ERROR):
        flood = run("obs", *[select] * 30)  # an observer's refused calls, one session
    assert flood == ["BadUserAccessDenied"] * 30
    assert "refused-call flood" in caplog.text
    calls = [(c["user"], c["method"], c["result"]) for c in _controls(station)]
    assert ("op-a", "ReportSafetyState", "BadInvalidArgument") in calls
    assert calls.count(("obs", "SelectModeAutomatic", "BadUserAccessDenied")) == 10  # the burst
    assert not any(c[1] == "PrepareRecipe" and c[2] != "Good" for c in calls)


def test_a_refusal_flood_is_counted_in_the_log_not_written_line_by_line(caplog) -> None:
    """11,000 warnings in 17 s from one observer before; now ``burst`` a window and one count."""
    warnings = RefusalWarnings(burst=3, window_s=0.2)
    with caplog.at_level(logging.WARNING):
        for _ in range(50):
            warnings.warn("obs (observer)", "Halt", "needs role admin")
        warnings.warn("eng (engineer)", "Halt", "needs role admin")  # another source: its own
        time.sleep(0.25)
        warnings.warn("obs (observer)", "Halt", "needs role admin")
    lines = [r.getMessage() for r in caplog.records]
    assert lines.count("OPC 40100 refused: Halt by obs (observer): needs role admin") == 4
    assert "OPC 40100 refused: 47 more refusals by obs (observer) within 0.2 s" in lines[4]
    assert "OPC 40100 refused: Halt by eng (engineer): needs role admin" in lines
    assert len(lines) == 6


def test_a_refusal_flood_is_journalled_in_aggregate() -> None:
    limit = RefusalLimit(burst=2, window_s=0.2)
    call = {"session": "7", "peer": "10.0.0.9:5000", "user": "obs", "role": "observer",
            "arguments": [], "method": "Halt", "result": "BadUserAccessDenied"}  # fmt: skip
    written = [len(limit.admit(call)) for _ in range(5)]
    assert written == [1, 1, 0, 0, 0]
    time.sleep(0.25)
    [aggregate, itself] = limit.admit(call)
    assert (aggregate["method"], aggregate["arguments"]) == ("RefusedCalls", ["3", "Halt x3"])
    assert itself == call


def test_a_forged_or_deleted_control_record_shows_as_such(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry")
    key, journal = Ed25519PrivateKey.generate(), registry.journal
    call = {"user": "eng1", "role": "engineer", "peer": "10.0.0.5:50000", "arguments": []}
    for method in ("SelectModeAutomatic", "PrepareRecipe", "StartSingleJob", "Stop"):
        journal.record_control("cam-1", call | {"method": method, "result": "Good"}, key)
    path = journal.root / "control-cam-1.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    forged = rows[1] | {"user": "op-b", "signature": "A" * 88}  # a zero-ish signature
    path.write_text("".join(json.dumps(r) + "\n" for r in (rows[0], forged, rows[3])))
    frame = models.control_frame(registry).iloc[::-1]  # oldest first
    assert list(frame["check"]) == ["verified", "forged", "1 missing before"]
    assert list(frame["seq"]) == [1, 2, 4]

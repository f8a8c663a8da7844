"""Trigger -> answer with a real model, store and file camera: verdicts and every error code."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from bench._shared import camera_folder, line_config
from inspection.line.handshake import (
    Answer,
    Cycles,
    Delivery,
    ErrorCode,
    Replay,
    ResultCode,
    Trigger,
    TriggerError,
    replay,
)
from inspection.line.station import LineStation
from inspection.store.models import utcnow

from .helpers import slow_first_capture


@pytest.fixture
def station(tmp_path: Path, fp32_bundle: Path, tiny_product: Path):
    camera = camera_folder(tmp_path, tiny_product, count=2)
    (camera / "009.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    built = LineStation.build(line_config(tmp_path, fp32_bundle, camera, loop=False))
    built.core.models.refresh()
    yield built
    built.stop()


def test_triggers_get_verdicts_then_each_error_code(station: LineStation) -> None:
    handler = station.handler
    first = handler.handle(Trigger("r-1", None, "part-1"), source="opcua")
    assert first.error_code == ErrorCode.NONE and first.result in (ResultCode.OK, ResultCode.NG)
    assert first.product == "brick" and first.timings_ms["inference_ms"] > 0
    row = station.core.store.get_inspection(first.inspection_id or "")
    assert (row.request_id, row.part_id, row.source) == ("cam-1/r-1", "part-1", "opcua")

    # The same request and part again as a retry the link's handshake shows: the stored result,
    # marked replayed (without that evidence, a capture: the tests below).
    retry = Delivery(retry=True, since=utcnow() - timedelta(seconds=5))
    again = handler.handle(Trigger("r-1", None, "part-1"), source="opcua", delivery=retry)
    assert again.inspection_id == first.inspection_id and again.replayed and not first.replayed
    assert again.timings_ms["capture_ms"] == 0.0

    cases = [
        (Trigger("r-2", "gravel"), ErrorCode.UNKNOWN_PRODUCT, "not served here"),
        (Trigger("r-3", "grass"), ErrorCode.NO_MODEL, "no live bundle"),
        (Trigger("bad id!"), ErrorCode.BAD_TRIGGER, "request_id"),
        (Trigger("r-4"), ErrorCode.NONE, ""),  # second (last good) image
        (Trigger("r-5"), ErrorCode.BAD_IMAGE, "009.png"),
        (Trigger("r-6"), ErrorCode.NO_IMAGE, "all 3 images were served"),
    ]
    for trigger, code, message in cases:
        answer = handler.handle(trigger, source="mqtt")
        assert (answer.error_code, answer.result == ResultCode.ERROR) == (code, code != 0)
        assert message in answer.message
        assert Answer.from_json(answer.to_json()) == answer
    assert station.publisher.outbox.backlog() == {}  # no sinks configured: no outbox rows


def test_a_retry_of_a_request_still_being_inspected_waits_for_it(
    tmp_path: Path, fp32_bundle: Path, tiny_product: Path
) -> None:
    """A PLC retrying an answer that timed out (``Cycles``: the same trigger, unacknowledged):
    the retry joins the inspection in flight; one capture, one row, the verdict replayed. The
    same trigger once the verdict was acknowledged is a new capture."""
    camera = camera_folder(tmp_path, tiny_product, count=2)
    built = LineStation.build(line_config(tmp_path, fp32_bundle, camera, inspect_timeout_s=0.5))
    built.core.models.refresh()
    slow_first_capture(built, hold_s=1.0)
    cycles, trigger = Cycles(retry_s=10.0), Trigger("c-1", None, "part-c")
    try:
        timed_out = built.handler.handle(trigger, source="s7", delivery=cycles.delivery(trigger))
        cycles.answered(timed_out)
        cycles.trigger_fell()  # the PLC read TIMEOUT: no verdict acknowledged
        joined, retries = timed_out, []
        while joined.error_code == ErrorCode.TIMEOUT and len(retries) < 20:  # as a PLC retries
            retries.append(cycles.delivery(trigger))
            joined = built.handler.handle(trigger, source="s7", delivery=retries[-1])
            cycles.answered(joined)
            cycles.trigger_fell()  # TIMEOUT read again, or the verdict: the cycle is over
        assert cycles.delivery(trigger) == Delivery()
        anew = built.handler.handle(trigger, source="s7")
    finally:
        built.stop()
    assert timed_out.error_code == ErrorCode.TIMEOUT and all(d.retry for d in retries)
    assert joined.error_code == ErrorCode.NONE and joined.replayed
    assert anew.inspection_id != joined.inspection_id and not anew.replayed
    assert built.core.store.count_inspections() == 2


def test_a_retry_is_bounded_by_the_links_retry_time() -> None:
    """Only the next trigger, the same in every field with a PartId, unacknowledged and within
    ``retry_s``, is a retry; anything else begins a cycle."""
    cycles, trigger = Cycles(retry_s=0.2), Trigger("1", "brick", "carrier-1")
    assert cycles.delivery(trigger) == Delivery()
    assert cycles.delivery(trigger).retry  # no answer yet (a reconnect): a retry
    time.sleep(0.25)
    assert cycles.delivery(trigger) == Delivery()  # past retry_s: a new cycle
    assert cycles.delivery(Trigger("1", "brick", "carrier-2")) == Delivery()  # another part
    assert cycles.delivery(Trigger("1", "brick")) == Delivery()
    assert cycles.delivery(Trigger("1", "brick")) == Delivery()  # no PartId: never a retry


@dataclass(frozen=True)
class _Stored:
    product: str
    part_id: str | None
    created_at: datetime = datetime(2026, 1, 1, 12, tzinfo=timezone.utc)


CYCLE = datetime(2026, 1, 1, 11, 59, tzinfo=timezone.utc)
RETRY = Delivery(retry=True, since=CYCLE)
REDELIVERED = Delivery(retry=True, since=CYCLE, redelivered=True)
EARLIER = _Stored("brick", "p-1", CYCLE - timedelta(seconds=1))


@pytest.mark.parametrize(
    ("delivery", "part_id", "stored", "decision"),
    [
        (RETRY, "p-1", _Stored("brick", "p-1"), Replay.STORED),  # the named part, this cycle
        (Delivery(), "p-1", _Stored("brick", "p-1"), Replay.CAPTURE),  # a PartId alone: no
        (RETRY, "p-1", EARLIER, Replay.CAPTURE),  # stored before the cycle: another round's
        (RETRY, None, _Stored("brick", None), Replay.CAPTURE),  # an id alone proves nothing
        (RETRY, "p-1", _Stored("brick", "p-2"), Replay.CAPTURE),  # another part
        (RETRY, "p-1", _Stored("grass", "p-1"), Replay.CAPTURE),  # another product
        (RETRY, "p-1", None, Replay.CAPTURE),  # nothing stored
        (REDELIVERED, "p-1", _Stored("brick", "p-1"), Replay.STORED),
        (REDELIVERED, "p-1", EARLIER, Replay.REFUSE),  # older than retry_s
        (REDELIVERED, None, _Stored("brick", None), Replay.REFUSE),  # cannot be told apart
        (REDELIVERED, "p-1", None, Replay.REFUSE),  # its part may have left the camera
    ],
)
def test_the_replay_rule(
    delivery: Delivery, part_id: str | None, stored: _Stored | None, decision: Replay
) -> None:
    assert replay(delivery, product="brick", part_id=part_id, stored=stored) is decision


def test_plc_selects_the_product(station: LineStation) -> None:
    station.handler.select_product("grass")
    assert station.handler.handle(Trigger("s-1"), source="opcua").error_code == ErrorCode.NO_MODEL
    with pytest.raises(TriggerError, match="'weave' is not served here"):
        station.handler.select_product("weave")


def test_an_overrun_answers_timeout_and_the_result_still_lands(
    tmp_path: Path, fp32_bundle: Path, tiny_product: Path
) -> None:
    camera = camera_folder(tmp_path, tiny_product, count=1)
    config = line_config(tmp_path, fp32_bundle, camera, inspect_timeout_s=0.001)
    station = LineStation.build(config)
    station.core.models.refresh()
    try:
        answer = station.handler.handle(Trigger("slow-1"), source="opcua")
        assert answer.error_code == ErrorCode.TIMEOUT
    finally:
        station.stop()  # waits for the inspection in flight
    reopened = LineStation.build(config)
    assert reopened.core.store.find_by_request_id("cam-1/slow-1") is not None
    reopened.stop()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"{", "not JSON"),
        (b"[]", "must be a JSON object"),
        (b'{"request": "x"}', "unknown key(s) 'request'"),
    ],
)
def test_bad_trigger_messages(text: bytes, message: str) -> None:
    with pytest.raises(TriggerError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Trigger.from_json(text)
    assert Trigger.from_json(b"") == Trigger()


def test_an_unaligned_part_is_an_error_answer_never_a_verdict() -> None:
    from inspection.service.errors import http_error
    from inspection.station.errors import PartNotAligned, answer_to

    refusal = PartNotAligned("correlation 0.21 < 0.8")
    code = answer_to(refusal).plc_code
    assert code == ErrorCode.NOT_ALIGNED and http_error(refusal).status == 422
    answer = Answer("r1", int(code), refusal.message, product="plate")
    assert answer.result == ResultCode.ERROR and answer.verdict is None


def test_start_up_warns_about_an_empty_camera_and_a_product_without_a_model(
    tmp_path: Path, fp32_bundle: Path
) -> None:
    empty = tmp_path / "camera"
    empty.mkdir()
    station = LineStation.build(line_config(tmp_path, fp32_bundle, empty))
    try:
        station.core.models.refresh()
        grass, camera = station.startup_warnings()
        assert grass.startswith("product 'grass': no live model") and "NO_MODEL" in grass
        assert camera.startswith("file camera: no images under") and "NO_IMAGE" in camera
    finally:
        station.stop()


@pytest.mark.parametrize("input_check", ["refuse", "warn"])
def test_images_outside_the_input_domain_are_counted_on_the_line(
    tmp_path: Path, fp32_bundle: Path, tiny_product: Path, input_check: str
) -> None:
    """A mono frame and a BGR frame under the colour bundle: each answered OUT_OF_DOMAIN and
    counted as refused (or judged and counted as warned), on the line's metrics as on the
    HTTP station's."""
    import numpy as np
    from PIL import Image

    camera = camera_folder(tmp_path, tiny_product, count=1)
    Image.open(camera / "000.png").convert("L").save(camera / "001.png")
    bgr = np.asarray(Image.open(camera / "000.png").convert("RGB"))[..., ::-1]
    Image.fromarray(np.ascontiguousarray(bgr)).save(camera / "002.png")
    config = line_config(tmp_path, fp32_bundle, camera, loop=False, input_check=input_check)
    station = LineStation.build(config)
    station.core.models.refresh()
    try:
        good = station.handler.handle(Trigger("d-1"), source="opcua")
        grey = station.handler.handle(Trigger("d-2"), source="opcua")
        swapped = station.handler.handle(Trigger("d-3"), source="opcua")
    finally:
        station.stop()
    assert good.error_code == ErrorCode.NONE
    if input_check == "refuse":
        assert grey.error_code == ErrorCode.OUT_OF_DOMAIN and "grey image" in grey.message
        assert swapped.error_code == ErrorCode.OUT_OF_DOMAIN
        assert "red and blue channels are swapped" in swapped.message
    else:
        for answer in (grey, swapped):
            assert answer.error_code == ErrorCode.NONE and answer.verdict in ("OK", "NG")
    outcome = "refused" if input_check == "refuse" else "warned"
    count = station.registry.get_sample_value(
        "inspection_input_domain_total", {"product": "brick", "outcome": outcome}
    )
    assert count == 2.0

"""Several cameras per part: one trigger, one answer, one stored row per view."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bench._shared import line_config
from inspection.core.errors import ConfigError
from inspection.core.registry import Registry
from inspection.line.config import CameraConfig, LineConfig, MqttTriggerConfig, ViewConfig
from inspection.line.handshake import Answer, ErrorCode, ResultCode, Trigger, part_answer
from inspection.line.station import LineStation
from inspection.station.config import StationCoreConfig
from inspection.store.models import Inspection

from .helpers import Broker
from .test_station_run import _AnswerClient


def _images(root: Path, name: str, images: list[Path]) -> Path:
    folder = root / name
    folder.mkdir()
    for n, image in enumerate(images):
        shutil.copy(image, folder / f"{name}-{n:03d}.png")
    return folder


def _two_view_config(root: Path, fp32_bundle: Path, tiny_product: Path, **overrides):
    """Views ``top`` (product brick, good parts: score 0, OK) and ``side`` (product side: the
    same model at threshold 0.3, between its good (~0.02) and defect (~0.7) scores); the side
    camera sees a defect (NG), a good part, then nothing."""
    good = sorted((tiny_product / "test" / "good").glob("*.png"))
    defect = sorted(p for p in (tiny_product / "test").rglob("*.png") if p.parent.name != "good")
    views = (
        ViewConfig("top", CameraConfig(path=_images(root, "top", good[:3])), "brick"),
        ViewConfig(
            "side",
            CameraConfig(path=_images(root, "side", [defect[0], good[0]]), loop=False),
            "side",
        ),
    )
    config = line_config(root, fp32_bundle, root, products=("brick", "side"), **overrides)
    config = dataclasses.replace(config, camera=None, views=views)
    registry = Registry(root / "registry")
    side = shutil.copytree(fp32_bundle, root / "side-bundle")  # the same model as product side
    metadata = json.loads((side / "metadata.json").read_text())
    (side / "metadata.json").write_text(json.dumps(metadata | {"product": "side"}))
    registry.bundles.add_bundle("side", side, "v0001-fp32")
    registry.journal.promote("side", "v0001-fp32", actor="tests", reason="side view")
    registry.journal.set_threshold("side", 0.3, actor="tests", reason="a defect is NG", sign=False)
    return config


def _rows(station: LineStation) -> list[Inspection]:
    with station.core.store.session() as session:
        return list(session.scalars(select(Inspection).order_by(Inspection.request_id)))


def test_one_trigger_judges_every_view_and_answers_once_per_part(
    tmp_path: Path, fp32_bundle: Path, tiny_product: Path
) -> None:
    config = _two_view_config(tmp_path, fp32_bundle, tiny_product)
    station = LineStation.build(config)
    station.core.models.refresh()
    try:
        handler = station.handler
        first = handler.handle(Trigger("p-1", None, "part-1"), source="opcua")
        assert (first.result, first.error_code, first.score) == (ResultCode.NG, 0, None)
        assert [(v.view, v.product) for v in first.views] == [("top", "brick"), ("side", "side")]
        top, side = first.views
        assert (top.verdict, side.verdict) == ("OK", "NG")
        assert first.message == f"top {top.verdict} {top.score:.3f}, side NG {side.score:.3f}"
        rows = _rows(station)
        assert [(r.request_id, r.part_id, r.product) for r in rows] == [
            ("cam-1/p-1.side", "part-1", "side"),
            ("cam-1/p-1.top", "part-1", "brick"),
        ]
        assert {r.id for r in rows} == {top.inspection_id, side.inspection_id}

        # A retry is replayed only inside the link's own unacknowledged cycle (#92): the
        # handshake tests show it (tests/line/test_registers.py, test_handshake.py).

        good = handler.handle(Trigger("p-2"), source="mqtt")  # no part id: the request id
        assert good.verdict == "OK" and [v.verdict for v in good.views] == ["OK", "OK"]
        assert {r.part_id for r in _rows(station) if r.request_id.startswith("cam-1/p-2.")} == {
            "p-2"
        }

        blind = handler.handle(Trigger("p-3"), source="mqtt")  # the side camera has no image
        assert (blind.result, blind.error_code) == (ResultCode.ERROR, ErrorCode.NO_IMAGE)
        assert blind.message.startswith("top OK ") and "side NO_IMAGE; view side: " in blind.message
        assert [v.error_code for v in blind.views] == [0, ErrorCode.NO_IMAGE]

        refused = handler.handle(Trigger("p-4", "brick"), source="mqtt")
        assert refused.error_code == ErrorCode.BAD_TRIGGER and "top: brick" in refused.message
        too_long = handler.handle(Trigger("x" * 78), source="mqtt")  # 'x…x.side' > 80
        assert too_long.error_code == ErrorCode.BAD_TRIGGER
        assert too_long.message.startswith("view top: request_id")
        with station.core.store.session() as session:
            assert session.scalar(select(func.count()).select_from(Inspection)) == 5
    finally:
        station.stop()


@pytest.mark.parametrize(
    ("views", "result", "code", "message"),
    [
        ([("a", "OK"), ("b", "OK")], ResultCode.OK, 0, "a OK 0.100, b OK 0.100"),
        ([("a", "OK"), ("b", "NG")], ResultCode.NG, 0, "a OK 0.100, b NG 0.100"),
        ([("a", 1), ("b", "NG")], ResultCode.NG, 0, "a NO_IMAGE, b NG 0.100"),
        ([("a", "OK"), ("b", 4)], ResultCode.ERROR, 4, "a OK 0.100, b TIMEOUT; view b: why"),
        ([("a", 3), ("b", 1)], ResultCode.ERROR, 3, "a NO_MODEL, b NO_IMAGE; view a: why"),
    ],
)
def test_the_part_verdict_rule(views, result, code, message) -> None:
    answers = [
        (
            name,
            Answer(name, 0, verdict=v, score=0.1) if isinstance(v, str) else Answer(name, v, "why"),
        )
        for name, v in views
    ]
    answer = part_answer("r", answers, 1.0)
    assert (answer.result, answer.error_code, answer.message) == (result, code, message)
    assert Answer.from_json(answer.to_json()) == answer


def test_views_config_is_checked(tmp_path: Path) -> None:
    camera = CameraConfig(path=tmp_path)
    cases = [
        ({"camera": camera, "views": (ViewConfig("a", camera, "brick"),)}, "either 'camera' or"),
        ({"camera": None}, "either 'camera' or 'views'"),
        ({"camera": None, "views": (ViewConfig("a", camera, "weave"),)}, "'weave' is not in"),
        ({"camera": None, "views": (ViewConfig("a", camera, "brick"),) * 2}, "must be unique"),
    ]
    for overrides, message in cases:
        with pytest.raises(ConfigError, match=message):
            LineConfig(station_id="cam-1", core=StationCoreConfig(("brick",)), **overrides)
    with pytest.raises(ConfigError, match=r"view name 'a\.b' is invalid"):
        ViewConfig("a.b", camera, "brick")


def test_the_mqtt_answer_carries_the_views(
    broker: Broker, tmp_path: Path, fp32_bundle: Path, tiny_product: Path
) -> None:
    mqtt = MqttTriggerConfig(enabled=True, port=broker.port)
    config = _two_view_config(tmp_path, fp32_bundle, tiny_product, mqtt=mqtt)
    station = LineStation.build(config)
    station.start()
    answers = _AnswerClient(broker.port, tmp_path)
    try:
        answer = answers.trigger(json.dumps({"request_id": "m-1", "part_id": "part-9"}))
    finally:
        answers.close()
        station.stop()
    assert answer.verdict == "NG" and [v.view for v in answer.views] == ["top", "side"]
    assert all(v.inspection_id for v in answer.views)
    assert json.loads(answer.to_json())["views"][1]["verdict"] == "NG"

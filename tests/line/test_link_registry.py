"""A PLC link is one module and one registration: a toy link defined here, registered in
``links.LINKS`` and nowhere else, loads its section from the station's YAML file, is served by
the station and answers a trigger that is stored and counted under its name."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select

from bench._shared import camera_folder, line_config, line_yaml
from inspection.core.errors import ConfigError
from inspection.line.config import LineConfig, load_line_config
from inspection.line.handshake import Answer, LinkContext, Trigger
from inspection.line.links import LINKS, LinkKind, register
from inspection.line.station import LineStation
from inspection.store.models import Inspection


@dataclass(frozen=True)
class ToyConfig:
    """The toy link's section: off unless the file says otherwise."""

    enabled: bool = False
    part_prefix: str = "toy-"


class ToyLink:
    """Takes triggers from a queue the test fills and answers into another, in its thread."""

    def __init__(self, config: ToyConfig, link: LinkContext) -> None:
        self.config, self.link = config, link
        self.triggers: queue.Queue[str | None] = queue.Queue()
        self.answers: queue.Queue[Answer] = queue.Queue()
        self._thread = threading.Thread(target=self._serve, name="toy-link", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.triggers.put(None)
        self._thread.join(10)

    def _serve(self) -> None:
        on_answer = self.link.counted("toy")
        while (request_id := self.triggers.get()) is not None:
            started = time.perf_counter()
            part = f"{self.config.part_prefix}{request_id}"
            answer = self.link.handler.handle(Trigger(request_id, None, part), source="toy")
            on_answer(answer, time.perf_counter() - started)
            self.answers.put(answer)


@pytest.fixture
def toy() -> Iterator[LinkKind]:
    kind = register(LinkKind("toy", ToyConfig, ToyLink))
    yield kind
    del LINKS["toy"]


def test_a_link_registered_in_a_test_serves_a_trigger(
    toy: LinkKind, tmp_path: Path, fp32_bundle: Path, tiny_product: Path
) -> None:
    camera = camera_folder(tmp_path, tiny_product)
    line_config(tmp_path, fp32_bundle, camera)  # brick live in the test's registry
    config = load_line_config(
        line_yaml(tmp_path, camera, toy={"enabled": True, "part_prefix": "p-"})
    )
    assert config.links == {"toy": ToyConfig(enabled=True, part_prefix="p-")}
    station = LineStation.build(config)
    station.start()
    try:
        link = station.links["toy"]
        link.triggers.put("t-1")
        answer = link.answers.get(timeout=60)
    finally:
        station.stop()
    assert answer.error_code == 0 and answer.verdict in ("OK", "NG"), answer
    with station.core.store.session() as session:
        [row] = session.scalars(select(Inspection))
    assert (row.request_id, row.part_id, row.source) == ("cam-1/t-1", "p-t-1", "toy")
    assert row.verdict == answer.verdict
    counted = {"via": "toy", "result": answer.verdict}
    assert station.registry.get_sample_value("inspection_triggers_total", counted) == 1


def test_a_section_of_a_link_nobody_registered_is_refused_by_name(
    tmp_path: Path, fp32_bundle: Path, tiny_product: Path
) -> None:
    camera = camera_folder(tmp_path, tiny_product)
    with pytest.raises(ConfigError, match="unknown key\\(s\\) 'toy'"):
        load_line_config(line_yaml(tmp_path, camera, toy={"enabled": True}))
    config = line_config(tmp_path, fp32_bundle, camera)
    with pytest.raises(ConfigError, match="unknown PLC link 'toy'; known: mqtt, opcua"):
        LineConfig(config.station_id, config.core, config.camera, links={"toy": ToyConfig()})

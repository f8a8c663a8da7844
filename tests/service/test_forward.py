"""A station with a central store configured answers from its local store while the central
one is down; the waiting results show in /metrics (``store.forward``, tests/store/test_forward.py)."""

from __future__ import annotations

from pathlib import Path

from inspection.station.config import CentralConfig

from .helpers import Bundles, serve, serving_registry, station_config

DOWN_URL = "postgresql+psycopg://line-1:pw@127.0.0.1:1/central"


def test_a_station_answers_and_stores_locally_while_central_is_down(
    tmp_path: Path, bundles: Bundles, sample_images: dict[str, bytes]
) -> None:
    serving_registry(tmp_path / "registry", bundles)
    central = CentralConfig(  # a host that never answers: nothing crosses the wire
        DOWN_URL, tmp_path / "central-blobs", alarm_after_seconds=3600, allow_plaintext=True
    )
    with serve(station_config(tmp_path, central=central)) as served:
        answers = [served.inspect(sample_images[name]) for name in ("good0", "defect0")]
        assert [answer.status_code for answer in answers] == [201, 201]
        assert served.station.store.count_inspections() == 2
        metrics = served.ops("/metrics").text
        central_status = served.ops("/healthz").json()["central"]
    assert "inspection_forward_backlog_rows 2.0" in metrics
    assert "inspection_forward_alarm 0.0" in metrics
    assert "inspection_forward_quarantined 0.0" in metrics
    assert central_status["rows"] == 2 and central_status["alarm"] is False
    assert central_status["quarantined"] == 0
    assert not (tmp_path / "central-blobs").exists()

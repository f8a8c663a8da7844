"""Hot model swap: promotions and thresholds take effect without failing requests;
a corrupt bundle is rejected and the previous one keeps serving."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from .helpers import PRODUCT, V1, V2, V3, Bundles, Served, serve, serving_registry, station_config

pytestmark = pytest.mark.slow


def _wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def _live_bundle(served: Served) -> str | None:
    return served.ops("/healthz").json()["products"][PRODUCT]["bundle_id"]


def test_promotion_during_requests_swaps_without_failures(
    tmp_path: Path, bundles: Bundles, sample_images: dict[str, bytes]
) -> None:
    registry = serving_registry(tmp_path / "registry", bundles)
    registry.bundles.add_bundle(PRODUCT, bundles.v2, V2)
    config = station_config(tmp_path, registry_poll_seconds=0.1)
    with serve(config) as served:
        stop = threading.Event()
        seen: list[list[tuple[int, str | None]]] = [[] for _ in range(3)]

        def client(slot: int) -> None:
            while not stop.is_set():
                response = served.inspect(sample_images["defect0"])
                version = response.json().get("bundle_id") if response.status_code == 201 else None
                seen[slot].append((response.status_code, version))

        threads = [threading.Thread(target=client, args=(i,)) for i in range(3)]
        for thread in threads:
            thread.start()
        _wait_for(lambda: all(len(s) >= 2 for s in seen))
        registry.journal.promote(PRODUCT, V2, actor="tests", reason="hot swap under load")
        _wait_for(lambda: _live_bundle(served) == V2)
        counts = [len(s) for s in seen]
        _wait_for(lambda: all(len(s) >= c + 2 for s, c in zip(seen, counts, strict=True)))
        stop.set()
        for thread in threads:
            thread.join()
        total = served.station.store.count_inspections()
        metrics = served.ops("/metrics").text

    results = [entry for per_client in seen for entry in per_client]
    assert {status for status, _ in results} == {201}
    assert {version for _, version in results} == {V1, V2}
    for per_client in seen:  # once a client has seen the new model it never sees the old one
        versions = [version for _, version in per_client]
        first_new = versions.index(V2)
        assert set(versions[first_new:]) == {V2} and set(versions[:first_new]) == {V1}
    assert total == len(results)
    assert f'bundle_id="{V2}"' in metrics and f'bundle_id="{V1}"' not in metrics
    assert f'inspection_model_swaps_total{{product="{PRODUCT}"}} 2.0' in metrics


def test_corrupt_bundle_is_rejected_and_the_old_one_keeps_serving(
    tmp_path: Path, bundles: Bundles, sample_images: dict[str, bytes]
) -> None:
    registry = serving_registry(tmp_path / "registry", bundles)
    with serve(station_config(tmp_path)) as served:
        registry.bundles.add_bundle(PRODUCT, bundles.v3, V3)
        registry.journal.promote(PRODUCT, V3, actor="tests", reason="bundle that rots on disk")
        weights = registry.bundles.bundle_dir(PRODUCT, V3) / "model.bin"
        data = bytearray(weights.read_bytes())
        data[len(data) // 2] ^= 0xFF
        weights.write_bytes(bytes(data))
        served.station.models.refresh()

        health = served.ops("/healthz")
        status = health.json()["products"][PRODUCT]
        assert health.status_code == 200
        assert status["bundle_id"] == V1
        assert status["problem"].startswith(f"bundle {V3} rejected: ")
        assert "checksum mismatch for model.bin" in status["problem"]
        assert status["problem"].endswith(f"still serving {V1}")
        response = served.inspect(sample_images["good0"])
        assert response.status_code == 201 and response.json()["bundle_id"] == V1

        served.station.models.refresh()  # a rejected bundle is not retried on every poll
        assert served.inspect(sample_images["good1"]).json()["bundle_id"] == V1

        registry.bundles.add_bundle(PRODUCT, bundles.v2, V2)  # a good promotion recovers
        registry.journal.promote(PRODUCT, V2, actor="tests", reason="fixed")
        served.station.models.refresh()
        assert served.ops("/healthz").json()["products"][PRODUCT]["problem"] is None
        assert served.inspect(sample_images["good0"]).json()["bundle_id"] == V2


def test_no_live_bundle_means_503_until_one_is_promoted(
    tmp_path: Path, bundles: Bundles, sample_images: dict[str, bytes]
) -> None:
    from inspection.core.registry import Registry

    registry = Registry(tmp_path / "registry")
    registry.root.mkdir()  # an empty registry folder (a missing one refuses the start)
    with serve(station_config(tmp_path)) as served:
        response = served.inspect(sample_images["good0"])
        assert response.status_code == 503
        assert "has no live bundle; promote one first" in response.json()["detail"]
        assert served.ops("/healthz").status_code == 503
        registry.bundles.add_bundle(PRODUCT, bundles.v1, V1)
        registry.journal.promote(PRODUCT, V1, actor="tests", reason="first model")
        served.station.models.refresh()
        assert served.ops("/healthz").status_code == 200
        assert served.inspect(sample_images["good0"]).status_code == 201


def test_threshold_change_applies_to_the_next_request(
    tmp_path: Path, bundles: Bundles, sample_images: dict[str, bytes]
) -> None:
    registry = serving_registry(tmp_path / "registry", bundles)
    with serve(station_config(tmp_path)) as served:
        before = served.inspect(sample_images["defect0"]).json()
        assert before["threshold"] == pytest.approx(0.5)
        registry.journal.set_threshold(PRODUCT, 0.01, actor="qa", reason="flag everything")
        registry.journal.set_threshold(
            PRODUCT, 0.99, actor="qa", reason="other bundle only", bundle_id="v0009-fp32"
        )
        served.station.models.refresh()
        after = served.inspect(sample_images["defect0"]).json()
        assert after["threshold"] == pytest.approx(0.01)
        assert after["verdict"] == ("NG" if after["score"] > 0.01 else "OK")
        assert after["bundle_id"] == V1  # same model, new threshold
        assert 'inspection_threshold{product="brick"} 0.01' in served.ops("/metrics").text

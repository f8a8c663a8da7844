"""``core.inference_threads``: the OpenVINO threads each inference of a station uses (two
station processes on a 2-core box spend about half the CPU per part with one thread each)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from inspection.core.config import from_mapping
from inspection.core.errors import ConfigError
from inspection.refine.config import RefineConfig
from inspection.station.config import StationCoreConfig
from inspection.station.live import station_loader


def test_a_station_compiles_its_bundles_with_the_threads_configured(fp32_bundle: Path) -> None:
    config = from_mapping(
        StationCoreConfig, {"products": ["brick"], "inference_threads": 1}, where="core"
    )
    threads = [
        station_loader(RefineConfig(), num_threads=n)(fp32_bundle).model.compiled.get_property(
            "INFERENCE_NUM_THREADS"
        )
        for n in (config.inference_threads, None)
    ]
    assert threads[0] == 1
    assert threads[1] != 1 or os.cpu_count() == 1  # None: OpenVINO's choice, every core


def test_inference_threads_below_one_is_refused() -> None:
    with pytest.raises(ConfigError, match="inference_threads must be >= 1, got 0"):
        from_mapping(
            StationCoreConfig, {"products": ["brick"], "inference_threads": 0}, where="core"
        )

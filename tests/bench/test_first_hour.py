"""bench/first_hour.py: what it reads from `.ci/run`'s output, and what it claims for which CPU."""

from __future__ import annotations

import pytest

from tests.bench import bench_module

LOG = """\
step data done in 14 s
step train done in 147 s
step export done in 79 s
step inspect done in 9 s
All checks passed!
2 workers [2545 items]
========== 2543 passed, 2 skipped, 166 warnings in 782.89s (0:13:02) ===========
"""


@pytest.fixture(scope="module")
def first_hour():
    return bench_module("first_hour")


def test_the_steps_and_pytest_are_read_from_the_log(first_hour) -> None:
    figures = first_hour.parse_log(LOG)
    assert figures["steps"] == {"data": 14, "train": 147, "export": 79, "inspect": 9}
    assert figures["demo_steps_s"] == 249
    assert figures["pytest_s"] == 782.89
    assert figures["pytest_counts"] == "2543 passed, 2 skipped, 166 warnings"
    assert first_hour.parse_log("step data done in 14 s\nmake: *** [demo] Error 1\n") == {
        "steps": {"data": 14},
        "demo_steps_s": 14,
    }  # a run that stopped early keeps what it measured, claims nothing else


@pytest.mark.parametrize(
    ("isa", "forced", "kind", "claim"),
    [
        (("avx", "avx2", "fma"), False, "AVX2 CPU", "not met"),
        (("avx2", "avx512f", "amx_tile"), True, "AVX2 forced on AVX-512", "not an AVX2 CPU"),
        (("avx2", "avx512f"), False, "AVX-512", "not an AVX2 CPU"),
    ],
)
def test_only_an_avx2_cpu_is_held_to_the_targets(first_hour, isa, forced, kind, claim) -> None:
    run = {"cpu_kind": first_hour.cpu_kind(isa, forced), **first_hour.parse_log(LOG)}
    assert run["cpu_kind"] == kind
    assert first_hour.verdict(run).startswith(claim)  # 249 s and 783 s: over 240 s and 720 s
    met = {**run, "pytest_s": 700.0, "demo_steps_s": 230}
    assert first_hour.verdict(met) == (
        "both met" if kind == "AVX2 CPU" else first_hour.verdict(run)
    )
    assert first_hour.verdict({"cpu_kind": "AVX2 CPU", "steps": {}}) == "not met"  # no figures

"""The walk script's CPU-profile summary: self time per script and function, idle left out."""

from __future__ import annotations

from tests.dashboard.scripts import walk_module


def _frame(name: str, url: str = "") -> dict:
    return {"functionName": name, "url": url, "lineNumber": 0, "columnNumber": 0}


def test_profile_summary_adds_self_time_by_script_and_function() -> None:
    base = "http://127.0.0.1:8501/static/js/"
    profile = {
        "nodes": [
            {"id": 1, "callFrame": _frame("(root)")},
            {"id": 2, "callFrame": _frame("(idle)")},
            {"id": 3, "callFrame": _frame("render", base + "ArrowVegaLiteChart.CJ7x3m0Q.js")},
            {"id": 4, "callFrame": _frame("", base + "index.B1x2y3_z.js")},
            {"id": 5, "callFrame": _frame("(program)")},
        ],
        "samples": [2, 3, 3, 4, 5, 2],
        "timeDeltas": [0, 1000, 2000, 3000, 500, 400],  # µs before each sample
    }
    summary = walk_module().profile_summary(profile)
    assert summary["by_script"] == {"ArrowVegaLiteChart": 5.0, "(program)": 0.4, "index": 0.5}
    assert summary["by_function"]["render (ArrowVegaLiteChart)"] == 5.0
    assert summary["by_function"]["(anonymous) (index)"] == 0.5
    assert summary["busy_ms"] == 5.9  # the idle samples left out

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


def test_load_summary_keeps_the_steps_fetches_and_names_chunks() -> None:
    base = "http://127.0.0.1:8501/static/"
    entries = [
        [base + "js/index.B1x2y3_z.js", "script", 900.0, 950.0, 480 * 1024],  # before the step
        [base + "js/embed.CX5AQgxi.js", "script", 1100.0, 1300.0, 760 * 1024],
        [base + "media/SourceSansVF-Upright.ttf.BsWL4Kly.woff2", "css", 1200.0, 1250.0, 2048],
        ["http://127.0.0.1:8501/_stcore/health", "fetch", 1400.0, 1410.0, 2],
    ]
    found = walk_module().load_summary(entries, 1000.0, 2000.0)
    assert found["n"] == 3 and found["last_end_s"] == 0.41
    assert found["files"] == {"embed.js": 760, "SourceSansVF-Upright.ttf.woff2": 2}
    assert found["kb"] == 762.0

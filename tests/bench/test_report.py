"""The report writer every bench script ends with (bench/_report.py)."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import numpy as np

_PATH = Path(__file__).resolve().parents[2] / "bench" / "_report.py"
_SPEC = importlib.util.spec_from_file_location("bench_report", _PATH)
assert _SPEC is not None and _SPEC.loader is not None
report_module = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(report_module)


def test_writes_json_and_markdown_under_a_new_folder(tmp_path: Path) -> None:
    out = tmp_path / "reports" / "area"
    path = report_module.save_report(out, "run", {"figure": 1.5, "name": "brïck"}, "# Run\n")
    assert path == out / "run.json"
    text = path.read_text(encoding="utf-8")
    assert text.endswith("}\n") and text.startswith('{\n  "figure"')
    assert json.loads(text) == {"figure": 1.5, "name": "brïck"}
    assert (out / "run.md").read_text(encoding="utf-8") == "# Run\n"


def test_without_markdown_writes_json_only_and_uses_default(tmp_path: Path) -> None:
    data = {"value": np.float32(0.25), "path": tmp_path}
    report_module.save_report(tmp_path, "only", data, default=str)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["only.json"]
    assert json.loads((tmp_path / "only.json").read_text()) == {
        "value": "0.25",
        "path": str(tmp_path),
    }


def test_load_average_is_three_figures() -> None:
    assert re.fullmatch(r"\d+\.\d\d \d+\.\d\d \d+\.\d\d", report_module.load_average())


def test_previous_report_reads_an_earlier_run_or_nothing(tmp_path: Path) -> None:
    assert report_module.previous_report(tmp_path / "absent", "run") == {}
    report_module.save_report(tmp_path, "run", {"brick": {"auroc": 0.9}})
    assert report_module.previous_report(tmp_path, "run") == {"brick": {"auroc": 0.9}}


def test_table_is_header_rule_and_rows() -> None:
    lines = report_module.table(["a", "b"], [[1, "x"], (0.5, None)])
    assert lines == ["| a | b |", "|---|---|", "| 1 | x |", "| 0.5 | None |"]

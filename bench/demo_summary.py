"""What a ``make demo`` run decided, without its timings: diff two runs' outputs to show that a
speed-up changed no verdict, threshold, figure or stored model.

    python bench/demo_summary.py CLONE DEMO_STDOUT > summary.txt
    diff before.txt after.txt

Per trained version: metrics (no seconds), normalisation, segmentation, good scores, image
score, local statistics, supervised choice (no seconds) and the checkpoint's sha256; per bundle:
thresholds, calibration, metrics, precision and every file's sha256; the live bundle; then the
demo's printed summary with step times, latencies, fit seconds, log times and names and the
clone's path masked.
A fresh clone creates its own site keys: those lines differ by design.
Used by ``reports/learning/demo_time.md``.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

RECORD_KEYS = ("normalization", "segmentation", "good_scores", "image_score", "local_statistics")
BUNDLE_KEYS = (
    "image_threshold", "pixel_threshold", "normalization", "metrics", "precision",
    "output_calibration", "segmentation", "files",
)  # fmt: skip
TIMINGS = (
    (re.compile(r"\d+(\.\d+)? ms"), "<ms>"),
    (re.compile(r"(done|finished) in \d+ s"), r"\1 in <s>"),
    (re.compile(r"│ [0-9.]+ +│$"), "│ <fit s> │"),  # the metrics table's last column
    (re.compile(r"^\d{4}-\d\d-\d\d [\d:,]+ "), ""),  # a log line's time
    (re.compile(r"demo-\d{8}T\d{6}Z"), "demo-<time>"),  # the log file's name
)


def _line(name: str, value: Any) -> str:
    return f"{name} {json.dumps(value, sort_keys=True)}"


def registry_lines(registry: Path) -> list[str]:
    """Each product's versions, bundles and live pointer, as sorted JSON lines."""
    out = []
    for product in sorted(p for p in registry.iterdir() if (p / "versions").is_dir()):
        for path in sorted(product.glob("versions/*/record.json")):
            record, name = json.loads(path.read_text()), f"{product.name}/{path.parent.name}"
            extra = record["extra"]
            out.append(_line(f"{name} metrics", {k: v for k, v in record["metrics"].items()
                                                 if "second" not in k}))  # fmt: skip
            out += [_line(f"{name} {key}", extra.get(key)) for key in RECORD_KEYS]
            supervised = {k: v for k, v in (extra.get("supervised") or {}).items()}
            supervised.pop("seconds", None)
            out += [
                _line(f"{name} supervised", supervised),
                _line(f"{name} files", record["files"]),
            ]
        for path in sorted(product.glob("bundles/*/metadata.json")):
            meta = json.loads(path.read_text())
            bundle = {key: meta.get(key) for key in BUNDLE_KEYS}
            out.append(_line(f"{product.name}/{path.parent.name} bundle", bundle))
        live = json.loads((product / "live.json").read_text())
        out.append(f"{product.name} live {live.get('bundle_id')}")
    return out


def printed_lines(stdout: str, clone: Path) -> list[str]:
    """The demo's console output, its timings and the clone's path masked (progress bars out)."""
    out = []
    for line in stdout.splitlines():
        if "━━" in line:
            continue
        line = line.replace(str(clone), "<clone>")
        for pattern, mask in TIMINGS:
            line = pattern.sub(mask, line)
        out.append("OUT " + line.rstrip())
    return out


def main() -> None:
    clone, stdout = Path(sys.argv[1]), Path(sys.argv[2])
    lines = registry_lines(clone / "var" / "registry") + printed_lines(stdout.read_text(), clone)
    print("\n".join(lines))


if __name__ == "__main__":
    main()

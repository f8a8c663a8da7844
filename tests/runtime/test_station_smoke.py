"""scripts/station_smoke.sh: a torch-free venv runs ``inspection inspect`` on a session bundle.

A fresh venv per run is what CI does (``STATION_SMOKE_FRESH=1``); by default this test reuses
one venv under ``~/.cache/inspection`` so reruns only reinstall the package itself.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from inspection.core.signing import init_keys, load_private_key, sign_bundle

pytestmark = pytest.mark.slow
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "station_smoke.sh"


def test_station_smoke_runs_inspect_without_torch(fp32_bundle, tiny_product, tmp_path) -> None:
    env = dict(os.environ)
    if os.environ.get("STATION_SMOKE_FRESH", "") != "1":
        env.setdefault("STATION_VENV", str(Path.home() / ".cache" / "inspection" / "station-venv"))
    out = tmp_path / "out"
    # inspect fails closed: the station checks a signed copy with the site's public key.
    keys = init_keys(tmp_path / "keys")
    bundle = shutil.copytree(fp32_bundle, tmp_path / "bundle")
    sign_bundle(bundle, load_private_key(keys.private))
    result = subprocess.run(
        [
            "bash",
            str(SCRIPT),
            str(bundle),
            str(tiny_product / "test" / "good"),
            "--out",
            str(out),
            "--public-key",
            str(keys.public),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
        cwd=tmp_path,
    )  # fmt: skip  (cwd: no site of the checkout's own, whose key would refuse this bundle)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "station smoke test passed" in result.stdout
    rows = (out / "results.csv").read_text().splitlines()
    assert len(rows) == 1 + len(list((tiny_product / "test" / "good").glob("*.png")))


def test_station_smoke_usage_error() -> None:
    result = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 64 and "usage:" in result.stderr

"""The decode path on the oldest Pillow ``pyproject.toml`` allows (issue #90 cases 5 and 6):
Pillow 10.0-10.2 opens 16-bit grey PNGs as ``I`` (not ``I;16``) and keeps tiles as plain
tuples. That Pillow, numpy and OpenCV go into a throwaway folder (``pip install --target``) and
an interpreter without site-packages (``python -S``) decodes files written here with the
torch-free ``core.images``; every result must equal this process's (the newest Pillow) and the
rule."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import tomllib
from PIL import Image

from inspection.core.errors import ImageDecodeError
from inspection.core.images import decode_reduced

REPO = Path(__file__).resolve().parents[2]
OFFLINE = ("NewConnectionError", "Temporary failure in name resolution", "Network is unreachable",
           "Max retries exceeded", "ProxyError", "timed out")  # fmt: skip
"""pip's words for "PyPI cannot be reached": the only reason this test skips."""

TWELVE_BIT = np.linspace(0, 4095, 48 * 40).reshape(48, 40).astype(np.uint16)
CASES = {  # name -> (file bytes, decode options)
    "grey16_at_12": (lambda: _encode(".png", TWELVE_BIT), {"bits": 12}),
    "grey16_at_16": (lambda: _encode(".png", TWELVE_BIT << 4), {}),
    "grey16_reduced": (lambda: _encode(".png", TWELVE_BIT), {"bits": 12, "work_side": 20}),
    "grey16_tiff_at_12": (lambda: _encode(".tiff", TWELVE_BIT), {"bits": 12}),
    "colour16_at_12": (lambda: _encode(".png", np.full((8, 8, 3), 4000, np.uint16)), {"bits": 12}),
    "signed16": (
        lambda: _encode(".tiff", (TWELVE_BIT.astype(np.int32) - 2048).astype(np.int16)),
        {"value_range": (-2048.0, 2047.0)},
    ),
    "zero_alpha": (lambda: _png(np.dstack([_rgb(), np.zeros((24, 36), np.uint8)])), {}),
    "exif_turned": (lambda: _png(np.ascontiguousarray(np.rot90(_rgb(), 1)), exif=True), {}),
}


def _rgb() -> np.ndarray:
    return (np.arange(24 * 36 * 3) % 251).astype(np.uint8).reshape(24, 36, 3)


def _encode(suffix: str, array: np.ndarray) -> bytes:
    ok, buffer = cv2.imencode(suffix, array)
    assert ok
    return buffer.tobytes()


def _png(array: np.ndarray, exif: bool = False) -> bytes:
    buffer = io.BytesIO()
    tags = Image.Exif()
    tags[0x0112] = 6 if exif else 1
    Image.fromarray(array).save(buffer, "PNG", exif=tags)
    return buffer.getvalue()


CHILD = """
import json, sys
from pathlib import Path
import numpy as np, PIL
from inspection.core.errors import ImageDecodeError
from inspection.core.images import decode_reduced
folder = Path(sys.argv[1])
cases, out, errors = json.loads((folder / "cases.json").read_text()), {}, {}
for name, options in cases.items():
    if "value_range" in options:
        options["value_range"] = tuple(options["value_range"])
    try:
        decoded = decode_reduced((folder / name).read_bytes(), name=name, **options)
        out[name] = decoded.image
        out[name + ".kind"] = np.array(decoded.kind)
    except ImageDecodeError as exc:
        errors[name] = str(exc)
np.savez(folder / "decoded.npz", **out)
(folder / "errors.json").write_text(json.dumps({"pillow": PIL.__version__, "errors": errors}))
"""


def _oldest_pillow() -> str:
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    (found,) = [m for d in dependencies if (m := re.fullmatch(r"pillow>=([\d.]+)", d))]
    return found.group(1)


@pytest.fixture(scope="module")
def old_pillow(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the oldest allowed Pillow with numpy and OpenCV, from PyPI."""
    target = tmp_path_factory.mktemp("pillow-oldest")
    wanted = [f"pillow=={_oldest_pillow()}", "numpy", "opencv-python-headless"]
    pip = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    done = subprocess.run(
        [*pip, "--only-binary", ":all:", "--target", str(target), *wanted],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if done.returncode != 0 and any(word in done.stderr for word in OFFLINE):
        pytest.skip(f"pip cannot reach PyPI to install {wanted[0]}: {done.stderr.strip()[-200:]}")
    assert done.returncode == 0, done.stderr
    return target


@pytest.mark.slow
def test_16_bit_and_field_cases_decode_the_same_on_the_oldest_allowed_pillow(
    old_pillow: Path, tmp_path: Path
) -> None:
    options = {name: options for name, (_, options) in CASES.items()}
    for name, (make, _) in CASES.items():
        (tmp_path / name).write_bytes(make())
    (tmp_path / "cases.json").write_text(json.dumps(options))
    subprocess.run(
        [sys.executable, "-S", "-c", CHILD, str(tmp_path)],  # -S: no site-packages but these
        env={"PYTHONPATH": f"{old_pillow}:{REPO}", "PATH": "/usr/bin:/bin"},
        check=True, timeout=120,
    )  # fmt: skip
    report = json.loads((tmp_path / "errors.json").read_text())
    assert report["pillow"].startswith(_oldest_pillow())
    old = np.load(tmp_path / "decoded.npz")
    expected_errors = {}
    for name, (make, opts) in CASES.items():
        try:
            new = decode_reduced(make(), name=name, **opts)
        except ImageDecodeError as exc:
            expected_errors[name] = str(exc)
            continue
        assert np.array_equal(old[name], new.image), name
        assert str(old[name + ".kind"]) == new.kind, name
    assert (
        report["errors"]
        == expected_errors
        == {
            "colour16_at_12": "colour16_at_12: a 16-bit colour image cannot be read at 12 significant "
            "bits (only 16-bit grey images can); save the camera's frames as 16-bit grey or 8-bit"
        }
    )
    assert np.array_equal(old["grey16_at_12"][:, :, 0], (TWELVE_BIT >> 4).astype(np.uint8))
    assert np.array_equal(old["grey16_at_16"][:, :, 0], (TWELVE_BIT >> 4).astype(np.uint8))
    assert np.array_equal(old["zero_alpha"], _rgb()) and np.array_equal(old["exif_turned"], _rgb())

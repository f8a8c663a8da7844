"""What a camera's frame costs the station before inference: decoding the PNG it was just
encoded into (``Reading.decode``) against taking its pixels as they are (``Reading.adopt``,
the same ``DecodedImage``).

    python bench/camera_pixels.py [--out reports/runtime] [--repeat 200]

A textured 1280 x 1024 frame (a 1.3 MP camera), 8-bit grey and RGB, at the default working side
(1024: the frame is reduced) and at full size (a tiled bundle). Writes
``<out>/camera_pixels.{json,md}``; run it through ``/work/wt/heavy --alone`` for the timings.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
from _report import recorded, rounds, save_report, table

from inspection.runtime.bounds import DEFAULT_WORK_MAX_SIDE, Reading

SIZE = (1024, 1280)  # (h, w)
WORK_SIDES = {"1024 (reduced)": DEFAULT_WORK_MAX_SIDE, "full size": None}


def frame(channels: int) -> tuple[np.ndarray, bytes]:
    """A camera-like frame (smooth shading, a part's texture, sensor noise) and its PNG as
    ``GenICamCamera`` encodes it."""
    rng = np.random.default_rng(0)
    shape = (*SIZE, channels) if channels > 1 else SIZE
    coarse = rng.integers(40, 220, size=(SIZE[0] // 32, SIZE[1] // 32, channels), dtype=np.uint8)
    texture = cv2.resize(coarse, SIZE[::-1], interpolation=cv2.INTER_CUBIC).reshape(shape)
    noise = rng.normal(0, 3, size=shape)
    pixels = np.clip(texture + noise, 0, 255).astype(np.uint8)
    ok, png = cv2.imencode(".png", pixels if channels == 1 else pixels[:, :, ::-1])
    assert ok
    return pixels, png.tobytes()


def timed(call, repeat: int) -> list[float]:
    """Milliseconds of ``repeat`` calls."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def row(colour: str, label: str, reading: Reading, repeat: int) -> dict:
    """p50 and p95 ms of both ways for one frame and working side, in 5 interleaved rounds."""
    pixels, png = frame(1 if colour == "grey" else 3)
    ways = {"decode": lambda: reading.decode(png), "adopt": lambda: reading.adopt(pixels)}
    runs = rounds(
        {n: lambda _r, call=call: timed(call, repeat // 5) for n, call in ways.items()}, 5
    )
    ms = {name: [t for run in times for t in run] for name, times in runs.items()}
    figures = {f"{n}_p{q}": float(np.percentile(t, q)) for n, t in ms.items() for q in (50, 95)}
    return {"frame": colour, "work_side": label, "png_bytes": len(png), **figures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("reports/runtime"))
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    with recorded() as env:
        rows = [row(colour, label, Reading(side), args.repeat)
                for colour in ("grey", "RGB") for label, side in WORK_SIDES.items()]  # fmt: skip
    cells = [[r["frame"], r["work_side"], round(r["png_bytes"] / 1024),
              f"{r['decode_p50']:.2f} / {r['decode_p95']:.2f}",
              f"{r['adopt_p50']:.2f} / {r['adopt_p95']:.2f}"] for r in rows]  # fmt: skip
    lines = [
        "# A camera's frame: decoding its PNG against taking its pixels",
        "",
        f"`{env['command']}` at {env['commit']}; CPU {env['cpu']}; load {env['load_before']} "
        f"-> {env['load_after']}. {SIZE[1]} x {SIZE[0]} frame, {args.repeat} calls per cell.",
        "",
        *table(["frame", "working side", "PNG KB", "decode p50 / p95 ms",
                "pixels p50 / p95 ms"], cells),
    ]  # fmt: skip
    save_report(args.out, "camera_pixels", {"env": env, "rows": rows}, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

"""Fault run of the station service: ``kill -9`` the server in the middle of the load.

Clients retry every unacknowledged request with the same request id until it is
acknowledged. Afterwards: no acknowledged result missing, no duplicates, SQLite
``PRAGMA integrity_check`` ok, every referenced blob present. Then a bad-input barrage
that must produce zero 5xx. Writes ``reports/service/fault.json`` and ``summary.md``.

    python bench/fault.py --registry var/registry --product brick --kills 2
"""

from __future__ import annotations

import io
import json
import threading
import time
from typing import Any

import httpx
import numpy as np
from _report import save_report
from load import (  # the sibling script; run as `python bench/fault.py`
    REPORTS,
    Bench,
    ClientLog,
    environment,
    parse_args,
    prepare,
    run_clients,
    run_header,
    stored_exactly_once,
    verify_store,
    write_summary,
)
from PIL import Image


def kill_during_load(bench: Bench, total: int, kills: int, acked: Any) -> list[float]:
    """Kill -9 the server each time another 1/(kills+1) of the requests is acknowledged."""
    restart_seconds = []
    for n in range(1, kills + 1):
        target = total * n // (kills + 1)
        while len(acked()) < target:
            time.sleep(0.01)
        bench.kill()
        time.sleep(0.5)  # clients hit a dead port and retry meanwhile
        restart_seconds.append(round(bench.start(), 2))
    return restart_seconds


def resend_acked(bench: Bench, log: ClientLog, count: int) -> dict[str, int]:
    """A client that lost the response retries an acknowledged request with the same bytes:
    the same result, no new row (another image under that id would rightly get 409)."""
    chosen = sorted(log.acked)[:count]
    same = 0
    with httpx.Client(base_url=bench.base_url, timeout=30.0) as client:
        for request_id in chosen:
            image = bench.images[log.images[request_id]]
            params = {"product": bench.product, "request_id": request_id, "part_id": request_id}
            response = client.post(
                "/v1/inspect", params=params, content=image, headers=bench.headers()
            )
            if response.status_code == 200 and response.json()["id"] == log.acked[request_id]:
                same += 1
    return {"sent": len(chosen), "replayed_same_id": same}


def bad_requests(bench: Bench, random_count: int) -> list[tuple[str, dict, dict, bytes]]:
    """(case, params, headers, body) of requests a broken client or an attacker might send."""
    good_png = bench.images[0]
    buffer = io.BytesIO()
    Image.new("L", (3000, 2000)).save(buffer, "PNG")  # 6 MP > max_pixels, small on the wire
    bomb = buffer.getvalue()
    ok = bench.headers()
    cases = [
        ("empty", {}, ok, b""),
        ("text", {}, ok, b"definitely not an image"),
        ("truncated", {}, ok, good_png[: len(good_png) // 3]),
        ("png header only", {}, ok, good_png[:33]),
        ("too many pixels", {}, ok, bomb),
        ("too many bytes", {}, ok, b"\x89PNG" + b"\0" * 2_100_000),
        ("wrong content type", {}, bench.headers("text/plain"), good_png),
        ("json", {}, bench.headers("application/json"), b'{"image": 1}'),
        ("unknown product", {"product": "no-such"}, ok, good_png),
        ("bad request id", {"request_id": "a/b/../c"}, ok, good_png),
        ("no token", {}, {"Content-Type": "image/png"}, good_png),
        ("bad token", {}, ok | {"Authorization": "Bearer insp_forged"}, good_png),
        ("multipart no boundary", {}, bench.headers("multipart/form-data"), b"--x\r\n\r\n"),
        ("multipart garbage", {}, bench.headers("multipart/form-data; boundary=q"), b"--q\r\n\0"),
    ]
    rng = np.random.default_rng(5)
    types = [
        "image/png",
        "image/jpeg",
        "application/octet-stream",
        "multipart/form-data; boundary=q",
    ]
    for i in range(random_count):
        body = rng.integers(0, 256, int(rng.integers(0, 4096)), dtype=np.uint8).tobytes()
        if i % 3 == 0:
            body = good_png[: int(rng.integers(8, 200))] + body  # a valid header, garbage after
        cases.append((f"random-{i}", {}, bench.headers(types[i % len(types)]), body))
    return cases


def barrage(bench: Bench, random_count: int) -> dict[str, Any]:
    statuses: dict[str, int] = {}
    five_xx = []
    cases = bad_requests(bench, random_count)
    with httpx.Client(base_url=bench.base_url, timeout=30.0) as client:
        for case, params, headers, body in cases:
            response = client.post(
                "/v1/inspect", params={"product": bench.product} | params, content=body,
                headers=headers,
            )  # fmt: skip
            key = str(response.status_code)
            statuses[key] = statuses.get(key, 0) + 1
            if response.status_code >= 500:
                five_xx.append(case)
        still = client.post(
            "/v1/inspect", params={"product": bench.product}, content=bench.images[1],
            headers=bench.headers(),
        )  # fmt: skip
    return {
        "sent": len(cases),
        "5xx": len(five_xx),
        "5xx_cases": five_xx[:10],
        "statuses": dict(sorted(statuses.items())),
        "still_serving": still.status_code == 201,
    }


def main() -> dict[str, Any]:
    args = parse_args(defaults={"clients": 4, "requests": 40})
    bench = prepare(args, "fault")
    bench.start()
    total = args.clients * args.requests
    log = ClientLog()
    timing: dict[str, float] = {}

    def clients() -> None:
        _, timing["wall"] = run_clients(
            bench, args.clients, args.requests, tag="fault", retry_for_s=180.0, log=log
        )

    try:
        load = threading.Thread(target=clients)
        load.start()
        restart_seconds = kill_during_load(bench, total, args.kills, lambda: log.acked)
        load.join()
        rows_before = verify_store(bench, log.acked, "fault")["stored_rows"]
        resent = resend_acked(bench, log, count=20)
        resent["new_rows"] = verify_store(bench, log.acked, "fault")["stored_rows"] - rows_before
        bad_input = barrage(bench, random_count=120)
    finally:
        bench.stop()
    verification = verify_store(bench, log.acked, "fault")
    report = {
        **run_header(bench, args),
        "logical_requests": total,
        "kills": args.kills,
        "restart_seconds": restart_seconds,
        "wall_s": round(timing["wall"], 2),
        "client_statuses": dict(sorted(log.statuses.items())),
        "client_retries": log.retries,
        "replays": log.statuses.get("200", 0),
        "gave_up": len(log.gave_up),
        "resent": resent,
        "verification": verification,
        "bad_input_barrage": bad_input,
        "environment": environment(),
    }
    save_report(REPORTS, "fault", report)
    write_summary()
    print(json.dumps({k: report[k] for k in ("verification", "bad_input_barrage")}, indent=2))
    failed = (
        not stored_exactly_once(verification, total)
        or bad_input["5xx"]
        or resent["new_rows"]
        or resent["replayed_same_id"] != resent["sent"]
        or verification["sqlite_integrity_check"] not in (None, "ok")
        or verification["blobs_referenced_missing"]
    )
    if failed:
        raise SystemExit(1)
    return report


if __name__ == "__main__":
    main()

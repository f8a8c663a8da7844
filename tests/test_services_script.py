"""``scripts/services.sh`` starts its daemons (PostgreSQL, Mosquitto, the Ray head) without
its caller's descriptors: a PostgreSQL started inside ``flock`` once held that lock as long as
it ran."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "services.sh"


def _command(pid: int) -> bytes:
    """The program ``pid`` runs, once it has left the shell that started it."""
    for _ in range(100):
        program = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
        if program not in (b"bash", b""):  # b"": in the middle of its exec
            return program
        time.sleep(0.05)
    return program


def test_a_daemon_the_script_starts_keeps_no_lock_of_its_caller(tmp_path: Path) -> None:
    lock = tmp_path / "slot"
    shell = f"""set -euo pipefail
eval "$(sed -n '/^detached() {{/,/^}}/p' {SCRIPT})"
exec 9>{lock}
flock 9
detached sleep 60 >/dev/null 2>&1 &  # as the script starts them: output to a log
echo $!
exec 9>&-  # the caller lets its lock go, as its flock does when it ends
wait
"""
    with subprocess.Popen(["bash", "-c", shell], stdout=subprocess.PIPE, text=True) as caller:
        daemon = int(caller.stdout.readline())  # what the script records as the daemon's PID
        try:
            assert _command(daemon) == b"sleep"
            assert subprocess.run(["flock", "-n", str(lock), "true"]).returncode == 0
        finally:
            os.kill(daemon, signal.SIGTERM)
            caller.wait(10)

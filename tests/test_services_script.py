"""``scripts/services.sh`` starts its daemons (PostgreSQL, Mosquitto, the Ray head) without
its caller's descriptors: a PostgreSQL started inside ``flock`` once held that lock as long as
it ran."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "services.sh"


def test_a_daemon_the_script_starts_keeps_no_lock_of_its_caller(tmp_path: Path) -> None:
    lock = tmp_path / "slot"
    shell = f"""set -euo pipefail
eval "$(sed -n '/^detached() {{/,/^}}/p' {SCRIPT})"
exec 9>{lock}
flock 9
detached sleep 60 >/dev/null 2>&1 &  # as the script starts them: output to a log
echo $!
"""
    started = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, check=True)
    daemon = int(started.stdout)  # what the script records as the daemon's PID
    try:
        assert Path(f"/proc/{daemon}/cmdline").read_bytes().split(b"\0")[0] == b"sleep"
        assert subprocess.run(["flock", "-n", str(lock), "true"]).returncode == 0
    finally:
        os.kill(daemon, signal.SIGTERM)

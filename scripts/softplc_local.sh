#!/usr/bin/env bash
# The soft PLC driving a local line station (docs/line-integration.md): run from the root of a
# demo site (`make demo`; the checkout itself after it), with Mosquitto installed
# (scripts/services.sh). The site is the working directory: configs/line.yaml and var/ there.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
PYTHON="${PYTHON:-$HERE/../.venv/bin/python}"
exec "$PYTHON" "$HERE/softplc_local.py" "$@"

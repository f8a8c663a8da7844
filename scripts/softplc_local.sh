#!/usr/bin/env bash
# The soft PLC driving a local line station (docs/line-integration.md): run from the repository
# root of a demo site (`make demo`), with Mosquitto installed (scripts/services.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
exec "$PYTHON" scripts/softplc_local.py "$@"

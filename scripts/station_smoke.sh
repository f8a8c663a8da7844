#!/usr/bin/env bash
# Station smoke test: a fresh venv with only the torch-free station install, then
# `inspection inspect` on a bundle. Proves a line station needs no torch.
#
#   scripts/station_smoke.sh BUNDLE IMAGE_OR_FOLDER... [inspect options, e.g. --out DIR]
#
# Env: PYTHON (interpreter for the venv, default python3), STATION_VENV (reuse this venv
# folder instead of a fresh temporary one), PIP_CACHE_DIR (pip's cache keeps reruns fast).
set -euo pipefail

if [ "$#" -lt 2 ]; then
  echo "usage: $0 BUNDLE IMAGE_OR_FOLDER... [inspect options]" >&2
  exit 64
fi
bundle=$1
shift
repo=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}

if [ -n "${STATION_VENV:-}" ]; then
  venv=$STATION_VENV
else
  scratch=$(mktemp -d -t station-smoke-XXXXXX)
  trap 'rm -rf "$scratch"' EXIT
  venv=$scratch/venv
fi

if [ ! -x "$venv/bin/python" ]; then
  echo "== creating venv $venv"
  "$python" -m venv "$venv"
fi
echo "== installing inspection[station] (no torch)"
# A wheel build (not editable) so the venv runs the installed package, not the source tree.
"$venv/bin/python" -m pip install -q --no-compile --disable-pip-version-check "$repo[station]"

echo "== checking the venv has no torch"
"$venv/bin/python" - <<'PY'
import importlib.util, sys
found = [m for m in ("torch", "anomalib", "lightning", "torchvision") if importlib.util.find_spec(m)]
if found:
    sys.exit(f"station venv must not contain {found}")
PY

echo "== inspection inspect"
# The console script imports the installed package (its sys.path has no working directory).
"$venv/bin/inspection" inspect "$bundle" "$@"
# A serving station also builds its retention settings (croniter validates the prune schedule).
(cd / && "$venv/bin/python" - <<'PY'
import sys

import inspection.cli.inspect
import inspection.runtime.inspector
from inspection.store.retention import RetentionConfig

RetentionConfig()
assert "torch" not in sys.modules
PY
)
echo "== station smoke test passed"

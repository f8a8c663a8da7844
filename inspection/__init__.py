"""inspection: industrial visual anomaly inspection.

Layers, split by deployment boundary (a line station has no torch):

- torch-free: ``core`` (types, config, registry, bundles), ``data``, ``runtime``
  (OpenVINO Inspector), ``refine`` (mask refinement), ``store``, ``service``.
- torch side: ``training`` (anomalib training, evaluation, OpenVINO/NNCF export,
  SAM export) and ``retrain`` (champion/challenger).
"""

import os

__version__ = "0.1.0"

# torch's OpenMP threads spin at every barrier by default; when another process holds a core
# (a shared training PC, CI), a two-thread convolution then runs SLOWER than on one thread
# (reports/bench/fit.md). Threads that sleep at barriers do not. Read once when torch loads
# OpenMP, so set here, before any torch import; an explicit environment setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

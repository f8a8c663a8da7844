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
# (a shared training PC, CI), a two-thread convolution then runs 2-5x SLOWER than on one thread.
# Passive waiting (threads sleep at barriers) measured 0.75-1.0 s vs 1.7-3.7 s per EfficientNet
# batch of 8 at 256 px with the other core busy. Read once when torch loads OpenMP, so set here,
# before any torch import; an explicit environment setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

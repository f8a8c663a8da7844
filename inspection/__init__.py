"""inspection: industrial visual anomaly inspection.

Layers, split by deployment boundary (a line station has no torch):

- torch-free: ``core`` (types, config, registry, bundles), ``data``, ``runtime``
  (OpenVINO Inspector), ``refine`` (mask refinement), ``store``, ``service``.
- torch side: ``training`` (anomalib training, evaluation, OpenVINO/NNCF export,
  SAM export) and ``retrain`` (champion/challenger).
"""

__version__ = "0.1.0"

"""Torch side: anomalib training, evaluation, OpenVINO/NNCF export, SAM export."""

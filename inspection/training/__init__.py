"""Torch side: anomalib training, evaluation, OpenVINO/NNCF export, SAM export."""

from inspection.training.allocator import reuse_freed_memory

reuse_freed_memory()  # every process that trains: freed arrays reused, not faulted in again

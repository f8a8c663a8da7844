"""Shared fixtures: a tiny MVTec-style product written once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Two cores in CI: keep numeric libraries from oversubscribing them.
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("MKL_NUM_THREADS", "2")

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def tiny_product(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small MVTec AD tree (``train/good``, ``test/<defect>``, ``ground_truth``) at 128 px."""
    from inspection.data.demo import write_demo_product

    root = tmp_path_factory.mktemp("datasets")
    return write_demo_product(
        root, "brick", seed=7, n_train=24, n_test_good=6, n_test_per_defect=3, size=128
    )

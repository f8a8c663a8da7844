"""Fast checks of a retrain run's guards: no training, a registry written by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from inspection.core.errors import ConfigError
from inspection.core.registry import Registry
from inspection.retrain.config import retrain_config_from_mapping
from inspection.retrain.pipeline import retrain_product

from .helpers import scratch_site


def _trained(registry: Registry, product: str = "brick") -> None:
    registry.create_version(
        product, model_kind="patchcore", config={}, dataset={}, metrics={}, packages={}
    )


def test_an_unknown_product_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    """A typo (or a product with reviews but no model) made a registry folder holding a
    failed event, which ``retrain --all`` then retrained, and failed, every time."""
    site = scratch_site(tmp_path, tmp_path / "datasets")
    registry = Registry(site.registry_dir)
    _trained(registry)
    config = retrain_config_from_mapping({"work_dir": str(tmp_path / "work")})
    with pytest.raises(ConfigError, match=r"'brcik' has no trained model .*trained there: brick"):
        retrain_product("brcik", site=site, config=config)
    assert registry.products() == ["brick"]
    assert not (tmp_path / "work").exists()

"""A product's input-domain tolerance (``input_domain:`` in ``products/<product>.yaml``):
validated with the file and key named, and recorded in the bundle's ``InputDomain`` at export,
where every station reads it."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from inspection.core.bundle import read_bundle_metadata
from inspection.core.errors import ConfigError
from inspection.core.input_domain import DomainTolerance
from inspection.core.product_config import load_product_config
from inspection.core.registry import Registry
from tests.conftest import TrainedProduct


def _product(folder: Path, name: str, text: str) -> Path:
    (folder / "products").mkdir(parents=True, exist_ok=True)
    path = folder / "products" / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_product_sets_its_tolerance_and_others_keep_the_defaults(tmp_path: Path) -> None:
    _product(tmp_path, "bar", "input_domain:\n  aspect_tolerance: 0.6\n")
    _product(tmp_path, "tile", "input_domain: {aspect_tolerance: 0.3, min_side_fraction: 0.25}\n")
    assert load_product_config("bar", tmp_path).input_domain == DomainTolerance(0.6, 0.5)
    assert load_product_config("tile", tmp_path).input_domain == DomainTolerance(0.3, 0.25)
    assert load_product_config("none", tmp_path).input_domain == DomainTolerance(0.15, 0.5)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("input_domain: {aspect_tolerance: 2}", ".input_domain: aspect_tolerance: must be from 0 "
         "to 1 (0 % to 100 % beyond the training aspect range), got 2"),
        ("input_domain: {min_side_fraction: 0}", ".input_domain: min_side_fraction: must be "
         "above 0 and at most 1"),
        ("input_domain: {aspect_tolerance: wide}", ".input_domain.aspect_tolerance: expected a "
         "number, got 'wide'"),
        ("input_domain: {aspect: 0.3}", ".input_domain: unknown key(s) 'aspect'; valid keys: "
         "aspect_tolerance, histogram_margin, min_side_fraction"),
        ("input_domain: 0.3", ".input_domain: expected a mapping, got 0.3"),
    ],
)  # fmt: skip
def test_a_bad_tolerance_names_the_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = _product(tmp_path, "bar", text + "\n")
    with pytest.raises(ConfigError, match=re.escape(f"{path}{message}")):
        load_product_config("bar", tmp_path)


@pytest.mark.slow
def test_export_records_the_products_tolerance_in_the_bundle(
    trained_patchcore: TrainedProduct, tmp_path: Path
) -> None:
    """The tolerance reaches the bundle (signed and checksummed with it), not a station config:
    a station applies each bundle's own."""
    from inspection.training.export import ExportOptions
    from inspection.training.registry_export import RegistryExport, export_bundle

    root = tmp_path / "registry"
    shutil.copytree(trained_patchcore.registry.root, root, ignore=shutil.ignore_patterns("bundles"))
    configs = tmp_path / "configs"
    _product(configs, "brick", "input_domain: {aspect_tolerance: 0.4, min_side_fraction: 0.3}\n")
    source = RegistryExport(version=trained_patchcore.record.version, configs_dir=configs)
    result = export_bundle(Registry(root), "brick", ExportOptions(precision="fp32"), source)
    domain = read_bundle_metadata(result.bundle_dir).input_domain
    assert domain is not None and domain.tolerance == DomainTolerance(0.4, 0.3)
    assert domain.aspect_range() == pytest.approx((1 / 1.4, 1.4))
    assert '"aspect_tolerance": 0.4' in (result.bundle_dir / "metadata.json").read_text()

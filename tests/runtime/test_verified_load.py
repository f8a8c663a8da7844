"""Verify what you load: the bytes whose signature is checked are the bytes compiled.

An attacker who swaps a bundle's files after the check (between verify and load) must not get
the swapped model served: the loader reads each file once, checks that copy, and compiles it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest

from bench._shared import write_mean_bundle
from inspection.core.errors import BundleError
from inspection.core.registry import Registry
from inspection.core.signing import (
    init_keys,
    load_private_key,
    load_public_key,
    read_verified,
    sign_bundle,
)
from inspection.refine.config import RefineConfig
from inspection.runtime import model as model_module
from inspection.runtime.model import BundleModel
from inspection.runtime.predictor import load_inspector
from inspection.station.live import LiveModels, default_loader, station_loader

SIZE = (32, 32)
PRODUCT = "widget"


def _dark_model() -> ov.Model:
    """The attacker's graph: same inputs and outputs, but every part scores 0 (all pass)."""
    image = ops.parameter([-1, 3, *SIZE], np.float32, name="image")
    amap = ops.multiply(ops.reduce_mean(image, np.array([1]), keep_dims=True), np.float32(0.0))
    score = ops.reduce_max(amap, np.array([1, 2, 3]), keep_dims=False)
    model = ov.Model([score, amap], [image], "dark")
    model.outputs[0].get_tensor().set_names({"pred_score"})
    model.outputs[1].get_tensor().set_names({"anomaly_map"})
    return model


def _swap_in_dark_model(bundle: Path, scratch: Path) -> None:
    """Overwrite the bundle's model files on disk with the attacker's graph."""
    scratch.mkdir(exist_ok=True)
    ov.save_model(_dark_model(), scratch / "model.xml")
    for name in ("model.xml", "model.bin"):
        shutil.copyfile(scratch / name, bundle / name)


@pytest.fixture
def signed(tmp_path: Path):
    keys = init_keys(tmp_path / "keys")
    bundle = write_mean_bundle(tmp_path / "bundle", input_size=SIZE, product=PRODUCT)
    sign_bundle(bundle, load_private_key(keys.private))
    return bundle, load_public_key(keys.public)


def _bright() -> np.ndarray:
    return np.full((*SIZE, 3), 230, np.uint8)


def _swap_after_check(monkeypatch, bundle: Path, scratch: Path) -> list[int]:
    """Run the real check, then swap the files before anything compiles (the race window)."""
    real = model_module.read_verified
    swaps: list[int] = []

    def check_then_swap(path, public_key=None):
        verified = real(path, public_key)
        _swap_in_dark_model(Path(path), scratch)
        swaps.append(1)
        return verified

    monkeypatch.setattr(model_module, "read_verified", check_then_swap)
    return swaps


def test_a_swap_between_check_and_load_serves_the_verified_bytes(signed, tmp_path, monkeypatch):
    bundle, key = signed
    expected = load_inspector(bundle, public_key=key, golden=False).inspect(_bright()).score
    swaps = _swap_after_check(monkeypatch, bundle, tmp_path / "attacker")
    result = load_inspector(bundle, public_key=key, golden=False).inspect(_bright())
    assert swaps == [1]
    assert result.score == pytest.approx(expected)
    assert result.is_defective  # the swapped graph would have passed it


def test_files_swapped_before_the_check_are_refused(signed, tmp_path):
    bundle, key = signed
    _swap_in_dark_model(bundle, tmp_path / "attacker")
    with pytest.raises(BundleError, match="checksum mismatch for model"):
        load_inspector(bundle, public_key=key, golden=False)


def test_the_signature_is_checked_on_the_bytes_read(signed, tmp_path):
    bundle, key = signed
    rogue = init_keys(tmp_path / "rogue")
    sign_bundle(bundle, load_private_key(rogue.private))
    with pytest.raises(BundleError, match="not by this site's key"):
        read_verified(bundle, key)
    assert read_verified(bundle).signed_by is None  # no key: checksums only, and it says so


def test_the_station_serves_the_verified_bytes_when_files_swap_mid_load(
    signed, tmp_path, monkeypatch
):
    bundle, key = signed
    registry = Registry(tmp_path / "registry")
    registry.bundles.add_bundle(PRODUCT, bundle, "v0001-fp32")
    registry.journal.promote(PRODUCT, "v0001-fp32", actor="qa", reason="test")
    stored = registry.bundles.bundle_dir(PRODUCT, "v0001-fp32")
    swaps = _swap_after_check(monkeypatch, stored, tmp_path / "attacker")
    loader = station_loader(RefineConfig(method="none"), public_key=key)
    models = LiveModels(registry, (PRODUCT,), loader=loader, public_key=key)
    models.refresh()
    assert swaps == [1]
    assert models.get(PRODUCT).inspect(_bright()).is_defective


def test_the_station_refuses_a_loader_that_did_not_check_the_signature(signed, tmp_path):
    bundle, key = signed
    registry = Registry(tmp_path / "registry")
    registry.bundles.add_bundle(PRODUCT, bundle, "v0001-fp32")
    registry.journal.promote(PRODUCT, "v0001-fp32", actor="qa", reason="test")
    models = LiveModels(registry, (PRODUCT,), loader=default_loader, public_key=key)
    models.refresh()
    assert "did not verify the bundle's signature" in models.status()[PRODUCT]["problem"]
    assert not models.status()[PRODUCT]["loaded"]


def test_a_second_load_of_the_same_verified_bytes_reuses_their_compiles(signed, tmp_path):
    bundle, key = signed
    first = BundleModel.load(bundle, public_key=key)
    again = BundleModel.load(bundle, public_key=key)
    assert again.compiled is first.compiled
    assert again.throughput().compiled is first.throughput().compiled
    assert BundleModel.load(bundle, performance_hint="THROUGHPUT").compiled is not first.compiled
    other = write_mean_bundle(tmp_path / "other", input_size=(16, 16), product=PRODUCT)
    assert BundleModel.load(other).compiled is not first.compiled

"""Signed thresholds: a station with a pinned key serves only threshold versions signed by it;
an appended, altered or foreign-signed version is refused and the last good one keeps serving."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from bench._shared import write_mean_bundle
from inspection.core.registry import Registry
from inspection.core.signing import (
    init_keys,
    load_private_key,
    load_public_key,
    sign_bundle,
    sign_record,
    site_keys_dir,
)
from inspection.distribution.catalog import live_entry
from inspection.distribution.sync import sync_threshold
from inspection.refine.config import RefineConfig
from inspection.station.live import LiveModels, station_loader

PRODUCT = "widget"


@pytest.fixture
def station(tmp_path: Path) -> LiveModels:
    """A registry whose machine holds the site key, a signed live bundle, a signed threshold
    of 0.6, and a station pinning the key, loaded."""
    registry = Registry(tmp_path / "var" / "registry")
    keys = init_keys(site_keys_dir(registry.root))
    bundle = write_mean_bundle(tmp_path / "bundle", input_size=(32, 32), product=PRODUCT)
    sign_bundle(bundle, load_private_key(keys.private))
    registry.bundles.add_bundle(PRODUCT, bundle, "v0001-fp32")
    registry.journal.promote(PRODUCT, "v0001-fp32", actor="qa", reason="first")
    registry.journal.set_threshold(PRODUCT, 0.6, actor="qa", reason="chosen on validation")
    key = load_public_key(keys.public)
    loader = station_loader(RefineConfig(method="none"), public_key=key)
    models = LiveModels(registry, (PRODUCT,), loader=loader, public_key=key)
    models.refresh()
    assert models.get(PRODUCT).threshold == pytest.approx(0.6)
    return models


def _append(models: LiveModels, row: dict) -> None:
    path = models.registry.root / PRODUCT / "thresholds.jsonl"
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(row) + "\n")


def _last_row(models: LiveModels) -> dict:
    path = models.registry.root / PRODUCT / "thresholds.jsonl"
    return json.loads(path.read_text(encoding="utf-8").splitlines()[-1])


def _appended(models: LiveModels) -> None:
    row = {k: v for k, v in _last_row(models).items() if k not in ("key_id", "signature")}
    _append(models, {**row, "number": 2, "value": 0.9999, "reason": "let everything pass"})


def _altered(models: LiveModels) -> None:
    _append(models, {**_last_row(models), "number": 2, "value": 0.9999})


def _foreign(models: LiveModels) -> None:
    rogue = load_private_key(init_keys(models.registry.root.parent / "rogue").private)
    row = {k: v for k, v in _last_row(models).items() if k not in ("key_id", "signature")}
    _append(models, sign_record({**row, "number": 2, "value": 0.9999}, rogue))


def _hostile_catalog(models: LiveModels) -> None:
    """``station sync`` from a catalog announcing 0.9999 with no signed record."""
    entry = live_entry(models.registry, PRODUCT)
    sync_threshold(
        models.registry, dataclasses.replace(entry, threshold=0.9999, threshold_record=None)
    )


def _hostile_catalog_record(models: LiveModels) -> None:
    """``station sync`` from a catalog whose record is signed by a key of its own."""
    rogue = load_private_key(init_keys(models.registry.root.parent / "rogue").private)
    row = {k: v for k, v in _last_row(models).items() if k not in ("key_id", "signature")}
    record = sign_record({**row, "value": 0.9999}, rogue)
    entry = live_entry(models.registry, PRODUCT)
    sync_threshold(
        models.registry, dataclasses.replace(entry, threshold=0.9999, threshold_record=record)
    )


@pytest.mark.parametrize(
    ("attack", "said"),
    [
        (_appended, "is not signed"),
        (_altered, "bad signature"),
        (_foreign, "not the pinned"),
        (_hostile_catalog, "is not signed"),
        (_hostile_catalog_record, "not the pinned"),
    ],
)
def test_a_forged_threshold_is_refused_and_the_last_good_one_serves(station, attack, said):
    attack(station)
    station.refresh()
    assert station.get(PRODUCT).threshold == pytest.approx(0.6)
    assert said in station.status()[PRODUCT]["threshold_refused"]


def test_a_signed_threshold_is_followed(station: LiveModels) -> None:
    station.registry.journal.set_threshold(PRODUCT, 0.7, actor="qa", reason="fewer false rejects")
    station.refresh()
    assert station.get(PRODUCT).threshold == pytest.approx(0.7)
    assert station.status()[PRODUCT]["threshold_refused"] is None

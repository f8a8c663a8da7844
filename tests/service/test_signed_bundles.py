"""Signed bundles: tampered metadata, re-checksummed weights and unsigned bundles are refused
by the CLI and by hot swap, and the live model keeps serving."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bench._shared import copy_bundle
from inspection.cli import app
from inspection.core.bundle import read_bundle_metadata, write_bundle_metadata
from inspection.core.registry import Registry
from inspection.core.signing import (
    SiteKeys,
    bundle_digest,
    init_keys,
    load_private_key,
    sign_bundle,
    site_keys_dir,
)

from .helpers import PRODUCT, V1, Bundles, serve, station_config

pytestmark = pytest.mark.slow
runner = CliRunner()


def _edit_threshold(bundle: Path, _keys: SiteKeys) -> None:
    """The attack run's edit: a threshold of 0.999 written straight into metadata.json."""
    path = bundle / "metadata.json"
    data = json.loads(path.read_text())
    data["image_threshold"] = 0.999
    path.write_text(json.dumps(data))


def _rewrite_weights(bundle: Path, _keys: SiteKeys) -> None:
    """Weights changed and every checksum recomputed: checksums pass, the signature does not."""
    weights = bundle / "model.bin"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    write_bundle_metadata(bundle, read_bundle_metadata(bundle))


def _unsigned(bundle: Path, _keys: SiteKeys) -> None:
    (bundle / "signature.json").unlink()


def _other_key(bundle: Path, keys: SiteKeys) -> None:
    rogue = init_keys(keys.private.parent.parent / "rogue")
    sign_bundle(bundle, load_private_key(rogue.private))


TAMPERING: dict[str, tuple[Callable[[Path, SiteKeys], None], str]] = {
    "metadata edited": (_edit_threshold, "bad bundle signature"),
    "weights rewritten with checksums": (_rewrite_weights, "bad bundle signature"),
    "unsigned": (_unsigned, "the bundle is not signed"),
    "signed by another key": (_other_key, "not by this site's key"),
}


def _said(result: object) -> str:
    """What a CLI run printed or raised (``main()`` turns the raised error into one line)."""
    return result.output + str(result.exception or "")


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> SiteKeys:
    return init_keys(tmp_path_factory.mktemp("site") / "keys")


def _keyed_registry(tmp_path: Path, keys: SiteKeys) -> Registry:
    """A registry on the set-up machine: the site key beside it signs its live pointer."""
    registry = Registry(tmp_path / "registry")
    shutil.copytree(keys.private.parent, site_keys_dir(registry.root))
    return registry


def _signed_copy(source: Path, target: Path, bundle_id: str, keys: SiteKeys) -> Path:
    copy_bundle(source, target, bundle_id)
    sign_bundle(target, load_private_key(keys.private))
    return target


@pytest.mark.parametrize("case", list(TAMPERING))
def test_tampered_bundles_are_refused_and_the_live_model_keeps_serving(
    case: str,
    tmp_path: Path,
    bundles: Bundles,
    keys: SiteKeys,
    sample_images: dict[str, bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tamper, message = TAMPERING[case]
    monkeypatch.chdir(tmp_path)  # `inspect` without --site logs to ./var/logs: the scratch site's
    registry = _keyed_registry(tmp_path, keys)
    registry.bundles.add_bundle(PRODUCT, _signed_copy(bundles.v1, tmp_path / "v1", V1, keys), V1)
    registry.journal.promote(PRODUCT, V1, actor="tests", reason="initial")
    assert registry.journal.live(PRODUCT).digest == bundle_digest(
        registry.bundles.bundle_dir(PRODUCT, V1)
    )
    bad = _signed_copy(bundles.v1, tmp_path / "bad", "v0002-fp32", keys)
    tamper(bad, keys)

    verify = runner.invoke(app, ["bundle", "verify", str(bad), "--public-key", str(keys.public)])
    assert verify.exit_code != 0 and message in _said(verify)
    good = runner.invoke(
        app, ["bundle", "verify", str(tmp_path / "v1"), "--public-key", str(keys.public)]
    )
    assert good.exit_code == 0, good.output
    image = tmp_path / "part.png"
    image.write_bytes(sample_images["good0"])
    refused = runner.invoke(
        app, ["inspect", str(bad), str(image), "--public-key", str(keys.public)]
    )
    assert refused.exit_code != 0 and message in _said(refused)

    config = station_config(tmp_path, bundle_public_key=keys.public)
    with serve(config) as served:
        assert served.inspect(sample_images["good0"]).json()["bundle_id"] == V1
        registry.bundles.add_bundle(PRODUCT, bad, "v0002-fp32")
        registry.journal.promote(PRODUCT, "v0002-fp32", actor="tests", reason=case)
        served.station.models.refresh()
        product = served.ops("/healthz").json()["products"][PRODUCT]
        assert message in product["problem"] and "still serving v0001-fp32" in product["problem"]
        assert str(tmp_path) not in product["problem"]
        response = served.inspect(sample_images["good1"])
        assert response.status_code == 201 and response.json()["bundle_id"] == V1


def test_an_unsigned_bundle_never_starts_serving(
    tmp_path: Path, bundles: Bundles, keys: SiteKeys, sample_images: dict[str, bytes]
) -> None:
    registry = _keyed_registry(tmp_path, keys)
    shutil.copytree(bundles.v1, tmp_path / "v1")
    registry.bundles.add_bundle(PRODUCT, tmp_path / "v1", V1)
    registry.journal.promote(PRODUCT, V1, actor="tests", reason="initial")
    with serve(station_config(tmp_path, bundle_public_key=keys.public)) as served:
        response = served.inspect(sample_images["good0"])
        assert response.status_code == 503 and "not signed" in response.json()["detail"]
        assert served.client.get("/healthz").json() == {"status": "degraded"}

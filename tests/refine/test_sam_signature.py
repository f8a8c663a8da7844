"""The SAM refiner bundle inside the signature: ``refine export-sam`` signs it with the site
key, a pinned key refuses it unsigned or altered (the ``bench/tamper.py --attacks`` row), and
without a key (``allow_unsigned_bundles``) it loads on its checksums alone."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import ModuleType

import pytest
from typer.testing import CliRunner

from inspection.cli import app
from inspection.core.errors import BundleError
from inspection.core.signing import SIGNING_KEY_ENV, init_keys, key_id, load_public_key
from inspection.refine.bundle import verify_refiner_bundle
from inspection.refine.config import RefineConfig, SamConfig
from inspection.refine.factory import build_refiner
from tests.station.test_signed_decisions import tamper  # noqa: F401 (the bench module fixture)

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:.*RANDOM WEIGHTS:UserWarning")]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(a random-init MobileSAM bundle ``refine export-sam`` wrote on a site holding a key,
    the site's public key)."""
    site = tmp_path_factory.mktemp("site")
    (site / "site.yaml").write_text(f"registry_dir: {site / 'var' / 'registry'}\n")
    keys = init_keys(site / "var" / "keys")
    out = site / "mobile_sam"
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(SIGNING_KEY_ENV, raising=False)
        result = CliRunner().invoke(
            app, ["refine", "export-sam", "--random-init", "--out", str(out),
                  "--site", str(site / "site.yaml")],
        )  # fmt: skip
    assert result.exit_code == 0, result.output + str(result.exception)
    assert f"signed with key {keys.key_id}" in " ".join(result.output.split())
    return out, keys.public


def test_export_sam_signs_with_the_site_key(exported: tuple[Path, Path]) -> None:
    bundle, public = exported
    key = load_public_key(public)
    assert verify_refiner_bundle(bundle, key).signed_by == key_id(key)


def test_an_altered_sam_refiner_is_refused(tamper: ModuleType, exported: tuple[Path, Path],  # noqa: F811
                                           tmp_path: Path) -> None:  # fmt: skip
    row = tamper.altered_sam_refiner(tmp_path, exported[0])
    assert row["outcome"] == "refused, last good kept", row["what"]


def test_unsigned_is_refused_with_a_key_and_loads_without(
    exported: tuple[Path, Path], tmp_path: Path
) -> None:
    bundle = shutil.copytree(exported[0], tmp_path / "unsigned")
    (bundle / "signature.json").unlink()
    config = RefineConfig(method="sam", sam=SamConfig(bundle=bundle, allow_random_weights=True))
    with pytest.raises(BundleError, match="not signed"):
        build_refiner(config, public_key=load_public_key(exported[1]))
    assert build_refiner(config).name == "sam-random"  # allow_unsigned_bundles: no key

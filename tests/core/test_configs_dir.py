"""A site's configs folder (products/, models/, refine.yaml) is its site file's own folder, so a
job run from another directory never reads another site's configs."""

from __future__ import annotations

from pathlib import Path

import pytest

from inspection.core.config import (
    CHECKOUT_CONFIGS,
    SiteConfig,
    default_configs_dir,
    load_site_config,
)


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with another site's configs/ in it."""
    cwd = tmp_path / "cwd"
    (cwd / "configs" / "products").mkdir(parents=True)
    (cwd / "configs" / "site.yaml").write_text("products: [brick]\n")
    monkeypatch.chdir(cwd)
    return cwd


def test_the_configs_folder_is_the_site_files_folder(tmp_path: Path, elsewhere: Path) -> None:
    (tmp_path / "plant-b").mkdir()
    (tmp_path / "plant-b" / "site.yaml").write_text("products: [widget]\n")
    site = load_site_config(tmp_path / "plant-b" / "site.yaml")
    assert site.configs_dir == site.configs == tmp_path / "plant-b"


def test_the_default_site_file_gives_its_own_folder(elsewhere: Path) -> None:
    site = load_site_config()
    assert site.configs_dir == Path("configs")
    assert site.configs.resolve() == elsewhere / "configs"


def test_a_site_file_may_name_its_configs_folder(tmp_path: Path, elsewhere: Path) -> None:
    (tmp_path / "site.yaml").write_text(f"configs_dir: {tmp_path / 'shared'}\n")
    assert load_site_config(tmp_path / "site.yaml").configs == tmp_path / "shared"


@pytest.mark.parametrize(
    ("local", "expected"), [(True, Path("configs")), (False, CHECKOUT_CONFIGS)]
)
def test_without_a_site_file_configs_fall_back_to_cwd_then_the_checkout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, local: bool, expected: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    if local:
        Path("configs").mkdir()
    assert load_site_config() == SiteConfig()
    assert SiteConfig().configs_dir is None
    assert default_configs_dir() == SiteConfig().configs == expected


@pytest.mark.parametrize("folder", ["site", "site/configs"])
def test_a_site_files_paths_start_beside_it_whatever_the_working_folder(
    tmp_path: Path, folder: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``dashboard --site /abs/site.yaml`` run from elsewhere showed no users and made an
    empty ``var/`` there: the store, registry (and its keys) resolved against the cwd."""
    site_file = tmp_path / folder / "site.yaml"
    site_file.parent.mkdir(parents=True)
    site_file.write_text("registry_dir: var/registry\nstore_url: sqlite:///var/x.db\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    site = load_site_config(site_file)
    root = tmp_path / "site"
    assert site.registry_dir == root / "var" / "registry" and site.blob_dir == root / "var/blobs"
    assert site.store_url == f"sqlite:///{root / 'var' / 'x.db'}"
    assert site.reports_dir == root / "reports" and site.configs == site_file.parent
    site_file.write_text(f"registry_dir: {tmp_path / 'r'}\n")
    assert load_site_config(site_file).registry_dir == tmp_path / "r"  # absolute: as written

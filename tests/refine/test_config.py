"""``refine.yaml`` is read from the site's configs folder, never from the working directory's
when a site is given, and a bad key is one line naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from inspection.core.errors import ConfigError
from inspection.refine.config import RefineConfig, load_refine_config, refine_config_in


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory whose configs/refine.yaml belongs to another site."""
    (tmp_path / "cwd" / "configs").mkdir(parents=True)
    (tmp_path / "cwd" / "configs" / "refine.yaml").write_text("refine: {method: none}\n")
    monkeypatch.chdir(tmp_path / "cwd")
    return tmp_path / "site"


def test_the_sites_refine_yaml_is_read(elsewhere: Path) -> None:
    elsewhere.mkdir()
    (elsewhere / "refine.yaml").write_text("refine: {method: random_walker}\n")
    assert refine_config_in(elsewhere).method == "random_walker"
    assert refine_config_in().method == "none"  # no site: ./configs, as before


def test_a_site_without_refine_yaml_gets_the_defaults_not_the_cwds(elsewhere: Path) -> None:
    elsewhere.mkdir()
    assert refine_config_in(elsewhere) == RefineConfig()
    assert load_refine_config() == refine_config_in(Path("configs"))


def test_a_bad_key_is_one_line_naming_the_file_and_key(elsewhere: Path) -> None:
    elsewhere.mkdir()
    (elsewhere / "refine.yaml").write_text("refine:\n  sam:\n    bundel: var/refiner\n")
    with pytest.raises(ConfigError) as info:
        refine_config_in(elsewhere)
    message = str(info.value)
    assert message.startswith(f"{elsewhere / 'refine.yaml'}: refine.sam: unknown key(s) 'bundel'")
    assert "\n" not in message

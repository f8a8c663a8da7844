"""The runtime bench exports every precision with ``force``: only into its own registry, never
a site's, where a station would meet its gate-refused bundles."""

from __future__ import annotations

from pathlib import Path

import pytest

from inspection.core.signing import init_keys, site_keys_dir
from tests.bench import bench_module


@pytest.fixture
def scratch_registry():
    return bench_module("runtime").scratch_registry


def test_a_sites_registry_is_refused(scratch_registry, tmp_path: Path, monkeypatch) -> None:
    signed = tmp_path / "site" / "registry"
    init_keys(site_keys_dir(signed))
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "site.yaml").write_text("registry_dir: named/registry\n")
    monkeypatch.chdir(tmp_path)

    for site in (signed, Path("named/registry"), tmp_path / "named" / "registry"):
        with pytest.raises(SystemExit, match="is a site's registry"):
            scratch_registry(site)
    assert scratch_registry(tmp_path / "bench") == tmp_path / "bench"

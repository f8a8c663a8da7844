from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from inspection.core.bundle import (
    BUNDLE_SCHEMA_VERSION,
    BundleMetadata,
    Normalization,
    Preprocessing,
    write_bundle_metadata,
)
from inspection.core.errors import BundleError, RegistryError
from inspection.core.model_record import DatasetRef, FitFigures
from inspection.core.registry import Registry


def _fake_bundle(directory: Path, bundle_id: str) -> Path:
    directory.mkdir(parents=True)
    (directory / "model.xml").write_text(f"<net id='{bundle_id}'/>")
    (directory / "model.bin").write_bytes(bundle_id.encode())
    metadata = BundleMetadata(
        schema_version=BUNDLE_SCHEMA_VERSION,
        bundle_id=bundle_id,
        product="brick",
        model_kind="patchcore",
        model_version="brick/v0001",
        precision="fp32",
        preprocessing=Preprocessing(input_size=(64, 64), mean=(0.5,) * 3, std=(0.5,) * 3),
        normalization=Normalization(1.0, 1.0, 0.0, 2.0, 0.0, 2.0),
    )
    write_bundle_metadata(directory, metadata)
    return directory


def _version(registry: Registry, payload: bytes = b"weights"):
    return registry.bundles.create_version(
        "brick",
        model_kind="patchcore",
        config={"seed": 1},
        dataset={"sha256": "abc", "count": 3},
        metrics={"overall": {"image_auroc": 0.9}},
        packages={"anomalib": "2.7.0"},
        write_files=lambda d: (d / "model.ckpt").write_bytes(payload),
    )


def test_versions_are_numbered_and_immutable(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    with pytest.raises(RegistryError, match="'brick' has no trained model versions yet"):
        registry.bundles.version("brick")
    first, second = _version(registry), _version(registry, b"other")
    assert (first.version, second.version) == ("v0001", "v0002")
    assert first.file("model.ckpt").read_bytes() == b"weights"
    assert registry.bundles.version("brick").version == "v0002"
    with pytest.raises(RegistryError, match="no model version brick/v0009; known: v0001, v0002"):
        registry.bundles.version("brick", "v0009")
    assert [r.version for r in registry.bundles.versions("brick")] == ["v0001", "v0002"]


def test_failed_write_leaves_no_version(tmp_path: Path) -> None:
    registry = Registry(tmp_path)

    def crash(directory: Path) -> None:
        (directory / "partial.ckpt").write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        registry.bundles.create_version(
            "brick",
            model_kind="stfpm",
            config={},
            dataset={},
            metrics={},
            packages={},
            write_files=crash,
        )
    assert registry.bundles.versions("brick") == []
    assert list((tmp_path / "brick" / "versions").iterdir()) == []


def test_promote_and_rollback_are_audited(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    for bundle_id in ("v0001-fp32", "v0002-int8"):
        registry.bundles.add_bundle(
            "brick", _fake_bundle(tmp_path / "src" / bundle_id, bundle_id), bundle_id
        )
    registry.journal.promote("brick", "v0001-fp32", actor="alice", reason="first")
    registry.journal.promote("brick", "v0002-int8", actor="retrain", reason="better")
    assert registry.journal.live("brick").bundle_id == "v0002-int8"
    state = registry.journal.rollback("brick", actor="bob", reason="false alarms")
    assert state.bundle_id == "v0001-fp32"
    actions = [(e["action"], e["actor"]) for e in registry.journal.events("brick")]
    assert actions == [("promote", "alice"), ("promote", "retrain"), ("rollback", "bob")]
    with pytest.raises(RegistryError, match="no earlier live bundle"):
        registry.journal.rollback("brick", actor="bob", reason="again")


def test_an_event_after_a_torn_last_line_is_kept(tmp_path: Path) -> None:
    """A crash mid-append leaves half a line; the next event must not be glued onto it
    (it was lost, and the rollback then went to the wrong bundle)."""
    registry = Registry(tmp_path)
    for bundle_id in ("v0001-fp32", "v0002-int8"):
        registry.bundles.add_bundle(
            "brick", _fake_bundle(tmp_path / "src" / bundle_id, bundle_id), bundle_id
        )
    registry.journal.promote("brick", "v0001-fp32", actor="alice", reason="first")
    with open(tmp_path / "brick" / "events.jsonl", "a", encoding="utf-8") as handle:
        handle.write('{"action": "promote", "bundle_id": "v00')
    registry.journal.promote("brick", "v0002-int8", actor="retrain", reason="better")
    actions = [(e["action"], e.get("bundle_id")) for e in registry.journal.events("brick")]
    assert actions == [("promote", "v0001-fp32"), ("promote", "v0002-int8")]
    assert registry.journal.rollback("brick", actor="bob", reason="x").bundle_id == "v0001-fp32"


def test_rollback_follows_the_live_bundle_after_a_crash_between_event_and_live_file(
    tmp_path: Path,
) -> None:
    """promote appends its event, then writes live.json: killed in between, the newest event
    names a bundle that never went live, and rollback 'rolled back' to the live one."""
    registry = Registry(tmp_path)
    for bundle_id in ("v0001-fp32", "v0002-int8", "v0003-int8"):
        registry.bundles.add_bundle(
            "brick", _fake_bundle(tmp_path / "src" / bundle_id, bundle_id), bundle_id
        )
    registry.journal.promote("brick", "v0001-fp32", actor="alice", reason="first")
    registry.journal.promote("brick", "v0002-int8", actor="retrain", reason="better")
    registry.journal.record_event(  # the event of a promotion killed before live.json
        "brick", "promote", actor="retrain", reason="killed",
        bundle_id="v0003-int8", previous="v0002-int8",
    )  # fmt: skip
    assert registry.journal.live("brick").bundle_id == "v0002-int8"
    assert registry.journal.rollback("brick", actor="bob", reason="x").bundle_id == "v0001-fp32"


def test_bundles_are_verified_and_never_overwritten(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    source = _fake_bundle(tmp_path / "src", "v0001-fp32")
    registry.bundles.add_bundle("brick", source, "v0001-fp32")
    with pytest.raises(RegistryError, match="already exists"):
        registry.bundles.add_bundle("brick", source, "v0001-fp32")
    (source / "model.bin").write_bytes(b"tampered")
    with pytest.raises(BundleError, match=r"checksum mismatch for model\.bin"):
        registry.bundles.add_bundle("brick", source, "v0002-fp32")


def test_thresholds_are_versioned_with_who_and_why(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    assert registry.journal.current_threshold("brick") is None
    registry.journal.set_threshold("brick", 0.6, actor="alice", reason="too many false alarms")
    latest = registry.journal.set_threshold("brick", 0.55, actor="bob", reason="missed a crack")
    assert (latest.number, latest.value, latest.actor) == (2, 0.55, "bob")
    with pytest.raises(RegistryError, match="between 0 and 1"):
        registry.journal.set_threshold("brick", 1.5, actor="x", reason="y")
    with pytest.raises(RegistryError, match="who"):
        registry.journal.set_threshold("brick", 0.5, actor=" ", reason="y")


def test_a_threshold_records_the_budget_it_was_chosen_for(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    registry.journal.set_threshold("brick", 0.6, actor="alice", reason="by hand")
    registry.journal.set_threshold("brick", 0.7, actor="alice", reason="1 % budget", budget=0.01)
    assert [t.budget for t in registry.journal.threshold_history("brick")] == [None, 0.01]
    assert [e["budget"] for e in registry.journal.events("brick")] == [None, 0.01]
    first, last = (
        json.loads(line)
        for line in (tmp_path / "brick" / "thresholds.jsonl").read_text().splitlines()
    )
    assert last["budget"] == 0.01
    assert "budget" not in first  # unset: the line an earlier release wrote, and still reads
    for budget in (0.0, 0.6):
        with pytest.raises(RegistryError, match=r"budget must be in \(0, 0.5\], got"):
            registry.journal.set_threshold("brick", 0.5, actor="x", reason="y", budget=budget)
    assert len(registry.journal.threshold_history("brick")) == 2


@pytest.mark.parametrize("name", ["../etc", "", "a/b", "-x", "x" * 65])
def test_bad_product_names_are_rejected(tmp_path: Path, name: str) -> None:
    with pytest.raises(RegistryError, match="invalid product name"):
        Registry(tmp_path).bundles.versions(name)


def test_schema_version_mismatch_is_explained(tmp_path: Path) -> None:
    bundle = _fake_bundle(tmp_path / "b", "v0001-fp32")
    data = json.loads((bundle / "metadata.json").read_text())
    data["schema_version"] = 99
    (bundle / "metadata.json").write_text(json.dumps(data))
    registry = Registry(tmp_path / "reg")
    with pytest.raises(BundleError, match="schema version 99 is not supported"):
        registry.bundles.add_bundle("brick", bundle, "v0001-fp32")


def test_fit_figures_and_dataset_are_read_typed(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    fit = FitFigures(fit_seconds=1.5, test_images=12, update_stage_seconds={"load": 0.2})
    record = registry.bundles.create_version(
        "brick",
        model_kind="patchcore",
        config={},
        dataset={"name": "brick", "sha256": "abc", "count": 3, "files": {}, "path": "data/b"},
        metrics={"overall": {"image_auroc": 0.9}, **fit.to_mapping()},
        packages={},
        write_files=lambda d: (d / "model.ckpt").write_bytes(b"w"),
    )
    assert record.fit_figures() == fit and record.evaluation().image_auroc == 0.9
    assert record.dataset_ref() == DatasetRef(Path("data/b"), "abc", 3, "brick")  # first release
    bad = registry.bundles.create_version(
        "brick", model_kind="patchcore", config={}, dataset={"count": "3"},
        metrics={"fit_seconds": "fast"}, packages={}, write_files=lambda d: None,
    )  # fmt: skip
    with pytest.raises(RegistryError, match=r"v0002 metrics\.fit_seconds: expected a number"):
        bad.fit_figures()
    with pytest.raises(RegistryError, match=r"v0002 dataset\.count: expected an integer"):
        bad.dataset_ref()


def test_a_record_parses_each_typed_part_once() -> None:
    """A record is immutable: its typed parts are parsed on first use, then reused."""
    fixture = Path(__file__).parents[1] / "fixtures" / "registry_v2"
    [record] = Registry(fixture).bundles.versions("brick")
    assert record.preprocessing() is record.preprocessing()
    assert record.evaluation() is record.evaluation()
    assert record.dataset_ref() is record.dataset_ref()
    assert dataclasses.replace(record).preprocessing() == record.preprocessing()

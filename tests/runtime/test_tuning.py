"""Precision chosen by measurement: the choice rule, the gate, and a real tune of tiny bundles."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from inspection.core.bundle import read_bundle_metadata, write_bundle_metadata
from inspection.core.export_gate import ExportRecord
from inspection.core.input_domain import InputDomain
from inspection.core.registry import Registry
from inspection.core.roi import RoiSpec
from inspection.runtime.hardware import CpuInfo, cpu_info, parse_cpuinfo
from inspection.runtime.tuning import (
    PrecisionMeasurement,
    checked_inspector,
    choose_fastest,
    gate_status,
    measure_bundles,
    probe_image,
    read_tuning_row,
    served_bundle_id,
    tune_product,
)
from tests.runtime.test_tiled import SPEC as TILED_SPEC
from tests.runtime.test_tiled import _write_bundle as _write_tiled_bundle

if TYPE_CHECKING:
    from click.testing import Result


def _m(bundle_id: str, p50: float, *, gate: bool = True) -> PrecisionMeasurement:
    precision = bundle_id.split("-", 1)[1]
    return PrecisionMeasurement(bundle_id, precision, p50, p50 * 1.2, 1e3 / p50, gate, "")


@pytest.mark.parametrize(
    ("candidates", "expected"),
    [
        ([_m("v1-fp32", 10.0), _m("v1-fp16", 9.0), _m("v1-int8", 19.0)], "v1-fp16"),
        ([_m("v1-fp32", 10.0), _m("v1-int8", 6.0)], "v1-int8"),
        # a faster INT8 that failed the accuracy gate is never served
        ([_m("v1-fp32", 10.0), _m("v1-int8", 4.0, gate=False)], "v1-fp32"),
        # within the 5 % margin the higher precision wins
        ([_m("v1-fp32", 10.0), _m("v1-int8", 9.8)], "v1-fp32"),
        ([_m("v1-int8", 12.0)], "v1-int8"),
    ],
)
def test_choose_fastest_picks_the_fastest_gated(candidates, expected) -> None:
    assert choose_fastest(candidates).bundle_id == expected


def test_choose_fastest_refuses_when_nothing_passed() -> None:
    with pytest.raises(ValueError, match="no measured bundle passed the accuracy gate"):
        choose_fastest([_m("v1-int8", 4.0, gate=False)])


def test_measurement_rejects_impossible_timings() -> None:
    with pytest.raises(ValueError, match="timings must be > 0"):
        PrecisionMeasurement("v1-fp32", "fp32", 0.0, 1.0, 10.0, True)


def test_parse_cpuinfo_keeps_only_known_isa_flags() -> None:
    text = "model name\t: AMD EPYC\nflags\t\t: fpu avx2 fma avx512_vnni amx_tile foo\n"
    model, isa = parse_cpuinfo(text)
    assert model == "AMD EPYC"
    assert isa == ("avx2", "fma", "avx512_vnni", "amx_tile")
    info = CpuInfo(model, 2, isa)
    assert info.has_vnni and info.has_amx
    assert not CpuInfo(model, 2, ("avx2", "fma")).has_vnni
    assert info.key != CpuInfo(model, 2, ("avx2", "fma")).key


def test_gate_status_reads_the_recorded_drop(fp32_bundle: Path) -> None:
    meta = read_bundle_metadata(fp32_bundle)
    assert gate_status(meta, None)[0]
    int8 = dataclasses.replace(meta, precision="int8", metrics={"image_auroc_drop": 0.02})
    assert gate_status(int8, 1.0) == (
        False,
        "image AUROC drop 0.0200 vs FP32 (failed, max 0.01)",
    )
    fp16 = dataclasses.replace(meta, precision="fp16", metrics={"image_auroc": 0.995})
    assert gate_status(fp16, 1.0)[0]
    unknown = dataclasses.replace(meta, precision="int8", metrics={})
    assert gate_status(unknown, None)[0] is False
    gate = dataclasses.replace(
        meta.export_record().gate, passed=False, failures=("miss_rate",), forced=True
    )
    recorded = ExportRecord(gate=gate, image_auroc_drop=0.0).to_mapping()
    forced = dataclasses.replace(meta, precision="int8", metrics=recorded)
    assert gate_status(forced, 1.0) == (False, "refused by its export gate: miss_rate")
    malformed = dataclasses.replace(forced, metrics={"gate": {"passed": False}})
    passed, why = gate_status(malformed, 1.0)
    assert not passed and "metrics.gate" in why and "figures" in why


def _gated_copy(source: Path, target: Path, drop: float) -> Path:
    """``source`` re-labelled as an INT8 bundle with a recorded AUROC drop (same network)."""
    import shutil

    shutil.copytree(source, target)
    meta = read_bundle_metadata(target)
    bundle_id = f"{meta.bundle_id.split('-')[0]}-int8"
    metrics = {**meta.metrics, "image_auroc_drop": drop}
    write_bundle_metadata(
        target, dataclasses.replace(meta, bundle_id=bundle_id, precision="int8", metrics=metrics)
    )
    return target


def _registry(
    tmp_path: Path,
    bundles: dict[str, Path],
    live: str = "v0001-fp32",
    product: str = "brick",
) -> Registry:
    """A registry holding ``bundles`` (bundle id -> folder) of ``product``, with ``live``
    promoted."""
    registry = Registry(tmp_path / "registry")
    for bundle_id, folder in bundles.items():
        registry.bundles.add_bundle(product, folder, bundle_id)
    registry.journal.promote(product, live, actor="tests", reason="initial")
    return registry


def _station_tune(tmp_path: Path, *args: str, config_extra: str = "") -> Result:
    """``inspection station tune`` on the registry of ``_registry(tmp_path, ...)``."""
    from typer.testing import CliRunner

    from inspection.cli import app

    config = tmp_path / "station.yaml"
    config.write_text(
        f"core:\n  registry_dir: {tmp_path / 'registry'}\n  products: [brick]\n"
        f"  {config_extra or 'allow_unsigned_bundles: true'}\n",
        encoding="utf-8",
    )
    return CliRunner().invoke(app, ["station", "tune", *args, "--config", str(config)])


def test_tune_measures_gated_siblings_and_records_the_fastest(
    fp32_bundle: Path, fp16_bundle: Path, tmp_path: Path
) -> None:
    failed = _gated_copy(fp32_bundle, tmp_path / "int8", drop=0.05)
    registry = _registry(
        tmp_path, {"v0001-fp32": fp32_bundle, "v0001-fp16": fp16_bundle, "v0001-int8": failed}
    )
    notes: list[str] = []

    record = tune_product(registry, "brick", samples=5, progress=notes.append)

    measured = {m.bundle_id for m in record.measurements}
    assert measured == {"v0001-fp32", "v0001-fp16"}
    assert any("v0001-int8: not measured" in n for n in notes)
    assert record.chosen_bundle_id == choose_fastest(record.measurements).bundle_id
    assert read_tuning_row(registry, "brick")[0] == record
    assert served_bundle_id(record, "v0001-fp32") == record.chosen_bundle_id
    # a later promotion makes the record stale: the new live bundle is served as is
    assert served_bundle_id(record, "v0002-fp32") == "v0002-fp32"


def test_bundles_are_timed_in_interleaved_rounds(
    fp32_bundle: Path, fp16_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from inspection.runtime.inspector import Inspector

    order: list[str] = []
    inspect = Inspector.inspect

    def recording(self: Inspector, image, **kwargs):
        order.append(self.metadata.precision)
        return inspect(self, image, **kwargs)

    monkeypatch.setattr(Inspector, "inspect", recording)
    gate = (True, "test")
    image = probe_image(*read_bundle_metadata(fp32_bundle).preprocessing.input_size)

    loaded = [checked_inspector(path)[0] for path in (fp32_bundle, fp16_bundle)]
    measured = measure_bundles(
        [(inspector, gate) for inspector in loaded], [image], samples=6, rounds=3,
        throughput_images=4,
    )  # fmt: skip

    assert [m.precision for m in measured] == ["fp32", "fp16"]
    timed = order[-12:]  # after each bundle's warm-up: 3 rounds of 2 samples per bundle
    assert timed == ["fp32", "fp32", "fp16", "fp16"] * 3
    assert all(m.p50_ms > 0 and m.throughput_ips > 0 for m in measured)


def test_station_tune_cli_prints_and_records_the_choice(
    fp32_bundle: Path, fp16_bundle: Path, tmp_path: Path
) -> None:
    registry = _registry(tmp_path, {"v0001-fp32": fp32_bundle, "v0001-fp16": fp16_bundle})

    result = _station_tune(tmp_path, "--samples", "5")

    assert result.exit_code == 0, result.output
    record = read_tuning_row(registry, "brick")[0]
    assert record is not None
    assert f"brick: serving {record.chosen_bundle_id}" in result.output
    assert "VNNI" in result.output
    # the table is not cut at 80 columns off a terminal (it read "v0001…", "preci…", "serv…")
    assert all(f" {name} " in result.output for name in ("v0001-fp32", "precision", "served"))


def test_station_tune_cli_decodes_only_the_images_it_times(
    fp32_bundle: Path, tmp_path: Path
) -> None:
    """--images times the first 16 images of a folder; it decoded every image in it first, so a
    camera's archive took minutes and one bad file anywhere stopped the tune."""
    from PIL import Image

    _registry(tmp_path, {"v0001-fp32": fp32_bundle})
    folder = tmp_path / "frames"
    folder.mkdir()
    for index in range(16):
        Image.fromarray(probe_image(32, 32)).save(folder / f"{index:02d}.png")
    (folder / "99-truncated.png").write_bytes(b"\x89PNG\r\n\x1a\n")

    result = _station_tune(tmp_path, "--samples", "5", "--images", str(folder))

    assert result.exit_code == 0, result.output


def test_station_tune_cli_needs_a_live_bundle(tmp_path: Path) -> None:
    (tmp_path / "registry").mkdir()  # an existing, empty registry (a missing one: own error)
    result = _station_tune(tmp_path)
    assert result.exit_code != 0
    assert "has no live bundle; promote one first" in str(result.exception or result.output)


def test_promote_fastest_makes_the_measured_choice_live(
    fp32_bundle: Path, fp16_bundle: Path, tmp_path: Path
) -> None:
    from inspection.runtime.tuning import promote_fastest

    registry = _registry(
        tmp_path, {"v0001-fp32": fp32_bundle, "v0001-fp16": fp16_bundle}, live="v0001-fp16"
    )

    record = promote_fastest(registry, "brick", actor="demo", samples=5)

    assert registry.journal.live("brick").bundle_id == record.chosen_bundle_id
    assert record.live_bundle_id == record.chosen_bundle_id
    assert read_tuning_row(registry, "brick")[0] == record
    if record.chosen_bundle_id != "v0001-fp16":
        assert (
            "fastest gated precision on this CPU" in registry.journal.events("brick")[-1]["reason"]
        )


def _signed(source: Path, target: Path, key_file: Path) -> Path:
    from inspection.core.signing import load_private_key, sign_bundle

    shutil.copytree(source, target)
    sign_bundle(target, load_private_key(key_file))
    return target


def test_station_tune_verifies_siblings_before_loading_them(
    fp32_bundle: Path, fp16_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a pinned key, a tampered or unsigned sibling is reported and never loaded."""
    from inspection.core.signing import init_keys, pin_file
    from inspection.runtime.inspector import Inspector

    keys = init_keys(tmp_path / "keys")
    signed = _signed(fp32_bundle, tmp_path / "a", keys.private)
    tampered = _signed(fp16_bundle, tmp_path / "b", keys.private)
    metadata = json.loads((tampered / "metadata.json").read_text())
    metadata["image_threshold"] = 0.999
    (tampered / "metadata.json").write_text(json.dumps(metadata))
    unsigned = _gated_copy(fp32_bundle, tmp_path / "c", drop=0.0)
    registry = _registry(
        tmp_path, {"v0001-fp32": signed, "v0001-fp16": tampered, "v0001-int8": unsigned}
    )
    loaded: list[str] = []
    real = Inspector.from_bundle.__func__

    def spy(cls: type[Inspector], path: Path, **kwargs: object) -> Inspector:
        loaded.append(Path(path).name)
        return real(cls, path, **kwargs)

    monkeypatch.setattr(Inspector, "from_bundle", classmethod(spy))
    result = _station_tune(
        tmp_path,
        "--samples",
        "5",
        config_extra=f"signing_keys: [{{fingerprint: '{pin_file(keys.public).fingerprint}', "
        f"path: {keys.public}}}]",
    )

    assert result.exit_code == 0, result.output
    assert set(loaded) == {"v0001-fp32"}
    said = " ".join(result.output.split())
    assert "bad bundle signature" in said and "the bundle is not signed" in said
    record = read_tuning_row(registry, "brick")[0]
    assert [m.bundle_id for m in record.measurements] == ["v0001-fp32"]
    assert record.chosen_bundle_id == "v0001-fp32"


def test_tune_refuses_an_unsigned_live_bundle(fp32_bundle: Path, tmp_path: Path) -> None:
    from inspection.core.errors import BundleError
    from inspection.core.signing import init_keys, load_public_key

    keys = init_keys(tmp_path / "keys")
    registry = _registry(tmp_path, {"v0001-fp32": fp32_bundle})
    with pytest.raises(
        BundleError, match="live bundle v0001-fp32 refused: the bundle is not signed"
    ):
        tune_product(registry, "brick", samples=5, public_key=load_public_key(keys.public))


def test_tune_reads_each_bundle_once_and_golden_checks_each_performance_hint(
    fp32_bundle: Path, fp16_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The latency compile that is timed is the one whose golden outputs were checked (no
    separate load just to check them); the async queue's THROUGHPUT compile is made from that
    same load (the bundle not read, verified and rewritten again) and checks its own."""
    from inspection.runtime import loader, model, tuning

    registry = _registry(tmp_path, {"v0001-fp32": fp32_bundle, "v0001-fp16": fp16_bundle})
    reads: list[str] = []
    checks: list[tuple[str, str]] = []
    read, check = model.read_verified, loader.check_golden

    def counted_read(path, *args):
        reads.append(Path(path).name)
        return read(path, *args)

    def counted_check(checked):
        hint = checked.compiled.get_property("PERFORMANCE_HINT")
        checks.append((checked.bundle_dir.name, str(hint)))
        return check(checked)

    monkeypatch.setattr(model, "read_verified", counted_read)
    monkeypatch.setattr(loader, "check_golden", counted_check)
    monkeypatch.setattr(tuning, "check_golden", counted_check, raising=False)

    record = tune_product(registry, "brick", samples=4, write=False)

    assert {m.bundle_id for m in record.measurements} == {"v0001-fp32", "v0001-fp16"}
    assert sorted(reads) == ["v0001-fp16", "v0001-fp32"]  # once each
    for bundle in reads:
        hints = sorted(h for name, h in checks if name == bundle)
        assert hints == ["LATENCY", "THROUGHPUT"], checks
    assert all(m.golden_drift is not None for m in record.measurements)


def test_tune_checks_golden_outputs_before_timing(fp32_bundle: Path, tmp_path: Path) -> None:
    """A gated sibling whose graph numerics changed (re-checksummed) fails its golden check on
    this CPU and is never timed; the measured bundle records what OpenVINO executed."""
    from tests.golden_helpers import perturb_weights

    broken = _gated_copy(fp32_bundle, tmp_path / "int8", drop=0.0)
    perturb_weights(broken, 0.02)
    registry = _registry(tmp_path, {"v0001-fp32": fp32_bundle, "v0001-int8": broken})
    notes: list[str] = []

    record = tune_product(registry, "brick", samples=4, progress=notes.append)

    assert [m.bundle_id for m in record.measurements] == ["v0001-fp32"]
    assert any("v0001-int8: not measured" in n and "golden check REFUSED" in n for n in notes)
    fp32 = record.chosen
    assert fp32.executed_precision == "f32" and fp32.kernels
    assert fp32.golden_drift is not None and fp32.golden_drift < 1e-4


@pytest.mark.skipif(not cpu_info().has_bf16, reason="bf16 not available on this CPU")
def test_bf16_is_exported_gated_and_tuned_where_the_cpu_has_it(
    trained_patchcore, fp32_bundle: Path, tmp_path: Path
) -> None:
    """bf16: the FP32 graph at bf16 inference precision, calibrated on its own outputs, gated
    against FP32 like INT8, golden outputs recorded in bf16, timed against FP32."""
    result = trained_patchcore.export("bf16", force=True)
    meta = result.metadata
    assert meta.precision == "bf16" and meta.inference_precision == "bf16"
    assert meta.golden is not None and meta.golden.precision == "bf16"
    assert meta.export_record().image_auroc_drop is not None  # gated against FP32
    registry = _registry(tmp_path, {"v0001-fp32": fp32_bundle, "v0001-bf16": result.bundle_dir})
    record = tune_product(registry, "brick", samples=4, write=False)
    measured = {m.precision: m for m in record.measurements}
    if result.gate.passed:
        assert measured["bf16"].executed_precision == "bf16"
        assert any("bf16" in kernel for kernel in measured["bf16"].kernels)
        assert measured["bf16"].golden_drift is not None and measured["bf16"].golden_drift < 1e-3
    assert measured["fp32"].executed_precision == "f32"


_DOMAIN = InputDomain(
    colour="colour", channel_spread=(10.0, 20.0), height=(120, 200), width=(96, 160),
    aspect=(0.8, 0.8), images=4, colour_images=4,
)  # fmt: skip


@pytest.mark.parametrize(
    ("setup", "size", "said"),
    [
        ({"input_domain": _DOMAIN}, (200, 160), "160x200 px part (its largest training image"),
        ({"roi": RoiSpec((180, 140))}, (180, 140), "140x180 px part (its ROI's reference image"),
        ({}, (64, 64), "64x64 px part (ONE tile: the bundle records no image size"),
    ],
    ids=["input-domain", "roi", "nothing-recorded"],
)
def test_a_tiled_bundle_is_timed_on_full_images_as_the_station_serves_it(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    setup: dict[str, object],
    size: tuple[int, int],
    said: str,
) -> None:
    """Each timed image runs every tile of the size the station sees (SPEC: scale 0.5,
    32 px tiles every 16 px); it was one tile of a model-input-sized probe."""
    from inspection.runtime.tiled import TiledInspector

    bundle = _write_tiled_bundle(tmp_path / "bundle", **setup)  # type: ignore[arg-type]
    registry = _registry(tmp_path, {"v0001-fp32": bundle}, product="hires")
    tiles: list[int] = []
    infer_tiles = TiledInspector.infer_tiles

    def counting(self: TiledInspector, batch):
        tiles.append(len(batch))
        return infer_tiles(self, batch)

    monkeypatch.setattr(TiledInspector, "infer_tiles", counting)
    notes: list[str] = []

    record = tune_product(registry, "hires", samples=5, progress=notes.append, write=False)

    assert any(said in note for note in notes), notes
    expected = len(TILED_SPEC.grid(*size))
    assert tiles and set(tiles) == {expected}
    assert (expected > 1) == ("ONE tile" not in said)
    (measured,) = record.measurements
    assert measured.p50_ms > 0 and measured.throughput_ips > 0


@pytest.mark.parametrize(
    ("setup", "size", "said"),
    [
        ({"input_domain": _DOMAIN}, (200, 160), "160x200 px part (its largest training image)"),
        ({}, (32, 32), "32x32 px part (model input: the bundle records no image size"),
    ],
    ids=["input-domain", "nothing-recorded"],
)
def test_a_plain_bundle_is_timed_on_images_of_its_training_size(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    setup: dict[str, object],
    size: tuple[int, int],
    said: str,
) -> None:
    """The station decodes, checks and resizes a camera-sized image before inference; the
    tune timed a model-input-sized probe, which skips that work."""
    from bench._shared import write_mean_bundle
    from inspection.runtime.inspector import Inspector

    bundle = write_mean_bundle(tmp_path / "bundle", input_size=(32, 32), product="plain", **setup)
    registry = _registry(tmp_path, {"v0001-fp32": bundle}, product="plain")
    shapes: set[tuple[int, ...]] = set()
    inspect = Inspector.inspect

    def recording(self: Inspector, image, *args, **kwargs):
        shapes.add(image.shape)
        return inspect(self, image, *args, **kwargs)

    monkeypatch.setattr(Inspector, "inspect", recording)
    notes: list[str] = []

    record = tune_product(registry, "plain", samples=5, progress=notes.append, write=False)

    assert any(said in note for note in notes), notes
    assert shapes == {(*size, 3)}
    assert record.measurements[0].p50_ms > 0


def test_timing_images_are_read_at_the_bundles_bits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``station tune --images`` read a 12-bit camera's frames at 16 bits (near black: an
    aligned bundle refused them); the station reads them at the bundle's ``source_bits``."""
    import numpy as np
    from PIL import Image

    from bench._shared import write_mean_bundle
    from inspection.runtime.inspector import Inspector

    bundle = write_mean_bundle(
        tmp_path / "bundle", input_size=(32, 32), product="mono", source_bits=12
    )
    registry = Registry(tmp_path / "registry")
    registry.bundles.add_bundle("mono", bundle, "v0001-fp32")
    registry.journal.promote("mono", "v0001-fp32", actor="tests", reason="initial")
    frame = tmp_path / "frame.png"
    Image.fromarray(np.full((40, 40), 4095, dtype=np.uint16)).save(frame)
    brightest: set[int] = set()
    inspect = Inspector.inspect

    def recording(self: Inspector, image, *args, **kwargs):
        brightest.add(int(image.max()))
        return inspect(self, image, *args, **kwargs)

    monkeypatch.setattr(Inspector, "inspect", recording)

    tune_product(registry, "mono", images=[frame], samples=5, write=False)

    assert brightest == {255}  # 4095 of 12 bits; at 16 bits it read as 15


def test_an_aligned_bundle_is_timed_on_its_own_reference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A synthetic part is refused by alignment (another size, nothing to register): the tune
    stopped with AlignmentError. The reference is full size and aligns."""
    from PIL import Image

    from inspection.core.alignment import AlignmentSpec

    bundle = _write_tiled_bundle(tmp_path / "bundle")
    Image.fromarray(probe_image(200, 160)).save(bundle / "reference.png")
    meta = read_bundle_metadata(bundle)
    write_bundle_metadata(
        bundle, dataclasses.replace(meta, alignment=AlignmentSpec(working_size=64))
    )
    registry = _registry(tmp_path, {"v0001-fp32": bundle}, product="hires")
    notes: list[str] = []

    record = tune_product(registry, "hires", samples=5, progress=notes.append, write=False)

    assert "timing on its alignment reference (160x200 px)" in notes
    assert record.measurements[0].p50_ms > 0

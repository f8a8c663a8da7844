"""Change a bundle's graph numerics the way a broken conversion or a bad kernel would."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import openvino as ov

from inspection.core.bundle import read_bundle_metadata, write_bundle_metadata


def perturb_weights(bundle: Path, relative: float) -> None:
    """Scale the largest floating-point constant of the IR (the memory bank or a backbone
    weight) by ``1 + relative`` and save the model back (new .xml/.bin)."""
    meta = read_bundle_metadata(bundle)
    core = ov.Core()
    model = core.read_model(bundle / meta.model_file)
    constants = [
        op
        for op in model.get_ordered_ops()
        if op.get_type_name() == "Constant" and op.get_element_type() in (ov.Type.f32, ov.Type.f16)
    ]
    largest = max(constants, key=lambda op: op.get_output_size() and np.prod(op.get_shape()))
    values = largest.get_data().astype(np.float32) * np.float32(1.0 + relative)
    replacement = ov.opset13.constant(values.astype(largest.get_data().dtype))
    for target in list(largest.output(0).get_target_inputs()):
        target.replace_source_output(replacement.output(0))
    scratch = bundle / "perturbed.xml"
    ov.save_model(model, scratch, compress_to_fp16=False)
    scratch.replace(bundle / meta.model_file)
    scratch.with_suffix(".bin").replace(bundle / meta.weights_file)
    write_bundle_metadata(bundle, meta)  # checksums redone: only the golden check can tell


BUDGET = 0.05
"""The test bundle's false-reject budget: 19 good images carry it (1 % would need 99)."""


def drifting_bundle(fp32_bundle: Path, root: Path, relative: float = 0.02) -> Path:
    """A copy of the bundle at a 5 % budget whose weights were perturbed (checksums redone)."""
    bundle = root / "drifting"
    shutil.copytree(fp32_bundle, bundle)
    meta = read_bundle_metadata(bundle)
    own = meta.output_calibration
    assert own is not None and own.operating is not None
    operating = dataclasses.replace(own.operating, budget=BUDGET)
    write_bundle_metadata(
        bundle,
        dataclasses.replace(meta, output_calibration=dataclasses.replace(own, operating=operating)),
    )
    perturb_weights(bundle, relative)
    return bundle


def station_folder(tiny_product: Path, root: Path) -> Path:
    """This station's validation images: 30 good parts (MVTec layout) and the defective ones
    with their masks."""
    folder = root / "validation"
    (folder / "good").mkdir(parents=True)
    goods = sorted((tiny_product / "train" / "good").glob("*.png"))
    goods += sorted((tiny_product / "test" / "good").glob("*.png"))
    for n, path in enumerate(goods):
        shutil.copy(path, folder / "good" / f"{n:03d}.png")
    for defect in sorted(p for p in (tiny_product / "test").iterdir() if p.name != "good"):
        shutil.copytree(defect, folder / defect.name)
        shutil.copytree(tiny_product / "ground_truth" / defect.name,
                        folder / "ground_truth" / defect.name)  # fmt: skip
    return folder

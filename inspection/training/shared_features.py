"""Backbone outputs kept per input batch, so that a second model run on the same images (the
auto search's candidates; training's validation images) does not run the backbone again.
Inputs are matched by their bytes, so outputs are identical. Inside ``shared_backbone`` the
PatchCore part's own outputs (``main_outputs``: kNN search and anomaly map) are kept too,
matched by the input's bytes and the bytes of every model tensor they read (the bank, the
mixed model's head)."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

logger = logging.getLogger(__name__)

LIMIT_BYTES = 2 * 1024**3
"""Backbone (and ``main_outputs``) outputs kept, at most."""


class SharedFeatures:
    """Backbone outputs shared by model runs on the same input batches (a later candidate with
    the same backbone and size), keyed by backbone, layer and batch bytes, up to ``LIMIT_BYTES``."""

    def __init__(self, limit: int = LIMIT_BYTES) -> None:
        self.outputs: dict[tuple[str, str, bytes], torch.Tensor] = {}
        self.limit, self.size, self.hits = limit, 0, 0
        self.main: dict[bytes, Any] = {}
        """``main_outputs`` per (input, model state) digest (``_RememberedOutputs``)."""
        self.main_hits = 0

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
        digest = _digest(images)
        keys = [(self.backbone, layer, digest) for layer in self.extractor.layers]
        found = self.shared.lookup(keys)
        if found is not None:
            return found
        outputs = self.extractor(images)
        self.shared.keep(keys, outputs)
        return outputs


UNREAD = ("feature_extractor.", "local_stats.", "map_peak.")
"""State dict prefixes ``main_outputs`` does not read: the backbone (fixed inside
``shared_backbone``, as ``_Remembered`` assumes) and the heads fused after it."""


def _digest(tensor: torch.Tensor) -> bytes:
    """Digest of a tensor's dtype, shape and bytes (in logical order, any memory format)."""
    data = tensor.detach().contiguous().reshape(-1).view(torch.uint8).numpy()
    head = repr((str(tensor.dtype), tuple(tensor.shape))).encode()
    return hashlib.blake2b(data, digest_size=32, person=b"tensor").digest() + head


class _RememberedOutputs:
    """A ``FusedPatchcoreModel``'s ``main_outputs`` (set on the instance) whose outputs per
    input batch and model state are kept in ``SharedFeatures.main`` (within its limit, with the
    backbone outputs): the state is every state dict tensor but ``UNREAD``'s (the memory bank,
    the mixed model's ``supervised`` head, anomalib's blur kernel), so a changed bank or head
    is a new key. Not kept while training (outputs are embeddings, appended to the store) or
    tiled. Callers get clones."""

    def __init__(self, inner: Any, shared: SharedFeatures) -> None:
        self.inner, self.shared = inner, shared
        self.compute = type(inner).main_outputs.__get__(inner)

    def key(self, images: torch.Tensor) -> bytes:
        inner = self.inner
        parts = [repr((inner.num_neighbors, tuple(inner.layers))).encode(), _digest(images)]
        for name, tensor in inner.state_dict(keep_vars=True).items():
            if not name.startswith(UNREAD):
                parts += [name.encode(), _digest(tensor)]
        return hashlib.blake2b(b"\0".join(parts)).digest()

    def __call__(self, images: torch.Tensor) -> Any:
        if self.inner.training or self.inner.tiler is not None:
            return self.compute(images)
        key, shared = self.key(images), self.shared
        if key in shared.main:
            shared.main_hits += 1
            return _cloned(shared.main[key])
        out = self.compute(images)
        size = sum(t.numel() * t.element_size() for t in out if isinstance(t, torch.Tensor))
        if shared.size + size <= shared.limit:
            shared.main[key], shared.size = _cloned(out), shared.size + size
        return out


def _cloned(out: Any) -> Any:
    """``out`` (an ``InferenceBatch``) with its tensors cloned: a caller may change its own."""
    fields = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in out._asdict().items()}
    return type(out)(**fields)


@contextmanager
def shared_backbone(model: Any, backbone: str = "") -> Iterator[SharedFeatures]:
    """Inside, ``model``'s backbone outputs are reused (``SharedFeatures``), and so are its
    PatchCore part's ``main_outputs`` where it has them (``_RememberedOutputs``); restored
    after."""
    shared, inner = SharedFeatures(), model.model
    extractor = getattr(inner, "feature_extractor", None)
    shared.attach(model, backbone)
    remembers = hasattr(type(inner), "main_outputs")
    if remembers:
        inner.main_outputs = _RememberedOutputs(inner, shared)
    try:
        yield shared
    finally:
        if extractor is not None:
            inner.feature_extractor = extractor
        if remembers:
            del inner.main_outputs
        logger.info("shared backbone: %d backbone and %d PatchCore output batches reused",
                    shared.hits, shared.main_hits)  # fmt: skip
        shared.outputs.clear()
        shared.main.clear()

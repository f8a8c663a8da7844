"""``shared_backbone`` serves a model's PatchCore outputs (``main_outputs``) again only for the
same input and the same model state: a changed bank or mixed head is computed afresh."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from inspection.training.models.mixed.head import MixedFusedModel, head_network
from inspection.training.shared_features import shared_backbone


def _model() -> SimpleNamespace:
    torch.manual_seed(0)
    inner = MixedFusedModel(backbone="resnet18", pre_trained=False, layers=["layer2"]).eval()
    inner.memory_bank = torch.randn(40, 128)
    return SimpleNamespace(model=inner)


def _fresh(inner: MixedFusedModel, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return type(inner).main_outputs(inner, images).anomaly_map


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and bool(torch.equal(a, b))


def test_remembered_outputs_follow_the_bank_and_the_head() -> None:
    model = _model()
    inner, images = model.model, torch.rand(2, 3, 64, 64)
    keys = inner.state_dict().keys()
    with torch.no_grad(), shared_backbone(model) as shared:
        first = inner.main_outputs(images).anomaly_map
        assert _same(inner.main_outputs(images).anomaly_map, first)
        assert _same(inner(images).anomaly_map, first)  # the forward reads them too
        assert shared.main_hits == 2
        first.fill_(0)  # a caller's change is its own
        assert _same(inner.main_outputs(images).anomaly_map, _fresh(inner, images))

        inner.memory_bank = inner.memory_bank[:20].clone()  # a new bank
        served = inner.main_outputs(images).anomaly_map
        assert _same(served, _fresh(inner, images)) and not _same(served, first)
        inner.memory_bank.mul_(2)  # the same bank tensor, changed in place
        changed = inner.main_outputs(images).anomaly_map
        assert _same(changed, _fresh(inner, images)) and not _same(changed, served)

        head = inner.supervised  # a taught head: the mixed model's cells fuse it
        head.shift, head.scale = torch.zeros(1, 128, 1, 1), torch.ones(1, 128, 1, 1)
        head.set_weights(head_network(128))
        head.standardisers = torch.tensor([0.0, 1.0, 0.0, 1.0, -50.0, 1.0])  # the head wins
        taught = inner.main_outputs(images).anomaly_map
        assert _same(taught, _fresh(inner, images)) and not _same(taught, changed)
        head.standardisers[4] = -60.0  # its standardisers changed in place
        assert _same(inner.main_outputs(images).anomaly_map, _fresh(inner, images))
        assert not _same(inner.main_outputs(images).anomaly_map, taught)
        hits = shared.main_hits
        inner.main_outputs(images[:1])  # another input
        assert shared.main_hits == hits
    assert "main_outputs" not in vars(inner) and inner.state_dict().keys() == keys

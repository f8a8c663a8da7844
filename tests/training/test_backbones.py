"""Backbone weights: bundled ImageNet weights, explicit files, random init, clear failures."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch

from inspection.core.errors import WeightsError
from inspection.training.backbones import (
    BUNDLED_BACKBONE,
    apply_weights,
    feature_layers,
    map_state_dict,
    no_pretrained_download,
    resolve_weights,
)


@pytest.fixture(scope="module")
def bundled():
    return resolve_weights(BUNDLED_BACKBONE, "bundled")


def _extractor() -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model(BUNDLED_BACKBONE, features_only=True, out_indices=(2, 3)).eval()


def test_bundled_weights_map_all_296_tensors_strictly(bundled) -> None:
    assert bundled.source == "bundled"
    assert len(bundled.state_dict) == 296
    full = timm.create_model(BUNDLED_BACKBONE)
    full.load_state_dict(bundled.state_dict, strict=True)  # raises on any mismatch
    assert bundled.mean == (0.5, 0.5, 0.5) and bundled.std == (0.5, 0.5, 0.5)
    assert len(bundled.sha256) == 64
    assert bundled.record()["source"] == "bundled"


def test_bundled_weights_change_the_features(bundled) -> None:
    random_model, trained_model = _extractor(), _extractor()
    apply_weights(trained_model, bundled)
    stem = "conv_stem.weight"
    assert torch.equal(trained_model.state_dict()[stem], bundled.state_dict[stem])
    assert not torch.equal(random_model.state_dict()[stem], trained_model.state_dict()[stem])
    # ImageNet BN statistics: running means are no longer the init value 0.
    assert trained_model.state_dict()["bn1.running_mean"].abs().sum() > 0
    image = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        random_features, trained_features = random_model(image)[0], trained_model(image)[0]
    assert not torch.allclose(random_features, trained_features, atol=1e-3)


def test_explicit_file_loads_like_the_bundle(bundled, tmp_path: Path) -> None:
    path = tmp_path / "lite0.pth"
    torch.save(dict(bundled.state_dict), path)
    loaded = resolve_weights(BUNDLED_BACKBONE, str(path))
    assert loaded.source == "file"
    assert loaded.detail == str(path.resolve())
    stem = "conv_stem.weight"
    assert torch.equal(loaded.state_dict[stem], bundled.state_dict[stem])


def test_weights_file_is_used_when_nothing_is_bundled(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with no_pretrained_download():
        model = timm.create_model("resnet18")
    path = tmp_path / "resnet18.pth"
    torch.save(model.state_dict(), path)
    resolved = resolve_weights("resnet18", "auto", weights_file=path)
    assert resolved.source == "file"
    assert resolved.mean == pytest.approx((0.485, 0.456, 0.406))


def test_missing_file_is_a_weights_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pth"
    with pytest.raises(WeightsError, match=f"backbone weights file not found: {missing}"):
        resolve_weights(BUNDLED_BACKBONE, str(missing))


def test_corrupt_file_is_a_weights_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="not a readable weights file"):
        resolve_weights(BUNDLED_BACKBONE, str(path))


def test_offline_without_weights_says_what_to_do(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError) as excinfo:
        resolve_weights("resnet18", "auto")
    message = str(excinfo.value)
    assert "no bundled weights for 'resnet18'" in message
    assert "hub not used: HF_HUB_OFFLINE is set" in message
    assert "backbone.weights_file" in message and "weights=random" in message


def test_hub_refused_offline(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError, match="HF_HUB_OFFLINE is set"):
        resolve_weights("resnet18", "hub")


def test_bundled_only_for_lite0() -> None:
    with pytest.raises(WeightsError, match="bundled weights exist only for tf_efficientnet_lite0"):
        resolve_weights("resnet18", "bundled")


def test_random_is_an_explicit_ablation() -> None:
    resolved = resolve_weights(BUNDLED_BACKBONE, "random")
    assert resolved.source == "random" and resolved.state_dict is None


def test_state_dict_shape_mismatch_names_the_tensor() -> None:
    target = {"a": torch.zeros(2, 3), "b": torch.zeros(4)}
    source = {"x": torch.zeros(2, 3), "y": torch.zeros(5)}
    with pytest.raises(WeightsError, match=r"tensor for b has shape \(5,\), expected \(4,\)"):
        map_state_dict(source, target, where="w.pth")


def test_feature_layers_of_lite0() -> None:
    assert feature_layers(BUNDLED_BACKBONE) == {
        "blocks.0": 2,
        "blocks.1": 4,
        "blocks.2": 8,
        "blocks.4": 16,
        "blocks.6": 32,
    }


@pytest.mark.parametrize("backbone", ["tf_efficientnet_lite1", "tf_efficientnet_lite2"])
def test_bundled_lite1_lite2_load_strictly_and_see_a_cat(backbone: str) -> None:
    """The in-order mapping is right, not just shape-compatible: the cat photo is a cat."""
    import cv2
    from skimage import data

    resolved = resolve_weights(backbone, "auto")
    assert resolved.source == "bundled" and resolved.mean == (0.5, 0.5, 0.5)
    model = timm.create_model(backbone)
    model.load_state_dict(dict(resolved.state_dict), strict=True)
    side = timm.models.get_pretrained_cfg(backbone).input_size[1]
    image = cv2.resize(data.chelsea(), (side, side)).astype("float32") / 255.0
    tensor = torch.from_numpy((image - 0.5) / 0.5).permute(2, 0, 1)[None]
    with torch.no_grad():
        top = int(model.eval()(tensor).argmax())
    assert 281 <= top <= 285, f"{backbone} sees ImageNet class {top}, not a cat"


def test_channels_last_gives_the_same_outputs_and_restores_the_layout() -> None:
    from inspection.training.backbones import channels_last

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Conv2d(8, 8, 3, padding=1, groups=8)
    ).eval()
    image = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        expected = net(image)
        with channels_last(net):
            assert net[1].weight.is_contiguous(memory_format=torch.channels_last)
            inside = net(image)
    assert torch.allclose(inside, expected, atol=1e-5)
    assert all(p.is_contiguous() for p in net.parameters())


@pytest.mark.parametrize("layers", [["blocks.2", "blocks.4"], ["blocks.1"], ["blocks.6"]])
def test_short_extractor_gives_the_same_features_and_state_dict(layers: list[str]) -> None:
    from anomalib.models.components.feature_extractors import TimmFeatureExtractor

    from inspection.training.backbones import ShortEfficientNetFeatures, shorten_backbones

    torch.manual_seed(0)
    with no_pretrained_download():
        extractor = TimmFeatureExtractor(BUNDLED_BACKBONE, layers, pre_trained=False).eval()
    image = torch.rand(2, 3, 64, 64)
    keys = set(extractor.state_dict())
    with torch.no_grad():
        expected = extractor(image)
        assert shorten_backbones(extractor) == 1
        short = extractor(image)
    assert type(extractor.feature_extractor) is ShortEfficientNetFeatures
    assert list(short) == list(expected) == layers
    assert all(torch.equal(short[k], expected[k]) for k in layers)
    assert set(extractor.state_dict()) == keys  # checkpoints keep every block


def test_separated_blur_gives_the_same_maps_and_state_dict() -> None:
    from anomalib.models.image.patchcore.anomaly_map import AnomalyMapGenerator

    from inspection.training.backbones import SeparableGaussianBlur2d, separate_blurs

    head = AnomalyMapGenerator(sigma=4)
    maps = torch.rand(3, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    expected, keys = head(maps, (256, 256)), set(head.state_dict())
    assert separate_blurs(head) == 1 and type(head.blur) is SeparableGaussianBlur2d
    assert set(head.state_dict()) == keys  # a checkpoint loads either way
    torch.testing.assert_close(head(maps, (256, 256)), expected, rtol=1e-5, atol=1e-6)
    assert separate_blurs(head) == 0  # already separated


def test_folded_batchnorms_give_the_same_features_and_state_dict(bundled) -> None:
    from anomalib.models.components.feature_extractors import TimmFeatureExtractor

    from inspection.training.backbones import (
        ActivationOnly,
        channels_last,
        fold_batchnorms,
        in_process,
    )

    with no_pretrained_download():
        extractor = TimmFeatureExtractor(
            BUNDLED_BACKBONE, ["blocks.2", "blocks.4"], pre_trained=False
        )
        student = TimmFeatureExtractor(
            BUNDLED_BACKBONE, ["blocks.2"], pre_trained=False, requires_grad=True
        )
    apply_weights(extractor.feature_extractor, bundled)  # real running statistics to fold
    extractor.eval()
    image = torch.rand(2, 3, 96, 96, generator=torch.Generator().manual_seed(0)) * 2 - 1
    state = {k: v.clone() for k, v in extractor.state_dict().items()}
    with torch.no_grad():
        expected = extractor(image)
        in_process(extractor)
        with channels_last(extractor):
            folded = extractor(image)
    norms = [m for m in extractor.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(type(m) is ActivationOnly for m in norms)  # every one folded
    for layer in expected:
        torch.testing.assert_close(folded[layer], expected[layer], rtol=1e-4, atol=1e-4)
    assert extractor.state_dict().keys() == state.keys()
    assert all(torch.equal(v, state[k]) for k, v in extractor.state_dict().items())
    assert fold_batchnorms(extractor) == 0  # already folded
    assert fold_batchnorms(student) == 0  # a trained backbone keeps its batch norms

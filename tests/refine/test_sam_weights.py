"""SAM checkpoints: a good one loads; missing, wrong and truncated ones give WeightsError."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from inspection.core.errors import WeightsError  # noqa: E402
from inspection.training.sam_export import build_sam  # noqa: E402


@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "mobile_sam.pt"
    torch.manual_seed(123)
    model = build_sam("vit_t", None, random_init=True)
    with torch.no_grad():
        model.mask_decoder.iou_prediction_head.layers[0].weight.fill_(0.25)
    torch.save(model.state_dict(), path)
    return path


def test_good_checkpoint_loads_its_weights(good_checkpoint: Path) -> None:
    model = build_sam("vit_t", good_checkpoint)
    weight = model.mask_decoder.iou_prediction_head.layers[0].weight
    assert torch.all(weight == 0.25)
    assert not model.training


def _write_wrong(path: Path, good: Path) -> None:
    torch.save(torch.nn.Linear(4, 2).state_dict(), path)


def _write_truncated(path: Path, good: Path) -> None:
    data = good.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _write_text(path: Path, good: Path) -> None:
    path.write_text("not a checkpoint")


def _write_tensor_list(path: Path, good: Path) -> None:
    torch.save([torch.zeros(2)], path)


@pytest.mark.parametrize(
    ("writer", "message"),
    [
        (None, "SAM checkpoint not found"),
        (_write_wrong, "does not fit backend vit_t"),
        (_write_truncated, "cannot be read (truncated, corrupt or not a PyTorch file)"),
        (_write_text, "cannot be read (truncated, corrupt or not a PyTorch file)"),
        (_write_tensor_list, "is not a state dict of tensors"),
    ],
)
def test_bad_checkpoints_raise_weights_error(
    tmp_path: Path, good_checkpoint: Path, writer, message: str
) -> None:
    path = tmp_path / "bad.pt"
    if writer is not None:
        writer(path, good_checkpoint)
    with pytest.raises(WeightsError) as info:
        build_sam("vit_t", path)
    assert message in str(info.value) and str(path) in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"backend": "vit_t", "checkpoint": None}, WeightsError, "no SAM checkpoint given"),
        ({"backend": "vit_h", "checkpoint": None}, ValueError, "valid: vit_b, vit_t"),
        (
            {"backend": "vit_t", "checkpoint": "x.pt", "random_init": True},
            ValueError,
            "either a checkpoint or random_init",
        ),
    ],
)
def test_build_arguments_are_checked(kwargs: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        build_sam(**kwargs)

"""Export SAM (MobileSAM vit_t or SAM ViT-B) to an OpenVINO refiner bundle (torch side).

Two IR models (image encoder; prompt encoder + mask decoder) and ``metadata.json``
(``inspection.refine.bundle``); random weights, for tests only, are recorded so stations warn.
"""

from __future__ import annotations

import logging
import pickle
import shutil
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import openvino as ov
import torch
from torch import nn

from inspection.core.bundle import PRECISIONS
from inspection.core.errors import BundleError, WeightsError
from inspection.core.fingerprint import package_versions, sha256_file
from inspection.core.model_record import utc_now
from inspection.refine.bundle import (
    REFINER_SCHEMA_VERSION,
    RefinerBundleMetadata,
    write_refiner_metadata,
)
from inspection.training.convert import name_ports
from inspection.training.quantize import import_nncf

log = logging.getLogger(__name__)

INPUT_SIZE = 1024
PACKAGES = ("torch", "openvino", "mobilesam-mirror", "segment-anything")
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)
UNREADABLE = (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError,
              zipfile.BadZipFile)  # fmt: skip
"""What ``torch.load`` raises for a truncated, corrupt or foreign checkpoint file."""


def _build_vit_t() -> nn.Module:
    with warnings.catch_warnings():  # mobile_sam re-registers timm's TinyViT names on import
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", FutureWarning)
        # deferred: optional package (PyPI: mobilesam-mirror), only for vit_t
        from mobile_sam import sam_model_registry

    return sam_model_registry["vit_t"](checkpoint=None)


def _build_vit_b() -> nn.Module:
    # deferred: optional package (PyPI: segment-anything), only for vit_b
    from segment_anything import sam_model_registry

    return sam_model_registry["vit_b"](checkpoint=None)


SAM_BUILDERS: dict[str, Callable[[], nn.Module]] = {"vit_t": _build_vit_t, "vit_b": _build_vit_b}


def build_sam(
    backend: str, checkpoint: str | Path | None, *, random_init: bool = False
) -> nn.Module:
    """A SAM model in eval mode from ``checkpoint`` (bad: ``WeightsError``), or random if asked."""
    if backend not in SAM_BUILDERS:
        raise ValueError(
            f"unknown SAM backend {backend!r}; valid: {', '.join(sorted(SAM_BUILDERS))}"
        )
    if checkpoint is None and not random_init:
        raise WeightsError(
            f"no SAM checkpoint given for backend {backend}: set refine.sam.checkpoint to the "
            "downloaded weights file (e.g. mobile_sam.pt or sam_vit_b_01ec64.pth), or pass "
            "random init explicitly (tests and latency measurements only)"
        )
    if checkpoint is not None and random_init:
        raise ValueError("give either a checkpoint or random_init=True, not both")
    torch.manual_seed(0)
    model = SAM_BUILDERS[backend]()
    if checkpoint is not None:
        state = load_checkpoint(checkpoint)
        _load_state(model, state, backend, Path(checkpoint))
    return model.eval()


def load_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict of tensors; any failure is a ``WeightsError`` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"SAM checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except UNREADABLE as exc:
        raise WeightsError(
            f"SAM checkpoint {path} cannot be read (truncated, corrupt or not a PyTorch file): "
            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from exc
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"SAM checkpoint {path} is not a state dict of tensors")
    return state


def _load_state(model: nn.Module, state: dict, backend: str, path: Path) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = sorted(
        k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape)
    )
    if missing or unexpected or wrong_shape:
        raise WeightsError(
            f"SAM checkpoint {path} does not fit backend {backend}: {len(missing)} missing, "
            f"{len(unexpected)} unexpected and {len(wrong_shape)} wrongly shaped tensors "
            f"(e.g. {(missing + unexpected + wrong_shape)[:3]}); is it the checkpoint of another "
            "SAM variant?"
        )
    model.load_state_dict(state)


class EncoderForExport(nn.Module):
    """(1, 3, 1024, 1024) normalised, padded float32 → (1, 256, 64, 64) image embeddings."""

    def __init__(self, sam: nn.Module) -> None:
        super().__init__()
        self.image_encoder = sam.image_encoder

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.image_encoder(image)


class DecoderForExport(nn.Module):
    """Prompt encoder + mask decoder for point/box prompts, as segment-anything's ``SamOnnxModel``:
    embeddings (1, 256, 64, 64), point_coords (1, N, 2) in 1024 px space, point_labels (1, N)
    -> low_res_masks (1, 4, 256, 256) logits, iou_predictions (1, 4)."""

    def __init__(self, sam: nn.Module) -> None:
        super().__init__()
        self.prompt_encoder = sam.prompt_encoder
        self.mask_decoder = sam.mask_decoder
        self.img_size = INPUT_SIZE

    def forward(
        self, image_embeddings: torch.Tensor, point_coords: torch.Tensor, point_labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        pe = self.prompt_encoder
        coords = (point_coords + 0.5) / self.img_size
        sparse = pe.pe_layer._pe_encoding(coords)
        labels = point_labels.unsqueeze(-1).expand_as(sparse)
        sparse = sparse * (labels != -1) + pe.not_a_point_embed.weight * (labels == -1)
        for i in range(pe.num_point_embeddings):
            sparse = sparse + pe.point_embeddings[i].weight * (labels == i)
        dense = pe.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(
            1, -1, *image_embeddings.shape[-2:]
        )
        masks, iou = self.mask_decoder.predict_masks(
            image_embeddings=image_embeddings,
            image_pe=pe.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
        )
        return masks, iou


def export_sam_bundle(
    out_dir: str | Path,
    *,
    backend: str = "vit_t",
    checkpoint: str | Path | None = None,
    random_init: bool = False,
    precision: str = "fp32",
    overwrite: bool = False,
) -> Path:
    """Build SAM and write a refiner bundle (encoder.xml/.bin, decoder.xml/.bin, metadata.json)."""
    if precision not in PRECISIONS or precision == "bf16":
        valid = ", ".join(p for p in PRECISIONS if p != "bf16")
        raise ValueError(
            f"unknown SAM precision {precision!r}; valid: {valid} (bf16 is a run-time choice: "
            "refine.yaml's inference_precision)"
        )
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        if not overwrite:
            raise BundleError(f"{out_dir} exists and is not empty; pass overwrite to replace it")
        shutil.rmtree(out_dir)
    model = build_sam(backend, checkpoint, random_init=random_init)
    if random_init:
        log.warning("exporting SAM %s with RANDOM weights: masks will be meaningless", backend)
    out_dir.mkdir(parents=True, exist_ok=True)
    encoder, decoder = convert_sam(model)
    if precision == "int8":
        nncf = import_nncf()
        encoder, decoder = nncf.compress_weights(encoder), nncf.compress_weights(decoder)
    fp16 = precision == "fp16"
    ov.save_model(encoder, out_dir / "encoder.xml", compress_to_fp16=fp16)
    ov.save_model(decoder, out_dir / "decoder.xml", compress_to_fp16=fp16)
    metadata = RefinerBundleMetadata(
        REFINER_SCHEMA_VERSION, "sam_refiner", backend, precision,  # type: ignore[arg-type]
        INPUT_SIZE, PIXEL_MEAN, PIXEL_STD, random_weights=random_init,
        checkpoint_sha256=sha256_file(checkpoint) if checkpoint else None,
        checkpoint_name=Path(checkpoint).name if checkpoint else None,
        created_at=utc_now(), package_versions=package_versions(PACKAGES),
    )  # fmt: skip
    write_refiner_metadata(out_dir, metadata)
    log.info("wrote SAM refiner bundle %s (%s, %s)", out_dir, backend, precision)
    return out_dir


def convert_sam(model: nn.Module):
    """Convert encoder and decoder to ``openvino.Model`` with named inputs/outputs."""
    encoder_example = torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        embeddings = model.image_encoder(encoder_example)
        encoder = ov.convert_model(EncoderForExport(model), example_input=encoder_example)
        decoder_example = (
            embeddings,
            torch.tensor([[[500.0, 400.0], [100.0, 120.0], [700.0, 650.0]]]),
            torch.tensor([[1.0, 2.0, 3.0]]),
        )
        shapes = [list(embeddings.shape), [1, -1, 2], [1, -1]]
        decoder = ov.convert_model(
            DecoderForExport(model), example_input=decoder_example,
            input=[ov.PartialShape(shape) for shape in shapes],
        )  # fmt: skip
    name_ports(encoder.inputs, ["image"])
    name_ports(encoder.outputs, ["image_embeddings"])
    name_ports(decoder.inputs, ["image_embeddings", "point_coords", "point_labels"])
    name_ports(decoder.outputs, ["low_res_masks", "iou_predictions"])
    return encoder, decoder

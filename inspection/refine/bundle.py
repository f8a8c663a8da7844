"""The SAM refiner bundle (``training.sam_export`` writes, ``refine.sam`` reads): OpenVINO IR
of the image encoder and mask decoder and a ``metadata.json`` saying all the station needs,
signed like a model bundle and verified in memory before anything compiles."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from inspection.core.bundle import (
    METADATA_FILE,
    Precision,
    parse_versioned_metadata,
    read_metadata_json,
    read_versioned_metadata,
    require_listed,
    write_metadata_json,
)
from inspection.core.errors import BundleError
from inspection.core.signing import PublicKeys, read_verified_files

REFINER_SCHEMA_VERSION = 1
SamBackend = Literal["vit_t", "vit_b"]


@dataclass(frozen=True)
class RefinerBundleMetadata:
    """What the station needs to run SAM without guessing. The encoder input is
    ((resize_longest(image, input_size) - pixel_mean) / pixel_std), zero-padded bottom/right to
    (input_size, input_size), NCHW float32, RGB in [0, 255]. The decoder takes ``point_coords``
    (1, N, 2) float32 in input-size pixels and ``point_labels`` (1, N) float32 (1 positive,
    0 negative, 2/3 box corners, -1 padding) and returns ``low_res_masks`` (1, 4, 256, 256)
    logits and ``iou_predictions`` (1, 4)."""

    schema_version: int
    kind: Literal["sam_refiner"]
    backend: SamBackend
    precision: Precision
    input_size: int
    pixel_mean: tuple[float, float, float]
    pixel_std: tuple[float, float, float]
    random_weights: bool
    checkpoint_sha256: str | None = None
    checkpoint_name: str | None = None
    encoder_file: str = "encoder.xml"
    decoder_file: str = "decoder.xml"
    embedding_shape: tuple[int, int, int, int] = (1, 256, 64, 64)
    low_res_size: int = 256
    mask_threshold: float = 0.0
    color_order: Literal["RGB"] = "RGB"
    created_at: str = ""
    package_versions: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)


write_refiner_metadata = write_metadata_json
WHAT = "SAM refiner bundle"


def read_refiner_metadata(bundle_dir: str | Path) -> RefinerBundleMetadata:
    """Parse and validate ``metadata.json``; anything wrong raises ``BundleError``."""
    _check_kind(read_metadata_json(bundle_dir, what=WHAT), bundle_dir)
    return read_versioned_metadata(bundle_dir, RefinerBundleMetadata, REFINER_SCHEMA_VERSION, WHAT)


def _check_kind(data: Mapping[str, object], bundle_dir: str | Path) -> None:
    if data.get("kind") != "sam_refiner":
        path = Path(bundle_dir) / METADATA_FILE
        raise BundleError(f"{path}: not a {WHAT} (kind is not 'sam_refiner')")


@dataclass(frozen=True)
class VerifiedRefiner:
    """A refiner bundle read once into memory and checked there, so compiling from ``files``
    compiles exactly the bytes verified; ``signed_by`` None: checksums only."""

    directory: Path
    metadata: RefinerBundleMetadata
    files: Mapping[str, bytes]
    digest: str
    signed_by: str | None = None

    def model(self, xml: str) -> tuple[bytes, bytes]:
        """(IR xml, weights) of the model ``xml`` names, as verified."""
        return self.files[xml], self.files[_weights_of(xml)]


def verify_refiner_bundle(
    bundle_dir: str | Path, public_key: PublicKeys | None = None
) -> VerifiedRefiner:
    """Read the bundle once and check in memory its signature (``public_key`` None: skipped),
    every file's sha256 and that both models are listed; ``BundleError`` says what is wrong."""
    data, files, digest, signed_by = read_verified_files(bundle_dir, public_key, WHAT)
    _check_kind(data, bundle_dir)
    metadata = parse_versioned_metadata(
        data, Path(bundle_dir) / METADATA_FILE, RefinerBundleMetadata, REFINER_SCHEMA_VERSION, WHAT
    )
    models = (metadata.encoder_file, metadata.decoder_file)
    require_listed(Path(bundle_dir), files, (n for xml in models for n in (xml, _weights_of(xml))))
    return VerifiedRefiner(Path(bundle_dir), metadata, files, digest, signed_by)


def _weights_of(xml: str) -> str:
    """The weights file beside an OpenVINO IR ``xml``."""
    return str(Path(xml).with_suffix(".bin"))

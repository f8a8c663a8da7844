"""Global-context anomaly score: image-level statistics judged against normal images. Torch-free.

Patch models miss changes of the whole image (density, colour cast, angle), so components
(``features``, ``colour``, ``frequency``) each score a Mahalanobis distance to normal training
images, standardised with the local score on good validation images; the fused z-score is
their maximum, and the component reaching it "drove" the verdict (``fuse``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np

from inspection.core.bundle import Preprocessing

COLOUR, FREQUENCY, FEATURES, LOCAL = "colour", "frequency", "features", "local"
GLOBAL_COMPONENTS: tuple[str, ...] = (FEATURES, COLOUR, FREQUENCY)
STATS_SIZE = 128
"""Side (px) the image is resized to before colour and frequency statistics."""
RADIAL_BINS, ANGULAR_BINS = 12, 8
PARAMS_FILE = "global_context.npz"


@dataclass(frozen=True)
class Gaussian:
    """A normal model of one component: mean (D,) and precision (D, D) float64."""

    mean: np.ndarray
    precision: np.ndarray

    def __post_init__(self) -> None:
        dim = self.mean.shape[0] if self.mean.ndim == 1 else -1
        if dim < 1 or self.precision.shape != (dim, dim):
            raise ValueError(
                f"Gaussian needs mean (D,) and precision (D, D), got {self.mean.shape} "
                f"and {self.precision.shape}"
            )

    def distance(self, vectors: np.ndarray) -> np.ndarray:
        """Mahalanobis distance of (N, D) vectors -> (N,) float64 >= 0."""
        vectors = np.asarray(vectors, dtype=np.float64)
        if vectors.ndim != 2 or vectors.shape[1] != self.mean.shape[0]:
            raise ValueError(f"expected (N, {self.mean.shape[0]}) vectors, got {vectors.shape}")
        centred = vectors - self.mean
        squared = np.einsum("nd,de,ne->n", centred, self.precision, centred)
        return np.sqrt(np.maximum(squared, 0.0))


@dataclass(frozen=True)
class Standardiser:
    """z = (value - mean) / std, fitted on good validation images."""

    mean: float
    std: float

    def __post_init__(self) -> None:
        if not np.isfinite(self.mean) or not np.isfinite(self.std) or self.std <= 0:
            raise ValueError(f"Standardiser needs a finite mean and std > 0, got {self}")

    def z(self, values: np.ndarray | float) -> np.ndarray:
        return (np.asarray(values, dtype=np.float64) - self.mean) / self.std


@dataclass(frozen=True)
class GlobalContext:
    """A Gaussian and a standardiser per component (``standardisers`` may also hold ``local``)."""

    gaussians: Mapping[str, Gaussian]
    standardisers: Mapping[str, Standardiser]
    feature_layers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = set(self.gaussians) - set(GLOBAL_COMPONENTS)
        if unknown:
            raise ValueError(
                f"unknown global components {sorted(unknown)}; valid: {GLOBAL_COMPONENTS}"
            )
        missing = [name for name in self.gaussians if name not in self.standardisers]
        if missing:
            raise ValueError(f"components {missing} have no standardiser")
        if FEATURES in self.gaussians and not self.feature_layers:
            raise ValueError("the features component needs the names of its pooled layers")

    @property
    def components(self) -> tuple[str, ...]:
        return tuple(name for name in GLOBAL_COMPONENTS if name in self.gaussians)

    def distances(
        self, images: list[np.ndarray] | None = None, pooled: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """Raw Mahalanobis distances per component, each (N,) float64 (``component_vectors``)."""
        vectors = component_vectors(self.components, images, pooled)
        return {name: self.gaussians[name].distance(v) for name, v in vectors.items()}

    def z_scores(
        self, distances: Mapping[str, np.ndarray], local_raw: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """Standardised scores per component (``local`` included when given and fitted)."""
        z = {name: self.standardisers[name].z(d) for name, d in distances.items()}
        if local_raw is not None and LOCAL in self.standardisers:
            z[LOCAL] = self.standardisers[LOCAL].z(local_raw)
        return z

    def save(self, path: str | Path) -> Path:
        """Write the arrays and standardisers to one ``.npz`` file (no pickle)."""
        arrays: dict[str, np.ndarray] = {
            "feature_layers": np.asarray(self.feature_layers, dtype=str),
            "standardisers": np.asarray(
                [[name, s.mean, s.std] for name, s in self.standardisers.items()], dtype=str
            ),
        }
        for name, gaussian in self.gaussians.items():
            arrays[f"{name}.mean"] = gaussian.mean
            arrays[f"{name}.precision"] = gaussian.precision
        path = Path(path)
        with path.open("wb") as handle:
            np.savez(handle, **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path | BinaryIO) -> GlobalContext:
        """Read a saved context from a file path or an open binary file (verified bytes)."""
        with np.load(path, allow_pickle=False) as data:
            gaussians = {
                name: Gaussian(data[f"{name}.mean"], data[f"{name}.precision"])
                for name in GLOBAL_COMPONENTS
                if f"{name}.mean" in data
            }
            standardisers = {
                str(row[0]): Standardiser(float(row[1]), float(row[2]))
                for row in data["standardisers"]
            }
            layers = tuple(str(layer) for layer in data["feature_layers"])
        return cls(gaussians, standardisers, layers)


def fuse(z_scores: Mapping[str, np.ndarray]) -> tuple[np.ndarray, list[str]]:
    """The fusion rule: fused (N,) = max over components of z; and the driving component per image."""
    if not z_scores:
        raise ValueError("fuse needs at least one component")
    names = list(z_scores)
    stacked = np.stack([np.asarray(z_scores[name], dtype=np.float64) for name in names])
    drivers = [names[index] for index in np.argmax(stacked, axis=0)]
    return stacked.max(axis=0), drivers


# ------------------------------------------------------------------ image statistics
def _small(image: np.ndarray) -> np.ndarray:
    """(STATS_SIZE, STATS_SIZE, 3) float32 RGB in [0, 1] from uint8 or [0, 1] float input."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype not in (np.uint8, np.float32):
        raise ValueError(
            f"expected an (H, W, 3) uint8 or float32 RGB image, got {image.shape} {image.dtype}"
        )
    rgb = image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image
    return cv2.resize(rgb, (STATS_SIZE, STATS_SIZE), interpolation=cv2.INTER_AREA)


def colour_statistics(image: np.ndarray) -> np.ndarray:
    """(12,) float64: mean and std of R, G, B; saturation-weighted hue (cos, sin) mean;
    mean and std of S and V. ``image``: (H, W, 3) RGB, uint8 or float32 in [0, 1]."""
    small = np.clip(_small(image), 0.0, 1.0)
    rgb = small.reshape(-1, 3).astype(np.float64)
    hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV).reshape(-1, 3).astype(np.float64)
    angle = np.deg2rad(hsv[:, 0])  # float input: hue in degrees
    sat, val = hsv[:, 1], hsv[:, 2]
    hue = np.stack([np.cos(angle) * sat, np.sin(angle) * sat], axis=1)
    return np.concatenate(
        [rgb.mean(0), rgb.std(0), hue.mean(0), [sat.mean(), sat.std(), val.mean(), val.std()]]
    )


def frequency_statistics(image: np.ndarray) -> np.ndarray:
    """(RADIAL_BINS + ANGULAR_BINS,) float64: log spectral power (DC excluded) in rings, for
    scale and density (a finer weave moves power outwards), and in sectors, for orientation."""
    grey = cv2.cvtColor(_small(image), cv2.COLOR_RGB2GRAY).astype(np.float64)
    grey = (grey - grey.mean()) * np.outer(np.hanning(STATS_SIZE), np.hanning(STATS_SIZE))
    power = np.abs(np.fft.fftshift(np.fft.fft2(grey))) ** 2
    freqs = np.fft.fftshift(np.fft.fftfreq(STATS_SIZE))  # cycles/pixel, as the spectrum
    fy, fx = np.meshgrid(freqs, freqs, indexing="ij")
    radius, angle = np.hypot(fx, fy), np.mod(np.arctan2(fy, fx), np.pi)
    valid = (radius > 0) & (radius <= 0.5)
    rings = np.minimum((radius[valid] / 0.5 * RADIAL_BINS).astype(int), RADIAL_BINS - 1)
    sectors = np.minimum((angle[valid] / np.pi * ANGULAR_BINS).astype(int), ANGULAR_BINS - 1)
    values = power[valid]
    ring_power = np.bincount(rings, values, RADIAL_BINS)
    sector_power = np.bincount(sectors, values, ANGULAR_BINS)
    total = values.sum() + 1e-12
    return np.log(np.concatenate([ring_power, sector_power]) / total + 1e-9)


IMAGE_STATISTICS = {COLOUR: colour_statistics, FREQUENCY: frequency_statistics}


def component_vectors(
    names: Sequence[str],
    images: Sequence[np.ndarray] | None = None,
    pooled: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """(N, D) vectors of each named component: the (N, D) ``pooled`` backbone features for
    ``features``, the statistics of the N (H, W, 3) ``images`` for colour and frequency."""
    out: dict[str, np.ndarray] = {}
    for name in names:
        if name == FEATURES:
            if pooled is None:
                raise ValueError("the features component needs pooled backbone features")
            out[name] = np.asarray(pooled)
        elif name in IMAGE_STATISTICS:
            if images is None:
                raise ValueError(f"the {name} component needs the images")
            out[name] = np.stack([IMAGE_STATISTICS[name](image) for image in images])
        else:
            raise ValueError(
                f"unknown component {name!r}; valid: {FEATURES}, {list(IMAGE_STATISTICS)}"
            )
    return out


def images_of_input(batch: np.ndarray, prep: Preprocessing) -> list[np.ndarray]:
    """Undo the normalisation of (N, 3, h, w) model input -> N (h, w, 3) float32 RGB in [0, 1]:
    training and the station take colour and frequency statistics from the same pixels. A
    graph that preprocesses (``prep.in_graph``) takes (N, h, w, 3) uint8 RGB: scaled."""
    if prep.in_graph:
        if batch.ndim != 4 or batch.shape[3] != 3 or batch.dtype != np.uint8:
            raise ValueError(f"expected (N, h, w, 3) uint8 model input, got {batch.shape}")
        return [image.astype(np.float32) / np.float32(255.0) for image in batch]
    if batch.ndim != 4 or batch.shape[1] != 3:
        raise ValueError(f"expected (N, 3, h, w) model input, got {batch.shape}")
    mean = np.asarray(prep.mean, dtype=np.float32)[:, None, None]
    std = np.asarray(prep.std, dtype=np.float32)[:, None, None]
    images = []
    for tensor in batch:
        pixels = (tensor * std + mean) / np.float32(prep.pixel_scale * 255.0)
        image = np.ascontiguousarray(pixels.transpose(1, 2, 0), dtype=np.float32)
        images.append(image[:, :, ::-1].copy() if prep.color_order == "BGR" else image)
    return images

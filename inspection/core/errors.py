"""Exceptions with messages a line operator can act on."""

from __future__ import annotations


class InspectionError(Exception):
    """Base class for every error this package raises on purpose."""


class ConfigError(InspectionError, ValueError):
    """A configuration file or value is wrong; the message names the key."""


class UnknownKeyError(ConfigError):
    """A file holds keys its type does not have: a typo, or a file from a newer release."""


class DatasetError(InspectionError):
    """A dataset folder cannot be used; the message names the file."""


class ImageDecodeError(InspectionError, ValueError):
    """Bytes or a file could not be turned into an image."""


class ImageTooLarge(ImageDecodeError):
    """An image beyond a size limit: ``limit`` names it (``max_pixels`` or ``max_side``), so
    whoever set the limit can say which key raises it."""

    def __init__(self, message: str, limit: str) -> None:
        super().__init__(message)
        self.limit = limit


class BundleError(InspectionError):
    """A model bundle is missing, corrupt or incompatible."""


class RegistryError(InspectionError):
    """A registry entry is missing or would be overwritten."""


class WeightsError(InspectionError):
    """Pretrained or SAM weights could not be resolved or loaded."""


class AlignmentError(InspectionError):
    """An image could not be registered to its product's reference: an error, never a verdict."""


class InputDomainError(InspectionError):
    """An image unlike the bundle's training images (``core.input_domain``), never a verdict."""

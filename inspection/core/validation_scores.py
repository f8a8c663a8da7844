"""A bundle's labelled scores (``validation_scores.json``): its normalised scores on the
held-out split, written by export and read verified by the dashboard. Hand-made files may list
``{"samples": [{"score": 0.12, "label": "good"}, ...]}`` and a ``note`` instead.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from inspection.core.bundle import (
    METADATA_FILE,
    SIGNATURE_FILE,
    VALIDATION_SCORES_FILE,
    read_metadata_json,
)
from inspection.core.config import from_mapping, to_mapping
from inspection.core.errors import BundleError, ConfigError
from inspection.core.fingerprint import sha256_bytes
from inspection.core.signing import load_public_key, read_verified, site_public_key

LABEL_WORDS = {"good": 0, "ok": 0, "defect": 1, "ng": 1, "anomalous": 1, "bad": 1}
_EXPECTED = "expected {'scores': [...], 'labels': [0|1, ...]}"


@dataclass(frozen=True)
class ValidationScores:
    """Normalised image scores in [0, 1] with labels (0 good, 1 defective), one per image;
    ``defect_types`` and ``names`` one per image or empty; ``note``: free text of hand-made
    files; ``seeded``: demo data of ``scripts/seed_dashboard.py``, not model output."""

    scores: tuple[float, ...]
    labels: tuple[int, ...]
    split: str = "validation"
    defect_types: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    note: str | None = None
    seeded: bool = False

    def __post_init__(self) -> None:
        n = len(self.scores)
        if len(self.labels) != n:
            raise ValueError(f"{n} scores but {len(self.labels)} labels; they must pair up")
        if any(label not in (0, 1) for label in self.labels):
            raise ValueError("labels must be 0 (good) or 1 (defective)")
        for name in ("defect_types", "names"):
            if getattr(self, name) and len(getattr(self, name)) != n:
                raise ValueError(f"{name}: expected {n} entries, got {len(getattr(self, name))}")


def write_validation_scores(bundle_dir: str | Path, scores: ValidationScores) -> Path:
    """Write ``validation_scores.json`` into ``bundle_dir`` (before its metadata checksums it)."""
    data = {k: v for k, v in to_mapping(scores).items() if v not in (None, [], False)}
    target = Path(bundle_dir) / VALIDATION_SCORES_FILE
    target.write_text(json.dumps(data), encoding="utf-8")
    return target


def read_validation_scores(bundle_dir: str | Path) -> ValidationScores | None:
    """The bundle's labelled scores; ``None`` when it ships none, ``BundleError`` if unusable
    or, in a bundle, not the file its checksums and signature cover."""
    path = Path(bundle_dir) / VALIDATION_SCORES_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(_verified_bytes(Path(bundle_dir)).decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path}: not JSON ({exc}); {_EXPECTED}") from exc
    try:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{path}: not a JSON object")
        return from_mapping(ValidationScores, _from_samples(data, str(path)), where=str(path))
    except ConfigError as exc:
        raise BundleError(f"{exc}; {_EXPECTED}") from exc


def _verified_bytes(bundle_dir: Path) -> bytes:
    """The scores file's bytes: of a bundle, as verified with the site key beside its registry
    (``<registry>/<product>/bundles/<id>``); with no site key, its own listed checksum."""
    if not (bundle_dir / METADATA_FILE).is_file():
        return (bundle_dir / VALIDATION_SCORES_FILE).read_bytes()  # a hand-made file
    paths = [bundle_dir / name for name in (METADATA_FILE, SIGNATURE_FILE, VALIDATION_SCORES_FILE)]
    stamp = tuple(path.stat().st_mtime_ns if path.exists() else 0 for path in paths)
    return _read_checked(bundle_dir.resolve(), stamp)


@lru_cache(maxsize=32)
def _read_checked(bundle_dir: Path, stamp: tuple[int, ...]) -> bytes:
    """``_verified_bytes`` once per bundle state (``stamp``: the files' modification times)."""
    key_file = site_public_key(bundle_dir.parents[2]) if len(bundle_dir.parents) > 2 else None
    if key_file is None:  # no site key: the file's own checksum, as the metadata lists it
        raw = (bundle_dir / VALIDATION_SCORES_FILE).read_bytes()
        listed = read_metadata_json(bundle_dir).get("files") or {}
        if listed.get(VALIDATION_SCORES_FILE, sha256_bytes(raw)) != sha256_bytes(raw):
            raise BundleError(f"{bundle_dir}: checksum mismatch for {VALIDATION_SCORES_FILE}")
        return raw
    verified = read_verified(bundle_dir, load_public_key(key_file))
    if VALIDATION_SCORES_FILE not in verified.files:
        raise BundleError(f"{bundle_dir}: {VALIDATION_SCORES_FILE} is not covered by the bundle")
    return verified.files[VALIDATION_SCORES_FILE]


def _from_samples(data: Mapping[str, Any], where: str) -> Mapping[str, Any]:
    """The ``samples`` layout as the ``scores``/``labels`` one (other layouts unchanged)."""
    if "samples" not in data:
        return data
    samples = data["samples"]
    if not isinstance(samples, list) or not all(isinstance(s, Mapping) for s in samples):
        raise ConfigError(f"{where}.samples: expected a list of {{score, label}} objects")
    try:
        scores = [s["score"] for s in samples]
        labels = [_label(s["label"], f"{where}.samples[{i}]") for i, s in enumerate(samples)]
    except KeyError as exc:
        raise ConfigError(f"{where}.samples: every sample needs {exc}") from exc
    rest = {k: v for k, v in data.items() if k != "samples"}
    return {**rest, "scores": scores, "labels": labels}


def _label(value: Any, where: str) -> Any:
    if not isinstance(value, str):
        return value
    if value.lower() not in LABEL_WORDS:
        raise ConfigError(f"{where}.label: {value!r} is none of {sorted(LABEL_WORDS)}")
    return LABEL_WORDS[value.lower()]

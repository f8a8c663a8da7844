"""Signed bundles and records: Ed25519 signatures over a bundle's manifest (the sha256 of
``metadata.json`` and every listed file; its own sha256 is the bundle digest). Stations pin
public keys by fingerprint (``PinnedKey``) and verify against a ``Keyring``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from inspection.core.bundle import (
    BUNDLE_SCHEMA_VERSION,
    METADATA_FILE,
    SIGNATURE_FILE,
    BundleMetadata,
    check_digest,
    metadata_object,
    parse_versioned_metadata,
    read_metadata_json,
    require_listed,
)
from inspection.core.errors import BundleError, ConfigError, InspectionError
from inspection.core.fingerprint import sha256_bytes, sha256_file

SIGNATURE_SCHEMA_VERSION = 1
PRIVATE_KEY_FILE = "site-signing.key"
PUBLIC_KEY_FILE = "site-signing.pub"
DASHBOARD_KEY_FILE = "dashboard/decision-signing.key"
"""The dashboard's decision key, in the site's keys folder (a sub-folder its service owns)."""
SIGNING_KEY_ENV = "INSPECTION_SIGNING_KEY"
"""A private key file this process signs decision records with instead of the site key: the
dashboard's service sets it to its own key (``inspection dashboard`` does)."""
KeyUse = Literal["bundles", "decisions"]
_FINGERPRINT = re.compile(r"sha256:[0-9a-f]{64}")
K = TypeVar("K", Ed25519PrivateKey, Ed25519PublicKey)


class SigningError(InspectionError):
    """A key cannot be created or read."""


@dataclass(frozen=True)
class SiteKeys:
    private: Path
    public: Path
    key_id: str


def fingerprint(public_key: Ed25519PublicKey) -> str:
    """``sha256:<64 hex>`` of the raw public key: what a config pins (``PinnedKey``)."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def key_id(public_key: Ed25519PublicKey | Keyring) -> str:
    """First 16 hex digits of the fingerprint (names the key in signatures and messages); a
    keyring: its bundle keys' ids, comma-separated."""
    if isinstance(public_key, Keyring):
        return ", ".join(key_id(k) for k in public_key.bundle_keys)
    return fingerprint(public_key)[7:23]


def init_keys(folder: str | Path, *, force: bool = False) -> SiteKeys:
    """Create the site signing key pair in ``folder`` (private key mode 0600)."""
    folder = Path(folder)
    return create_pair(folder / PRIVATE_KEY_FILE, folder / PUBLIC_KEY_FILE, force=force)


def init_dashboard_key(site_keys: str | Path, *, force: bool = False) -> SiteKeys:
    """Create the dashboard's decision key pair in ``<site_keys>/dashboard`` (folder 0700, key
    0600: give it to the dashboard service's user alone)."""
    private = Path(site_keys) / DASHBOARD_KEY_FILE
    private.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    return create_pair(private, private.with_suffix(".pub"), force=force)


def create_pair(private: Path, public: Path, *, force: bool) -> SiteKeys:
    """A new key pair: ``private`` (PEM, mode 0600) and ``public``; refuses to replace an
    existing key unless ``force``."""
    if private.exists() and not force:
        raise SigningError(f"{private} exists; keep it, or pass --force to replace the key")
    private.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return SiteKeys(private, public, key_id(key.public_key()))


def site_keys_dir(registry_dir: str | Path) -> Path:
    """Where a site keeps its key pair: ``keys/`` beside the registry (``var/keys``)."""
    return Path(registry_dir).parent / "keys"


def dashboard_key_path(registry_dir: str | Path) -> Path:
    """The dashboard's private decision key (``init_dashboard_key``)."""
    return site_keys_dir(registry_dir) / DASHBOARD_KEY_FILE


def site_signing_key(registry_dir: str | Path) -> Ed25519PrivateKey | None:
    """The key this process signs with: ``INSPECTION_SIGNING_KEY``'s when set (the dashboard's
    service signs decisions with its own key), else the site's when this machine holds it."""
    own = os.environ.get(SIGNING_KEY_ENV, "").strip()
    if own:
        return load_private_key(own)
    path = site_keys_dir(registry_dir) / PRIVATE_KEY_FILE
    return load_private_key(path) if path.is_file() else None


def require_site_key(registry_dir: str | Path, *, allow_unsigned: bool) -> None:
    """Refuse, before any work, to promote a bundle from a site without a signing key (the
    stations pinning one refuse an unsigned bundle), unless ``allow_unsigned`` (development)."""
    if site_signing_key(registry_dir) is None and not allow_unsigned:
        raise BundleError(
            f"this site has no signing key in {site_keys_dir(registry_dir)}: stations refuse "
            "unsigned bundles. Run 'inspection keys init' first, or pass --allow-unsigned"
        )


def site_public_key(registry_dir: str | Path) -> Path | None:
    """The site's public key file when it exists (``inspection keys init`` writes it)."""
    path = site_keys_dir(registry_dir) / PUBLIC_KEY_FILE
    return path if path.is_file() else None


def signer_label(registry_dir: str | Path, signer: str | None) -> str:
    """Who signed a record, for audit views: the site's key file holding key id ``signer``
    (``dashboard/decision-signing``, ``site-signing``, a rotated ``site-signing-<id>``)."""
    if not signer:
        return "unsigned"
    folder = site_keys_dir(registry_dir)
    for path in sorted(folder.rglob("*.pub")):
        try:
            if key_id(load_public_key(path)) == signer:
                return f"{path.relative_to(folder).with_suffix('')} ({signer})"
        except SigningError:
            continue
    return f"key {signer} (not this site's)"


@dataclass(frozen=True)
class PinnedKey:
    """A key a station trusts, pinned by fingerprint in its config (``core.signing_keys``):
    ``path``, a PEM public key file refused unless it hashes to ``fingerprint``; ``signs``:
    ``bundles`` (a site key: bundles and decision records) or ``decisions`` (the dashboard's)."""

    fingerprint: str
    path: Path
    signs: KeyUse = "bundles"

    def __post_init__(self) -> None:
        if not _FINGERPRINT.fullmatch(str(self.fingerprint)):
            raise ConfigError(
                f"signing_keys: fingerprint must be sha256:<64 hex digits> (`inspection keys "
                f"show` prints it), got {self.fingerprint!r}"
            )
        object.__setattr__(self, "path", Path(self.path))

    def load(self) -> Ed25519PublicKey:
        """The key in ``path``; ``SigningError`` when its fingerprint is not the pinned one."""
        key = load_public_key(self.path)
        if fingerprint(key) != self.fingerprint:
            raise SigningError(
                f"{self.path}: fingerprint {fingerprint(key)} is not the pinned "
                f"{self.fingerprint}: the key file was replaced; it is not trusted (restore it, "
                "or re-pin after checking with the set-up machine: `inspection keys pin`)"
            )
        return key


def pin_file(path: str | Path, signs: KeyUse = "bundles") -> PinnedKey:
    """The key file at ``path`` pinned as found: compare its fingerprint with the set-up
    machine's (``inspection keys show``) before trusting it."""
    return PinnedKey(fingerprint(load_public_key(path)), Path(path), signs)


@dataclass(frozen=True)
class Keyring:
    """What a station trusts: ``bundle_keys`` sign bundles and decision records (two during a
    rotation), ``decision_keys`` sign decision records only (the dashboard's); ``revoked``:
    key fingerprints and bundles (``<product>/<bundle_id>``) refused even when validly signed."""

    bundle_keys: tuple[Ed25519PublicKey, ...]
    decision_keys: tuple[Ed25519PublicKey, ...] = ()
    revoked: frozenset[str] = frozenset()

    @classmethod
    def pinned(cls, pins: Iterable[PinnedKey], revoked: Iterable[str] = ()) -> Keyring:
        """Load every pinned key (``SigningError`` on a replaced file); one must sign bundles."""
        loaded = [(pin.signs, pin.load()) for pin in pins]
        bundles = tuple(key for signs, key in loaded if signs == "bundles")
        if not bundles:
            raise SigningError("no key pinned to sign bundles (signs: bundles)")
        decisions = tuple(key for signs, key in loaded if signs == "decisions")
        return cls(bundles, decisions, frozenset(revoked))

    def find(self, signer: object, use: KeyUse) -> Ed25519PublicKey:
        """The trusted key with id ``signer`` for ``use``; ``SigningError`` saying why not."""
        keys = self.bundle_keys + (self.decision_keys if use == "decisions" else ())
        for key in keys:
            if key_id(key) == signer:
                if fingerprint(key) in self.revoked:
                    raise SigningError(f"signed by key {signer}, which is revoked (core.revoked)")
                return key
        if any(key_id(key) == signer for key in self.decision_keys):
            raise SigningError(
                f"signed by key {signer}, which is pinned for decision records only, not bundles"
            )
        pinned = ", ".join(repr(key_id(key)) for key in keys)
        raise SigningError(
            f"signed by key {str(signer)[:16]!r}, not by this site's key (not the pinned {pinned})"
        )

    def check_bundle(self, product: str, bundle_id: str) -> None:
        """``BundleError`` when the bundle is revoked."""
        if f"{product}/{bundle_id}" in self.revoked:
            raise BundleError(f"bundle {product}/{bundle_id} is revoked (core.revoked)")


PublicKeys = Ed25519PublicKey | Keyring
"""What the verify functions accept: one key (a bundle key) or a station's keyring."""


def as_keyring(keys: PublicKeys) -> Keyring:
    return keys if isinstance(keys, Keyring) else Keyring((keys,))


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    return _load(path, Ed25519PrivateKey)


def load_public_key(path: str | Path) -> Ed25519PublicKey:
    return _load(path, Ed25519PublicKey)


def _load(path: str | Path, kind: type[K]) -> K:
    """The PEM key of ``kind`` in ``path``; ``SigningError`` saying what is wrong otherwise."""
    private = kind is Ed25519PrivateKey
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise SigningError(f"cannot read key {path}: {exc.strerror or exc}") from exc
    try:
        key = (serialization.load_pem_private_key(data, password=None) if private
               else serialization.load_pem_public_key(data))  # fmt: skip
    except ValueError as exc:
        raise SigningError(f"{path}: not a PEM key ({exc})") from exc
    if not isinstance(key, kind):
        raise SigningError(f"{path}: not an Ed25519 {'private' if private else 'public'} key")
    return key


def bundle_manifest(bundle_dir: str | Path) -> bytes:
    """Canonical bytes that a signature covers: metadata.json's sha256 and every file's."""
    bundle_dir = Path(bundle_dir)
    files = _listed_files(read_metadata_json(bundle_dir))
    return _manifest(sha256_file(bundle_dir / METADATA_FILE), files)


def _listed_files(metadata: Mapping[str, Any]) -> dict[str, str]:
    files = metadata.get("files")
    if not isinstance(files, dict) or not files:
        raise BundleError("the bundle's metadata lists no checksummed files")
    return files


def _manifest(metadata_sha256: str, files: Mapping[str, str]) -> bytes:
    manifest = {
        "schema_version": SIGNATURE_SCHEMA_VERSION,
        "metadata_sha256": metadata_sha256,
        "files": dict(sorted(files.items())),
    }
    return json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode("utf-8")


def bundle_digest(bundle_dir: str | Path) -> str:
    """sha256 of the bundle manifest: one hash that changes with any byte of the bundle."""
    return hashlib.sha256(bundle_manifest(bundle_dir)).hexdigest()


def sign_bundle(bundle_dir: str | Path, private_key: Ed25519PrivateKey) -> str:
    """Write ``signature.json`` (after checking the checksums); returns the bundle digest."""
    bundle_dir = Path(bundle_dir)
    read_verified_files(bundle_dir)
    manifest = bundle_manifest(bundle_dir)
    signature = {
        "schema_version": SIGNATURE_SCHEMA_VERSION,
        "algorithm": "ed25519",
        "key_id": key_id(private_key.public_key()),
        "digest": hashlib.sha256(manifest).hexdigest(),
        "signature": base64.b64encode(private_key.sign(manifest)).decode("ascii"),
    }
    (bundle_dir / SIGNATURE_FILE).write_text(json.dumps(signature, indent=2), encoding="utf-8")
    return signature["digest"]


def verify_signed_bundle(bundle_dir: str | Path, public_key: PublicKeys) -> str:
    """The bundle digest once ``read_verified`` checks hold (loaders use ``read_verified``)."""
    return read_verified(bundle_dir, public_key).digest


@dataclass(frozen=True)
class VerifiedBundle:
    """A bundle read once into memory and checked there, so loading compiles exactly the bytes
    verified. ``files``: every file ``metadata.json`` lists, by relative name; ``digest``: the
    manifest's sha256; ``signed_by``: the key id checked, None for checksums only."""

    directory: Path
    metadata: BundleMetadata
    files: Mapping[str, bytes]
    digest: str
    signed_by: str | None = None

    def file(self, name: str) -> bytes:
        """The verified bytes of a listed file; ``BundleError`` for one the metadata omits."""
        require_listed(self.directory, self.files, (name,))
        return self.files[name]


def read_verified(bundle_dir: str | Path, public_key: PublicKeys | None = None) -> VerifiedBundle:
    """Read ``metadata.json``, the signature and every listed file once, then check in memory
    the signature (``public_key`` None: skipped), revocations, checksums and required files."""
    data, files, digest, signed_by = read_verified_files(bundle_dir, public_key)
    bundle_dir = Path(bundle_dir)
    metadata = parse_versioned_metadata(
        data, bundle_dir / METADATA_FILE, BundleMetadata, BUNDLE_SCHEMA_VERSION, "model bundle"
    )
    golden = metadata.golden.files if metadata.golden is not None else ()
    require_listed(bundle_dir, files, (metadata.model_file, metadata.weights_file, *golden))
    if public_key is not None:
        as_keyring(public_key).check_bundle(metadata.product, metadata.bundle_id)
    return VerifiedBundle(bundle_dir, metadata, files, digest, signed_by)


def read_verified_files(
    bundle_dir: str | Path, public_key: PublicKeys | None = None, what: str = "model bundle"
) -> tuple[dict[str, Any], dict[str, bytes], str, str | None]:
    """Any signed bundle (model, SAM refiner) read once and checked in memory: (parsed
    ``metadata.json``, every listed file's bytes, the digest, the signing key id or None)."""
    bundle_dir = Path(bundle_dir)
    raw = _read_bytes(bundle_dir, METADATA_FILE, what)
    data = metadata_object(raw, bundle_dir / METADATA_FILE)
    listed = _listed_files(data)
    manifest = _manifest(sha256_bytes(raw), listed)
    if public_key is not None:
        _check_signature(_read_signature(bundle_dir), as_keyring(public_key), manifest)
    files = {name: _read_bytes(bundle_dir, name, what) for name in sorted(listed)}
    for name, content in files.items():
        check_digest(bundle_dir, name, listed[name], sha256_bytes(content), what)
    signed_by = key_id(public_key) if public_key is not None else None
    return data, files, hashlib.sha256(manifest).hexdigest(), signed_by


def _check_signature(signature: dict[str, object], keyring: Keyring, manifest: bytes) -> None:
    """``BundleError`` unless a pinned bundle key signed ``manifest``."""
    try:
        public_key = keyring.find(signature.get("key_id"), "bundles")
    except SigningError as exc:
        raise BundleError(f"the bundle is {exc}; re-sign it with 'inspection bundle sign'") from exc
    try:
        public_key.verify(base64.b64decode(str(signature.get("signature", ""))), manifest)
    except (InvalidSignature, ValueError) as exc:
        raise BundleError(
            "bad bundle signature: metadata.json or the file checksums were changed after "
            "signing; the bundle is refused"
        ) from exc


def _read_bytes(bundle_dir: Path, name: str, what: str) -> bytes:
    path = bundle_dir / name
    if Path(name).is_absolute() or ".." in Path(name).parts:
        raise BundleError(f"{bundle_dir}: metadata lists a file outside the bundle: {name!r}")
    if name == METADATA_FILE and not path.is_file():
        raise BundleError(f"{bundle_dir}: not a {what} (no {METADATA_FILE})")
    if not path.is_file():
        raise BundleError(f"{bundle_dir}: file {name} is missing")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise BundleError(f"{bundle_dir}: cannot read {name}: {exc.strerror or exc}") from exc


def _read_signature(bundle_dir: Path) -> dict[str, object]:
    path = bundle_dir / SIGNATURE_FILE
    if not path.is_file():
        raise BundleError(
            f"the bundle is not signed (no {SIGNATURE_FILE}); stations with a pinned key load "
            "only bundles signed with 'inspection bundle sign'"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"unreadable {SIGNATURE_FILE}: {exc}") from exc
    if not isinstance(data, dict) or data.get("algorithm") != "ed25519":
        raise BundleError(f"{SIGNATURE_FILE} is not an Ed25519 bundle signature")
    return data


# ------------------------------------------------------------------ signed decisions
def record_payload(record: Mapping[str, Any]) -> bytes:
    """Canonical bytes a decision record's signature covers: every field but the signature."""
    body = {k: v for k, v in record.items() if k not in ("key_id", "signature")}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode("utf-8")


def sign_record(record: Mapping[str, Any], private_key: Ed25519PrivateKey) -> dict[str, Any]:
    """``record`` with ``key_id`` and an Ed25519 ``signature`` over ``record_payload``."""
    signature = private_key.sign(record_payload(record))
    return {
        **record,
        "key_id": key_id(private_key.public_key()),
        "signature": base64.b64encode(signature).decode("ascii"),
    }


def verify_record(record: Mapping[str, Any], public_key: PublicKeys, what: str) -> None:
    """``SigningError`` saying why unless ``record`` is signed, unchanged, by ``public_key`` or
    a key of the keyring trusted for decision records (not revoked)."""
    if not record.get("signature"):
        raise SigningError(f"{what} is not signed; a station with a pinned key refuses it")
    try:
        public_key = as_keyring(public_key).find(record.get("key_id"), "decisions")
    except SigningError as exc:
        raise SigningError(f"{what} is {exc}") from exc
    try:
        public_key.verify(base64.b64decode(str(record["signature"])), record_payload(record))
    except (InvalidSignature, ValueError) as exc:
        raise SigningError(f"{what}: bad signature (changed after signing)") from exc

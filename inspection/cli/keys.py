"""``inspection keys init|show|pin|rotate|retire|revoke`` and ``inspection bundle sign|verify``:
stations trust keys by fingerprint (docs/security.md)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from inspection.cli._site import group, site_option
from inspection.cli.console import screen
from inspection.core.bundle import verify_bundle
from inspection.core.config import SiteConfig, load_site_config
from inspection.core.errors import ConfigError
from inspection.core.signing import (
    DASHBOARD_KEY_FILE,
    PRIVATE_KEY_FILE,
    PinnedKey,
    fingerprint,
    init_dashboard_key,
    init_keys,
    key_id,
    load_private_key,
    load_public_key,
    pin_file,
    sign_bundle,
    site_keys_dir,
    verify_signed_bundle,
)
from inspection.service.config import load_station_config
from inspection.station.config import (
    Trust,
    pinned_key,
    read_trust,
    station_configs_in,
    trust_files,
    write_trust,
)

console = screen()
keys_app = group("keys", "The site's Ed25519 signing keys, pinned by fingerprint.")
bundle_app = group("bundle", "Sign and verify model bundles.")
BundleArg = Annotated[Path, typer.Argument(help="Bundle folder (with metadata.json).")]


SITE_OPTION = site_option("Site config YAML, keys beside its registry")
ConfigsOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--config",
        "-c",
        help="Station/line config to write (repeatable; default: station.yaml, line.yaml and "
        "station-watch.yaml beside the site config, where present).",
    ),
]


def _site_keys(site: str | None) -> Path:
    return site_keys_dir(load_site_config(site).registry_dir)


def site_station_configs(site: SiteConfig) -> list[Path]:
    """The site's station and line configs (``./configs`` without a site file, never the
    checkout's)."""
    return station_configs_in(site.configs_dir or Path("configs"))


def _configs(configs: list[Path] | None, site: str | None, *, required: bool = True) -> list[Path]:
    """The files holding the pins of the named configs (default: the site's), each once."""
    found = configs or site_station_configs(load_site_config(site))
    if not found and required:
        raise ConfigError("no station config to write: pass --config FILE")
    return trust_files(found)


def ensure_site_keys(folder: Path, *, force: bool = False) -> tuple[list[PinnedKey], list[str]]:
    """The site's bundle and decision keys in ``folder``, created when missing (or ``force``)."""
    notes, pins = [], []
    for make, private, signs in (
        (init_keys, folder / PRIVATE_KEY_FILE, "bundles"),
        (init_dashboard_key, folder / DASHBOARD_KEY_FILE, "decisions"),
    ):
        if force or not private.is_file():
            keys = make(folder, force=force)
            notes.append(f"created {signs} key {keys.key_id}: private {keys.private} (mode 0600)")
        pins.append(pin_file(private.with_suffix(".pub"), signs))
    return pins, notes


def pin_in_configs(pins: list[PinnedKey], configs: list[Path], *, replace: bool) -> list[str]:
    """Pin ``pins`` in each config, as the only pins when ``replace`` (a new site identity)."""
    notes = []
    for config in trust_files(configs):
        trust = read_trust(config)
        new = {p.fingerprint for p in pins} | {p.path for p in pins}
        kept = (
            [] if replace else [p for p in trust.signing_keys if not {p.fingerprint, p.path} & new]
        )
        changed = write_trust(config, Trust((*pins, *kept), trust.revoked))
        said = ", ".join(f"{p.signs} {p.fingerprint[:23]}…" for p in pins)
        notes.append(f"{config}: {'pinned' if changed else 'already pins'} {said}")
    return notes


@keys_app.command("init")
def init(
    folder: Annotated[
        Path | None,
        typer.Option("--dir", help="Where the key pairs are written (default: the site's)."),
    ] = None,
    site: str | None = SITE_OPTION,
    force: Annotated[bool, typer.Option("--force", help="Replace existing keys.")] = False,
    configs: ConfigsOption = None,
) -> None:
    """Create the site's bundle key and the dashboard's decision key (once, at set-up; each
    where missing) and pin both by fingerprint in the station configs."""
    pins, notes = ensure_site_keys(folder or _site_keys(site), force=force)
    targets = _configs(configs, site, required=False)
    for line in notes + pin_in_configs(pins, targets, replace=force):
        console.print(line, soft_wrap=True)
    for pin in pins:
        console.print(
            f"pin on other stations: keys pin {pin.path} --expect {pin.fingerprint}", soft_wrap=True
        )


@keys_app.command("show")
def show(site: str | None = SITE_OPTION, configs: ConfigsOption = None) -> None:
    """Fingerprints of this site's key files, and what each station config pins and revokes."""
    for path in sorted(_site_keys(site).rglob("*.pub")):
        console.print(f"{path}: {fingerprint(load_public_key(path))}", soft_wrap=True)
    for config in _configs(configs, site):
        trust = read_trust(config)
        for pin in trust.signing_keys:
            console.print(
                f"{config}: pins {pin.signs} {pin.fingerprint} ({pin.path})", soft_wrap=True
            )
        if trust.legacy:
            console.print(f"{config}: [red]pins {trust.legacy} by path only (refused)[/]")
        if trust.revoked:
            console.print(f"{config}: revokes {', '.join(trust.revoked)}")


@keys_app.command("pin")
def pin(
    key: Annotated[
        Path | None,
        typer.Argument(help="Public key file (default: the config's old bundle_public_key)."),
    ] = None,
    expect: Annotated[
        str | None,
        typer.Option("--expect", help="Refuse unless the key has this fingerprint (sha256:…)."),
    ] = None,
    signs: Annotated[str, typer.Option("--signs", help="bundles or decisions.")] = "bundles",
    site: str | None = SITE_OPTION,
    configs: ConfigsOption = None,
) -> None:
    """Pin a public key by its fingerprint (a station's configs; migrates a path-only
    ``bundle_public_key``). Check the fingerprint with the set-up machine's ``keys show``."""
    for config in _configs(configs, site):
        path = key or read_trust(config).legacy
        if path is None:
            raise ConfigError(f"{config}: no key given and no bundle_public_key to migrate")
        found = pin_file(path, signs)  # type: ignore[arg-type]
        if expect is not None and found.fingerprint != expect:
            raise ConfigError(
                f"{path}: fingerprint {found.fingerprint}, not the expected {expect}: not pinned"
            )
        for line in pin_in_configs([found], [config], replace=False):
            console.print(line, soft_wrap=True)
        if expect is None:
            console.print(f"compare {found.fingerprint} with the set-up machine's `keys show`")


@keys_app.command("rotate")
def rotate(
    dashboard: Annotated[
        bool, typer.Option("--dashboard", help="Rotate the dashboard's decision key.")
    ] = False,
    site: str | None = SITE_OPTION,
    configs: ConfigsOption = None,
) -> None:
    """A new key signs from now; the old one still verifies (its .pub kept as
    ``<name>-<key id>.pub``, its private key deleted) until ``keys retire``."""
    folder = _site_keys(site)
    private = folder / (DASHBOARD_KEY_FILE if dashboard else PRIVATE_KEY_FILE)
    public = private.with_suffix(".pub")
    old = load_public_key(public)
    kept = public.with_name(f"{public.stem}-{key_id(old)}.pub")
    public.rename(kept)
    private.unlink()
    pins, notes = ensure_site_keys(folder)
    new = pins[1] if dashboard else pins[0]
    targets = _configs(configs, site)
    for config in targets:
        trust = read_trust(config)
        moved = tuple(
            dataclasses.replace(p, path=kept) if p.fingerprint == fingerprint(old) else p
            for p in trust.signing_keys
        )
        write_trust(config, Trust(moved, trust.revoked))
    for line in notes + pin_in_configs([new], targets, replace=False):
        console.print(line, soft_wrap=True)
    console.print(
        f"old key {fingerprint(old)} verifies until `inspection keys retire {fingerprint(old)}`:"
        " pin the new key on every station first, re-sign live bundles (`bundle sign`)",
        soft_wrap=True,
    )


@keys_app.command("retire")
def retire(
    key: Annotated[str, typer.Argument(help="Fingerprint (sha256:…) of the key to unpin.")],
    site: str | None = SITE_OPTION,
    configs: ConfigsOption = None,
) -> None:
    """End a rotation: the key is no longer pinned, so what it signed no longer verifies."""
    for config in _configs(configs, site):
        trust = read_trust(config)
        left = tuple(p for p in trust.signing_keys if p.fingerprint != key)
        if not any(p.signs == "bundles" for p in left):
            raise ConfigError(f"{config}: {key} is the last bundle key pinned; rotate first")
        changed = write_trust(config, Trust(left, trust.revoked))
        console.print(f"{config}: {'retired' if changed else 'does not pin'} {key}")


@keys_app.command("revoke")
def revoke(
    item: Annotated[
        str, typer.Argument(help="A key fingerprint (sha256:…) or a bundle (product/bundle_id).")
    ],
    site: str | None = SITE_OPTION,
    configs: ConfigsOption = None,
) -> None:
    """Refuse a key or a bundle even where validly signed (a leaked key, a bad release); a
    station keeps serving the last good one it loaded."""
    if not (item.startswith("sha256:") or item.count("/") == 1):
        raise ConfigError(f"{item!r}: revoke a key (sha256:<hex>) or a bundle (product/bundle_id)")
    if item.startswith("sha256:"):
        PinnedKey(item, Path("-"))  # the fingerprint's format
    for config in _configs(configs, site):
        trust = read_trust(config)
        revoked = trust.revoked if item in trust.revoked else (*trust.revoked, item)
        changed = write_trust(config, Trust(trust.signing_keys, revoked))
        console.print(f"{config}: {'revoked' if changed else 'already revokes'} {item}")


@bundle_app.command("sign")
def sign(
    bundle: BundleArg,
    key: Annotated[
        Path | None, typer.Option("--key", help="The private signing key (default: the site's).")
    ] = None,
    site: str | None = SITE_OPTION,
) -> None:
    """Sign a bundle (metadata.json and every checksummed file) with the site key."""
    digest = sign_bundle(bundle, load_private_key(key or _site_keys(site) / PRIVATE_KEY_FILE))
    console.print(f"signed {bundle.name}: digest {digest}")


@bundle_app.command("verify")
def verify(
    bundle: BundleArg,
    public_key: Annotated[
        Path | None,
        typer.Option(
            "--public-key",
            envvar="INSPECTION_BUNDLE_PUBLIC_KEY",
            help="A public key file to check with (default: the keys station.yaml pins).",
        ),
    ] = None,
    site: str | None = SITE_OPTION,
) -> None:
    """Check a bundle's signature against the pinned keys and every file's checksum."""
    if public_key is not None:
        keys = load_public_key(public_key)
    else:
        station = load_site_config(site).configs / "station.yaml"
        keys = pinned_key(load_station_config(station).core)
    digest = verify_signed_bundle(bundle, keys) if keys is not None else "(not checked)"
    metadata = verify_bundle(bundle)
    console.print(f"[green]ok[/]: {metadata.bundle_id} ({metadata.model_version}) digest {digest}")

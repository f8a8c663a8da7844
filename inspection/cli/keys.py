"""``inspection keys init`` and ``inspection bundle sign|verify``: the site's bundle signatures."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from inspection.cli._site import site_option

if TYPE_CHECKING:
    from inspection.core.config import SiteConfig

console = Console()
DEFAULT_KEYS = Path("var/keys")
keys_app = typer.Typer(help="The site's Ed25519 bundle-signing key.", no_args_is_help=True)
bundle_app = typer.Typer(help="Sign and verify model bundles.", no_args_is_help=True)
BundleArg = Annotated[Path, typer.Argument(help="Bundle folder (with metadata.json).")]


STATION_CONFIGS = (Path("configs/station.yaml"), Path("configs/line.yaml"))
"""The shipped station and line configs (``site_station_configs`` finds a site's)."""


SITE_OPTION = site_option("Site config YAML, keys beside its registry")


def _site_keys(site: str | None) -> Path:
    """The site's key folder: ``keys/`` beside its registry, where export and retrain look."""
    from inspection.core.config import load_site_config
    from inspection.core.signing import site_keys_dir

    return site_keys_dir(load_site_config(site).registry_dir)


def site_station_configs(site: SiteConfig) -> list[Path]:
    """The site's station and line configs that exist, in its configs folder (``./configs``
    without a site file: never the checkout's, which belongs to no site)."""
    folder = site.configs_dir or Path("configs")
    return [folder / c.name for c in STATION_CONFIGS if (folder / c.name).is_file()]


@keys_app.command("init")
def init(
    folder: Annotated[
        Path | None,
        typer.Option("--dir", help="Where the key pair is written (default: the site's)."),
    ] = None,
    site: str | None = SITE_OPTION,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing site key.")] = False,
    configs: Annotated[
        list[Path] | None,
        typer.Option(
            "--config",
            "-c",
            help="Station/line config to pin the key in (repeatable; default: station.yaml and "
            "line.yaml beside the site config, where present).",
        ),
    ] = None,
) -> None:
    """Create the site signing key (once, at set-up) and pin its .pub in the station configs."""
    from inspection.core.config import load_site_config
    from inspection.core.signing import init_keys

    keys = init_keys(folder or _site_keys(site), force=force)
    console.print(f"site signing key {keys.key_id}: private {keys.private} (mode 0600)")
    configs = configs or site_station_configs(load_site_config(site))
    for line in pin_in_configs(keys.public, configs):
        console.print(line)
    console.print(f"pin on other stations: core.bundle_public_key: {keys.public}")


def pin_in_configs(public: Path, configs: list[Path]) -> list[str]:
    """Pin ``public`` in each station/line config (``site_station_configs``: the site's)."""
    from inspection.station.config import pin_public_key

    notes = []
    for config in configs:
        changed = pin_public_key(config, public)
        notes.append(f"{config}: {'pinned' if changed else 'already pins'} {public}")
    return notes


@bundle_app.command("sign")
def sign(
    bundle: BundleArg,
    key: Annotated[
        Path | None,
        typer.Option("--key", help="The private signing key (default: the site's)."),
    ] = None,
    site: str | None = SITE_OPTION,
) -> None:
    """Sign a bundle (metadata.json and every checksummed file) with the site key."""
    from inspection.core.signing import PRIVATE_KEY_FILE, load_private_key, sign_bundle

    digest = sign_bundle(bundle, load_private_key(key or _site_keys(site) / PRIVATE_KEY_FILE))
    console.print(f"signed {bundle.name}: digest {digest}")


@bundle_app.command("verify")
def verify(
    bundle: BundleArg,
    public_key: Annotated[
        Path,
        typer.Option(
            "--public-key",
            envvar="INSPECTION_BUNDLE_PUBLIC_KEY",
            help="The site's pinned public key.",
        ),
    ] = DEFAULT_KEYS / "site-signing.pub",
) -> None:
    """Check a bundle's signature against the pinned key and every file's checksum."""
    from inspection.core.bundle import verify_bundle
    from inspection.core.signing import load_public_key, verify_signed_bundle

    digest = verify_signed_bundle(bundle, load_public_key(public_key))
    metadata = verify_bundle(bundle)
    console.print(f"[green]ok[/]: {metadata.bundle_id} ({metadata.model_version}) digest {digest}")


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")
    app.add_typer(bundle_app, name="bundle")

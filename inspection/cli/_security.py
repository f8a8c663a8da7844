"""What every station command says about bundle signatures when it starts."""

from __future__ import annotations

from rich.console import Console

from inspection.station.config import UNSIGNED_WARNING, StationCoreConfig


def announce_signatures(config: StationCoreConfig, console: Console) -> None:
    """Loud when unsigned bundles are allowed; otherwise name the pinned key file."""
    if config.allow_unsigned_bundles:
        console.print(f"[bold red]WARNING: {UNSIGNED_WARNING}[/]")
    else:
        console.print(f"bundle signatures: required (pinned {config.bundle_public_key})")

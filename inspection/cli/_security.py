"""What every station command says about bundle signatures when it starts."""

from __future__ import annotations

from rich.console import Console

from inspection.station.config import UNSIGNED_WARNING, StationCoreConfig


def announce_signatures(config: StationCoreConfig, console: Console) -> None:
    """Loud when unsigned bundles are allowed; otherwise name the keys pinned by fingerprint
    and what is revoked."""
    if config.allow_unsigned_bundles:
        console.print(f"[bold red]WARNING: {UNSIGNED_WARNING}[/]")
        return
    pins = ", ".join(f"{p.signs} {p.fingerprint[:23]}…" for p in config.signing_keys)
    revoked = f"; revoked: {', '.join(config.revoked)}" if config.revoked else ""
    console.print(f"bundle signatures: required (pinned {pins or 'nothing'}{revoked})")

"""``inspection inspect``: run a bundle on image files or folders at the station (torch-free)."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.progress import track
from rich.table import Table

from inspection.cli._site import SITE_OPTION
from inspection.cli.console import log_dir, quiet_logs, ready_to_write, screen, verbose_requested
from inspection.core.config import SiteConfig, load_site_config
from inspection.core.errors import ConfigError
from inspection.core.input_domain import input_check_mode  # light: numpy and OpenCV, no OpenVINO
from inspection.core.signing import Keyring, SigningError, load_public_key
from inspection.refine.config import refine_config_in
from inspection.runtime.bounds import CameraOptions
from inspection.runtime.overlays import render_overlay, write_rgb_png
from inspection.service.config import load_station_config
from inspection.station.config import pinned_key

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from inspection.runtime.paths import FoundFile, PathOutcome
    from inspection.runtime.predictor import Predictor


commands = typer.Typer()
console = screen()
errors = screen(stderr=True)
FORMATS = ("csv", "json")
CSV_FIELDS = (
    "path",
    "verdict",
    "score",
    "threshold",
    "regions",
    "latency_ms",
    "model",
    "error",
    "warning",
)
OVERLAY_SUFFIX = "_overlay.png"
MAX_OVERLAY_NAME = 200  # bytes: file systems allow 255 per name


def _check_threshold(value: float | None) -> float | None:
    if value is not None and not 0.0 < value < 1.0:
        raise typer.BadParameter(f"must be between 0 and 1 (exclusive), got {value}")
    return value


def _check_budget(value: float | None) -> float | None:
    if value is not None and not 0.0 < value < float("inf"):
        raise typer.BadParameter(f"must be a positive number of ms, got {value}")
    return value


@commands.command("inspect")
def inspect_command(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder (with metadata.json).")],
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Image files or folders (searched recursively, following folder symlinks; "
            "the overlays folder of --out is left out)."
        ),
    ],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write results (and overlays) here.")
    ] = None,
    fmt: str = typer.Option("csv", "--format", "-f", help="Results file format: csv or json."),
    overlays: bool = typer.Option(False, "--overlays", help="Write heatmap overlay PNGs to --out."),
    threshold: float = typer.Option(
        None, "--threshold", callback=_check_threshold, help="Image threshold in (0, 1)."
    ),
    device: str = typer.Option("CPU", "--device", help="OpenVINO device."),
    refine: bool = typer.Option(
        True,
        "--refine/--no-refine",
        help="Refine NG masks with the refiner the bundle chose on its validation split "
        "(seeded from refine.yaml beside the site config).",
    ),
    budget_ms: float = typer.Option(
        None,
        "--latency-budget-ms",
        callback=_check_budget,
        help="Skip refinement when it would take an inspection past this many ms.",
    ),
    work_side: int = typer.Option(
        1024, "--work-side", min=1, help="Judge images on a copy with at most this longer side."
    ),
    public_key: Annotated[
        Path | None,
        typer.Option(
            "--public-key",
            envvar="INSPECTION_BUNDLE_PUBLIC_KEY",
            help="Pinned key: refuse the bundle unless it is signed with it (default: the key "
            "the station config pins in its trust file, core.trust_file).",
        ),
    ] = None,
    station_config: Annotated[
        Path | None,
        typer.Option(
            "--station-config",
            help="Station config whose pinned key checks the bundle (default: station.yaml "
            "in the site's configs folder).",
        ),
    ] = None,
    allow_unsigned: bool = typer.Option(
        False,
        "--allow-unsigned",
        help="Load a bundle without checking its signature (development only; announced).",
    ),
    allow_refused: bool = typer.Option(
        False,
        "--allow-refused",
        help="Run a bundle its export gate refused (it misjudged its held-out parts beyond the "
        "gate's tolerances; stations refuse it without a signed force record); announced.",
    ),
    site: str = SITE_OPTION,
    input_check: str = typer.Option(
        "refuse",
        "--input-check",
        help="Images unlike the bundle's training images (grey under a colour bundle, far "
        "smaller, another aspect ratio): refuse (listed as errors), warn (judged, with a "
        "warning) or off.",
    ),
) -> None:
    """Inspect images with a bundle; unreadable and refused files are listed as errors, never
    abort the batch."""
    # deferred: OpenVINO, not needed for --help
    from inspection.runtime.paths import find_files
    from inspection.runtime.predictor import load_inspector

    if fmt not in FORMATS:
        raise typer.BadParameter(f"must be one of {', '.join(FORMATS)}", param_hint="--format")
    try:
        check = input_check_mode(input_check)  # the rule the Inspector and station configs use
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--input-check") from exc
    if overlays and out is None:
        raise typer.BadParameter("--overlays needs --out DIR", param_hint="--overlays")
    site_config = load_site_config(site)
    refine_config = refine_config_in(site_config.configs) if refine else None
    if out is not None:
        ready_to_write(out, "--out", folder=True)  # before the batch: a bad --out costs nothing
        if not os.access(out, os.W_OK | os.X_OK):
            raise typer.BadParameter(f"{out} is not writable", param_hint="--out")
    key = _pinned_key(public_key, station_config, site_config, allow_unsigned=allow_unsigned)
    # the screen shows the results; INFO logs (bundle loaded, golden check) go to a log file
    with quiet_logs(log_dir(site_config), "inspect", verbose=verbose_requested(False)) as logs:
        inspector = load_inspector(  # a TiledInspector for a tiled bundle
            bundle,
            device=device,
            threshold=threshold,
            refiner="bundle" if refine else None,
            camera=CameraOptions(work_max_side=work_side, latency_budget_ms=budget_ms),
            input_check=check,
            refine=refine_config,
            public_key=key,  # checked on the very bytes that are compiled
        )
        _check_gate(inspector, allow_refused=allow_refused)
        found = find_files(paths, exclude=[out / "overlays"] if out is not None else [])
        if not found:
            console.print("[yellow]no image files found[/]")
            raise typer.Exit(1)
        overlay_dir = out / "overlays" if overlays and out is not None else None
        rows = _inspect(inspector, found, overlay_dir)
    _print_table(rows, inspector.model_version, display_names(found))
    if out is not None:
        target = _write_rows(rows, out, fmt)
        console.print(f"results: {target}")
    if logs is not None:
        console.print(f"logs: {logs}", soft_wrap=True, highlight=False)
    if all(row["error"] for row in rows):
        raise typer.Exit(1)  # nothing could be inspected


def _inspect(inspector: Predictor, found: list[FoundFile], overlay_dir: Path | None) -> list[dict]:
    """One result row per file, in order; overlays written into ``overlay_dir`` when given."""
    # deferred: OpenVINO, not needed for --help
    from inspection.runtime.paths import iter_paths

    targets = overlay_paths(found, overlay_dir) if overlay_dir else [None] * len(found)
    outcomes = track(
        iter_paths(inspector, [f.path for f in found]),
        total=len(found), description="inspecting", console=console, transient=True,
    )  # fmt: skip
    rows = []
    for outcome, target in zip(outcomes, targets, strict=True):
        if outcome.refused:  # decodable, but no verdict: say so as it happens, then go on
            console.print(f"[yellow]refused[/] {outcome.path}: {outcome.error}", soft_wrap=True)
        rows.append(_row(outcome, inspector.model_version, target))
    return rows


def _check_gate(inspector: Predictor, *, allow_refused: bool) -> None:
    """Stop (exit 2) on a bundle its export gate refused, unless ``--allow-refused``."""
    # deferred: station.trust pulls OpenVINO, already loaded by the inspector
    from inspection.station.trust import gate_refusal

    refusal = gate_refusal(inspector.metadata)
    if refusal is None:
        return
    refusal = escape(refusal)
    metadata = inspector.metadata
    what = f"{metadata.product}/{metadata.bundle_id} was refused by its export gate"
    if not allow_refused:
        errors.print(
            f"refused: {what}: {refusal}. Stations do not serve it; inspect with a bundle that "
            "passed, or pass --allow-refused to see what it does",
            soft_wrap=True,
        )
        raise typer.Exit(2)
    errors.print(f"[bold red]--allow-refused: {what}: {refusal}[/]", soft_wrap=True)


def _pinned_key(
    given: Path | None, station_config: Path | None, site: SiteConfig, *, allow_unsigned: bool
) -> Ed25519PublicKey | Keyring | None:
    """``--public-key``, else the key the station config pins; fails closed (exit 2) unless
    ``--allow-unsigned`` (None: checksums only)."""
    if allow_unsigned:
        errors.print("[bold red]--allow-unsigned: the bundle's signature is NOT checked[/]")
        return None
    try:
        key = load_public_key(given) if given else _station_keys(station_config or site.configs)
    except (SigningError, ConfigError) as exc:
        errors.print(f"refused: {exc}", soft_wrap=True)
        raise typer.Exit(2) from exc
    if key is None:
        errors.print(
            "refused: no pinned key to check the bundle's signature with. Pin one in the "
            "station config (core.signing_keys; 'inspection keys init' writes it), pass "
            "--public-key, or --allow-unsigned for development",
            soft_wrap=True,
        )
        raise typer.Exit(2)
    return key


def _station_keys(config: Path) -> Keyring | None:
    """The keys the station config (a file, or the folder of station.yaml) pins, if any."""
    config = config / "station.yaml" if config.is_dir() else config
    return pinned_key(load_station_config(config).core) if config.is_file() else None


def overlay_paths(found: list[FoundFile], folder: Path) -> list[Path]:
    """One overlay file per input named after its relative path (``lineA/cam1/000.png``:
    ``lineA_cam1_000.png_overlay.png``), ``-2``, ``-3``, ... when already taken."""
    taken: set[str] = set()
    paths = []
    for file in found:
        stem = file.relative.replace("/", "_").lstrip(".") or "image"
        limit = MAX_OVERLAY_NAME - len(OVERLAY_SUFFIX)
        stem = stem.encode()[-limit:].decode(errors="ignore")  # the tail: keeps the file name
        name, count = stem + OVERLAY_SUFFIX, 1
        while name.lower() in taken:  # case-insensitive file systems too
            count += 1
            name = f"{stem}-{count}{OVERLAY_SUFFIX}"
        taken.add(name.lower())
        paths.append(folder / name)
    return paths


def _row(outcome: PathOutcome, model: str, overlay: Path | None) -> dict:
    row = dict.fromkeys(CSV_FIELDS, "")
    row.update(path=str(outcome.path), model=model, refused=outcome.refused)
    result = outcome.result
    if result is None:
        row["error"] = outcome.error or "not inspected"
        return row
    row.update(
        verdict=result.verdict,
        score=round(result.score, 6),
        threshold=result.threshold,
        regions=len(result.regions),
        latency_ms=round(result.latency_ms, 3),
        timings_ms={name: round(value, 3) for name, value in result.timings_ms.items()},
        details=result.summary(),
    )
    if result.input_warnings:
        row["warning"] = "; ".join(result.input_warnings)
    if overlay is not None and outcome.image is not None:
        row["overlay"] = str(write_rgb_png(overlay, render_overlay(outcome.image, result)))
    return row


def display_names(found: list[FoundFile]) -> list[str]:
    """Table names: paths below their folder argument when unique in the run, else as given."""
    relative = [file.relative for file in found]
    if len(set(relative)) == len(relative):
        return relative
    return [str(file.path) for file in found]


def _print_table(rows: list[dict], model: str, names: list[str]) -> None:
    table = Table("file", "verdict", "score", "regions", "latency ms", "error", title=model)
    table.columns[0].overflow = "fold"  # wrapped, never cut: the name's tail tells files apart
    for row, name in zip(rows, names, strict=True):
        verdict = row["verdict"]
        style = {"NG": "bold red", "OK": "green"}.get(verdict, "")
        table.add_row(
            name,
            f"[{style}]{verdict}[/]" if style else "-",
            f"{row['score']:.4f}" if row["score"] != "" else "-",
            str(row["regions"]),
            f"{row['latency_ms']:.1f}" if row["latency_ms"] != "" else "-",
            f"[red]{row['error']}[/]" if row["error"] else "",
        )
    console.print(table)
    counts = {k: sum(1 for r in rows if r["verdict"] == k) for k in ("OK", "NG")}
    refused = sum(1 for r in rows if r.get("refused"))
    errors = sum(1 for r in rows if r["error"]) - refused
    warned = sum(1 for r in rows if r.get("warning"))
    console.print(
        f"{len(rows)} files: {counts['OK']} OK, {counts['NG']} NG, {refused} refused, "
        f"{errors} errors" + (f"; {warned} judged despite an input warning" if warned else "")
    )


def _write_rows(rows: list[dict], out: Path, fmt: str) -> Path:
    target = out / f"results.{fmt}"
    if fmt == "json":
        target.write_text(json.dumps(rows, indent=2, default=str), encoding="utf-8")
        return target
    with open(target, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*CSV_FIELDS, "overlay"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return target

"""``inspection data``: generate the demo datasets, check a dataset, draw a contact sheet."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from PIL import Image
from rich.table import Column, Table

from inspection.cli._site import group, site_option
from inspection.cli.console import (
    file_progress,
    log_dir,
    quiet_logs,
    ready_to_write,
    screen,
    verbose_requested,
)
from inspection.core.config import load_site_config
from inspection.core.fingerprint import shown_name
from inspection.core.images import SIXTEEN_BIT_MODES
from inspection.core.product_config import (
    load_model_config,
    load_product_config,
    product_config_path,
)
from inspection.data.check import CheckReport, check_dataset
from inspection.data.dataset import load_dataset
from inspection.data.demo import demo_image_count, write_demo
from inspection.data.hires import PlateCounts, write_plate
from inspection.data.preview import contact_sheet
from inspection.data.summary import summarise, summary_markdown

if TYPE_CHECKING:
    from inspection.data.dataset import Dataset

data_app = group("data", "Datasets: demo generator, validation, previews.")
console = screen()
OUT_DIR_OPTION = typer.Option(Path("datasets"), "--out", help="Folder to write products into.")
SEED_OPTION = typer.Option(0, "--seed", min=0, help="Random seed; same seed, same bytes.")
DATASET_ARG = typer.Argument(..., help="MVTec-style product folder or a folder-spec .yaml.")
JSON_OPTION = typer.Option(None, "--json", help="Also write the report as JSON here.")
IMAGE_BITS_OPTION = typer.Option(
    None,
    "--image-bits",
    min=8,
    max=16,
    help="The product's image_bits: 16-bit images are checked against it instead of being "
    "warned about as 12-bit data (default: image_bits of `products/<folder name>.yaml` in the "
    "site's configs, if that file exists).",
)
DATASETS_ARG = typer.Argument(..., help="Dataset folders or folder-spec .yaml files.")
PREVIEW_BITS_OPTION = typer.Option(
    None,
    "--image-bits",
    min=8,
    max=16,
    help="Significant bits of the 16-bit images of every dataset given (12: a 12-bit camera's "
    "0..4095); default: each product's image_bits in `products/<folder name>.yaml` of the "
    "site's configs, else 16 (the high byte).",
)
REPORT_DIR_OPTION = typer.Option(Path("reports/data"), "--out", help="Report folder.")
SITE_OPTION = site_option("Site config YAML; its configs folder holds `products/<product>.yaml`")
SHEET_OPTION = typer.Option(Path("reports/data/demo_samples.png"), "--out", help="PNG to write.")


@data_app.command("demo")
def demo(
    out: Path = OUT_DIR_OPTION,
    seed: int = SEED_OPTION,
    size: int = typer.Option(256, "--size", min=32, help="Image side in pixels."),
    products: str = typer.Option(
        "brick,grass,gravel",
        "--products",
        help="Comma-separated products to write (also: weave, tissue, part).",
    ),
    n_train: int = typer.Option(60, "--train", min=1, help="Training (good) images per product."),
    n_test_good: int | None = typer.Option(
        None,
        "--test-good",
        min=0,
        help="Good test images per product (default 10; weave, brick, grass, gravel 60).",
    ),
    n_per_defect: int | None = typer.Option(
        None,
        "--per-defect",
        min=0,
        help="Test images per defect type (default 6; weave, brick, grass, gravel 52).",
    ),
    n_calibration: int | None = typer.Option(
        None,
        "--calibration",
        min=0,
        help="Good calibration images (calibration/good) per product (default 0; brick, "
        "grass, gravel 160).",
    ),
) -> None:
    """Write the deterministic demo products (MVTec AD layout) from scikit-image textures."""
    names = [p.strip() for p in products.split(",") if p.strip()]
    total = demo_image_count(names, n_train, n_test_good, n_per_defect, None, n_calibration)
    logs_to = log_dir(load_site_config(None))
    with (
        quiet_logs(logs_to, "data-demo", verbose=verbose_requested(False)) as logs,
        file_progress() as progress,
    ):
        task = progress.add_task("writing demo images", total=total)
        roots = write_demo(
            out,
            names,
            seed=seed,
            size=size,
            n_train=n_train,
            n_test_good=n_test_good,
            n_test_per_defect=n_per_defect,
            n_calibration=n_calibration,
            on_image=lambda _path: progress.advance(task),
        )
    for root in roots:
        console.print(f"wrote [bold]{root}[/]")
    if logs is not None and logs.stat().st_size:
        console.print(f"library logs and warnings: {logs}", soft_wrap=True, highlight=False)


@data_app.command("hires")
def hires(
    out: Path = OUT_DIR_OPTION,
    seed: int = SEED_OPTION,
    size: int = typer.Option(2048, "--size", min=256, help="Image side in pixels."),
    n_train: int = typer.Option(30, "--train", min=1, help="Training (good) images."),
    n_test_good: int = typer.Option(15, "--test-good", min=0, help="Good test images."),
    n_per_defect: int = typer.Option(5, "--per-defect", min=0, help="Test images per defect type."),
) -> None:
    """Write the high-resolution ``plate`` product (MVTec layout + reference.png)."""
    counts = PlateCounts(n_train, n_test_good, n_per_defect)
    with file_progress() as progress:
        task = progress.add_task(f"writing {size} px plate images", total=counts.total)
        root = write_plate(
            out, seed=seed, size=size, counts=counts, on_image=lambda _p: progress.advance(task)
        )
    console.print(f"wrote [bold]{root}[/] ({counts.total} images and reference.png)")


@data_app.command("check")
def check(
    path: Path = DATASET_ARG,
    json_out: Path | None = JSON_OPTION,
    image_bits: int | None = IMAGE_BITS_OPTION,
    site: Path | None = SITE_OPTION,
) -> None:
    """Validate a dataset; exit 0 when it is usable, 1 when problems were found."""
    if json_out is not None:
        ready_to_write(json_out, "--json")  # before the check: a bad path must not cost it
    dataset = load_dataset(path)
    configs = load_site_config(site).configs
    product_file = product_config_path(dataset.name, configs)
    declared = _declared_image_bits(dataset.name, configs) if image_bits is None else None
    product = load_product_config(dataset.name, configs)
    tiling = product.tiling if product_file.is_file() else None
    image_range = product.image_range
    # the false-reject budget ``train --product`` sets its threshold at
    model = load_model_config("patchcore", product=dataset.name, directory=configs)
    budget = model.operating_point.budget
    report = check_with_progress(
        dataset, "reading", image_bits=image_bits or declared, image_range=image_range,
        product_file=product_file, budget=budget, tiling=tiling,
    )  # fmt: skip
    if declared is not None and report.channels.keys() & set(SIXTEEN_BIT_MODES):  # 8-bit: unused
        where = f"products/{product_file.name} in {configs}"
        console.print(f"image_bits: {declared} ({where})", highlight=False)
    _print_report(report)
    if json_out is not None:
        json_out.write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    if not report.ok:
        raise typer.Exit(1)


def check_with_progress(dataset: Dataset, doing: str, **options: Any) -> CheckReport:
    """``check_dataset(dataset, **options)`` under a bar over its files (``doing`` names it)."""
    with file_progress() as progress:
        task = progress.add_task(f"{doing} {dataset.name}", total=len(dataset.samples))
        return check_dataset(dataset, on_file=lambda _path: progress.advance(task), **options)


def _declared_image_bits(product: str, configs: Path) -> int | None:
    """``image_bits`` of ``products/<product>.yaml`` in ``configs`` (None: no such file)."""
    if not product_config_path(product, configs).is_file():
        return None
    return load_product_config(product, configs).image_bits


@data_app.command("sheet")
def sheet(
    paths: list[Path] = DATASETS_ARG,
    out: Path = SHEET_OPTION,
    n_good: int = typer.Option(2, "--good", min=0, help="Good images per row."),
    tile: int = typer.Option(160, "--tile", min=32, help="Tile side in pixels."),
    image_bits: int | None = PREVIEW_BITS_OPTION,
    site: Path | None = SITE_OPTION,
) -> None:
    """Draw a contact sheet: per dataset, good images and one per defect with mask outlines."""
    ready_to_write(out, "--out")
    datasets = [load_dataset(p) for p in paths]
    bits, ranges = _image_bits_by_name(datasets, image_bits, site), _image_ranges(datasets, site)
    sheet = contact_sheet(datasets, n_good=n_good, tile=tile, image_bits=bits, image_ranges=ranges)
    Image.fromarray(sheet).save(out)
    console.print(f"wrote [bold]{out}[/]")


@data_app.command("summary")
def summary(
    paths: list[Path] = DATASETS_ARG,
    out: Path = REPORT_DIR_OPTION,
    image_bits: int | None = PREVIEW_BITS_OPTION,
    site: Path | None = SITE_OPTION,
) -> None:
    """Write summary.json and summary.md (counts, mask coverage, trivial baselines)."""
    ready_to_write(out, "--out", folder=True)
    datasets = [load_dataset(p) for p in paths]
    bits, ranges = _image_bits_by_name(datasets, image_bits, site), _image_ranges(datasets, site)
    result = summarise(datasets, bits, ranges)
    (out / "summary.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    names = " ".join(str(p) for p in paths)
    title = f"# Datasets\n\nWritten by `inspection data summary {names} --out {out}`.\n\n"
    (out / "summary.md").write_text(title + summary_markdown(result), encoding="utf-8")
    console.print(f"wrote [bold]{out / 'summary.md'}[/] and summary.json")


def _image_bits_by_name(
    datasets: Sequence[Dataset], image_bits: int | None, site: Path | None
) -> dict[str, int]:
    """Per dataset name: ``image_bits`` when given, else the product's declared one if any."""
    if image_bits is not None:
        return {d.name: image_bits for d in datasets}
    configs = load_site_config(site).configs
    declared = {d.name: _declared_image_bits(d.name, configs) for d in datasets}
    return {name: bits for name, bits in declared.items() if bits is not None}


def _image_ranges(datasets: Sequence[Dataset], site: Path | None) -> dict[str, tuple[float, float]]:
    """Per dataset name: the product's declared ``image_range``, where it declares one."""
    configs = load_site_config(site).configs
    ranges = {d.name: load_product_config(d.name, configs).image_range for d in datasets}
    return {name: value for name, value in ranges.items() if value is not None}


def _print_report(report) -> None:
    console.print(f"{report.name}: {report.layout} layout", highlight=False)
    counts = _table(f"{report.name}: images", "split", "defect type", "images", counts=1)
    for split, per_type in report.counts.items():
        for defect, n in per_type.items():
            counts.add_row(split, defect, str(n))
    console.print(counts)

    sizes = _table("image sizes and modes", "size (w x h)", "images", counts=1)
    for (w, h), n in report.sizes.items():
        sizes.add_row(f"{w}x{h}", str(n))
    for mode, n in report.channels.items():
        sizes.add_row(f"mode {mode}", str(n))
    console.print(sizes)

    if report.coverage:
        title = "mask coverage (fraction of defect pixels)"
        cov = _table(title, "defect type", "masks", "mean", "min", "max", counts=4)
        for defect, c in report.coverage.items():
            cov.add_row(defect, str(c.masks), f"{c.mean:.4f}", f"{c.min:.4f}", f"{c.max:.4f}")
        console.print(cov)

    if report.problems:
        table = _table(f"{len(report.problems)} problem(s)", "severity", "file", "problem")
        for problem in report.problems:
            colour = "red" if problem.severity == "error" else "yellow"
            table.add_row(
                f"[{colour}]{problem.severity}[/]",
                _relative(problem.path, report.root),
                problem.message,
            )
        console.print(table)
    verdict = "[green]OK[/]" if report.ok else f"[red]{len(report.errors)} error(s)[/]"
    console.print(f"{report.name}: {verdict}, {len(report.warnings)} warning(s)")
    if report.budget_note:
        console.print(f"[yellow]note:[/] {report.budget_note}")


def _table(title: str, *columns: str, counts: int = 0) -> Table:
    """A left-titled table whose last ``counts`` columns are figures (right-aligned)."""
    split = len(columns) - counts
    right = [Column(name, justify="right") for name in columns[split:]]
    return Table(*columns[:split], *right, title=title, title_justify="left")


def _relative(path: Path, root: Path) -> str:
    try:
        return shown_name(path.relative_to(root).as_posix() or ".")
    except ValueError:
        return shown_name(path)

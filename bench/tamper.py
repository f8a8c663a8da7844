"""Attacks on the chain of custody, one row each, and what the station served.

Builds a small signed site in a scratch folder (a tiny OpenVINO bundle, a signed threshold of
0.6, a station pinning the key) and puts one attack per row to it — a forged live pointer,
tuning pick, ROI and refiner, a gate-refused bundle without its force record, altered
validation scores, an altered SAM refiner bundle (a random-init MobileSAM export: needs torch)
— recording what the station served. Writes ``reports/security/attacks.json`` and ``.md``
(keeping the recorded rows of attacks that are tests only now, each with its run's date);
exit code 1 unless every row reads "refused, last good kept". Each row is also a test
(tests/station/test_signed_decisions.py, tests/refine/test_sam.py).

    python bench/tamper.py --attacks
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from _report import load_average, previous_report, save_report, table
from _shared import write_mean_bundle

from inspection.core import signing
from inspection.core.bundle import read_bundle_metadata, write_bundle_metadata
from inspection.core.config import to_mapping
from inspection.core.errors import BundleError
from inspection.core.export_gate import BundleFigures, ExportRecord, GateRecord
from inspection.core.refinement import RefinementChoice
from inspection.core.registry import Registry
from inspection.core.roi import RoiSpec
from inspection.core.validation_scores import ValidationScores, write_validation_scores
from inspection.dashboard.health import model_health
from inspection.refine.bundle import read_refiner_metadata, write_refiner_metadata
from inspection.refine.config import RefineConfig, SamConfig
from inspection.refine.factory import build_refiner
from inspection.runtime import tuning
from inspection.runtime.hardware import cpu_info, load_1m
from inspection.station.live import LiveModels, station_loader
from inspection.station.selection import TunedSelector

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "reports" / "security"

ATTACK_PRODUCT = "widget"
GOOD_THRESHOLD = 0.6
GOOD_BUNDLE = "v0001-fp32"


@dataclasses.dataclass(frozen=True)
class AttackSite:
    """A scratch site: registry (its machine holds the site key), a signed live bundle with a
    signed threshold of 0.6, and a station (``LiveModels``) pinning the key, loaded."""

    root: Path
    models: Any
    key: Any


def attack_site(root: Path) -> AttackSite:
    registry = Registry(root / "var" / "registry")
    keys = signing.init_keys(signing.site_keys_dir(registry.root))
    (root / "export").mkdir(parents=True)
    scores = ValidationScores((0.1, 0.2, 0.9), (0, 0, 1), "test", ("good", "good", "crack"))
    write_validation_scores(root / "export", scores)
    bundle = write_mean_bundle(root / "export", input_size=(32, 32), product=ATTACK_PRODUCT)
    signing.sign_bundle(bundle, signing.load_private_key(keys.private))
    registry.bundles.add_bundle(ATTACK_PRODUCT, bundle, GOOD_BUNDLE)
    registry.journal.promote(ATTACK_PRODUCT, GOOD_BUNDLE, actor="qa", reason="first")
    registry.journal.set_threshold(ATTACK_PRODUCT, GOOD_THRESHOLD, actor="qa", reason="validation")
    key = signing.load_public_key(keys.public)
    loader = station_loader(RefineConfig(method="none"), public_key=key)
    selector = TunedSelector(registry, tune_on_load=False, public_key=key)
    models = LiveModels(registry, (ATTACK_PRODUCT,), loader=loader, selector=selector,
                        public_key=key)  # fmt: skip
    models.refresh()
    return AttackSite(root, models, key)


def signed_bundle(site: AttackSite, bundle_id: str, model_version: str, **fields: Any) -> str:
    """Another bundle of the product, signed with the site key (what an export on the set-up
    machine writes), added to the registry; ``fields``: ``BundleMetadata`` fields."""
    folder = write_mean_bundle(site.root / bundle_id, input_size=(32, 32), product=ATTACK_PRODUCT,
                               bundle_id=bundle_id, model_version=model_version, **fields)  # fmt: skip
    registry = site.models.registry
    signing.sign_bundle(
        folder, signing.load_private_key(signing.site_keys_dir(registry.root) / "site-signing.key")
    )
    registry.bundles.add_bundle(ATTACK_PRODUCT, folder, bundle_id)
    return bundle_id


def tuning_elsewhere(site: AttackSite) -> None:
    """This CPU's tuning record rewritten to pick a signed bundle of another model version
    (an old one, never gated against the live model)."""
    other = signed_bundle(site, "v0000-fp32", f"{ATTACK_PRODUCT}/v0000")
    measured = tuning.PrecisionMeasurement(other, "fp32", 1.0, 1.0, 100.0, True)
    record = tuning.TuningRecord(
        tuning.TUNING_SCHEMA, ATTACK_PRODUCT, GOOD_BUNDLE, f"{ATTACK_PRODUCT}/v0001", other, "fp32",
        (measured,), cpu_info(), load_1m(), "2026-01-01T00:00:00+00:00",
    )  # fmt: skip
    path = tuning.tuning_path(site.models.registry, ATTACK_PRODUCT, cpu_info())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_mapping(record)), encoding="utf-8")


def gate_refused_forced(site: AttackSite) -> None:
    """A bundle the export gate refused, registered and promoted (``export --force
    --promote``) with no signed force record naming it."""
    figures = BundleFigures(0.2, 0.5, 0.6, None, None, None, 0, n_good=10, n_defective=10)
    gate = GateRecord(False, figures, figures, failures=("miss rate 50 % > 5 %",), forced=True)
    bundle = signed_bundle(
        site, "v0002-int8", f"{ATTACK_PRODUCT}/v0001",
        metrics=ExportRecord(gate=gate).to_mapping(),
    )  # fmt: skip
    site.models.registry.journal.promote(ATTACK_PRODUCT, bundle, actor="someone", reason="forced")


def altered_live_pointer(site: AttackSite) -> None:
    """The signed live.json edited to point at another signed bundle (digest updated too)."""
    registry = site.models.registry
    other = signed_bundle(site, "v0002-fp32", f"{ATTACK_PRODUCT}/v0002")
    live = registry.root / ATTACK_PRODUCT / "live.json"
    row = json.loads(live.read_text(encoding="utf-8"))
    row |= {
        "bundle_id": other,
        "digest": signing.bundle_digest(registry.bundles.bundle_dir(ATTACK_PRODUCT, other)),
    }
    live.write_text(json.dumps(row), encoding="utf-8")


def altered_roi(site: AttackSite) -> None:
    """The product config's ROI edited to cut out where defects show, so the next export
    (signed on the set-up machine) carries it, promoted; an unsigned ROI decision appended to
    match it."""
    blind = RoiSpec((32, 32), include=(((0.0, 0.0), (8.0, 0.0), (8.0, 8.0), (0.0, 8.0)),))
    registry = site.models.registry
    bundle = signed_bundle(site, "v0002-fp32", f"{ATTACK_PRODUCT}/v0002", roi=blind)
    with (registry.root / ATTACK_PRODUCT / "decisions.jsonl").open("a", encoding="utf-8") as out:
        out.write(json.dumps({
            "kind": "roi", "product": ATTACK_PRODUCT, "number": 1, "value": blind.to_mapping(),
            "actor": "qa", "reason": "looks signed", "created_at": "2026-01-01T00:00:00+00:00",
        }) + "\n")  # fmt: skip
    registry.journal.promote(ATTACK_PRODUCT, bundle, actor="someone", reason="new ROI")


def altered_refiner(site: AttackSite) -> None:
    """A new signed bundle's refiner choice edited after signing (no refinement -> random
    walker, with a made-up measurement; checksums recomputed), then promoted: the refiner
    reshapes every NG region the line and the MES receive."""
    registry = site.models.registry
    bundle = signed_bundle(site, "v0002-fp32", f"{ATTACK_PRODUCT}/v0002")
    folder = registry.bundles.bundle_dir(ATTACK_PRODUCT, bundle)
    choice = RefinementChoice("random_walker", pixel_f1={"raw": 0.1, "random_walker": 0.9})
    write_bundle_metadata(
        folder, dataclasses.replace(read_bundle_metadata(folder), refinement=choice)
    )
    registry.journal.promote(ATTACK_PRODUCT, bundle, actor="someone", reason="better masks")


def served_row(name: str, attack: Any, root: Path) -> dict[str, Any]:
    """A decision attack on a serving station: it must keep the good bundle at 0.6 and name
    the refused record in ``status()["refused"]`` (``/healthz``, Prometheus)."""
    site = attack_site(root)
    attack(site)
    site.models.refresh()
    status = site.models.status()[ATTACK_PRODUCT]
    kept = status["served_bundle_id"] == GOOD_BUNDLE and status["threshold"] == GOOD_THRESHOLD
    refused = "; ".join(f"{k}: {v}" for k, v in status["refused"].items()) or status["problem"]
    what = f"served {status['served_bundle_id']} at {status['threshold']}; refused {refused}"
    return _row(name, attack.__doc__, kept and bool(refused), what)


def altered_validation_scores(root: Path) -> dict[str, Any]:
    """The live bundle's validation_scores.json rewritten to flatter the model (every defect
    scored 1.0, every good part 0.0) and every checksum recomputed: the dashboard's health
    figures come from it."""
    site = attack_site(root)
    registry = site.models.registry
    bundle = registry.bundles.bundle_dir(ATTACK_PRODUCT, GOOD_BUNDLE)
    flattering = ValidationScores((0.0, 0.0, 1.0), (0, 0, 1), "test", ("good", "good", "crack"))
    write_validation_scores(bundle, flattering)
    write_bundle_metadata(bundle, read_bundle_metadata(bundle))
    health = model_health(registry, ATTACK_PRODUCT)
    refused = "refused" in health.problem and health.n_good == 0
    return _row(
        "altered validation scores", altered_validation_scores.__doc__, refused,
        f"dashboard health: {health.problem[:220]}",
    )  # fmt: skip


def altered_sam_refiner(root: Path, exported: Path | None = None) -> dict[str, Any]:
    """A SAM refiner bundle signed with the site key (a random-init MobileSAM export) whose
    encoder weights were overwritten and every checksum recomputed, then loaded with the
    station's pinned key (SAM reshapes every NG region the line and the MES receive)."""
    site = attack_site(root / "site")
    sam = root / "mobile_sam"
    if exported is None:
        from inspection.training.sam_export import export_sam_bundle  # torch: the export side

        export_sam_bundle(sam, backend="vit_t", random_init=True)
    else:
        shutil.copytree(exported, sam)
    key = signing.site_keys_dir(site.models.registry.root) / "site-signing.key"
    signing.sign_bundle(sam, signing.load_private_key(key))
    config = RefineConfig(method="sam", sam=SamConfig(bundle=sam, allow_random_weights=True))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # random weights: said in the row
        genuine = build_refiner(config, public_key=site.key).name
        metadata = read_refiner_metadata(sam)
        encoder = sam / Path(metadata.encoder_file).with_suffix(".bin")
        data = bytearray(encoder.read_bytes())
        data[len(data) // 4 : len(data) // 2] = bytes(len(data) // 2 - len(data) // 4)
        encoder.write_bytes(bytes(data))
        write_refiner_metadata(sam, metadata)  # every checksum recomputed
        try:
            said = f"loaded as {build_refiner(config, public_key=site.key).name}"
        except BundleError as exc:
            said = f"refused: {' '.join(str(exc).split())}"
    refused = genuine == "sam-random" and "bad bundle signature" in said
    what = f"the signed export loaded ({genuine}); after the swap: {said[:200]}"
    return _row("altered SAM refiner bundle", altered_sam_refiner.__doc__, refused, what)


def _row(attack: str, how: str | None, refused: bool, what: str) -> dict[str, Any]:
    outcome = "refused, last good kept" if refused else "SERVED"
    return {"attack": attack, "how": " ".join((how or "").split()), "outcome": outcome,
            "what": what}  # fmt: skip


def _recorded_only(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The recorded report's rows of attacks this run did not put (tests only now), each
    with the date of the run that put it."""
    earlier = previous_report(OUT, "attacks")
    done = {row["attack"] for row in rows}
    return [
        {**row, "when": row.get("when", earlier["when"])}
        for row in earlier.get("rows", [])
        if row["attack"] not in done
    ]


def attacks() -> int:
    """One row per attack (``--attacks``); exit code 1 unless every row was refused."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="attacks-") as scratch:
        root = Path(scratch)
        for name, attack in (
            ("tuning record pointing elsewhere", tuning_elsewhere),
            ("gate-refused --force (no signed force record)", gate_refused_forced),
            ("altered live pointer", altered_live_pointer),
            ("altered ROI", altered_roi),
            ("altered refiner", altered_refiner),
        ):
            rows.append(served_row(name, attack, root / attack.__name__))
        rows.append(altered_validation_scores(root / "scores"))
        rows.append(altered_sam_refiner(root / "sam"))
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rows = [{**row, "when": when} for row in rows]
    report = {"when": when, "load": load_average(), "rows": rows + _recorded_only(rows)}
    lines = [
        "# Attacks on the chain of custody, one row each",
        "",
        f"Written by `python bench/tamper.py --attacks` ({report['when']}, load {report['load']}) "
        "on a scratch site: a tiny signed bundle, a signed threshold of 0.6, a station pinning "
        "the site key. Each row is also a test. The forged thresholds, the file swap between "
        "check and compile, `inspect` without a key and a replaced key file are tests only now: "
        "their rows are the last bench run that put them (its date in the row).",
        "",
        *table(
            ("attack", "how", "station", "what it did", "run"),
            (
                (r["attack"], r["how"], r["outcome"], r["what"].replace("|", "/"), r["when"])
                for r in report["rows"]
            ),
        ),
        "",
        "",
    ]
    save_report(OUT, "attacks", report, "\n".join(lines))
    print("\n".join(lines))
    return 0 if all(r["outcome"] == "refused, last good kept" for r in report["rows"]) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attacks", action="store_true", help="One row per attack (the only run).")
    parser.parse_args()
    return attacks()


if __name__ == "__main__":
    raise SystemExit(main())

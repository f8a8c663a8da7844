"""Model config layers and validation: unknown keys, bad types, unknown kinds, exact messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from inspection.core.config import CHECKOUT_CONFIGS
from inspection.core.errors import ConfigError
from inspection.core.product_config import (
    MODEL_KINDS,
    ModelConfig,
    load_model_config,
    load_product_config,
    model_config_from_mapping,
    model_defaults_path,
    parse_override,
)

VALID_KEYS = (
    "backbone, bank_augment, batch_size, calibration_folds, coreset_sampling_ratio, covariance, "
    "global_context, image_bits, image_range, image_score, image_score_blur, image_size, kind, "
    "knn_rank, local_statistics, max_epochs, memory_bank_max, n_features, num_neighbors, "
    "num_workers, operating_point, rows_budget_gb, seed, supervised, val_fraction"
)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"kind": "patchcore", "colour": "red"},
            f"m.yaml: unknown key(s) 'colour'; valid keys: {VALID_KEYS}",
        ),
        (
            {"kind": "patchcore", "backbone": {"layer": ["blocks.2"]}},
            "m.yaml.backbone: unknown key(s) 'layer'; valid keys: layers, name, weights, weights_file",
        ),
        (
            {"kind": "patchcore", "batch_size": "8"},
            "m.yaml.batch_size: expected an integer, got '8'",
        ),
        ({"kind": "patchcore", "image_size": [256]}, "m.yaml.image_size: expected 2 items, got 1"),
        (
            {"kind": "patchcore", "image_size": [100, 100]},
            "m.yaml: image_size: must be multiples of 32 (backbone stride), got [100, 100]",
        ),
        (
            {"kind": "patchcore", "coreset_sampling_ratio": 0},
            "m.yaml: coreset_sampling_ratio: must be in (0, 1]",
        ),
        ({"kind": "stfpm", "max_epochs": 0}, "m.yaml: max_epochs: must be at least 1"),
        ({"kind": "stfpm", "val_fraction": 1.0}, "m.yaml: val_fraction: must be in [0, 1)"),
        (
            {"kind": "spade"},
            "m.yaml: unknown model kind 'spade'; valid kinds: patchcore, stfpm, padim",
        ),
        (
            {"kind": "padim", "n_features": 0},
            "m.yaml: n_features: must be at least 1 channel, or null for every channel",
        ),
        (
            {"kind": "patchcore", "n_features": 100},
            "m.yaml: n_features: only a padim model keeps a channel subset (this is patchcore); "
            "remove it",
        ),
        (
            {"kind": "padim", "covariance": "shrunk"},
            "m.yaml: covariance: unknown estimator 'shrunk'; valid: ridge, ledoit_wolf, oas",
        ),
        (
            {"kind": "stfpm", "covariance": "oas"},
            "m.yaml: covariance: only a padim model fits Gaussians (this is stfpm); remove it",
        ),
        (
            {"kind": "patchcore", "operating_point": {"budgt": 0.01}},
            "m.yaml.operating_point: unknown key(s) 'budgt'; valid keys: budget, max_miss, "
            "miss_bound, policy",
        ),
        (
            {"kind": "patchcore", "operating_point": {"budget": 0.9}},
            "m.yaml: operating_point.budget: must be in (0, 0.5], got 0.9",
        ),
        (
            {"kind": "patchcore", "calibration_folds": 1},
            "m.yaml: calibration_folds: must be 0 (off) or at least 2",
        ),
        (
            {"kind": "patchcore", "backbone": {"layers": []}},
            "m.yaml: backbone.layers: give at least one feature layer",
        ),
        (
            {"kind": "patchcore", "local_statistics": "sometimes"},
            "m.yaml.local_statistics: 'sometimes' fits none of "
            "typing.Union[bool, typing.Literal['auto']]",
        ),
        (
            {"kind": "patchcore", "knn_rank": 0},
            "m.yaml: knn_rank: must be at least 1 dimension, or null for the exact kNN",
        ),
    ],
)
def test_bad_model_configs_are_rejected_with_the_key(data: dict, message: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        model_config_from_mapping(data, where="m.yaml")
    assert str(excinfo.value) == message


def test_unknown_kind_is_a_value_error_listing_valid_kinds() -> None:
    with pytest.raises(
        ValueError, match=r"^unknown model kind 'spade'; valid kinds: patchcore, stfpm, padim$"
    ):
        load_model_config("spade")


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_shipped_yaml_configs_load(kind: str) -> None:
    config = load_model_config(kind, product="brick")
    assert isinstance(config, ModelConfig)
    assert config.kind == kind
    assert config.backbone.name == "tf_efficientnet_lite0"


def test_layers_merge_in_order(tmp_path: Path) -> None:
    override = tmp_path / "o.yaml"
    override.write_text("batch_size: 4\nbackbone: {weights: random}\n", encoding="utf-8")
    config = load_model_config(
        "patchcore",
        product="brick",
        config_file=override,
        overrides=["batch_size=2", "image_size=[64, 96]"],
    )
    assert config.batch_size == 2  # --set beats --config
    assert config.backbone.weights == "random"  # nested merge keeps the other backbone keys
    assert config.backbone.layers == ("blocks.2", "blocks.4")
    assert config.image_size == (64, 96)


def test_product_config_rejects_unknown_model_section(tmp_path: Path) -> None:
    (tmp_path / "products").mkdir()
    (tmp_path / "products" / "widget.yaml").write_text("models: {spade: {}}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="unknown model kind 'spade'"):
        load_product_config("widget", tmp_path)


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("max_epochs=5", {"max_epochs": 5}),
        ("backbone.weights=random", {"backbone": {"weights": "random"}}),
        ("image_size=[64, 64]", {"image_size": [64, 64]}),
    ],
)
def test_parse_override(item: str, expected: dict) -> None:
    assert parse_override(item) == expected


@pytest.mark.parametrize("item", ["max_epochs", "=5"])
def test_parse_override_needs_key_and_value(item: str) -> None:
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_override(item)


def test_unknown_global_component_is_rejected() -> None:
    from inspection.core.product_config import model_config_from_mapping

    with pytest.raises(ConfigError, match=r"global_context.*unknown components \['shape'\]"):
        model_config_from_mapping({"kind": "patchcore", "global_context": ["colour", "shape"]})


def test_product_operating_point_applies_to_every_model_kind(tmp_path: Path) -> None:
    (tmp_path / "products").mkdir()
    (tmp_path / "products" / "widget.yaml").write_text(
        "operating_point: {budget: 0.02}\nmodels: {stfpm: {operating_point: {budget: 0.05}}}\n",
        encoding="utf-8",
    )
    patchcore = load_model_config("patchcore", product="widget", directory=tmp_path)
    stfpm = load_model_config("stfpm", product="widget", directory=tmp_path)
    assert (patchcore.operating_point.policy, patchcore.operating_point.budget) == (
        "false_reject_budget",
        0.02,
    )
    assert stfpm.operating_point.budget == 0.05  # a model section beats the product's


def test_product_operating_point_rejects_unknown_keys(tmp_path: Path) -> None:
    (tmp_path / "products").mkdir()
    (tmp_path / "products" / "widget.yaml").write_text(
        "operating_point: {polcy: f1}\n", encoding="utf-8"
    )
    with pytest.raises(ConfigError, match=r"operating_point: unknown key.*'polcy'"):
        load_product_config("widget", tmp_path)


@pytest.mark.parametrize(
    ("yaml_value", "expected", "mode"),
    [
        ("true", True, "on"),
        ("on", True, "on"),  # YAML 1.1: on/off/yes/no are booleans
        ("yes", True, "on"),
        ("false", False, "off"),
        ("off", False, "off"),
        ("auto", "auto", "auto"),
    ],
)
def test_local_statistics_from_yaml(
    yaml_value: str, expected: bool | str, mode: str, tmp_path: Path
) -> None:
    override = tmp_path / "o.yaml"
    override.write_text(f"local_statistics: {yaml_value}\n", encoding="utf-8")
    from_file = load_model_config("patchcore", config_file=override)
    from_set = load_model_config("patchcore", overrides=[f"local_statistics={yaml_value}"])
    assert from_file.local_statistics == from_set.local_statistics == expected
    assert from_file.local_statistics_mode == mode


def test_local_statistics_is_off_by_default() -> None:
    config = model_config_from_mapping({"kind": "patchcore"})
    assert config.local_statistics is False and config.local_statistics_mode == "off"


@pytest.mark.parametrize("value", ["Auto", "sometimes", 1, None])
def test_local_statistics_rejects_anything_else_naming_the_key(value: object) -> None:
    with pytest.raises(ConfigError, match=r"^m\.yaml\.local_statistics: .*fits none of"):
        model_config_from_mapping({"kind": "patchcore", "local_statistics": value}, where="m.yaml")


def test_a_site_without_model_defaults_uses_the_checkouts(tmp_path: Path) -> None:
    """The site folder's products/ with the checkout's models/ (not ModelConfig's own
    defaults, which differ: local_statistics false, image_score patch)."""
    (tmp_path / "products").mkdir()
    (tmp_path / "products" / "widget.yaml").write_text("models: {patchcore: {batch_size: 3}}\n")
    config = load_model_config("patchcore", product="widget", directory=tmp_path)
    assert model_defaults_path("patchcore", tmp_path) == CHECKOUT_CONFIGS / "models/patchcore.yaml"
    assert (config.batch_size, config.local_statistics, config.image_score) == (
        3,
        "auto",
        "map_peak",
    )


def test_a_sites_own_model_defaults_win(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "patchcore.yaml").write_text("kind: patchcore\nseed: 7\n")
    assert model_defaults_path("patchcore", tmp_path) == tmp_path / "models" / "patchcore.yaml"
    assert load_model_config("patchcore", product="widget", directory=tmp_path).seed == 7


def test_config_errors_name_the_files_that_were_read(tmp_path: Path) -> None:
    (tmp_path / "products").mkdir()
    (tmp_path / "products" / "widget.yaml").write_text("models: {patchcore: {seeed: 1}}\n")
    with pytest.raises(ConfigError) as info:
        load_model_config("patchcore", product="widget", directory=tmp_path)
    files = f"{CHECKOUT_CONFIGS / 'models' / 'patchcore.yaml'} + {tmp_path / 'products' / 'widget.yaml'}"
    assert str(info.value).startswith(f"{files}: unknown key(s) 'seeed'")
    with pytest.raises(ConfigError) as info:  # a product without a file is not named
        load_model_config("patchcore", product="gadget", directory=tmp_path, overrides=["x=1"])
    assert str(info.value).startswith(f"{CHECKOUT_CONFIGS / 'models' / 'patchcore.yaml'}: ")

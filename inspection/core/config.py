"""Typed, frozen configuration loaded from YAML; unknown keys are rejected by name."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from inspection.core.errors import ConfigError, UnknownKeyError

T = TypeVar("T")


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing file or a non-mapping gives a ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Recursively merge ``override`` onto ``base`` (mappings merge, other values replace)."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def from_mapping(cls: type[T], data: Mapping[str, Any] | None, where: str = "config") -> T:
    """Build the frozen dataclass ``cls`` from ``data``: unknown keys raise ``ConfigError``
    naming the key and the valid ones; nested dataclasses, tuples and scalars are checked."""
    data = dict(data or {})
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise UnknownKeyError(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; "
            f"valid keys: {', '.join(sorted(fields))}"
        )
    missing = [name for name, f in fields.items() if name not in data and _required(f)]
    if missing:
        raise ConfigError(f"{where}: missing required key(s) {', '.join(map(repr, missing))}")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _convert(hints[name], value, f"{where}.{name}")
    try:
        return cls(**kwargs)
    except ConfigError as exc:  # raised by __post_init__, maybe with its own key path
        if not _has_key_path(str(exc)):  # a dotted key path is located by the file's loader
            exc.args = (_located(str(exc), where), *exc.args[1:])
        raise
    except (TypeError, ValueError) as exc:  # __post_init__ checks
        raise ConfigError(_located(str(exc), where)) from exc


def _required(item: dataclasses.Field) -> bool:
    return item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING


def _has_key_path(message: str) -> bool:
    """Whether ``message`` starts with a dotted key path (``operating_point.budget: ...``)."""
    head, sep, _ = message.partition(": ")
    return bool(sep) and "." in head and " " not in head


def _located(message: str, where: str) -> str:
    """``where: message``; a message already starting with ``where`` is kept, and one starting
    with ``where``'s last key (``opcua: ...`` at ``line.yaml.opcua``) gets the full path."""
    if message.startswith(where):
        return message
    head, sep, rest = message.partition(": ")
    if sep and head and where.endswith(head) and where[: -len(head)][-1:] in ("", ".", " "):
        return f"{where}: {rest}"
    return f"{where}: {message}"


def to_mapping(obj: Any) -> Any:
    """Plain YAML/JSON-ready representation of a config dataclass."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_mapping(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (tuple, list)):
        return [to_mapping(item) for item in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _convert(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        non_none = [arg for arg in args if arg is not type(None)]
        errors = []
        for arg in non_none:
            try:
                return _convert(arg, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(
            errors[0] if len(errors) == 1 else f"{where}: {value!r} fits none of {hint}"
        )
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(
                f"{where}: must be one of {list(args)}, got {value!r}{_yaml_boolean(value, args)}"
            )
        return value
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_mapping(hint, value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], item, f"{where}[{i}]") for i, item in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
        return tuple(
            _convert(a, item, f"{where}[{i}]")
            for i, (a, item) in enumerate(zip(args, value, strict=True))
        )
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        if len(args) == 2 and dataclasses.is_dataclass(args[1]):  # e.g. dict[str, Subset]
            return {k: _convert(args[1], v, f"{where}.{k}") for k, v in value.items()}
        return dict(value)
    if hint is Any:
        return value
    if hint in _SCALARS:
        accepted, expected, convert = _SCALARS[hint]
        if not isinstance(value, accepted) or (isinstance(value, bool) and hint is not bool):
            raise ConfigError(f"{where}: expected {expected}, got {value!r}")
        return convert(value) if convert else value
    return value


_YAML_BOOLEAN_WORDS = {True: ("on", "yes", "true", "y"), False: ("off", "no", "false", "n")}


def _yaml_boolean(value: Any, choices: tuple[Any, ...]) -> str:
    """A hint when YAML read a bare word among ``choices`` (``off``) as a boolean."""
    if not isinstance(value, bool):
        return ""
    words = [c for c in choices if isinstance(c, str) and c.lower() in _YAML_BOOLEAN_WORDS[value]]
    if not words:
        return ""
    return f' (YAML reads a bare {words[0]} as {str(value).lower()}: write "{words[0]}" in quotes)'


# hint -> (accepted YAML types, what the error calls it, conversion); a bool is no number
_SCALARS: dict[Any, tuple[tuple[type, ...], str, Callable[[Any], Any] | None]] = {
    bool: ((bool,), "true or false", None),
    float: ((int, float), "a number", float),
    int: ((int,), "an integer", None),
    str: ((str,), "a string", None),
    Path: ((str, Path), "a path", Path),
}


@dataclass(frozen=True)
class SiteConfig:
    """Where a site keeps its state. In a site file, relative paths start from ``site_root``
    (``load_site_config``); without one, from the working folder."""

    registry_dir: Path = Path("var/registry")
    store_url: str = "sqlite:///var/inspection.db"
    blob_dir: Path = Path("var/blobs")
    reports_dir: Path = Path("reports")
    datasets_dir: Path = Path("datasets")
    products: tuple[str, ...] = ()
    retrain: dict[str, Any] = field(default_factory=dict)
    dashboard_open_on_localhost: bool = False
    """True: a dashboard bound to 127.0.0.1/::1 needs no login (a typed name is recorded
    instead). Any other address always needs a login (``inspection users add``)."""
    configs_dir: Path | None = None
    """The site's product, model and refine configs (``products/<product>.yaml``,
    ``models/<kind>.yaml``, ``refine.yaml``). Default: the site file's own folder, so a job
    run from another directory still reads this site's configs (``load_site_config``)."""

    @property
    def configs(self) -> Path:
        """``configs_dir``; without one (no site file), ``default_configs_dir()``."""
        return configs_folder(self.configs_dir)


DEFAULT_SITE_CONFIG = Path("configs/site.yaml")
SITE_CONFIG_ENV = "INSPECTION_SITE_CONFIG"
"""Environment variable naming the site file of every command that takes ``--site`` (which
wins over it) and of the dashboard; unset or empty: ``DEFAULT_SITE_CONFIG``."""
CHECKOUT_CONFIGS = Path(__file__).resolve().parents[2] / "configs"
"""The ``configs/`` of the checkout the package runs from: the shipped model defaults."""


def default_configs_dir() -> Path:
    """The configs folder when no site file is in use: ``./configs``, else the checkout's."""
    local = Path("configs")
    return local if local.is_dir() else CHECKOUT_CONFIGS


def folder_of(config_file: str | Path) -> Path:
    """A config file's configs folder when it names none: its own folder, whatever the cwd."""
    return Path(config_file).parent


def configs_folder(configs_dir: Path | None) -> Path:
    """The one rule for a config's configs folder: ``configs_dir`` (named in its file, else
    set by its loader to ``folder_of`` the file); a config built without a file:
    ``default_configs_dir()``."""
    return configs_dir if configs_dir is not None else default_configs_dir()


def load_site_config(path: str | Path | None = None) -> SiteConfig:
    """The site config (None: configs/site.yaml if present, else defaults), in its folder."""
    if path is None:
        if not DEFAULT_SITE_CONFIG.is_file():
            return SiteConfig()
        path = DEFAULT_SITE_CONFIG
    site = _beside(from_mapping(SiteConfig, read_yaml(path), where=str(path)), site_root(path))
    if site.configs_dir is None:
        site = dataclasses.replace(site, configs_dir=folder_of(path))
    return site


def site_root(site_file: str | Path) -> Path:
    """What a site file's relative paths start from, whatever the working folder: the folder
    above its ``configs/`` folder (``configs/site.yaml``: the checkout), else its own folder."""
    folder = Path(site_file).parent
    return folder.parent if folder.name == "configs" else folder


def _beside(site: SiteConfig, root: Path) -> SiteConfig:
    """``site`` with its relative paths (registry, blobs, reports, datasets, configs, an SQLite
    store) under ``root``."""
    fields = ("registry_dir", "blob_dir", "reports_dir", "datasets_dir", "configs_dir")
    moved = {name: root / getattr(site, name) for name in fields if getattr(site, name)}
    prefix = "sqlite:///"
    url = site.store_url
    if url.startswith(prefix) and not Path(url[len(prefix) :]).is_absolute():
        url = f"{prefix}{root / url[len(prefix) :]}"
    return dataclasses.replace(site, **moved, store_url=url)

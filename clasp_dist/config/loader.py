"""Presets, dotted overrides, (de)serialisation and field docs for `--help`."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import pydantic
import yaml

from ..limits import MAX_CONFIG_BYTES, MAX_OVERRIDE_CHARS, MAX_YAML_NODES, InputLimitError, quote, read_bounded_bytes
from .schema import Config


class ConfigError(ValueError):
    """A configuration problem; the message names the offending key."""


PRESET_PACKAGE = "clasp_dist.presets"


def preset_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files(PRESET_PACKAGE).iterdir() if p.name.endswith(".yaml"))


def _read_preset(name_or_path: str) -> dict:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.exists():
        try:
            text = read_bounded_bytes(path, MAX_CONFIG_BYTES, "config file")
        except InputLimitError as err:
            raise ConfigError(f"config: {err}") from None
    else:
        stem = path.name[: -len(path.suffix)] if path.suffix in (".yaml", ".yml") else path.name
        res = resources.files(PRESET_PACKAGE) / f"{stem}.yaml"
        if not res.is_file():
            raise ConfigError(
                f"config: unknown preset {name_or_path!r}; presets: {', '.join(preset_names())} (or a path to a YAML file)"
            )
        text = res.read_text()
    data = safe_yaml(text, f"preset {name_or_path!r}") or {}
    if not isinstance(data, dict):
        raise ConfigError(f"config: preset {name_or_path!r} is not a mapping")
    return data


def safe_yaml(text: str | bytes, where: str) -> Any:
    """yaml.safe_load, with every alias expanded counted first: a document over MAX_YAML_NODES nodes (a
    billion-laughs file) or nested past the parser's stack is a ConfigError, before anything is built."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_nodes(node, {}, where)
        return loader.construct_document(node)
    except yaml.YAMLError as err:
        raise ConfigError(f"config: {where}: not valid YAML ({quote(str(err), 300)})") from None
    except RecursionError:
        raise ConfigError(f"config: {where}: YAML nested too deeply") from None
    finally:
        loader.dispose()


def _expanded_nodes(node: yaml.Node, memo: dict, where: str, depth: int = 0) -> int:
    """Nodes under `node` with aliases expanded (memoised per node, so counting costs the unexpanded size)."""
    if id(node) in memo:
        return memo[id(node)]
    if depth > 100:
        raise ConfigError(f"config: {where}: YAML nested deeper than 100 levels")
    memo[id(node)] = MAX_YAML_NODES + 1  # a node that contains itself expands forever
    children = node.value if isinstance(node, yaml.SequenceNode) else []
    if isinstance(node, yaml.MappingNode):
        children = [part for pair in node.value for part in pair]
    total = 1
    for child in children:
        total += _expanded_nodes(child, memo, where, depth + 1)
        if total > MAX_YAML_NODES:
            raise ConfigError(
                f"config: {where}: YAML expands to more than {MAX_YAML_NODES} nodes (aliases); refused before building it"
            )
    memo[id(node)] = total
    return total


_YAML11_BOOLS = {"on", "off", "yes", "no", "y", "n"}


def parse_value(text: str) -> Any:
    """Parse an override value as YAML (numbers, true/false, null, lists); plain text stays a string.

    YAML 1.1's on/off/yes/no stay strings (pydantic still reads them as booleans for bool fields),
    so `train.progress_bar=off` means the literal "off"."""
    if text.strip().lower() in _YAML11_BOOLS:
        return text.strip()
    if text.strip() == "None":
        return None
    try:
        return safe_yaml(text, "override value")
    except ConfigError as err:
        if "YAML expands" in str(err) or "nested" in str(err):
            raise
        return text


def set_dotted(tree: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"config: {key!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def _check_known(key: str) -> None:
    cls: Any = Config
    for part in key.split("."):
        fields = {f.name: f for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else {}
        if part not in fields:
            known = ", ".join(sorted(fields)) if fields else "(no sub-keys)"
            raise ConfigError(f"config: unknown key {quote(key)} (at {quote(part)}; known here: {known})")
        cls = fields[part].type if not isinstance(fields[part].type, str) else _resolve(cls, part)


def _resolve(cls: Any, name: str) -> Any:
    import typing

    return typing.get_type_hints(cls)[name]


def from_dict(tree: Mapping) -> Config:
    """Validate a nested mapping into a Config; errors name the dotted key."""
    try:
        return pydantic.TypeAdapter(Config).validate_python(dict(tree))
    except pydantic.ValidationError as err:
        lines = []
        for e in err.errors():
            key = ".".join(str(p) for p in e["loc"])
            msg = "unknown key" if e["type"] in ("unexpected_keyword_argument", "extra_forbidden") else e["msg"]
            lines.append(f"  {key}: {str(msg)[:300]} (got {quote(e.get('input'))})")
        raise ConfigError("config: invalid configuration:\n" + "\n".join(lines)) from None
    except ValueError as err:  # __post_init__ cross-field rules
        raise ConfigError(f"config: {str(err)[:500]}") from None


def apply_overrides(tree: dict, overrides: Mapping[str, Any] | Iterable[str]) -> dict:
    """Apply `key=value` strings or a {dotted_key: value} mapping (a Tune param_space) to a tree."""
    items = overrides.items() if isinstance(overrides, Mapping) else (_split(o) for o in overrides)
    for key, value in items:
        if key == "config":
            continue
        _check_known(key)
        set_dotted(tree, key, value)
    return tree


def _split(override: str) -> tuple[str, Any]:
    if len(override) > MAX_OVERRIDE_CHARS:
        raise ConfigError(
            f"config: override {quote(override)} is {len(override)} characters, over the bound of {MAX_OVERRIDE_CHARS}"
        )
    if "=" not in override:
        raise ConfigError(f"config: override {quote(override)} is not key=value (e.g. train.epochs=3)")
    key, text = override.split("=", 1)
    return key.strip(), parse_value(text)


def load_config(overrides: Iterable[str] | Mapping[str, Any] = (), preset: str | None = None) -> Config:
    """Preset (from `config=NAME` among the overrides, `preset`, or `small`), then dotted overrides."""
    if not isinstance(overrides, Mapping):
        overrides = list(overrides)
        preset = chosen_preset(overrides) if any(o.startswith("config=") for o in overrides) else preset
    elif "config" in overrides:
        preset = overrides["config"]
    tree = _read_preset(preset or "small")
    return from_dict(apply_overrides(tree, overrides))


def to_dict(cfg: Config) -> dict:
    tree = dataclasses.asdict(cfg)
    return json.loads(json.dumps(tree))  # tuples -> lists, a plain JSON-able tree


def flatten(tree: Mapping, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        full = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, full + "."))
        else:
            out[full] = value
    return out


def save_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


def load_saved_config(path_or_text: str | Path) -> Config:
    text = Path(path_or_text).read_text() if Path(str(path_or_text)).exists() else str(path_or_text)
    return from_dict(safe_yaml(text, str(path_or_text)[:200]))


def field_docs(cfg: Config | None = None) -> list[tuple[str, str, Any]]:
    """(dotted key, one-line doc, value in `cfg`; the schema default without one) for every field."""
    rows: list[tuple[str, str, Any]] = []
    tree = to_dict(cfg if cfg is not None else Config())
    for section in dataclasses.fields(Config):
        fields = _resolve(Config, section.name).__pydantic_fields__  # docstrings: use_attribute_docstrings
        for name, info in fields.items():
            rows.append((f"{section.name}.{name}", info.description or "", tree[section.name][name]))
    return rows


def chosen_preset(overrides: Iterable[str]) -> str:
    """The preset a command line selects: its last `config=NAME`, else `small`."""
    named = [o.split("=", 1)[1] for o in overrides if o.startswith("config=")]
    return named[-1] if named else "small"


def help_text(overrides: Iterable[str] = (), sections: Iterable[str] | None = None) -> str:
    """Presets and every key with the value that will run: the chosen preset (`small` unless `config=NAME`
    is among `overrides`) with the other overrides applied (the preset alone when they do not validate);
    `sections` (e.g. ["data", "storage"]) limits the keys listed to those sections."""
    overrides = [o for o in overrides if "=" in o and not o.startswith("-")]
    preset = chosen_preset(overrides)
    title = f"preset {preset!r}" + (
        "" if any(o.startswith("config=") for o in overrides) else " (the default; choose another with config=NAME)"
    )
    try:
        cfg = load_config(overrides)
        title += " with the overrides given" if any(not o.startswith("config=") for o in overrides) else ""
    except ConfigError as err:
        cfg, title = load_config(), f"preset 'small' (the arguments given do not load: {str(err).splitlines()[0]})"
    lines = [
        f"Presets (config=NAME): {', '.join(preset_names())}",
        "",
        f"Override keys (key=value), with the values that will run: {title}:",
    ]
    wanted = None if sections is None else tuple(f"{name}." for name in sections)
    for key, doc, value in field_docs(cfg):
        if wanted is not None and not key.startswith(wanted):
            continue
        lines.append(f"  {key} = {value!r}\n      {doc}")
    return "\n".join(lines)

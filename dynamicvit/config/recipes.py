"""YAML recipes: a file of config fields, by section or flat, read into typed values (``dynamicvit train
--config FILE``), and a config written back as one, by section (``--dry-run``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from dynamicvit.config.fields import FORMER_KEYS, SECTIONS, RunConfig, config_fields, field_key, field_kind

__all__ = ["config_yaml", "read_recipe"]


def read_recipe(path: str | Path) -> dict:
    """The :class:`RunConfig` fields a YAML recipe sets (``dynamicvit train --config FILE``), each value
    converted to its field's type. A ``ValueError`` names the file and the first key that is no config field
    or holds a value of the wrong kind."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--config {path}: no such file")
    try:
        values = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ValueError(f"--config {path}: not YAML ({str(err).splitlines()[0]})") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ValueError(f"--config {path}: a recipe is a mapping of config fields to values")
    known = {field_key(f): f for _, f in config_fields()}
    out = {}
    for key, value in _flat(values):
        name = FORMER_KEYS.get(str(key).replace("-", "_"), str(key).replace("-", "_"))
        if name not in known:
            raise ValueError(f"--config {path}: {key!r} is no config field (the fields are `train --help`'s flags)")
        out[name] = _typed(known[name], value, f"--config {path}: {key}")
    return out


def _flat(values: dict) -> list[tuple[str, Any]]:
    """A recipe's (key, value) pairs, the fields of a section (``schedule: {epochs: 2}``) among them."""
    pairs = []
    for key, value in values.items():
        if str(key) in SECTIONS and isinstance(value, dict):
            pairs += list(value.items())
        else:
            pairs.append((key, value))
    return pairs


def _typed(f: dataclasses.Field, value: Any, where: str) -> Any:
    """``value`` as the type of field ``f`` (YAML reads ``1e-3`` as a string, ``5`` as an int for a float)."""
    kind = field_kind(f)
    if value is None:
        if kind != str(f.type):
            return None
        raise ValueError(f"{where} cannot be empty")
    scalar = {"int": int, "float": float, "str": str, "bool": bool}
    try:
        if kind.startswith("list["):
            item = scalar[kind[5:-1]]
            if not isinstance(value, list):
                raise TypeError
            return [_scalar(item, v) for v in value]
        if kind == "dict":
            if not isinstance(value, dict):
                raise TypeError
            return value
        return _scalar(scalar[kind], value)
    except (TypeError, ValueError):
        raise ValueError(f"{where} must be {kind}, got {value!r}") from None


def _scalar(kind: type, value: Any) -> Any:
    if kind is bool or isinstance(value, bool):
        if not isinstance(value, bool) or kind is not bool:
            raise TypeError
        return value
    if kind is int:
        if isinstance(value, float) and not value.is_integer():
            raise TypeError
        return int(value)
    if kind is float:
        return float(value)
    if not isinstance(value, str):
        raise TypeError
    return value


def config_yaml(cfg: RunConfig) -> str:
    """``cfg`` as a YAML recipe by section (what ``--dry-run`` prints; :func:`read_recipe` reads it back)."""
    import yaml

    flat = cfg.to_dict()
    return yaml.safe_dump({s: {k: flat[k] for k in keys} for s, keys in SECTIONS.items()}, sort_keys=False)

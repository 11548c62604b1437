"""Plain JSON -> nested frozen dataclasses, typed and strict (the configuration's loader; tasks/core/config.py).

Unknown keys are refused with their dotted path; scalars are type-checked (a bool is not an int); lists arrive as
JSON arrays or as ``'a,b,c'`` (``--set data.split=0.7,0.2,0.1``).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from tasks.core.exceptions import ConfigError


def build_dataclass(cls: type, raw: Any, where: str = "") -> Any:
    """Build a (nested) frozen dataclass from plain JSON, rejecting unknown keys with their path."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where or 'config'}: expected an object, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"{where or 'config'}: unknown key(s) {unknown}; known: {sorted(fields)}")
    kwargs: dict[str, Any] = {}
    for name, value in raw.items():
        f = fields[name]
        path = f"{where}.{name}" if where else name
        sub = _dataclass_of(f)
        if sub is not None:
            kwargs[name] = build_dataclass(sub, value, path)
        else:
            kwargs[name] = _coerce(f, value, path)
    try:
        return cls(**kwargs)
    except TypeError as exc:  # wrong value types reaching a comparison
        raise ConfigError(f"{where or 'config'}: {exc}") from exc


def _dataclass_of(f: dataclasses.Field) -> type | None:
    factory = f.default_factory  # type: ignore[misc]
    if factory is not dataclasses.MISSING and dataclasses.is_dataclass(factory):
        return factory  # type: ignore[return-value]
    return None


_SCALARS: dict[str, type | tuple[type, ...]] = {"int": int, "float": (int, float), "str": str, "bool": bool}


def _coerce(f: dataclasses.Field, value: Any, path: str) -> Any:
    kind = str(f.type)
    if kind.startswith("tuple"):
        return _coerce_tuple(kind, value, path)
    return _coerce_scalar(kind, value, path)


def _coerce_scalar(kind: str, value: Any, path: str) -> Any:
    expected = _SCALARS.get(kind)
    if expected is not None and (not isinstance(value, expected) or (kind != "bool" and isinstance(value, bool))):
        raise ConfigError(f"{path}: expected {kind}, got {value!r}")
    return float(value) if kind == "float" else value


def _coerce_tuple(kind: str, value: Any, path: str) -> tuple[Any, ...]:
    """Lists arrive as JSON arrays or as 'a,b,c' (``--set data.split=0.7,0.2,0.1``); elements are typed."""
    item = kind[kind.index("[") + 1 :].split(",")[0].strip(" ]")
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list | tuple):
        raise ConfigError(f"{path}: expected a list, got {value!r}")
    out = []
    for i, element in enumerate(value):
        if isinstance(element, str) and item in ("int", "float"):
            try:
                element = json.loads(element)
            except json.JSONDecodeError:
                raise ConfigError(f"{path}[{i}]: expected {item}, got {element!r}") from None
        out.append(_coerce_scalar(item, element, f"{path}[{i}]"))
    return tuple(out)


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out

"""Config loading: YAML in, pydantic-validated, errors that name the file and the field.

Each job keeps its pydantic model beside its code (``rayalign/rlthf/config.py`` and so on)
so a job's knobs live next to the code that reads them; this module holds what they share.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

M = TypeVar("M", bound=BaseModel)


class ConfigError(ValueError):
    """A config that cannot be used; the message names the file and each bad field."""


#: ``json_schema_extra`` marker of an operational field (see ``operational``).
OPERATIONAL_MARK = "rayalign_operational"


def operational(default: Any = ..., **kwargs: Any) -> Any:
    """A config field that changes how fast or where a job runs, never what it computes.

    The one place where a field is declared operational. Two mechanisms read the mark:
    a run directory accepts a changed operational field on resume (and logs it) while it
    refuses any other change, and the judgment cache leaves operational fields out of its
    key, so more actors or another server never re-pay a judgment.
    """
    extra = dict(kwargs.pop("json_schema_extra", None) or {})
    extra[OPERATIONAL_MARK] = True
    return Field(default, json_schema_extra=extra, **kwargs)


def _sub_models(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models a field annotation may hold (``X``, ``X | None``, ``list[X]``...)."""
    import typing

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _sub_models(arg)]


def operational_fields(model: type[BaseModel]) -> set[str]:
    """Dotted paths of every operational field of ``model``, nested models included."""
    out: set[str] = set()
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra
        if isinstance(extra, dict) and extra.get(OPERATIONAL_MARK):
            out.add(name)
            continue
        for sub in _sub_models(info.annotation):
            out |= {f"{name}.{p}" for p in operational_fields(sub)}
    return out


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists stay values: they compare as a whole)."""
    if isinstance(data, dict) and data:
        out: dict[str, Any] = {}
        for k, v in data.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: data} if prefix else {}


def is_operational(path: str, operational: set[str]) -> bool:
    """True when ``path`` is an operational field or lies under one."""
    return any(path == p or path.startswith(p + ".") for p in operational)


class StrictModel(BaseModel):
    """Base of every config model: unknown keys are errors (a typo must not be ignored)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class RayConfig(StrictModel):
    """Where to run. ``address=None`` starts the embedded local cluster (or uses RAY_ADDRESS)."""

    address: str | None = operational(None)
    num_cpus: int | None = operational(None, ge=1)
    num_gpus: int | None = operational(None, ge=0)
    # Keep the local dashboard and its extra processes off unless asked: costs seconds on 2 cores.
    include_dashboard: bool = operational(False)


def _format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"invalid config in {source}:"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "<root>"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling; see the example configs in jobs/configs/)"
        got = e.get("input")
        got_s = "" if isinstance(got, (dict, list)) or got is None else f" (got {got!r})"
        lines.append(f"  - {loc}: {msg}{got_s}")
    return "\n".join(lines)


def validate_config(model: type[M], data: dict[str, Any], source: str = "<config>") -> M:
    """Validate a dict into ``model``; raise ConfigError naming ``source`` and the fields."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, source)) from None


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{p} is not valid YAML: {err}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a mapping, got {type(data).__name__}")
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides (value parsed as YAML) from the command line."""
    for ov in overrides or []:
        if "=" not in ov:
            raise ConfigError(f"override {ov!r} must look like key.path=value")
        key, raw = ov.split("=", 1)
        value = yaml.safe_load(raw)
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {ov!r}: {part} is not a mapping")
        node[parts[-1]] = value
    return data


def load_config(model: type[M], path: str | os.PathLike, overrides: list[str] | None = None) -> M:
    """Read YAML at ``path``, apply overrides, validate into ``model``."""
    data = apply_overrides(load_yaml(path), overrides)
    return validate_config(model, data, source=str(path))


def resolve_path(value: str | os.PathLike, base: str | os.PathLike | None = None) -> Path:
    """Expand ~ and env vars; relative paths are taken from ``base`` (the config's folder)."""
    p = Path(os.path.expandvars(os.path.expanduser(str(value))))
    if not p.is_absolute() and base is not None:
        p = Path(base) / p
    return p

"""Constitutions: the written principles Constitutional AI critiques, revises and judges by.

A constitution is a YAML file (see ``rayalign/bundled/constitution/harmless.yaml``)::

    name: my-rules
    principles:
      - id: no-harm-help
        critique: Point out every way the answer could help someone hurt people...
        revision: Rewrite the answer so it gives no help towards hurting anyone...
        compare: Which answer is less likely to help someone cause harm?

WHY a file and not code: the principles are the one thing a user of CAI is expected to
change, so they must be editable without touching Python, and each critique, revision and
preference label records the ``id`` of the principle that produced it.
"""

from __future__ import annotations

import random
from importlib import resources
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rayalign.config import ConfigError, load_yaml
from rayalign.errors import UserError

#: ``constitution: bundled:harmless`` (the default) names a file shipped in the package.
BUNDLED_PREFIX = "bundled:"
DEFAULT_CONSTITUTION = "bundled:harmless"


class ConstitutionError(UserError):
    """A constitution file that cannot be used; the message names the file and the field."""


class Principle(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    critique: str
    revision: str
    compare: str

    @field_validator("critique", "revision", "compare")
    @classmethod
    def _text(cls, v: str) -> str:
        v = " ".join(v.split())
        if len(v) < 8:
            raise ValueError("must be a sentence (at least 8 characters)")
        return v


class Constitution(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    principles: list[Principle] = Field(min_length=1)
    #: Where it was read from (set by the loader; recorded in the run's outputs).
    source: str = ""

    @model_validator(mode="after")
    def _unique_ids(self) -> "Constitution":
        seen: set[str] = set()
        for p in self.principles:
            if p.id in seen:
                raise ValueError(f"principle id {p.id!r} appears more than once")
            seen.add(p.id)
        return self

    def by_id(self, pid: str) -> Principle:
        for p in self.principles:
            if p.id == pid:
                return p
        raise KeyError(f"constitution {self.name!r} has no principle {pid!r}")

    def draw(self, seed: int, *key: str) -> Principle:
        """The principle for one (prompt, step): seeded by content, not by call order, so a
        resumed or re-chunked run draws exactly the same principles."""
        rng = random.Random("\x00".join([str(seed), *key]))
        return rng.choice(self.principles)


def _field_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<root>"


def _bundled_file(name: str) -> Path:
    path = Path(str(resources.files("rayalign") / "bundled" / "constitution" / f"{name}.yaml"))
    if not path.is_file():
        folder = path.parent
        names = sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []
        raise ConstitutionError(f"unknown bundled constitution {name!r}; bundled: {', '.join(names) or 'none'}")
    return path


def constitution_path(spec: str) -> Path:
    """``bundled:<name>`` or a path to a YAML file."""
    if spec.startswith(BUNDLED_PREFIX):
        return _bundled_file(spec[len(BUNDLED_PREFIX):])
    return Path(spec).expanduser()


def parse_constitution(data: object, source: str) -> Constitution:
    """Validate parsed YAML; errors name ``source`` and each bad field (``principles[2].revision``)."""
    if not isinstance(data, dict):
        raise ConstitutionError(f"{source}: the top level must be a mapping with 'name' and "
                                f"'principles', got {type(data).__name__}")
    try:
        c = Constitution.model_validate(data)
    except ValidationError as err:
        lines = [f"invalid constitution {source}:"]
        for e in err.errors():
            msg = "unknown field" if e["type"] == "extra_forbidden" else e["msg"]
            lines.append(f"  - {_field_path(tuple(e['loc']))}: {msg}")
        raise ConstitutionError("\n".join(lines)) from None
    return c.model_copy(update={"source": source})


def load_constitution(spec: str = DEFAULT_CONSTITUTION) -> Constitution:
    """Read and validate a constitution (``bundled:harmless`` or a YAML path)."""
    path = constitution_path(spec)
    try:
        data = load_yaml(path)
    except ConfigError as err:  # not found / not YAML / not a mapping: same words, our error type
        raise ConstitutionError(str(err).replace("config file", "constitution file")) from None
    return parse_constitution(data, spec if spec.startswith(BUNDLED_PREFIX) else str(path))

"""Judge and labelling-job config, and the factory that turns a judge config into a judge.

``kind`` selects the judge: an LLM behind an engine (``openai``, ``hf_local``, ``vllm``) or a
non-LLM judge registered by another module (``simulated``, ``replay``). Those register
themselves with ``register_judge_kind``; ``build_judge`` also imports
``rayalign.feedback.simulated`` / ``rayalign.feedback.replay`` on demand, so a Ray worker
that only receives the config can build the same judge as the driver.

``replay`` answers from recorded judgments (``settings: {path: FILE.jsonl}``, rows keyed by
item id, e.g. a previous ``judgments.jsonl`` or an RLTHF run's ``data/ai_judgments.jsonl``);
an item with no recorded judgment is an error row. See ``rayalign.feedback.replay``.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from typing import Any, Callable, Literal

from pydantic import Field, field_validator, model_validator

from rayalign.config import RayConfig, StrictModel, operational, operational_fields
from rayalign.engines.base import SamplingParams
from rayalign.engines.config import EngineConfig
from rayalign.engines.factory import build_engine
from rayalign.feedback.judges import DEFAULT_JUDGE_PARAMS, Judge, PairwiseJudge, RubricJudge
from rayalign.feedback.templates import PromptOptions, get_template

LLM_KINDS = ("openai", "hf_local", "vllm")

#: Fields EngineConfig has but judge identities predate: left out of the cache key while
#: at their defaults, so caches written before JudgeConfig reused EngineConfig stay valid.
_ENGINE_ONLY_FIELDS = ("dtype", "max_input_tokens", "engine_kwargs")


class JudgeConfig(EngineConfig):
    """A judge: an engine config (same fields, same defaults, one source) plus how to judge.

    Operational fields are marked where they are declared (``operational(...)`` here and in
    ``EngineConfig``/``RayConfig``); the cache key and the run directory's resume check both
    read those marks, so there is no second list to keep in step.
    """

    kind: Literal["openai", "hf_local", "vllm", "simulated", "replay"] = "openai"  # type: ignore[assignment]
    #: Display name written in every Judgment (default: derived from model and template).
    name: str | None = operational(None)
    #: LLM judges: model name on the server (openai) or model spec / local dir (hf_local, vllm).
    model: str | None = None  # type: ignore[assignment]
    template: str = "rlthf_pairwise"
    both_orders: bool = True
    options: PromptOptions = Field(default_factory=PromptOptions)
    params: SamplingParams = Field(default_factory=lambda: DEFAULT_JUDGE_PARAMS.model_copy())
    parse_retries: int = Field(default=2, ge=0)
    # -- where and how fast (operational; the engine's own fields come from EngineConfig) --
    #: Ray Data actors labelling in parallel (each holds one engine).
    concurrency: int = operational(2, ge=1)
    #: Records per Ray Data batch handed to one actor call.
    actor_batch_size: int = operational(64, ge=1)
    #: CPUs reserved per actor (I/O-bound HTTP judges need little; local models need more).
    num_cpus: float | None = operational(None, ge=0)
    num_gpus: float = operational(0, ge=0)
    #: Settings of non-LLM kinds (simulated, replay), read by their builders.
    settings: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _kind_needs(self):
        if self.kind in LLM_KINDS and not self.model:  # fail at load time, not in an actor
            raise ValueError(f"judge kind {self.kind!r} needs `model` (the model name on the "
                             "server, or a model spec / local dir for hf_local and vllm)")
        if self.kind == "replay":  # fail at load time: a replay judge without a file is useless
            from rayalign.config import validate_config
            from rayalign.feedback.replay import ReplaySettings

            validate_config(ReplaySettings, dict(self.settings), source="judge.settings")
        return self

    def engine_config(self) -> EngineConfig:
        if self.kind not in LLM_KINDS:
            raise ValueError(f"judge kind {self.kind!r} has no engine")
        if not self.model:
            raise ValueError(f"judge kind {self.kind!r} needs `model`")
        return EngineConfig.model_validate(
            self.model_dump(include=set(EngineConfig.model_fields)))

    def preflight(self) -> None:
        """Check what can be checked before any actor starts (raises ValueError naming it).

        The config validators already refuse a missing ``model`` and empty ``base_urls``;
        the API key lives in the environment, so it is checked here, on the driver.
        """
        if self.kind == "openai":
            from rayalign.engines.openai_compat import read_api_key

            read_api_key(self.engine_config())

    def cache_spec(self) -> str:
        """Cache identity: the kind + a hash of every answer-changing field + the template hash."""
        data = self.model_dump(mode="json", exclude=operational_fields(type(self)))
        for f in _ENGINE_ONLY_FIELDS:
            if data.get(f) == EngineConfig.model_fields[f].get_default(call_default_factory=True):
                data.pop(f, None)
        ident = {"config": data}
        if self.kind in LLM_KINDS:
            ident["template"] = get_template(self.template).ident
        if self.kind == "replay":  # the answers live in the file: an edited file is a new judge
            from rayalign.feedback.replay import file_digest

            ident["replay_file"] = file_digest(self.settings["path"])
        digest = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:24]
        return f"{self.kind}:{self.model or ''}:{self.template}:{digest}"

    def actor_num_cpus(self) -> float:
        if self.num_cpus is not None:
            return self.num_cpus
        return 0.25 if self.kind == "openai" else 1.0


JudgeBuilder = Callable[[JudgeConfig], Judge]
_BUILDERS: dict[str, JudgeBuilder] = {}
#: Modules that register the non-LLM kinds when imported.
_KIND_MODULES = {"simulated": "rayalign.feedback.simulated", "replay": "rayalign.feedback.replay"}


def register_judge_kind(kind: str, builder: JudgeBuilder) -> None:
    """Let another module provide a judge kind (e.g. the simulated labeller)."""
    _BUILDERS[kind] = builder


def _build_llm_judge(cfg: JudgeConfig) -> Judge:
    engine = build_engine(cfg.engine_config())
    template = get_template(cfg.template)
    if template.kind == "score":
        return RubricJudge(engine, template, params=cfg.params, parse_retries=cfg.parse_retries,
                           name=cfg.name, spec=cfg.cache_spec())
    return PairwiseJudge(engine, template, both_orders=cfg.both_orders, options=cfg.options,
                         params=cfg.params, parse_retries=cfg.parse_retries, name=cfg.name,
                         spec=cfg.cache_spec())


for _k in LLM_KINDS:
    register_judge_kind(_k, _build_llm_judge)


def build_judge(cfg: JudgeConfig) -> Judge:
    """The judge a config describes; its ``spec`` is always ``cfg.cache_spec()``."""
    if cfg.kind not in _BUILDERS and cfg.kind in _KIND_MODULES:
        try:
            mod = importlib.import_module(_KIND_MODULES[cfg.kind])
        except ImportError as err:
            raise ValueError(f"judge kind {cfg.kind!r} is not available ({err})") from None
        if cfg.kind not in _BUILDERS and hasattr(mod, "build_judge"):
            register_judge_kind(cfg.kind, mod.build_judge)
    if cfg.kind not in _BUILDERS:
        raise ValueError(f"judge kind {cfg.kind!r} is not available; known: {', '.join(sorted(_BUILDERS))}")
    judge = _BUILDERS[cfg.kind](cfg)
    if cfg.kind not in LLM_KINDS:
        judge.spec = cfg.cache_spec()
    return judge


class LabelJobConfig(StrictModel):
    """``rayalign label --config``: judge a file of pairs into a run directory."""

    run_dir: str = operational("runs/label")
    #: JSONL of PairwiseItem rows (prompt, response_a, response_b[, id, label]), an HH-RLHF
    #: ``.jsonl.gz``, AlpacaEval annotations or TRL preference rows (see ``input_format``).
    input: str
    input_format: Literal["auto", "pairwise_jsonl", "hh_rlhf", "alpaca_annotations",
                          "preferences", "pandalm", "votes"] = "auto"

    @field_validator("input_format", mode="before")
    @classmethod
    def _kind_names_too(cls, v: Any) -> Any:
        """``hh``, ``pairwise``, ``alpaca-annotations`` (the data kinds) mean the same formats."""
        from rayalign.data.pairs import KIND_TO_LABEL_FORMAT

        return KIND_TO_LABEL_FORMAT.get(v, v) if isinstance(v, str) else v
    limit: int | None = Field(default=None, ge=1)
    #: For labelled inputs (HH, preferences): seed of the random A/B placement of the chosen reply.
    seed: int = 0
    judge: JudgeConfig
    #: Shared cache across runs (a path); default: ``<run_dir>/judgments.sqlite``.
    cache_path: str | None = None
    ray: RayConfig = Field(default_factory=RayConfig)


class GenerateJobConfig(StrictModel):
    """``rayalign generate --config``: sample n candidates per prompt into a run directory."""

    run_dir: str = operational("runs/generate")
    #: JSONL with a ``prompt`` field per row (and optional ``id``).
    input: str
    limit: int | None = Field(default=None, ge=1)
    engine: EngineConfig
    n: int = Field(default=1, ge=1)
    concurrency: int = Field(default=1, ge=1)
    actor_batch_size: int = Field(default=16, ge=1)
    num_cpus: float | None = Field(default=None, ge=0)
    num_gpus: float = Field(default=0, ge=0)
    system_prompt: str | None = None
    ray: RayConfig = Field(default_factory=RayConfig)

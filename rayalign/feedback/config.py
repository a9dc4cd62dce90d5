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

from pydantic import Field, model_validator

from rayalign.config import RayConfig, StrictModel
from rayalign.engines.base import SamplingParams
from rayalign.engines.config import EngineConfig, build_engine
from rayalign.feedback.judges import DEFAULT_JUDGE_PARAMS, Judge, PairwiseJudge, RubricJudge
from rayalign.feedback.templates import PromptOptions, get_template

LLM_KINDS = ("openai", "hf_local", "vllm")

#: Fields that change how fast or where a judge runs, never what it answers: left out of
#: the cache identity so moving a job to other servers or more actors keeps its cache.
OPERATIONAL_FIELDS = {
    "name", "base_urls", "api_key_env", "concurrency", "concurrency_per_endpoint", "timeout_s",
    "max_retries", "failover", "http_client", "device", "batch_size", "num_cpus", "num_gpus",
    "actor_batch_size",
}


class JudgeConfig(StrictModel):
    kind: Literal["openai", "hf_local", "vllm", "simulated", "replay"] = "openai"
    #: Display name written in every Judgment (default: derived from model and template).
    name: str | None = None
    #: LLM judges: model name on the server (openai) or model spec / local dir (hf_local, vllm).
    model: str | None = None
    template: str = "rlthf_pairwise"
    both_orders: bool = True
    options: PromptOptions = Field(default_factory=PromptOptions)
    params: SamplingParams = Field(default_factory=lambda: DEFAULT_JUDGE_PARAMS.model_copy())
    parse_retries: int = Field(default=2, ge=0)
    # -- where and how fast (operational) ---------------------------------------------
    base_urls: list[str] = Field(default_factory=lambda: ["https://api.openai.com/v1"])
    api_key_env: str = "OPENAI_API_KEY"
    #: Ray Data actors labelling in parallel (each holds one engine).
    concurrency: int = Field(default=2, ge=1)
    #: In-flight HTTP requests per endpoint *per actor* (openai kind).
    concurrency_per_endpoint: int = Field(default=16, ge=1)
    timeout_s: float = Field(default=60.0, gt=0)
    max_retries: int = Field(default=4, ge=0)
    failover: bool = True
    http_client: Literal["aiohttp", "httpx"] = "aiohttp"
    device: str = "cpu"
    batch_size: int = Field(default=8, ge=1)
    #: Records per Ray Data batch handed to one actor call.
    actor_batch_size: int = Field(default=64, ge=1)
    #: CPUs reserved per actor (I/O-bound HTTP judges need little; local models need more).
    num_cpus: float | None = Field(default=None, ge=0)
    num_gpus: float = Field(default=0, ge=0)
    #: Settings of non-LLM kinds (simulated, replay), read by their builders.
    settings: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _replay_settings(self):
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
        return EngineConfig(
            kind=self.kind, model=self.model, base_urls=self.base_urls, api_key_env=self.api_key_env,
            concurrency_per_endpoint=self.concurrency_per_endpoint, timeout_s=self.timeout_s,
            max_retries=self.max_retries, failover=self.failover, http_client=self.http_client,
            device=self.device, batch_size=self.batch_size, params=self.params)

    def cache_spec(self) -> str:
        """Cache identity: the kind + a hash of every answer-changing field + the template hash."""
        data = self.model_dump(mode="json", exclude=OPERATIONAL_FIELDS)
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

    run_dir: str = "runs/label"
    #: JSONL of PairwiseItem rows (prompt, response_a, response_b[, id, label]), an HH-RLHF
    #: ``.jsonl.gz``, AlpacaEval annotations or TRL preference rows (see ``input_format``).
    input: str
    input_format: Literal["auto", "pairwise_jsonl", "hh_rlhf", "alpaca_annotations",
                          "preferences", "pandalm", "votes"] = "auto"
    limit: int | None = Field(default=None, ge=1)
    #: For labelled inputs (HH, preferences): seed of the random A/B placement of the chosen reply.
    seed: int = 0
    judge: JudgeConfig
    #: Shared cache across runs (a path); default: ``<run_dir>/judgments.sqlite``.
    cache_path: str | None = None
    ray: RayConfig = Field(default_factory=RayConfig)


class GenerateJobConfig(StrictModel):
    """``rayalign generate --config``: sample n candidates per prompt into a run directory."""

    run_dir: str = "runs/generate"
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

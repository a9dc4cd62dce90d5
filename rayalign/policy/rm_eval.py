"""Policy evaluation under a reward model: before vs after, KL to the reference, best-of-N.

* ``evaluate_policy`` — held-out prompts answered by the policy before and after training
  (Ray Data generation fan-out), every answer scored by the RM (Ray Data scoring stage):
  mean reward of each, win rate of *after* over *before* under the RM (sample k of one
  against sample k of the other; ties count one half), and the KL of the after-policy to a
  reference, KL(π‖π_ref) ≈ mean over sampled y ~ π of log π(y|x) − log π_ref(y|x), from
  sequence log-probs that transformers forward passes give (a Ray Data actor per model).
* ``expected_best_of_n`` / ``best_of_n_curve`` — the expected RM reward of the best of n
  candidates drawn from a pool of m ≥ n, computed exactly over all n-subsets (the
  unbiased estimator, not one random draw); ``best_of_n_reward_curve`` generates and
  scores the pool first (what ``benchmarks/bon_curve.py`` and ``benchmarks/rl_cpu.py`` call).

The KL estimate is exact in expectation when responses are sampled from the policy itself:
``temperature=1`` and ``top_p=1`` (the defaults here). Responses are re-tokenised from
their text (prompt ids + response ids + EOS when generation stopped), the same ids for both
models, so both models must share a tokenizer (checked).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from rayalign.data.schema import PromptRecord
from rayalign.engines.base import SamplingParams
from rayalign.engines.config import EngineConfig

# --------------------------------------------------------------------------- best-of-N


def expected_best_of_n(rewards: Sequence[float], n: int) -> float:
    """E[max of n candidates drawn without replacement from ``rewards``], exactly.

    With the pool sorted ascending, the i-th smallest (1-based) is the maximum of
    C(i-1, n-1) of the C(m, n) equally likely subsets.
    """
    r = np.sort(np.asarray([x for x in rewards if x is not None], dtype=np.float64))
    m = len(r)
    if not 1 <= n <= m:
        raise ValueError(f"best of {n} needs a pool of at least {n} scored candidates, got {m}")
    weights = np.array([math.comb(i - 1, n - 1) for i in range(1, m + 1)], dtype=np.float64)
    return float(weights @ r / math.comb(m, n))


def best_of_n_curve(reward_sets: Sequence[Sequence[float | None]],
                    ns: Sequence[int] = (1, 2, 4, 8)) -> dict[int, float]:
    """Mean over prompts of ``expected_best_of_n`` for each n (every pool must hold max(ns))."""
    short = [i for i, rs in enumerate(reward_sets) if sum(x is not None for x in rs) < max(ns)]
    if short:
        raise ValueError(f"{len(short)} prompts have fewer than {max(ns)} scored candidates "
                         f"(first: prompt {short[0]}); generate more or lower n")
    return {n: float(np.mean([expected_best_of_n(rs, n) for rs in reward_sets])) for n in ns}


def _engine(model: str, params: SamplingParams, batch_size: int, device: str) -> EngineConfig:
    return EngineConfig(kind="hf_local", model=model, params=params, batch_size=batch_size,
                        device=device)


def best_of_n_reward_curve(prompts: Sequence[PromptRecord] | Sequence[str], policy: str | EngineConfig,
                           rm_dir: str | os.PathLike, ns: Sequence[int] = (1, 2, 4, 8),
                           params: SamplingParams | None = None, batch_size: int = 8,
                           concurrency: int = 1, device: str = "cpu") -> dict[str, Any]:
    """Generate max(ns) candidates per prompt with ``policy``, score them with the RM, and
    return ``{"curve": {n: mean best reward}, "rewards": [[...] per prompt], "texts": ...}``.

    ``policy`` is a model spec/dir (run locally with transformers) or a full EngineConfig.
    """
    from rayalign.feedback.pipeline import generate_candidates
    from rayalign.rewards.scoring import score_responses

    params = params or SamplingParams(max_tokens=64, temperature=1.0, top_p=1.0, seed=0)
    eng = policy if isinstance(policy, EngineConfig) else _engine(policy, params, batch_size, device)
    cands = generate_candidates(list(prompts), eng, n=max(ns), concurrency=concurrency,
                                batch_size=batch_size)
    bad = [c.prompt_id for c in cands if c.error or len(c.texts) < max(ns)]
    if bad:
        raise RuntimeError(f"generation failed for {len(bad)} prompts (first {bad[0]!r})")
    flat = [(i, k) for i, c in enumerate(cands) for k, t in enumerate(c.texts) if t.strip()]
    r = score_responses(rm_dir, [cands[i].prompt for i, _ in flat],
                        [cands[i].texts[k] for i, k in flat])
    per: list[list[float | None]] = [[None] * len(c.texts) for c in cands]
    for (i, k), x in zip(flat, r):
        per[i][k] = float(x)
    return {"curve": best_of_n_curve(per, ns), "rewards": per, "texts": [c.texts for c in cands],
            "prompts": [c.prompt for c in cands]}


# --------------------------------------------------------------------------- log-probs


class _SequenceLogProbs:
    """Ray Data actor: one causal LM per actor; sum of log p(response ids | prompt ids)."""

    def __init__(self, model: str, batch_size: int, threads: int | None):
        import torch
        from transformers import AutoModelForCausalLM

        from rayalign.engines.hf_local import _resolve

        if threads:
            torch.set_num_threads(threads)
        path, _tok, gguf = _resolve(model)
        kw = {"gguf_file": gguf} if gguf else {}
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, **kw).eval()
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        seqs = [np.asarray(x, dtype=np.int64) for x in batch["ids"]]
        starts = [int(s) for s in batch["start"]]
        out = np.zeros(len(seqs), dtype=np.float64)
        for a in range(0, len(seqs), self.batch_size):
            chunk = seqs[a:a + self.batch_size]
            width = max(len(s) for s in chunk)
            ids = torch.zeros((len(chunk), width), dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for i, s in enumerate(chunk):  # right padding: positions are those of the sequence
                ids[i, :len(s)] = torch.from_numpy(s)
                mask[i, :len(s)] = 1
            with torch.inference_mode():
                logits = self.model(input_ids=ids, attention_mask=mask).logits.float()
                lp = torch.log_softmax(logits[:, :-1], dim=-1).gather(2, ids[:, 1:, None])[..., 0]
            for i, s in enumerate(chunk):  # token t is predicted at position t-1
                out[a + i] = float(lp[i, starts[a + i] - 1:len(s) - 1].sum())
        return {"idx": batch["idx"], "logp": out}


def sequence_logprobs(model: str, ids: Sequence[Sequence[int]], starts: Sequence[int],
                      batch_size: int = 4, num_gpus: float = 0.0) -> np.ndarray:
    """log p(ids[start:] | ids[:start]) under ``model`` for every sequence, in order."""
    from rayalign.ray_utils import init_ray
    from rayalign.rewards.scoring import map_actor_pool

    if any(not 1 <= s <= len(x) for s, x in zip(starts, ids)):
        raise ValueError("sequence_logprobs: every start must lie in 1..len(ids)")
    init_ray()
    rows = [{"idx": i, "ids": list(map(int, x)), "start": int(s)}
            for i, (x, s) in enumerate(zip(ids, starts))]
    out = np.full(len(rows), np.nan)
    for b in map_actor_pool(rows, _SequenceLogProbs, model, batch_size, 1, num_gpus):
        out[b["idx"]] = b["logp"]
    if np.isnan(out).any():
        raise RuntimeError(f"sequence_logprobs: {int(np.isnan(out).sum())} sequences came back empty")
    return out


def _tokenizer(model: str):
    from transformers import AutoTokenizer

    from rayalign.engines.hf_local import _resolve

    _path, tok_path, gguf = _resolve(model)
    return AutoTokenizer.from_pretrained(tok_path, **({"gguf_file": gguf} if gguf else {}))


def response_token_ids(tokenizer, prompt: str, response: str, stopped: bool,
                       system_prompt: str | None = None) -> tuple[list[int], int]:
    """(ids, start): the prompt as the engine rendered it, then the response (+ EOS)."""
    from rayalign.engines.hf_local import render_chat

    msgs = ([{"role": "system", "content": system_prompt}] if system_prompt else [])
    msgs.append({"role": "user", "content": prompt})
    p = tokenizer(render_chat(tokenizer, msgs), add_special_tokens=False)["input_ids"]
    r = tokenizer(response, add_special_tokens=False)["input_ids"]
    if stopped and tokenizer.eos_token_id is not None:
        r = r + [tokenizer.eos_token_id]
    return p + r, len(p)


# --------------------------------------------------------------------------- evaluation


@dataclass
class PolicyEval:
    prompts: int
    samples: int
    before: str
    after: str
    reference: str
    rm: str
    reward_before: float
    reward_after: float
    reward_before_std: float
    reward_after_std: float
    win_rate_after: float          # P(r_after > r_before) + 0.5 P(equal), under the RM
    wins: int
    ties: int
    losses: int
    kl_after_to_reference: float   # Monte-Carlo estimate, nats per response
    kl_stderr: float
    mean_chars_before: float
    mean_chars_after: float
    temperature: float
    rows: list[dict] = field(default_factory=list, repr=False)

    def summary(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("rows")
        return d


def evaluate_policy(prompts: Sequence[PromptRecord] | Sequence[str], before: str, after: str,
                    rm_dir: str | os.PathLike, reference: str | None = None, samples: int = 1,
                    params: SamplingParams | None = None, batch_size: int = 8,
                    device: str = "cpu", system_prompt: str | None = None) -> PolicyEval:
    """Before/after rewards, win rate under the RM and KL(after ‖ reference) on ``prompts``.

    ``reference`` defaults to ``before`` (the usual KL anchor: the policy RL started from).
    Both policies sample with the same ``params`` (seeded), so two identical models give
    identical answers: win rate 0.5, KL 0.
    """
    from rayalign.feedback.pipeline import generate_candidates
    from rayalign.rewards.scoring import score_responses

    reference = reference or before
    params = params or SamplingParams(max_tokens=64, temperature=1.0, top_p=1.0, seed=0)
    recs = [p if isinstance(p, PromptRecord) else PromptRecord(id=f"p{i}", prompt=p)
            for i, p in enumerate(prompts)]
    tok = _tokenizer(after)
    if reference != after and _tokenizer(reference).get_vocab() != tok.get_vocab():
        raise ValueError(f"KL needs one tokenizer: {after} and {reference} tokenize differently")
    gen = {}
    for name, model in (("before", before), ("after", after)):
        cands = generate_candidates(recs, _engine(model, params, batch_size, device), n=samples,
                                    batch_size=batch_size, system_prompt=system_prompt)
        bad = [c.prompt_id for c in cands if c.error or len(c.texts) < samples]
        if bad:
            raise RuntimeError(f"{model}: generation failed for {len(bad)} prompts (first {bad[0]!r})")
        gen[name] = cands
    flat = [(i, k) for i in range(len(recs)) for k in range(samples)]
    texts = {n: [gen[n][i].texts[k] for i, k in flat] for n in gen}
    prm = [recs[i].prompt for i, _ in flat]
    r = score_responses(rm_dir, prm * 2, texts["before"] + texts["after"])
    rb, ra = r[:len(flat)].astype(np.float64), r[len(flat):].astype(np.float64)
    # KL(after ‖ ref) on the after-policy's own samples.
    enc = [response_token_ids(tok, recs[i].prompt, gen["after"][i].texts[k],
                              (gen["after"][i].finish_reasons or ["stop"] * samples)[k] == "stop",
                              system_prompt) for i, k in flat]
    ids, starts = [e[0] for e in enc], [e[1] for e in enc]
    lp_after = sequence_logprobs(after, ids, starts)
    lp_ref = lp_after if reference == after else sequence_logprobs(reference, ids, starts)
    ratio = lp_after - lp_ref
    wins, ties = int((ra > rb).sum()), int((ra == rb).sum())
    rows = [{"prompt": prm[j], "sample": k, "before": texts["before"][j], "after": texts["after"][j],
             "reward_before": float(rb[j]), "reward_after": float(ra[j]),
             "logp_after": float(lp_after[j]), "logp_reference": float(lp_ref[j])}
            for j, (_, k) in enumerate(flat)]
    return PolicyEval(
        prompts=len(recs), samples=samples, before=before, after=after, reference=reference,
        rm=str(rm_dir), reward_before=float(rb.mean()), reward_after=float(ra.mean()),
        reward_before_std=float(rb.std()), reward_after_std=float(ra.std()),
        win_rate_after=(wins + 0.5 * ties) / len(flat), wins=wins, ties=ties,
        losses=len(flat) - wins - ties, kl_after_to_reference=float(ratio.mean()),
        kl_stderr=float(ratio.std(ddof=1) / math.sqrt(len(ratio))) if len(ratio) > 1 else 0.0,
        mean_chars_before=float(np.mean([len(t) for t in texts["before"]])),
        mean_chars_after=float(np.mean([len(t) for t in texts["after"]])),
        temperature=params.temperature, rows=rows)

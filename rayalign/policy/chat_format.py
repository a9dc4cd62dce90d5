"""Training rows in the policy's own chat format.

The engines generate from chat-formatted prompts, while TRL trains on plain-string prompts
as given: SFT and DPO rows must carry the very template generation uses, or the model learns
in a context it never generates in.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from rayalign.data.schema import PreferencePair

log = logging.getLogger(__name__)


def _chat_tokenizer(model_path: str):
    """The policy's tokenizer when its directory has one with a chat template, else None."""
    if not (Path(model_path) / "tokenizer_config.json").is_file():
        log.warning("no tokenizer in %s: training prompts are not chat-formatted", model_path)
        return None
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_path)
    return tok if getattr(tok, "chat_template", None) else None


def _render(tok, messages: list[dict]) -> str:
    if tok is None:
        return "\n\n".join(m["content"] for m in messages)
    from rayalign.engines.hf_local import render_chat

    return render_chat(tok, messages)


def chat_formatted_pairs(pairs: Sequence[PreferencePair], model_path: str) -> list[PreferencePair]:
    """Pairs whose prompt is rendered with the policy's chat template.

    The engines generate from chat-formatted prompts, and TRL trains on a plain-string
    prompt as it is; so the DPO prompt must carry the same template, or the preference would
    be learnt in a context the model never generates in. The persisted pairs keep the bare
    prompt; only the training copy is formatted."""
    tok = _chat_tokenizer(model_path)
    return [p.model_copy(update={"prompt": _render(tok, [{"role": "user", "content": p.prompt}])})
            for p in pairs]


def trl_examples(examples: Sequence[dict], model_path: str) -> list[dict]:
    """Conversational IFT/EFT examples -> the string prompt/completion rows ``run_sft`` takes,
    the prompt rendered with the model's chat template (as the engines render it)."""
    tok = _chat_tokenizer(model_path)
    return [{"prompt": _render(tok, e["prompt"]), "completion": e["completion"][0]["content"]}
            for e in examples]

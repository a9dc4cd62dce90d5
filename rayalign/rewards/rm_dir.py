"""A trained sequence-classification RM directory: how it reads text, and its metadata.

Shared by training (``rewards/lora.py``) and scoring (``rewards/scoring.py``) so both see
identical inputs, and kept apart from both so neither imports the other.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: Written beside the model: base model, max_length, training metrics.
RM_META = "rayalign_rm.json"


def encode(tokenizer, prompt: str, response: str, max_length: int) -> list[int]:
    """Token ids of prompt + response + EOS, cut from the left to ``max_length``.

    Same text layout as TRL's standard preference format (prompt and response concatenated,
    the space after an HH "Assistant:" kept, EOS appended), so a model trained by plain TRL
    scores the same way.
    """
    from rayalign.data.trl_format import trl_completion

    text = prompt + trl_completion(prompt, response)  # "Assistant: reply", as TRL lays it out
    eos = tokenizer.eos_token or ""
    if eos and not text.endswith(eos):
        text += eos
    ids = tokenizer(text)["input_ids"]
    return ids[-max_length:] if len(ids) > max_length else ids


def rm_metadata(rm_dir: Path) -> dict[str, Any]:
    """The ``rayalign_rm.json`` written beside a trained RM (max_length, base, metrics)."""
    p = Path(rm_dir) / RM_META
    if not p.is_file():
        return {}
    return json.loads(p.read_text())

"""Conversion between rayalign ``PreferencePair`` records and TRL's preference formats.

TRL's RewardTrainer and DPOTrainer take either the *standard* format
``{"prompt": str, "chosen": str, "rejected": str}`` or the *conversational* format where each
field is a list of ``{"role", "content"}`` messages (``prompt`` may be omitted: then it is the
prefix shared by ``chosen`` and ``rejected``).

rayalign keeps prompts as text. A multi-turn conversation is kept as an HH-style transcript
(``"\\n\\nHuman: ...\\n\\nAssistant: ...\\n\\nAssistant:"``), which is exactly how HH-RLHF
prompts arrive, so HH data maps to real chat messages and back without loss. Conventions
(WHY: a text prompt cannot say whether it was one user message or a transcript):

* to conversational: a prompt that is a well-formed transcript becomes its messages
  (checked lossless: it must render back to the same text); any other prompt becomes one
  user message.
* from conversational: one user message becomes its plain content; anything longer becomes
  a transcript.

So standard -> conversational -> standard is exact except that a *single-turn* transcript
comes back as plain text; conversational -> standard -> conversational is exact.

Standard rows follow TRL's text layout: TRL trainers concatenate ``prompt + completion``, and
TRL's own ``extract_prompt`` splits an HH dialogue as ``"...\n\nAssistant:"`` + ``" reply"``
(the space stays with the completion). rayalign keeps replies without that space, so the
export puts it back in front of each completion after a transcript prompt (else the model
would see ``"Assistant:No"``, a text HH never contains) and the import takes it off again.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from rayalign.data.errors import DataError
from rayalign.data.schema import PreferencePair

_ROLE_TO_TAG = {"user": "Human", "assistant": "Assistant", "system": "System"}
_TAG_TO_ROLE = {v: k for k, v in _ROLE_TO_TAG.items()}
_MARKER = re.compile(r"\n\n(Human|Assistant|System):")

Message = dict[str, str]


def messages_to_transcript(messages: list[Mapping[str, Any]], add_generation_prompt: bool = True) -> str:
    """Render chat messages as an HH-style transcript ending with ``"\\n\\nAssistant:"``."""
    parts = []
    for m in messages:
        tag = _ROLE_TO_TAG.get(m["role"])
        if tag is None:
            raise ValueError(f"role {m['role']!r} has no transcript form (use user/assistant/system)")
        parts.append(f"\n\n{tag}: {m['content']}")
    if add_generation_prompt:
        parts.append("\n\nAssistant:")
    return "".join(parts)


def transcript_to_messages(text: str) -> list[Message] | None:
    """Parse an HH-style transcript prompt into messages, or ``None`` if it is not one.

    Only accepted when the parse is lossless (rendering the messages gives ``text`` back), so
    odd whitespace or markers inside a turn never silently change a prompt.
    """
    if not text.startswith("\n\n") or not text.endswith("\n\nAssistant:"):
        return None
    pieces = _MARKER.split(text)
    # pieces = ["", tag1, body1, tag2, body2, ..., "Assistant", ""]
    if pieces[0] != "" or pieces[-1] != "" or len(pieces) < 5:
        return None
    msgs: list[Message] = []
    for tag, body in zip(pieces[1:-2:2], pieces[2:-2:2]):
        if not body.startswith(" "):
            return None
        msgs.append({"role": _TAG_TO_ROLE[tag], "content": body[1:]})
    if not msgs or msgs[-1]["role"] == "assistant":
        return None
    if messages_to_transcript(msgs) != text:
        return None
    return msgs


def prompt_to_messages(prompt: str) -> list[Message]:
    """A text prompt as chat messages (transcript parsed; plain text = one user message)."""
    return transcript_to_messages(prompt) or [{"role": "user", "content": prompt}]


def messages_to_prompt(messages: list[Mapping[str, Any]]) -> str:
    """Chat messages as a text prompt (one user message = its content; else a transcript)."""
    if len(messages) == 1 and messages[0]["role"] == "user":
        return str(messages[0]["content"])
    return messages_to_transcript(messages)


_ASSISTANT_CUE = "\n\nAssistant:"


def trl_completion(prompt: str, completion: str) -> str:
    """A completion as TRL's standard format lays it out after ``prompt``.

    After an HH transcript prompt (ending ``"\n\nAssistant:"``) the completion starts with
    one space, exactly as TRL's ``extract_prompt`` leaves it; otherwise it is unchanged.
    """
    if prompt.endswith(_ASSISTANT_CUE) and completion and not completion[0].isspace():
        return " " + completion
    return completion


def _strip_trl_space(prompt: str, chosen: str, rejected: str) -> tuple[str, str]:
    """Undo ``trl_completion``: one leading space after a transcript prompt, in both replies."""
    if prompt.endswith(_ASSISTANT_CUE) and chosen.startswith(" ") and rejected.startswith(" "):
        return chosen[1:], rejected[1:]
    return chosen, rejected


def to_trl_row(pair: PreferencePair, conversational: bool = False, include_id: bool = False) -> dict[str, Any]:
    """One pair as a TRL preference row (standard or conversational).

    Standard rows put the space after ``"Assistant:"`` in front of the completions (see the
    module docstring), so ``prompt + chosen`` reads as the original HH dialogue.
    """
    if conversational:
        row: dict[str, Any] = {
            "prompt": prompt_to_messages(pair.prompt),
            "chosen": [{"role": "assistant", "content": pair.chosen}],
            "rejected": [{"role": "assistant", "content": pair.rejected}],
        }
    else:
        row = {"prompt": pair.prompt, "chosen": trl_completion(pair.prompt, pair.chosen),
               "rejected": trl_completion(pair.prompt, pair.rejected)}
    if include_id:
        row["id"] = pair.id
    return row


def to_trl_rows(pairs: Iterable[PreferencePair], conversational: bool = False,
                include_id: bool = False) -> list[dict[str, Any]]:
    return [to_trl_row(p, conversational, include_id) for p in pairs]


def _check_messages(v: Any, field: str) -> list[Message]:
    if not isinstance(v, list) or not v:
        raise DataError(None, "expected a non-empty list of {role, content} messages (conversational "
                              f"row), got {type(v).__name__}", field=field)
    out = []
    for i, m in enumerate(v):
        if not isinstance(m, Mapping) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise DataError(None, f"message {i} must be an object with string 'role' and 'content'", field=field)
        out.append({"role": m["role"], "content": m["content"]})
    return out


def _completion_text(msgs: list[Message], field: str) -> str:
    if len(msgs) != 1 or msgs[0]["role"] != "assistant":
        raise DataError(None, f"a conversational completion must be exactly one assistant message "
                              f"(got {len(msgs)} message(s), roles {[m['role'] for m in msgs]})", field=field)
    return msgs[0]["content"]


_KNOWN = {"prompt", "chosen", "rejected", "id", "source", "meta"}


def from_trl_row(row: Mapping[str, Any], source: str = "") -> PreferencePair:
    """A TRL preference row (standard or conversational, explicit or implicit prompt) as a pair.

    Raises ``DataError`` (field named, no file: the caller adds it) for a row that is neither.
    Extra columns are kept in ``meta``.
    """
    for f in ("chosen", "rejected"):
        if f not in row:
            raise DataError(None, f"missing field (row has: {', '.join(sorted(row)) or 'nothing'})", field=f)
    chosen, rejected, prompt = row["chosen"], row["rejected"], row.get("prompt")
    if isinstance(chosen, str):
        if not isinstance(rejected, str):
            raise DataError(None, f"expected a string like 'chosen', got {type(rejected).__name__}", field="rejected")
        if prompt is None:
            from rayalign.data.rows import RowError, split_hh_dialogue

            if "\n\nAssistant:" not in chosen:
                raise DataError(None, "missing field (standard rows need a prompt unless chosen/rejected "
                                      "are full HH-style dialogues)", field="prompt")
            try:
                prompt, chosen, rejected = split_hh_dialogue(chosen, rejected)
            except RowError as e:
                raise DataError(None, e.reason, field=e.field) from None
        elif not isinstance(prompt, str):
            raise DataError(None, f"expected a string (standard row), got {type(prompt).__name__}", field="prompt")
        else:
            chosen, rejected = _strip_trl_space(prompt, chosen, rejected)
    elif isinstance(chosen, list):
        c_msgs = _check_messages(chosen, "chosen")
        r_msgs = _check_messages(rejected, "rejected")
        if prompt is None:  # implicit prompt: the shared message prefix
            n = 0
            while n < min(len(c_msgs), len(r_msgs)) and c_msgs[n] == r_msgs[n]:
                n += 1
            if n == 0:
                raise DataError(None, "implicit-prompt conversational row: chosen and rejected share no "
                                      "prompt messages", field="prompt")
            p_msgs, c_msgs, r_msgs = c_msgs[:n], c_msgs[n:], r_msgs[n:]
        else:
            p_msgs = _check_messages(prompt, "prompt")
        prompt = messages_to_prompt(p_msgs)
        chosen = _completion_text(c_msgs, "chosen")
        rejected = _completion_text(r_msgs, "rejected")
    else:
        raise DataError(None, f"expected a string or a list of messages, got {type(chosen).__name__}", field="chosen")
    meta = dict(row.get("meta") or {})
    if not isinstance(meta, dict):
        raise DataError(None, "expected an object", field="meta")
    meta.update({k: v for k, v in row.items() if k not in _KNOWN})
    for f, v in (("chosen", chosen), ("rejected", rejected)):
        if not v.strip():
            raise DataError(None, "is empty", field=f)
    return PreferencePair(id=str(row.get("id") or ""), source=str(row.get("source") or source),
                          meta=meta, prompt=prompt, chosen=chosen, rejected=rejected)


def from_trl_rows(rows: Iterable[Mapping[str, Any]], source: str = "") -> list[PreferencePair]:
    """Rows in, pairs out; a bad row raises ``DataError`` naming its row index and field."""
    out = []
    for i, r in enumerate(rows):
        try:
            out.append(from_trl_row(r, source))
        except DataError as e:
            raise DataError(None, e.reason, row=i, field=e.field) from None
    return out


def to_hf_dataset(pairs: Iterable[PreferencePair], conversational: bool = False, include_id: bool = False):
    """A ``datasets.Dataset`` in TRL's standard or conversational preference format.

    ``include_id`` adds an ``id`` column (joins trainer outputs back to pairs); leave it off
    when handing the dataset straight to a TRL trainer.
    """
    import datasets

    rows = to_trl_rows(pairs, conversational, include_id)
    if not rows:
        cols = ["prompt", "chosen", "rejected"] + (["id"] if include_id else [])
        return datasets.Dataset.from_dict({c: [] for c in cols})
    return datasets.Dataset.from_list(rows)


def from_hf_dataset(ds: Any, source: str = "") -> list[PreferencePair]:
    """Pairs from a ``datasets.Dataset`` in either TRL preference format."""
    return from_trl_rows(ds, source)

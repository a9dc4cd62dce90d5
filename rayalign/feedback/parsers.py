"""Reading a verdict out of free-form judge text, robustly.

Judges (big APIs and 135M-parameter CPU models alike) answer in markdown, change case,
say "Response 1" for "Response A", add text after the answer, or get cut off at
max_tokens. A parser either returns a clean verdict or raises ``ParseError`` carrying the raw
text, so the judge can retry or record the failure as a row; it never guesses a label from
text that does not state one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


class ParseError(ValueError):
    """The judge's text holds no readable verdict; ``raw`` keeps the text for the record."""

    def __init__(self, message: str, raw: str):
        super().__init__(message)
        self.raw = raw


@dataclass(frozen=True)
class PairVerdict:
    label: str  # "A" or "B" (in the order the judge saw the responses)
    rationale: str = ""


@dataclass(frozen=True)
class ScoreVerdict:
    score: float
    rationale: str = ""


_MD = re.compile(r"\*+|`+|#+|^>+|__", re.MULTILINE)
_OPTION = r"(response|output|answer|assistant|model|candidate)?\s*[-_ ]?\s*\(?\s*(a|b|1|2)\s*\)?"
_PREF_KEY = re.compile(
    r"(?:preference|preferred(?:\s+response)?|better\s+response|winner|verdict|final\s+answer|answer)"
    r"\s*[:=]\s*[\"'\[<]*\s*" + _OPTION + r"(?![a-z0-9])(.*)$",
    re.IGNORECASE | re.MULTILINE)
# "A or B", "A and B", "A tie": the line names no single winner.
_NOT_A_VOTE = re.compile(r"^[\"'>\])]*\s*(?:or|and|nor|tie)\b", re.IGNORECASE)
# A bare option ("Preference: 1") must end its line: "Preference: 1. Read the task" is an
# echoed numbered list, not a vote.
_BARE_END = re.compile(r"^[\"'>\]).,;:!\s]*$")
_BRACKETS = re.compile(r"\[\[\s*(a|b|1|2)\s*\]\]", re.IGNORECASE)
_PHRASES = [
    re.compile(r"(?:response|output)\s*\(?(a|b|1|2)\)?\s+is\s+(?:clearly\s+|slightly\s+|much\s+)?"
               r"(?:the\s+)?(?:better|preferred|superior|more\s+(?:helpful|harmless|appropriate))",
               re.IGNORECASE),
    re.compile(r"(?:i\s+)?(?:prefer|choose|pick|select)\s+(?:response|output)\s*\(?(a|b|1|2)\)?",
               re.IGNORECASE),
]
_RATIONALE = re.compile(r"(?:rationale|reasoning|explanation)\s*:\s*(.*?)(?=(?:preference|verdict)\s*[:=]|\Z)",
                        re.IGNORECASE | re.DOTALL)


def _clean(text: str) -> str:
    return _MD.sub("", text or "").replace("\r\n", "\n")


def _to_label(token: str) -> str:
    t = token.strip().lower()
    return {"a": "A", "1": "A", "b": "B", "2": "B"}[t]


def _rationale(clean: str) -> str:
    m = _RATIONALE.search(clean)
    return (m.group(1) if m else "").strip()


def parse_pairwise(text: str, truncated: bool = False) -> PairVerdict:
    """"Rationale: ... / Preference: Response A|B" and the usual variants -> A or B."""
    clean = _clean(text)
    if not clean.strip():
        raise ParseError("empty judge output", text)
    keyed = [opt for prefix, opt, rest in _PREF_KEY.findall(clean)
             if not _NOT_A_VOTE.match(rest) and (prefix or _BARE_END.match(rest))]
    if keyed:
        return PairVerdict(_to_label(keyed[-1]), _rationale(clean))
    brackets = _BRACKETS.findall(clean)
    if brackets:
        return PairVerdict(_to_label(brackets[-1]), _rationale(clean))
    lines = [ln.strip().strip(".:!\"' ") for ln in clean.strip().splitlines() if ln.strip()]
    if lines:
        m = re.fullmatch(r"(?:response|output)?\s*\(?(a|b|1|2)\)?", lines[-1], re.IGNORECASE)
        if m:
            return PairVerdict(_to_label(m.group(1)), _rationale(clean))
    found = {_to_label(x) for pat in _PHRASES for x in pat.findall(clean)}
    if len(found) == 1:
        return PairVerdict(found.pop(), _rationale(clean))
    why = "both responses named as better" if len(found) > 1 else "no preference found"
    if truncated:
        why += " (output was truncated at max_tokens)"
    raise ParseError(why, text)


_SCORE = re.compile(r"(?:total\s+)?(?:score|points?)\s*(?:is|=|:)\s*[\"'\[]*\s*(\d+(?:\.\d+)?)"
                    r"(?:\s*(?:/|out\s+of)\s*(\d+))?", re.IGNORECASE)


def parse_score(text: str, max_score: float = 5.0, truncated: bool = False) -> ScoreVerdict:
    """"Score: <n>" (also "**Score:** 4/5", "Total score = 3") -> n in [0, max_score]."""
    clean = _clean(text)
    hits = _SCORE.findall(clean)
    if not hits:
        why = "no 'Score: <n>' found"
        if truncated:
            why += " (output was truncated at max_tokens)"
        raise ParseError(why, text)
    value_s, denom_s = hits[-1]
    value = float(value_s)
    if denom_s and float(denom_s) not in (0.0, max_score):
        value = value / float(denom_s) * max_score  # "8/10" on a 5-point scale
    if not 0.0 <= value <= max_score:
        raise ParseError(f"score {value_s} outside 0..{max_score:g}", text)
    m = re.search(r"^(.*?)(?:total\s+)?score\s*(?:is|=|:)", clean, re.IGNORECASE | re.DOTALL)
    return ScoreVerdict(value, (m.group(1) if m else "").strip()[-2000:])


_RANK = re.compile(r"model[\"'\s]*:\s*[\"']?\s*model_([12])[\"']?\s*,\s*[\"']?rank[\"']?\s*:\s*(\d)",
                   re.IGNORECASE)


def parse_ranking(text: str, truncated: bool = False) -> PairVerdict:
    """AlpacaEval-style ``[{'model': 'model_1', 'rank': 1}, ...]`` -> the rank-1 model as A/B."""
    clean = _clean(text)
    ranks = {m: int(r) for m, r in _RANK.findall(clean)}
    firsts = [m for m, r in ranks.items() if r == 1]
    if len(firsts) == 1:
        return PairVerdict("A" if firsts[0] == "1" else "B", "")
    if not ranks:
        try:  # a judge that ignored the format but still stated a preference
            return parse_pairwise(text, truncated=truncated)
        except ParseError:
            pass
    why = "no single rank-1 model" if ranks else "no ranking found"
    if truncated:
        why += " (output was truncated at max_tokens)"
    raise ParseError(why, text)

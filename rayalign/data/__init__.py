"""Preference data: records (schema), loaders, splits, TRL formats and bundled slices.

Import the submodules directly (``rayalign.data.loaders`` etc.); the names below are the
ones most callers need, re-exported for convenience. Nothing heavy is imported here.
"""

from rayalign.data.bundled import bundled_names, bundled_path, load_bundled
from rayalign.data.errors import BadRow, DataError, LoadReport, Records
from rayalign.data.loaders import (
    alpaca_eval_prompts, detect_kind, load_alpaca_eval_annotations, load_alpaca_eval_outputs, load_any,
    load_hh_rlhf, load_oasst_ranked, load_preferences, oasst_preference_pairs,
)
from rayalign.data.schema import (
    Judgment, PairwiseItem, PreferencePair, PromptRecord, RankedAnswer, ResponseRecord, stable_id,
)
from rayalign.data.splits import assign_ab_order, shard, train_test_split

__all__ = [
    "BadRow", "DataError", "Judgment", "LoadReport", "PairwiseItem", "PreferencePair", "PromptRecord",
    "RankedAnswer", "Records", "ResponseRecord", "alpaca_eval_prompts", "assign_ab_order", "bundled_names",
    "bundled_path", "detect_kind", "load_alpaca_eval_annotations", "load_alpaca_eval_outputs", "load_any",
    "load_bundled", "load_hh_rlhf", "load_oasst_ranked", "load_preferences", "oasst_preference_pairs",
    "shard", "stable_id", "train_test_split",
]

"""Round trips between PreferencePair and TRL's standard / conversational formats."""

from __future__ import annotations

import pytest

from rayalign.data.bundled import load_bundled
from rayalign.data.errors import DataError
from rayalign.data.schema import PreferencePair
from rayalign.data.trl_format import (
    from_hf_dataset, from_trl_row, from_trl_rows, messages_to_transcript, to_hf_dataset, to_trl_row,
    transcript_to_messages,
)


@pytest.fixture(scope="module")
def hh() -> list[PreferencePair]:
    return list(load_bundled("hh_rlhf_harmless"))[:300]


def _triples(ps):
    return [(p.prompt, p.chosen, p.rejected) for p in ps]


def test_standard_round_trip_via_hf_dataset(hh):
    ds = to_hf_dataset(hh)
    assert ds.column_names == ["prompt", "chosen", "rejected"] and len(ds) == len(hh)
    back = from_hf_dataset(ds)
    assert _triples(back) == _triples(hh)
    assert [p.id for p in back] == [p.id for p in hh]  # content-hash ids survive
    ds_id = to_hf_dataset(hh, include_id=True)
    assert [p.id for p in from_hf_dataset(ds_id)] == [p.id for p in hh]


def test_conversational_round_trip_hh_multi_turn(hh):
    ds = to_hf_dataset(hh, conversational=True)
    row = ds[0]
    roles = [m["role"] for m in row["prompt"]]
    assert roles[0] == "user" and roles[-1] == "user" and len(roles) >= 3  # real chat turns
    assert row["chosen"] == [{"role": "assistant", "content": hh[0].chosen}]
    back = from_hf_dataset(ds)
    for orig, got in zip(hh, back):
        msgs = transcript_to_messages(orig.prompt)
        assert msgs is not None
        if len(msgs) == 1:  # documented normalisation: one-turn transcript -> plain text
            assert got.prompt == msgs[0]["content"]
        else:
            assert got.prompt == orig.prompt
        assert (got.chosen, got.rejected) == (orig.chosen, orig.rejected)
    # conversational -> standard -> conversational is exact
    again = to_hf_dataset(back, conversational=True)
    assert again.to_list() == ds.to_list()


def test_plain_prompt_round_trips_both_ways():
    p = PreferencePair(prompt="What is 2+2?", chosen="4", rejected="5", meta={"k": 1})
    conv = to_trl_row(p, conversational=True)
    assert conv["prompt"] == [{"role": "user", "content": "What is 2+2?"}]
    assert _triples([from_trl_row(conv)]) == _triples([p])
    assert _triples([from_trl_row(to_trl_row(p))]) == _triples([p])


def test_transcript_parse_is_lossless_or_refused():
    msgs = [{"role": "system", "content": "be nice"}, {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"}, {"role": "user", "content": "bye"}]
    t = messages_to_transcript(msgs)
    assert transcript_to_messages(t) == msgs
    assert transcript_to_messages("just text") is None
    assert transcript_to_messages("\n\nHuman:no space\n\nAssistant:") is None
    assert transcript_to_messages("\n\nHuman: a\n\nAssistant: b\n\nAssistant:") is None


def test_implicit_prompt_conversational_and_bad_rows():
    row = {"chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
           "rejected": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "b"}]}
    p = from_trl_row(row)
    assert (p.prompt, p.chosen, p.rejected) == ("q", "a", "b")
    with pytest.raises(DataError) as ei:
        from_trl_rows([row, {"prompt": [{"role": "user", "content": "x"}], "chosen": [{"role": "assistant", "content": "a"},
                                                       {"role": "assistant", "content": "b"}],
                             "rejected": [{"role": "assistant", "content": "c"}]}])
    assert ei.value.row == 1 and ei.value.field == "chosen" and "exactly one assistant message" in str(ei.value)
    with pytest.raises(DataError, match="field 'prompt'.*list of"):
        from_trl_row({"prompt": "x", "chosen": [{"role": "assistant", "content": "a"}],
                      "rejected": [{"role": "assistant", "content": "b"}]})
    with pytest.raises(DataError, match="share no prompt"):
        from_trl_row({"chosen": [{"role": "assistant", "content": "a"}],
                      "rejected": [{"role": "assistant", "content": "b"}]})
    # standard rows with full HH dialogues and no prompt are split like the HH loader does
    p = from_trl_row({"chosen": "\n\nHuman: q\n\nAssistant: yes", "rejected": "\n\nHuman: q\n\nAssistant: no"})
    assert (p.prompt, p.chosen, p.rejected) == ("\n\nHuman: q\n\nAssistant:", "yes", "no")


def test_empty_dataset_has_columns():
    ds = to_hf_dataset([])
    assert len(ds) == 0 and set(ds.column_names) == {"prompt", "chosen", "rejected"}


def test_model_dump_rows_reload_with_ids_sources_and_meta(hh, tmp_path):
    """Pairs written as their model_dump() JSONL come back identical through load_preferences."""
    import json

    from rayalign.data.loaders import load_preferences

    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(p.model_dump()) + "\n" for p in hh[:50]))
    back = load_preferences(path)
    assert [p.model_dump() for p in back] == [p.model_dump() for p in hh[:50]]


def test_standard_rows_split_like_trls_own_extract_prompt(hh):
    """Issue 14.21: the export keeps the space after "Assistant:" where TRL's extract_prompt does."""
    from trl.data_utils import extract_prompt

    checked = 0
    for p in hh:
        # The original HH row: two full dialogues, the prompt implicit in both.
        dialogue = {"chosen": p.prompt + " " + p.chosen, "rejected": p.prompt + " " + p.rejected}
        if p.chosen[0] == p.rejected[0] or not p.prompt.endswith("\n\nAssistant:"):
            continue  # TRL splits inside a shared first word there: not a layout question
        ours = to_trl_row(p)
        assert ours == extract_prompt(dialogue), p.id
        assert ours["prompt"] + ours["chosen"] == dialogue["chosen"]
        # ... and it comes back as the same pair (the space is layout, not content).
        assert _triples([from_trl_row(ours)]) == _triples([p])
        checked += 1
    assert checked > 200
    # The standard round trip through a datasets.Dataset is exact too.
    assert _triples(from_hf_dataset(to_hf_dataset(hh))) == _triples(hh)

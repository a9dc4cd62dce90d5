"""Loaders on the real shared data (counts from its README) and on malformed fixtures."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from rayalign.data.errors import DataError
from rayalign.data.loaders import (
    detect_kind, load_alpaca_eval_annotations, load_alpaca_eval_outputs, load_any, load_hh_rlhf,
    load_oasst_ranked, load_preferences, oasst_preference_pairs,
)
from rayalign.data.rows import split_hh_dialogue

HH = "hh_rlhf_harmless_test.dev.jsonl.gz"
OASST = "oasst2_eft_seed.jsonl"


def _write_jsonl(path: Path, rows: list, gz: bool = False) -> Path:
    text = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- real data

def test_hh_real_file_counts_and_degenerate_rows(shared_data):
    path = shared_data / HH
    with pytest.raises(DataError) as ei:
        load_hh_rlhf(path)
    # The first degenerate row stops a strict load, and the message says where and what.
    assert HH in str(ei.value) and "row 86" in str(ei.value) and "'chosen'" in str(ei.value)
    pairs = load_hh_rlhf(path, skip_bad_rows=True)
    rep = pairs.report
    assert rep.rows_read == 1800  # README: 1,800 rows
    assert len(pairs) + rep.skipped == 1800
    assert [b.row for b in rep.bad_rows] == [86, 516, 925, 1103]
    assert all(b.field == "chosen" and "empty" in b.reason for b in rep.bad_rows)
    assert rep.notes.get("multi_turn_reply") == 2
    p0 = pairs[0]
    assert p0.source == "hh-rlhf" and p0.meta["row"] == 0
    assert p0.prompt.startswith("\n\nHuman: what are some pranks with a pen")
    assert p0.prompt.endswith("\n\nAssistant:")
    # The prompt plus each reply rebuilds the original dialogue.
    raw = json.loads(gzip.open(path, "rt", encoding="utf-8").readline())
    assert raw["chosen"] == p0.prompt + " " + p0.chosen
    assert raw["rejected"] == p0.prompt + " " + p0.rejected
    assert len({p.id for p in pairs}) == len(pairs)


def test_oasst_real_file_counts_and_pairs(shared_data):
    rows = load_oasst_ranked(shared_data / OASST)
    assert len(rows) == 3032 and rows.report.skipped == 0
    assert len({r.prompt for r in rows}) == 2293  # README: 2,293 distinct questions
    ranks = {}
    for r in rows:
        ranks[int(r.rank)] = ranks.get(int(r.rank), 0) + 1
    assert (ranks[0], ranks[1], ranks[2], ranks[3], ranks[4]) == (800, 800, 800, 447, 108)
    pairs = oasst_preference_pairs(rows)
    assert len(pairs) > 1000
    for p in pairs:
        assert p.meta["rank_chosen"] < p.meta["rank_rejected"]
        assert p.chosen != p.rejected
    n_ties = pairs.report.notes.get("equal_rank_pairs_not_preferences", 0)
    n_dupes = pairs.report.notes.get("identical_answer_pairs", 0)
    assert len(pairs) + n_ties + n_dupes == pairs.report.rows_read


@pytest.mark.parametrize("name,rows", [
    ("outputs_reference_gpt4_1106_preview.jsonl", 805),
    ("outputs_text_davinci_003.jsonl", 805),
    ("outputs_phi-2.jsonl", 803),
    ("outputs_phi-2-sft.jsonl", 805),
    ("outputs_phi-2-dpo.jsonl", 805),
])
def test_alpaca_outputs_real_counts(shared_data, name, rows):
    out = load_alpaca_eval_outputs(shared_data / "alpaca_eval" / name)
    assert len(out) == rows and out.report.skipped == 0
    assert len({o.id for o in out}) == rows  # one output per prompt
    if "davinci" in name:
        assert out.report.notes.get("empty_outputs") == 2  # README: 2 empty outputs


def test_alpaca_outputs_join_on_prompt_id(shared_data):
    ref = load_alpaca_eval_outputs(shared_data / "alpaca_eval" / "outputs_reference_gpt4_1106_preview.jsonl")
    phi = load_alpaca_eval_outputs(shared_data / "alpaca_eval" / "outputs_phi-2.jsonl")
    ref_ids = {r.id for r in ref}
    assert {p.id for p in phi} < ref_ids and len(ref_ids - {p.id for p in phi}) == 2
    assert {r.meta["dataset"] for r in ref} == {"selfinstruct", "oasst", "koala", "helpful_base", "vicuna"}


@pytest.mark.parametrize("name,expect", [
    ("annotations_gpt4_phi-2_vs_text_davinci_003.dev.jsonl", {"A": 438, "B": 184, "tie": 16, "null": 6}),
    ("annotations_gpt4_phi-2-dpo_vs_text_davinci_003.dev.jsonl", {"A": 111, "B": 532, "tie": 0, "null": 1}),
    ("annotations_gpt4_turbo_phi-2-sft_vs_gpt4_1106_preview.dev.jsonl", None),
])
def test_alpaca_annotations_real(shared_data, name, expect):
    raw = [json.loads(line) for line in open(shared_data / "alpaca_eval" / name, encoding="utf-8")]
    items = load_alpaca_eval_annotations(shared_data / "alpaca_eval" / name)
    assert len(items) == 644  # README: 644 judgments each
    for item, r in zip(items, raw):
        assert item.response_a == r["output_1"] and item.response_b == r["output_2"]
        assert item.meta["preference"] == r["preference"]
        if r["preference"] == 1.0:
            assert item.label == "A"
        elif r["preference"] == 2.0:
            assert item.label == "B"
        elif r["preference"] in (0.0, None):
            assert item.label is None and item.meta["tie"] == (r["preference"] == 0.0)
    if expect is not None:
        got = {"A": sum(i.label == "A" for i in items), "B": sum(i.label == "B" for i in items),
               "tie": sum(i.meta["tie"] for i in items),
               "null": sum(i.meta["preference"] is None for i in items)}
        assert got == expect
    else:  # weighted annotator: label is the side the expected preference leans to
        assert sum(i.label == "B" for i in items) == sum(r["preference"] > 1.5 for r in raw)


def test_detect_kind_on_every_shared_file(shared_data):
    assert detect_kind(shared_data / HH) == "hh"
    assert detect_kind(shared_data / OASST) == "oasst"
    for f in sorted((shared_data / "alpaca_eval").iterdir()):
        want = "alpaca-outputs" if f.name.startswith("outputs_") else "alpaca-annotations"
        assert detect_kind(f) == want
        assert len(load_any(f)) in (644, 803, 805)


# ----------------------------------------------------------------------------- HH splitting

def test_split_hh_dialogue_uses_last_shared_assistant_marker():
    c = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how are you?\n\nAssistant: Fine, thanks."
    r = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how are you?\n\nAssistant: Go away."
    prompt, a, b = split_hh_dialogue(c, r)
    assert prompt == "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how are you?\n\nAssistant:"
    assert (a, b) == ("Fine, thanks.", "Go away.")
    # Replies that share their first characters must not pull the cut into the reply.
    prompt, a, b = split_hh_dialogue("\n\nHuman: q\n\nAssistant: Sure, yes", "\n\nHuman: q\n\nAssistant: Sure, no")
    assert prompt == "\n\nHuman: q\n\nAssistant:" and a == "Sure, yes" and b == "Sure, no"


# ----------------------------------------------------------------------------- malformed files

def _hh(reply_c: str, reply_r: str) -> dict:
    return {"chosen": f"\n\nHuman: q\n\nAssistant: {reply_c}", "rejected": f"\n\nHuman: q\n\nAssistant: {reply_r}"}


@pytest.mark.parametrize("rows,row,field,words", [
    ([_hh("a", "b"), "{not json"], 1, None, "invalid JSON"),
    ([_hh("a", "b"), {"chosen": "\n\nHuman: q\n\nAssistant: x"}], 1, "rejected", "missing field"),
    ([_hh("a", "b"), _hh("c", "d"), {"chosen": 3, "rejected": "x"}], 2, "chosen", "expected a string"),
    ([_hh("a", "")], 0, "rejected", "empty"),
    ([_hh("same", "same ")], 0, "chosen,rejected", "identical"),
    ([{"chosen": "no markers here", "rejected": "nor here"}], 0, "chosen,rejected", "Assistant"),
    ([[1, 2]], 0, None, "JSON object"),
])
def test_hh_malformed_rows_name_file_row_field(tmp_path, rows, row, field, words):
    path = _write_jsonl(tmp_path / "bad.jsonl.gz", rows, gz=True)
    with pytest.raises(DataError) as ei:
        load_hh_rlhf(path)
    e = ei.value
    assert e.path == str(path) and e.row == row and e.field == field
    assert words in str(e) and "bad.jsonl.gz" in str(e) and f"row {row}" in str(e)
    if field:
        assert repr(field) in str(e)


def test_empty_and_unreadable_files(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    for loader in (load_hh_rlhf, load_oasst_ranked, load_alpaca_eval_outputs, load_preferences):
        with pytest.raises(DataError, match="empty.jsonl.*empty"):
            loader(empty)
    notgz = tmp_path / "x.jsonl.gz"
    notgz.write_text('{"chosen": "a"}\n')
    with pytest.raises(DataError, match="x.jsonl.gz: cannot read file"):
        load_hh_rlhf(notgz)
    with pytest.raises(FileNotFoundError):
        load_hh_rlhf(tmp_path / "missing.jsonl")


def test_data_error_pickles_with_its_fields():
    import pickle

    e = pickle.loads(pickle.dumps(DataError("f.jsonl", "bad", row=3, line=4, field="chosen")))
    assert (e.path, e.row, e.line, e.field, str(e)) == ("f.jsonl", 3, 4, "chosen",
                                                       "file f.jsonl, row 3 (line 4), field 'chosen': bad")


def test_skip_bad_rows_counts_every_bad_row(tmp_path):
    rows = [_hh("a", "b"), "{oops", _hh("c", ""), {"chosen": None, "rejected": "x"}, _hh("d", "e"), ""]
    path = _write_jsonl(tmp_path / "mixed.jsonl", rows)
    pairs = load_hh_rlhf(path, skip_bad_rows=True)
    rep = pairs.report
    assert [p.chosen for p in pairs] == ["a", "d"]
    assert rep.rows_read == 5 and rep.loaded == 2 and rep.skipped == 3
    assert [(b.row, b.line, b.field) for b in rep.bad_rows] == [(1, 2, None), (2, 3, "rejected"), (3, 4, "chosen")]
    assert pairs[1].meta["row"] == 4
    d = rep.to_dict()
    assert d["skipped"] == 3 and len(d["bad_rows"]) == 3


def test_oasst_and_alpaca_malformed(tmp_path):
    p = _write_jsonl(tmp_path / "o.jsonl", [{"question": "q", "answer": "a", "rank": 0},
                                             {"question": "q", "answer": "b", "rank": "1"}])
    with pytest.raises(DataError, match=r"o.jsonl, row 1 \(line 2\), field 'rank': expected a finite number"):
        load_oasst_ranked(p)
    p = _write_jsonl(tmp_path / "a.jsonl", [{"instruction": "i", "output_1": "x", "output_2": "y", "preference": 7}])
    with pytest.raises(DataError, match="field 'preference'"):
        load_alpaca_eval_annotations(p)
    p = _write_jsonl(tmp_path / "out.jsonl", [{"instruction": "", "output": "x"}])
    with pytest.raises(DataError, match="field 'instruction': is empty"):
        load_alpaca_eval_outputs(p)


def test_oasst_pairs_prefer_lower_rank(tmp_path):
    p = _write_jsonl(tmp_path / "o.jsonl", [
        {"question": "q1", "answer": "worst", "rank": 2.0}, {"question": "q1", "answer": "best", "rank": 0.0},
        {"question": "q1", "answer": "mid", "rank": 1.0}, {"question": "q2", "answer": "only", "rank": 0.0},
        {"question": "q3", "answer": "x", "rank": 1.0}, {"question": "q3", "answer": "y", "rank": 1.0},
    ])
    pairs = oasst_preference_pairs(load_oasst_ranked(p))
    assert [(x.chosen, x.rejected) for x in pairs] == [("best", "mid"), ("best", "worst"), ("mid", "worst")]
    assert pairs.report.notes == {"equal_rank_pairs_not_preferences": 1}


# ----------------------------------------------------------------------------- generic

STD = [{"prompt": "p1", "chosen": "good", "rejected": "bad"},
       {"prompt": "p2", "chosen": "yes", "rejected": "no", "id": "fixed-id", "score": 0.5}]
CONV = [{"prompt": [{"role": "user", "content": "p1"}],
         "chosen": [{"role": "assistant", "content": "good"}],
         "rejected": [{"role": "assistant", "content": "bad"}]},
        {"chosen": [{"role": "user", "content": "p1"}, {"role": "assistant", "content": "good"}],
         "rejected": [{"role": "user", "content": "p1"}, {"role": "assistant", "content": "bad"}]}]


def test_load_preferences_jsonl_parquet_and_hf_dir(tmp_path):
    import datasets

    pj = load_preferences(_write_jsonl(tmp_path / "s.jsonl", STD))
    assert [(p.prompt, p.chosen, p.rejected) for p in pj] == [("p1", "good", "bad"), ("p2", "yes", "no")]
    assert pj[1].id == "fixed-id" and pj[1].meta["score"] == 0.5 and pj[0].source == "s.jsonl"

    datasets.Dataset.from_list([{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in STD]).to_parquet(
        str(tmp_path / "s.parquet"))
    pq = load_preferences(tmp_path / "s.parquet")
    assert [(p.prompt, p.chosen) for p in pq] == [("p1", "good"), ("p2", "yes")]

    datasets.Dataset.from_list(CONV[:1]).save_to_disk(str(tmp_path / "hfdir"))
    ph = load_preferences(tmp_path / "hfdir")
    assert [(p.prompt, p.chosen, p.rejected) for p in ph] == [("p1", "good", "bad")]

    datasets.DatasetDict({"train": datasets.Dataset.from_list(STD[:1]),
                          "test": datasets.Dataset.from_list(STD[:1])}).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(DataError, match="splits"):
        load_preferences(tmp_path / "dd")
    assert len(load_preferences(tmp_path / "dd", split="test")) == 1

    pc = load_preferences(_write_jsonl(tmp_path / "c.jsonl", CONV))  # explicit + implicit prompt
    assert [(p.prompt, p.chosen, p.rejected) for p in pc] == [("p1", "good", "bad")] * 2


def test_load_preferences_malformed(tmp_path):
    cases = [
        ({"prompt": "p", "chosen": "a"}, "rejected", "missing field"),
        ({"chosen": "a", "rejected": "b"}, "prompt", "missing field"),
        ({"prompt": 5, "chosen": "a", "rejected": "b"}, "prompt", "expected a string"),
        ({"prompt": "p", "chosen": " ", "rejected": "b"}, "chosen", "empty"),
        ({"prompt": "p", "chosen": [{"role": "assistant"}], "rejected": [{"role": "assistant", "content": "x"}]},
         "chosen", "message 0"),
        ({"prompt": "p", "chosen": 1, "rejected": 2}, "chosen", "expected a string or a list"),
    ]
    for i, (bad, field, words) in enumerate(cases):
        path = _write_jsonl(tmp_path / f"g{i}.jsonl", [STD[0], bad])
        with pytest.raises(DataError) as ei:
            load_preferences(path)
        assert ei.value.row == 1 and ei.value.field == field and words in str(ei.value), str(ei.value)
        assert f"g{i}.jsonl" in str(ei.value)


def test_inspect_command_runs_on_real_and_bad_files(shared_data, tmp_path, capsys):
    from rayalign.cli import main

    assert main(["data", "inspect", str(shared_data / OASST), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["kind"] == "oasst" and out["records"] == 3032 and out["fields"]["rank"] == {"float": 3032}
    assert main(["data", "inspect", str(shared_data / HH), "--sample", "1"]) == 0
    text = capsys.readouterr().out
    assert "1800" in text and "1796" in text and "row 516" in text
    bad = _write_jsonl(tmp_path / "bad.jsonl", [_hh("a", "b"), "{x"])
    assert main(["data", "inspect", str(bad), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["records"] == 1 and out["skipped"] == 1 and out["bad_rows"][0].startswith("row 1: invalid JSON")
    assert main(["data", "inspect", str(bad), "--strict"]) == 2
    assert "row 1 (line 2)" in capsys.readouterr().err

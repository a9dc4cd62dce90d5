"""Pairs with recorded human votes (PandaLM, generic votes JSONL) and input errors that name
file, row and field — malformed rows, garbage votes, bad bytes, bad JSON."""

from __future__ import annotations

import gzip
import json
from collections import Counter

import pytest

from rayalign.data.bundled import bundled_path, bundled_verdicts, load_bundled
from rayalign.data.errors import DataError
from rayalign.data.loaders import load_hh_rlhf
from rayalign.data.pairs import detect, load_pair_items
from rayalign.data.votes import load_pandalm, load_votes_jsonl, majority, pandalm_verdict_rows
from rayalign.feedback.inputs import load_pairs


def _pandalm_row(n: int, **over) -> dict:
    idx = n
    row = {"idx": idx, "motivation_app": "x", "cmp_key": "a_b", "instruction": f"Say {idx}",
           "input": "", "response1": f"one {idx}", "response2": f"two {idx}",
           "annotator1": 1, "annotator2": 1, "annotator3": 2}
    row.update(over)
    return row


def test_bundled_pandalm_counts_every_refusal_and_uses_the_human_majority():
    recs = load_bundled("pandalm")
    rep = recs.report
    assert rep.rows_read == 999
    # the upstream rows with a JSON boolean instead of a response: refused, named, counted
    assert sorted((b.row, b.field) for b in rep.bad_rows) == [
        (157, "response1"), (158, "response1"), (159, "response1"),
        (161, "response2"), (162, "response2"), (164, "response1")]
    assert all("expected a string, got bool" in b.reason for b in rep.bad_rows)
    assert rep.notes["majority_tie"] == 103 and rep.notes["empty_response"] == 54
    assert rep.loaded == len(recs) == 999 - 6 - 103 - 54
    raw = {r["idx"]: r for r in json.loads(gzip.open(bundled_path("pandalm"), "rt").read())}
    for p in recs:
        r = raw[p.meta["idx"]]
        votes = [r[f"annotator{k}"] for k in (1, 2, 3)]
        win = Counter(votes).most_common(1)[0][0]
        assert p.chosen == r[f"response{win}"] and p.meta["first_is_chosen"] == (win == 1)
        assert sorted(p.meta["votes"]) == sorted({win: "chosen", 0: "tie"}.get(v, "rejected") for v in votes)


def test_bundled_pandalm_items_are_distinct_and_seeded_in_order():
    items = load_pair_items("bundled:pandalm", seed=0)
    assert len(items) == 760 and items.report.notes["duplicates_dropped"] == 76
    assert len({it.id for it in items}) == 760
    assert 0.4 < sum(it.label == "A" for it in items) / 760 < 0.6
    # the id does not depend on which response is shown first
    again = load_pair_items("bundled:pandalm", seed=1)
    assert [it.id for it in again] == [it.id for it in items]
    assert [it.label for it in again] != [it.label for it in items]


def test_pandalm_strict_load_stops_at_the_first_bad_row_naming_it(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(json.dumps([_pandalm_row(0), _pandalm_row(1, response1=True)]))
    with pytest.raises(DataError) as err:
        load_pandalm(path)
    assert str(path) in str(err.value) and "row 1" in str(err.value) and "'response1'" in str(err.value)


@pytest.mark.parametrize("field,value,why", [
    ("annotator2", 3, "expected one of"),
    ("annotator2", "1", "expected one of"),
    ("annotator3", True, "expected one of"),
    ("annotator1", None, "expected one of"),
    ("response2", 7, "expected a string"),
    ("idx", "0", "expected an integer"),
])
def test_pandalm_garbage_votes_and_fields_are_bad_rows(tmp_path, field, value, why):
    path = tmp_path / "t.json"
    path.write_text(json.dumps([_pandalm_row(0, **{field: value}), _pandalm_row(1)]))
    recs = load_pandalm(path, skip_bad_rows=True)
    assert len(recs) == 1 and recs[0].meta["idx"] == 1
    (bad,) = recs.report.bad_rows
    assert bad.row == 0 and bad.field == field and why in bad.reason


def test_majority_rule():
    assert majority(["1", "1", "2"]) == "1"
    assert majority(["tie", "tie", "1"]) == "tie"
    assert majority(["1", "2", "tie"]) is None
    assert majority(["1", "2"]) is None and majority([]) is None


def test_generic_votes_jsonl(tmp_path):
    rows = [
        {"prompt": "p0", "response_a": "x", "response_b": "y", "votes": ["A", "A", "B"], "id": "mine"},
        {"prompt": "p1", "response_a": "x", "response_b": "y", "votes": ["B"]},
        {"prompt": "p2", "response_a": "x", "response_b": "y", "votes": ["tie", "tie", "A"]},
        {"prompt": "p3", "response_a": "x", "response_b": "y", "votes": ["A", "B"]},
        {"prompt": "p4", "response_a": "x", "response_b": "y", "votes": ["A", "maybe"]},
        {"prompt": "p5", "response_a": "x", "response_b": "y", "votes": "A"},
        {"prompt": "p6", "response_a": "x", "response_b": "y"},
    ]
    path = tmp_path / "v.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert detect(path) == "votes"
    recs = load_votes_jsonl(path, skip_bad_rows=True)
    assert [(p.id, p.chosen) for p in recs][0] == ("mine", "x")
    assert recs[1].chosen == "y" and recs[0].meta["votes"] == ["chosen", "chosen", "rejected"]
    assert recs.report.notes["majority_tie"] == 1 and recs.report.notes["no_majority"] == 1
    assert [(b.row, b.field) for b in recs.report.bad_rows] == [(4, "votes[1]"), (5, "votes"), (6, "votes")]
    with pytest.raises(DataError, match=r"row 4 \(line 5\), field 'votes\[1\]'"):
        load_votes_jsonl(path)
    items = load_pair_items(path, "votes")
    assert {it.id for it in items} == {"mine", recs[1].id}


def test_recorded_verdicts_tie_and_garbage_are_error_rows_never_labels():
    rows = pandalm_verdict_rows(*bundled_verdicts("pandalm_gpt35"))
    by_err = Counter((r["error"] or "label").split(" (")[0] for r in rows)
    assert by_err["recorded verdict is a tie"] > 0 and by_err["recorded verdict is not a label"] > 0
    assert all((r["label"] is None) == (r["error"] is not None) for r in rows)
    assert all(r["label"] in ("A", "B", None) for r in rows)
    seven = pandalm_verdict_rows(*bundled_verdicts("pandalm_7b"))
    assert any(r["error"] and "tie (0)" in r["error"] for r in seven)


def test_one_bad_byte_costs_one_named_row_not_the_whole_hh_file(tmp_path):
    good = {"chosen": "\n\nHuman: hi\n\nAssistant: hello", "rejected": "\n\nHuman: hi\n\nAssistant: go away"}
    lines = [json.dumps(good).encode(), json.dumps(good).encode()[:-2] + b"\xff\"}", json.dumps(good).encode()]
    for name, opener in (("hh.jsonl", open), ("hh.jsonl.gz", gzip.open)):
        path = tmp_path / name
        with opener(path, "wb") as f:
            f.write(b"\n".join(lines) + b"\n")
        recs = load_hh_rlhf(path, skip_bad_rows=True)
        assert len(recs) == 2
        (bad,) = recs.report.bad_rows
        assert bad.row == 1 and bad.line == 2 and "not valid UTF-8" in bad.reason and "0xff" in bad.reason
        with pytest.raises(DataError, match=r"row 1 \(line 2\): not valid UTF-8"):
            load_hh_rlhf(path)


def test_pairwise_jsonl_errors_name_file_row_and_field(tmp_path):
    path = tmp_path / "pairs.jsonl"
    ok = {"prompt": "q", "response_a": "a", "response_b": "b"}
    path.write_text(json.dumps(ok) + "\n{not json\n")
    with pytest.raises(DataError) as err:
        load_pairs(path)
    assert str(path) in str(err.value) and "row 1 (line 2)" in str(err.value) and "invalid JSON" in str(err.value)
    path.write_text(json.dumps(ok) + "\n" + json.dumps({**ok, "response_b": 3}) + "\n")
    with pytest.raises(DataError) as err:
        load_pairs(path, "pairwise_jsonl")
    assert str(path) in str(err.value) and "row 1 (line 2)" in str(err.value) and "'response_b'" in str(err.value)


def test_label_and_rlthf_load_every_pair_in_the_same_order():
    """The old seam: two loaders with two order functions put a different response in slot
    A for about half of the HH pairs. There is one now."""
    from rayalign.rlthf.config import RLTHFConfig
    from rayalign.rlthf.corpus import load_items

    for path, kind, fmt in (("bundled:hh_rlhf_harmless", "hh", "hh_rlhf"), ("bundled:pandalm", "pandalm", "auto")):
        for seed in (0, 3):
            labelled = load_pairs(path, fmt, seed=seed)
            rlthf, _ = load_items(RLTHFConfig(seed=seed, data={"kind": kind, "path": path}))
            assert [(i.id, i.response_a, i.label) for i in labelled] == \
                   [(i.id, i.response_a, i.label) for i in rlthf]

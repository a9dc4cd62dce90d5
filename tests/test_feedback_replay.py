"""``judge.kind: replay``: answers from recorded judgments, missing ones are error rows."""

from __future__ import annotations

import json

import pytest

from rayalign.data.schema import Judgment, PairwiseItem
from rayalign.feedback.config import JudgeConfig, build_judge
from rayalign.feedback.replay import ReplayJudge, load_replay, read_recorded
from rayalign.rlthf import labelling


def _items(n: int) -> list[PairwiseItem]:
    return [PairwiseItem(id=f"p{i}", prompt=f"q{i}", response_a=f"a{i}", response_b=f"b{i}")
            for i in range(n)]


def _write(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_replay_judge_answers_recorded_rows_and_flags_missing(tmp_path):
    rec = _write(tmp_path / "ai_judgments.jsonl", [
        Judgment(item_id="p0", judge="simulated-labeller(x)", label="A", rationale="r0",
                 simulated=True).model_dump(),
        {"id": "p1", "label": "B"},                       # minimal row
        {"item_id": "p2", "judge": "j", "label": None, "error": "request failed: 500"},
        {"id": "p1", "label": "tie"},                     # a later row wins
    ])
    cfg = JudgeConfig(kind="replay", settings={"path": rec})
    judge = build_judge(cfg)
    assert isinstance(judge, ReplayJudge) and judge.spec == cfg.cache_spec()
    assert judge.simulated  # replaying a simulation stays marked as one
    out = judge.judge(_items(4))
    assert [j.item_id for j in out] == ["p0", "p1", "p2", "p3"]
    assert [j.label for j in out] == ["A", "tie", None, None]
    assert out[0].simulated and out[0].rationale == "r0" and out[0].error is None
    assert out[2].error == "request failed: 500"           # a recorded failure stays one
    assert out[3].error and "no recorded judgment" in out[3].error and "'p3'" in out[3].error
    assert all(j.judge == "replay:ai_judgments.jsonl" for j in out)


def test_replay_cache_identity_follows_file_content(tmp_path):
    p = tmp_path / "rec.jsonl"
    _write(p, [{"id": "p0", "label": "A"}])
    spec1 = JudgeConfig(kind="replay", settings={"path": str(p)}).cache_spec()
    _write(p, [{"id": "p0", "label": "B"}])
    assert JudgeConfig(kind="replay", settings={"path": str(p)}).cache_spec() != spec1


def test_replay_bad_files_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="path"):
        JudgeConfig(kind="replay", settings={})
    with pytest.raises(FileNotFoundError, match="not found"):
        build_judge(JudgeConfig(kind="replay", settings={"path": str(tmp_path / "nope.jsonl")}))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "p0", "label": "A"}\n{"id": "p1", "label": "maybe"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl, row 1 \(line 2\), field 'label'"):
        read_recorded(bad)
    bad.write_text("not json\n")
    with pytest.raises(ValueError, match=r"bad.jsonl, row 0 \(line 1\): invalid JSON"):
        read_recorded(bad)
    bad.write_bytes(b'{"id": "p0", "label": "A"}\n{"id": "p\xff", "label": "A"}\n')
    with pytest.raises(ValueError, match=r"row 1 \(line 2\): not valid UTF-8"):
        read_recorded(bad)
    # a row with neither label nor error is an error row, never a silent default
    _write(bad, [{"id": "p0"}])
    assert read_recorded(bad)["p0"][0].judgment.error == "recorded judgment has no label"


def test_rlthf_replay_labeller_shares_the_parser_and_stays_strict(tmp_path):
    assert labelling.load_replay is load_replay
    rec = _write(tmp_path / "r.jsonl", [{"id": "p0", "label": "A"}, {"id": "p1", "label": "B"}])
    got = load_replay(rec, _items(2))
    assert [j.label for j in got] == ["A", "B"]
    with pytest.raises(ValueError, match="no label for 1 pairs"):
        load_replay(rec, _items(3))


def test_replay_through_the_labelling_pipeline(ray_local, tmp_path):
    from rayalign.feedback.pipeline import label_pairs_with_stats

    rec = _write(tmp_path / "judgments.jsonl", [{"id": "p0", "label": "A"}, {"id": "p1", "label": "B"}])
    cfg = JudgeConfig(kind="replay", settings={"path": rec}, concurrency=1)
    got, stats = label_pairs_with_stats(_items(3), cfg, cache_path=tmp_path / "c.sqlite")
    assert [j.label for j in got] == ["A", "B", None] and "no recorded judgment" in got[2].error
    assert stats.n_errors == 1 and stats.judge == "replay:judgments.jsonl" and not stats.simulated


def test_replay_maps_a_recorded_label_onto_the_current_order(tmp_path):
    """A recorded "A" is the response the judge saw first: shown the other way round, the
    same verdict is "B". Without this a replay into another order inverts the label."""
    from rayalign.data.schema import response_key

    items = _items(3)
    rec = _write(tmp_path / "r.jsonl", [
        {"id": "p0", "label": "A", "shown_a": response_key("a0")},                  # same order
        {"id": "p1", "label": "A", "shown_a": response_key("b1"), "score_a": 9.0, "score_b": 1.0},
        {"id": "p2", "label": "B", "shown_a": response_key("something else")},
    ])
    judged = ReplayJudge(rec).judge(items)   # the labelling pipeline: a bad row is an error row
    assert [j.label for j in judged] == ["A", "B", None]
    assert (judged[1].score_a, judged[1].score_b) == (1.0, 9.0)
    assert "other responses" in judged[2].error
    assert all(j.shown_a == response_key(it.response_a) for j, it in zip(judged, items))
    # the RLTHF loop is strict: the row that names another pair's responses is named
    with pytest.raises(ValueError, match=r"r.jsonl, row 2 \(line 3\), field 'shown_a': pair 'p2'"):
        load_replay(rec, items)
    got = load_replay(rec, items[:2])
    assert [j.label for j in got] == ["A", "B"] and (got[1].score_a, got[1].score_b) == (1.0, 9.0)


def _file_frame_items() -> list[PairwiseItem]:
    """Pairs shown in a seeded order: p1 shows the file's response_b first (as a votes file)."""
    from rayalign.data.schema import FILE_A_KEY, response_key

    return [PairwiseItem(id="p0", prompt="q0", response_a="a0", response_b="b0",
                         meta={FILE_A_KEY: response_key("a0")}),
            PairwiseItem(id="p1", prompt="q1", response_a="b1", response_b="a1",
                         meta={FILE_A_KEY: response_key("a1")}),
            PairwiseItem(id="p2", prompt="q2", response_a="a2", response_b="b2")]


def test_replay_keeps_both_orders_and_names_responses_as_the_data_file_does(tmp_path):
    """Rows in either or both orders: ``label`` and ``shown_first`` name the file's A/B;
    a judge contradicting itself across orders is a tie with both verdicts kept."""
    from rayalign.data.schema import response_key

    rec = _write(tmp_path / "two_orders.jsonl", [
        {"id": "p0", "label": "A", "shown_first": "A", "confidence": 0.9},
        {"id": "p0", "label": "A", "shown_first": "B"},          # consistent across orders
        {"id": "p1", "label": "A", "shown_first": "A"},          # the file's A is the item's B
        {"id": "p1", "label": "B", "shown_first": "B"},          # contradicts itself: "tie"
        {"id": "p2", "label": "B", "shown_first": "B"},          # one order only
    ])
    got = load_replay(rec, _file_frame_items())
    assert [j.label for j in got] == ["A", "tie", "B"]
    assert [len(j.order_verdicts) for j in got] == [2, 2, 1]
    assert got[0].order_verdicts[0].confidence == 0.9 and got[0].error is None
    # p1: the file's A ("a1") is shown as B here; each order's winner is the response it named
    v = got[1].order_verdicts
    assert [x.shown_first for x in v] == [response_key("a1"), response_key("b1")]
    assert [x.label_in(_file_frame_items()[1]) for x in v] == ["B", "A"]
    assert got[1].error is None and (got[1].score_a, got[1].score_b) == (0.5, 0.5)
    assert got[2].order_verdicts[0].first_in(_file_frame_items()[2]) == "B"


def test_replay_rows_naming_an_unknown_pair_or_order_are_one_line_errors(tmp_path):
    from rayalign.data.errors import DataError

    rec = _write(tmp_path / "v.jsonl", [{"id": "p0", "label": "A"}, {"id": "zz", "label": "B"}])
    with pytest.raises(DataError, match=r"v.jsonl, row 1 \(line 2\), field 'id': id 'zz' names no pair"):
        load_replay(rec, _items(1), known_ids=set())
    assert [j.label for j in load_replay(rec, _items(1), known_ids={"zz"})] == ["A"]  # e.g. the test split
    bad = _write(tmp_path / "o.jsonl", [{"id": "p0", "label": "A", "shown_first": "first"}])
    with pytest.raises(DataError, match=r"o.jsonl, row 0 \(line 1\), field 'shown_first'"):
        load_replay(bad, _items(1))
    # an extra judge may cover only some pairs: the others are its abstentions
    part = load_replay(rec, _items(2), known_ids={"zz"}, require_all=False)
    assert part[1].label is None and "no recorded judgment" in part[1].error


def test_bundled_recorded_verdicts_replay_with_ties_as_errors():
    from rayalign.data.pairs import load_pair_items

    items = list(load_pair_items("bundled:pandalm", seed=0))
    cfg = JudgeConfig(kind="replay", settings={"path": "bundled:pandalm_gpt35"})
    judge = build_judge(cfg)
    assert judge.name == "replay:bundled:pandalm_gpt35" and not judge.simulated
    assert judge.spec == cfg.cache_spec() and len(judge.spec) > len("replay:bundled:pandalm_gpt35:")
    out = judge.judge(items)
    labelled = [(j, it) for j, it in zip(out, items) if j.label is not None]
    errors = [j for j in out if j.error]
    assert len(labelled) + len(errors) == len(items) and all(j.label is None for j in errors)
    assert {e.error.split(" (")[0] for e in errors} == {"recorded verdict is a tie", "recorded verdict is not a label"}
    # real gpt-3.5-turbo agreement with the human majority on its decisive verdicts
    agree = sum(j.label == it.label for j, it in labelled) / len(labelled)
    assert 0.78 < agree < 0.85

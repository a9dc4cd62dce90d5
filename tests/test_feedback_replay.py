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
    with pytest.raises(ValueError, match=r"bad.jsonl:2"):
        read_recorded(bad)
    bad.write_text("not json\n")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_recorded(bad)
    # a row with neither label nor error is an error row, never a silent default
    _write(bad, [{"id": "p0"}])
    assert read_recorded(bad)["p0"].error == "recorded judgment has no label"


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
    got = load_replay(rec, items)
    assert [j.label for j in got] == ["A", "B", None]
    assert (got[1].score_a, got[1].score_b) == (1.0, 9.0)
    assert "other responses" in got[2].error
    assert all(j.shown_a == response_key(it.response_a) for j, it in zip(got, items))
    judged = ReplayJudge(rec).judge(items)
    assert [j.label for j in judged] == ["A", "B", None]


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

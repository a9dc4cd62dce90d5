"""The align driver: steps persisted, a killed run resumes without re-asking any engine."""

from __future__ import annotations

import json

import pytest
from policy_fakes import CountingFactory, FakeTrainer

from rayalign.policy.align_config import AlignConfig
from rayalign.policy.driver import AlignLoop, run_align
from rayalign.runs import read_jsonl


def _cfg(tmp_path, **over) -> AlignConfig:
    base = tmp_path / "base-model"
    base.mkdir(exist_ok=True)
    (base / "weights.txt").write_text("fake")
    d = {
        "recipe": "self-reward", "model": str(base), "run_dir": str(tmp_path / "run"),
        "iterations": 2, "n_candidates": 4,
        "prompts": {"source": "synthesize", "n_prompts": 3, "seed_pool": 8},
        "sft": {"n_ift": 4, "n_eft": 4},
        "eval": {"rm_groups": 2},
        "policy_engine": {"batch_size": 1},
    }
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(d.get(k), dict):
            d[k].update(v)
        else:
            d[k] = v
    return AlignConfig.model_validate(d)


def _eval_responses(run) -> int:
    # Engine requests needed to evaluate one model: one rubric call per held-out answer.
    return sum(len(g["responses"]) for g in run.data()["eval_groups"])


def test_killed_loop_resumes_without_regenerating(tmp_path):
    cfg = _cfg(tmp_path)
    f1, t1 = CountingFactory(), FakeTrainer(fail_on={"M3"})
    loop = AlignLoop(cfg, engine_factory=f1, run_sft=t1, run_dpo=t1)
    with pytest.raises(RuntimeError, match="simulated crash"):
        loop.run_all()
    man = loop.run.manifest()["steps"]
    assert {"sft", "eval.M1", "it1.prompts", "it1.candidates", "it1.judgments", "it1.pairs",
            "it1.train", "eval.M2", "it2.prompts", "it2.pairs"} <= set(man)
    assert "it2.train" not in man
    # The study's pair rule on the scripted judge (answers score 1,2,3,4 -> best 4 vs worst 1).
    pairs = read_jsonl(loop.run.path / "it1" / "pairs.jsonl")
    assert len(pairs) == 3 and all("[s=4]" in p["chosen"] and "[s=1]" in p["rejected"] for p in pairs)
    assert man["it1.pairs"]["skipped_tie"] == 0 and man["it1.pairs"]["pairs"] == 3
    before = {p: p.read_bytes() for p in (loop.run.path / "it2").rglob("*.jsonl")}
    first_calls = f1.calls
    assert f1.calls > 0 and set(t1.calls[0:1]) == {("M1", 8)}

    f2, t2 = CountingFactory(), FakeTrainer()
    summary = AlignLoop(cfg, engine_factory=f2, run_sft=t2, run_dpo=t2).run_all()
    # Only what was left: training M3 and evaluating it. No prompt, answer or judgment again.
    assert t2.calls == [("M3", 3)]
    kinds = {k: v for e in f2.engines for k, v in e.by_kind.items()}
    assert kinds == {"judge": _eval_responses(loop)}
    assert f2.calls < first_calls
    assert {p: p.read_bytes() for p in (loop.run.path / "it2").rglob("*.jsonl")} == before
    assert summary["models"]["M3"].endswith("M3")
    assert loop.run.manifest()["status"] == "finished"
    # Third run: everything done, no engine is even created.
    f3 = CountingFactory()
    AlignLoop(cfg, engine_factory=f3, run_sft=FakeTrainer(), run_dpo=FakeTrainer()).run_all()
    assert f3.engines == []


def test_resume_inside_a_generation_step_keeps_finished_chunks(tmp_path):
    # batch_size 1 -> candidates are persisted 4 prompts per chunk; 6 prompts = 2 chunks.
    cfg = _cfg(tmp_path, iterations=1, prompts={"source": "oasst", "n_prompts": 6},
               eval={"rm_groups": 0})

    class DiesOnSecondAnswerBatch(CountingFactory):
        def __call__(self, c):
            e = super().__call__(c)
            orig = e.generate

            def gen(reqs):
                if e.by_kind.get("answer", 0) >= 4:
                    raise RuntimeError("simulated crash while generating")
                return orig(reqs)
            e.generate = gen
            return e

    f1 = DiesOnSecondAnswerBatch()
    with pytest.raises(RuntimeError, match="simulated crash"):
        AlignLoop(cfg, engine_factory=f1, run_sft=FakeTrainer(), run_dpo=FakeTrainer()).run_all()
    assert f1.engines[0].by_kind == {"answer": 4}
    f2 = CountingFactory()
    AlignLoop(cfg, engine_factory=f2, run_sft=FakeTrainer(), run_dpo=FakeTrainer()).run_all()
    kinds = {k: v for e in f2.engines for k, v in e.by_kind.items()}
    assert kinds == {"answer": 2, "judge": 6 * 4}


def test_teacher_demo_with_replay_teacher_and_changed_config_refused(tmp_path):
    cfg = _cfg(tmp_path, recipe="teacher-demo", iterations=1, teacher={"kind": "replay"},
               prompts={"source": "oasst", "n_prompts": 3}, eval={"rm_groups": 0},
               sft={"enabled": False})
    f, tr = CountingFactory(), FakeTrainer()
    AlignLoop(cfg, engine_factory=f, run_sft=tr, run_dpo=tr).run_all()
    pairs = read_jsonl(tmp_path / "run" / "it1" / "pairs.jsonl")
    assert len(pairs) == 3 and all("[s=" in p["rejected"] for p in pairs)
    assert all(p["meta"]["teacher"] == "simulated:oasst-best-human-answer" for p in pairs)
    assert tr.calls == [("M2", 3)]                       # SFT off: M1 = base model
    assert f.engines[0].by_kind == {"answer": 3}          # one student answer per prompt
    with pytest.raises(ValueError, match="different config"):
        AlignLoop(cfg.model_copy(update={"n_candidates": 5}), engine_factory=f)


def test_config_rules():
    with pytest.raises(ValueError, match="needs a teacher"):
        AlignConfig(recipe="teacher-reward")
    with pytest.raises(ValueError, match="judging teacher"):
        AlignConfig(recipe="teacher-reward", teacher={"kind": "replay"})


def test_sft_recipe_writes_ift_and_eft(tmp_path):
    cfg = _cfg(tmp_path, recipe="sft", eval={"rm_groups": 0})
    tr = FakeTrainer()
    s = AlignLoop(cfg, engine_factory=CountingFactory(), run_sft=tr, run_dpo=tr).run_all()
    assert tr.calls == [("M1", 8)] and list(s["models"]) == ["M1"]
    eft = read_jsonl(tmp_path / "run" / "sft" / "eft.jsonl")
    assert all(e["completion"][0]["content"].endswith(f"Score: {e['score']}") for e in eft)


def test_loop_runs_as_a_ray_actor(tmp_path, ray_local):
    import policy_fakes
    import ray.cloudpickle as rcp

    rcp.register_pickle_by_value(policy_fakes)
    cfg = _cfg(tmp_path, iterations=1, prompts={"source": "oasst", "n_prompts": 2},
               eval={"rm_groups": 0})
    s = run_align(cfg, engine_factory=CountingFactory(), run_sft=FakeTrainer(), run_dpo=FakeTrainer())
    assert set(s["models"]) == {"M1", "M2"}
    man = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert man["status"] == "finished" and man["steps"]["it1.pairs"]["pairs"] == 2


@pytest.mark.slow
def test_full_loop_with_real_sft_dpo_and_tiny_model(tmp_path, ray_local):
    """Real path end to end: tiny Llama, HF local engine, TRL SFT + DPO under Ray Train,
    teacher-demo with the simulated (replay) teacher; then a resume that does nothing."""
    cfg = AlignConfig.model_validate({
        "recipe": "teacher-demo", "model": "tiny", "run_dir": str(tmp_path / "run"),
        "iterations": 1, "teacher": {"kind": "replay"},
        "generation": {"max_tokens": 12, "temperature": 0.8}, "judge": {"max_tokens": 12},
        "prompts": {"source": "oasst", "n_prompts": 3},
        "sft": {"n_ift": 3, "n_eft": 3, "train": {"effective_batch_size": 4,
                                                   "per_device_batch_size": 4, "max_length": 256}},
        "dpo": {"effective_batch_size": 4, "per_device_batch_size": 2, "max_length": 256},
        "eval": {"rm_groups": 1},
    })
    s = AlignLoop(cfg).run_all()
    m2 = s["models"]["M2"]
    assert m2.endswith("M2/model") and (tmp_path / "run" / "models" / "M2" / "model" / "config.json").exists()
    pairs = read_jsonl(tmp_path / "run" / "it1" / "pairs.jsonl")
    assert len(pairs) == 3
    f = CountingFactory()
    AlignLoop(cfg, engine_factory=f, run_sft=FakeTrainer(), run_dpo=FakeTrainer()).run_all()
    assert f.engines == []


def test_candidates_through_the_ray_data_fanout(tmp_path, ray_local):
    """fanout.enabled: candidates come from feedback.pipeline.generate_candidates (Ray Data
    actors, real tiny model); a random model's judge output is unparseable, so the pairs
    step records every prompt as skipped and training is skipped (M2 = M1), all counted."""
    cfg = AlignConfig.model_validate({
        "recipe": "self-reward", "model": "tiny", "run_dir": str(tmp_path / "run"),
        "iterations": 1, "n_candidates": 2, "fanout": {"enabled": True, "concurrency": 1},
        "generation": {"max_tokens": 6, "temperature": 0.8}, "judge": {"max_tokens": 6},
        "prompts": {"source": "oasst", "n_prompts": 2}, "sft": {"enabled": False},
        "eval": {"rm_groups": 0},
    })
    tr = FakeTrainer()
    s = AlignLoop(cfg, run_dpo=tr).run_all()
    cands = read_jsonl(tmp_path / "run" / "it1" / "candidates" / "part-00000.jsonl")
    assert [len(c["texts"]) for c in cands] == [2, 2] and cands[0]["generator"].startswith("hf_local:")
    man = json.loads((tmp_path / "run" / "manifest.json").read_text())["steps"]
    assert man["it1.pairs"]["pairs"] == 0 and man["it1.pairs"]["skipped_unparseable"] == 2
    assert man["it1.train"]["note"].startswith("no pairs") and tr.calls == []
    assert s["models"]["M2"] == s["models"]["M1"]


def test_prompt_file_source_and_bad_row(tmp_path):
    good = tmp_path / "p.jsonl"
    good.write_text('{"prompt": "Name a red fruit."}\n{"prompt": "Say hi."}\n')
    cfg = _cfg(tmp_path, iterations=1, prompts={"source": "file", "path": str(good), "n_prompts": 2},
               eval={"rm_groups": 0}, sft={"enabled": False})
    AlignLoop(cfg, engine_factory=CountingFactory(), run_dpo=FakeTrainer()).run_all()
    got = read_jsonl(tmp_path / "run" / "it1" / "prompts.jsonl")
    assert sorted(p["prompt"] for p in got) == ["Name a red fruit.", "Say hi."]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok"}\n{"text": "no prompt"}\n')
    cfg2 = _cfg(tmp_path, run_dir=str(tmp_path / "run2"), iterations=1,
                prompts={"source": "file", "path": str(bad), "n_prompts": 2},
                eval={"rm_groups": 0}, sft={"enabled": False})
    with pytest.raises(ValueError, match=r"bad.jsonl, row 1, field 'prompt'"):
        AlignLoop(cfg2, engine_factory=CountingFactory(), run_dpo=FakeTrainer()).run_all()

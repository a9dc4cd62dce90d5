"""Constitutional AI (``rayalign cai``): principles files, the SL-CAI loop, soft/hard AI
preference labels, resume, and the command as a user runs it."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rayalign.data.loaders import load_any
from rayalign.engines.base import GenerationRequest, GenerationResult, OptionLogprobs, OptionScorer
from rayalign.policy.cai_config import CAIConfig
from rayalign.policy.cai_labels import combine_orders, soft_probability
from rayalign.policy.cai_records import first_human_turn
from rayalign.policy.constitution import CAILoop
from rayalign.policy.principles import (
    ConstitutionError, load_constitution, parse_constitution,
)
from rayalign.runs import read_jsonl

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable


# --------------------------------------------------------------------------- principles
def test_bundled_constitution_has_complete_principles():
    c = load_constitution("bundled:harmless")
    assert 8 <= len(c.principles) <= 12
    assert len({p.id for p in c.principles}) == len(c.principles)
    for p in c.principles:
        assert p.critique and p.revision and p.compare.endswith("?")


def _write(tmp_path: Path, data, name="rules.yaml") -> Path:
    p = tmp_path / name
    p.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return p


GOOD = {"name": "two", "principles": [
    {"id": "kind", "critique": "Is the answer unkind anywhere?", "revision": "Rewrite it kindly please.",
     "compare": "Which answer is kinder?"},
    {"id": "safe", "critique": "Is the answer dangerous anywhere?", "revision": "Rewrite it safely please.",
     "compare": "Which answer is safer?"}]}


@pytest.mark.parametrize("mutate, expect", [
    (lambda d: d["principles"][1].pop("revision"), "principles[1].revision: Field required"),
    (lambda d: d["principles"][0].update(critique="bad"), "principles[0].critique"),
    (lambda d: d["principles"][0].update(colour="red"), "principles[0].colour: unknown field"),
    (lambda d: d["principles"][1].update(id="kind"), "principle id 'kind' appears more than once"),
    (lambda d: d.update(principles=[]), "principles:"),
    (lambda d: d["principles"][0].update(id="has space"), "principles[0].id"),
])
def test_principles_file_errors_name_file_and_field(tmp_path, mutate, expect):
    data = json.loads(json.dumps(GOOD))
    mutate(data)
    path = _write(tmp_path, data)
    with pytest.raises(ConstitutionError) as err:
        load_constitution(str(path))
    assert str(path) in str(err.value) and expect in str(err.value)


def test_principles_file_other_errors(tmp_path):
    assert load_constitution(str(_write(tmp_path, GOOD))).source.endswith("rules.yaml")
    with pytest.raises(ConstitutionError, match="not found"):
        load_constitution(str(tmp_path / "missing.yaml"))
    with pytest.raises(ConstitutionError, match="not valid YAML"):
        load_constitution(str(_write(tmp_path, "name: [unclosed", "bad.yaml")))
    with pytest.raises(ConstitutionError, match="top level must be a mapping"):
        parse_constitution(["a"], "x.yaml")
    with pytest.raises(ConstitutionError, match="bundled: harmless"):
        load_constitution("bundled:nope")


def test_principle_draw_is_seeded_by_content():
    c = load_constitution()
    draws = [c.draw(0, f"p{i}", "round1").id for i in range(40)]
    assert draws == [c.draw(0, f"p{i}", "round1").id for i in range(40)]  # call order irrelevant
    assert len(set(draws)) >= 5                                            # actually random
    assert draws != [c.draw(1, f"p{i}", "round1").id for i in range(40)]   # the seed matters


def test_first_human_turn():
    assert first_human_turn("\n\nHuman: How do I pick a lock?\n\nAssistant: Why?\n\nHuman: x") == \
        "How do I pick a lock?"


# --------------------------------------------------------------------------- soft labels
def test_soft_probability_normalises_over_the_two_options():
    p = soft_probability([math.log(0.2), math.log(0.6)])
    assert p == pytest.approx(0.25)
    assert p + soft_probability([math.log(0.6), math.log(0.2)]) == pytest.approx(1.0)
    assert soft_probability([-1000.0, -1001.0]) == pytest.approx(1 / (1 + math.exp(-1)))
    assert combine_orders(0.25, 0.8) == pytest.approx((0.25 + 0.2) / 2)
    assert combine_orders(0.9, None) == 0.9 and combine_orders(None, 0.3) is None


class FakeCAIEngine:
    """Scripted policy + feedback model. Answers to the original request are "Unsafe ...",
    revisions "Safe ...". ``option_logprobs`` returns log-probs the test controls: when the
    unsafe answer is shown as A: (log 0.2, log 0.6); when it is shown as B: (log 0.5, log 0.1)
    (deliberately not normalised: the loop must normalise over the two options)."""

    def __init__(self, crash_after: int | None = None):
        self.calls = 0
        self.crash_after = crash_after
        self.seen: list[str] = []

    @property
    def spec(self) -> str:
        return "fake:cai"

    def _tick(self) -> None:
        self.calls += 1
        if self.crash_after is not None and self.calls > self.crash_after:
            raise RuntimeError("simulated crash of the driver")

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        self._tick()
        out = []
        for r in requests:
            text = r.messages[0]["content"]
            self.seen.append(text)
            if "Critique request:" in text:
                req = text.split("Critique request: ", 1)[1].split("\n")[0]
                t = f"Critique: it breaks the rule [{req[:20]}]."
            elif "Revision request:" in text:
                t = f"Revised answer: Safe answer {text.count('Critique:')}."
            elif "Options:" in text:
                a = text.split("(A) ", 1)[1]
                t = "B) because" if a.startswith("Unsafe") else "A) because"
            else:
                t = f"Unsafe answer to: {text.split('Request: ')[-1][:30]}"
            out.append(GenerationResult(id=r.id, texts=[t] * r.params.n, finish_reasons=["stop"]))
        return out

    def option_logprobs(self, requests, options):
        self._tick()
        assert options == ["A", "B"]
        out = []
        for r in requests:
            assert r.messages[-1] == {"role": "assistant", "content": "The better answer is ("}
            a = r.messages[0]["content"].split("(A) ", 1)[1]
            lp = [math.log(0.2), math.log(0.6)] if a.startswith("Unsafe") else [math.log(0.5), math.log(0.1)]
            out.append(OptionLogprobs(id=r.id, logprobs=lp))
        return out


class FakeTextOnlyEngine(FakeCAIEngine):
    """The same engine without log-probs (like an OpenAI-compatible server here)."""

    option_logprobs = None  # type: ignore[assignment]

    def __getattribute__(self, name):
        if name == "option_logprobs":
            raise AttributeError(name)
        return super().__getattribute__(name)


def _cfg(**kw) -> CAIConfig:
    base = dict(model="fake-model", revisions=2, prompts={"n_prompts": 4},
                policy_engine={"batch_size": 2})
    base.update(kw)
    return CAIConfig.model_validate(base)


class Factory:
    def __init__(self, cls=FakeCAIEngine, **kw):
        self.cls, self.kw, self.engines = cls, kw, []

    def __call__(self, cfg):
        e = self.cls(**self.kw)
        self.engines.append(e)
        return e

    @property
    def calls(self) -> int:
        return sum(e.calls for e in self.engines)


def _fake_loop(tmp_path, name="run", factory=None, cfg=None, **kw) -> CAILoop:
    loop = CAILoop(cfg or _cfg(), tmp_path / name, engine_factory=factory or Factory(), **kw)
    loop._sft_rows = lambda recs: [{"prompt": r.prompt, "completion": r.final} for r in recs]  # no tokenizer
    return loop


def test_sl_cai_records_name_the_principle_used_and_the_revision_feeds_the_next_round(tmp_path):
    loop = _fake_loop(tmp_path)
    summary = loop.run_all()
    c = load_constitution()
    recs = read_jsonl(Path(summary["run_dir"]) / "sl" / "records.jsonl")
    assert len(recs) == 4 and summary["revised"] == 4
    for r in recs:
        assert r["answer"].startswith("Unsafe answer")
        assert [x["round"] for x in r["rounds"]] == [1, 2]
        for x in r["rounds"]:
            p = c.draw(0, r["prompt_id"], f"round{x['round']}")
            assert x["principle"] == p.id
            assert p.critique[:20] in x["critique"]           # the drawn principle's request was asked
            assert x["revision"].startswith("Safe answer")    # "Revised answer:" label cleaned off
        assert r["final"] == r["rounds"][-1]["revision"]
    # round 2 critiques the round-1 revision, not the first answer
    round2 = [t for t in loop.engine_factory.engines[0].seen if "Critique request:" in t][4:]
    assert all("Assistant: Safe answer" in t for t in round2)
    sft = read_jsonl(Path(summary["sft_file"]))
    assert [s["completion"] for s in sft] == [r["final"] for r in recs]


def test_soft_labels_follow_the_log_probs_in_both_orders(tmp_path):
    summary = _fake_loop(tmp_path).run_all()
    prefs = list(load_any(summary["preferences"]))   # the loader rm train / dpo / rlthf use
    assert len(prefs) == 4 and summary["kept"] == 4
    # unsafe first: P(A)=0.2/0.8=0.25; swapped: P(A)=0.5/0.6, so P(unsafe)=1-0.8333
    p_unsafe = (0.25 + (1 - 0.5 / 0.6)) / 2
    c = load_constitution()
    for p in prefs:
        assert p.chosen.startswith("Safe") and p.rejected.startswith("Unsafe")
        assert p.meta["soft_label"] == pytest.approx(1 - p_unsafe, abs=1e-6)
        assert p.meta["label_kind"] == "soft" and p.meta["orders"] == 2
        assert p.meta["principle"] == c.draw(0, p.meta["prompt_id"], "compare").id
    verdicts = [r for f in sorted((Path(summary["run_dir"]) / "pref" / "judgments").glob("*.jsonl"))
                for r in read_jsonl(f)]
    assert len(verdicts) == 8
    for v in verdicts:  # per order: the two normalised option probabilities sum to 1
        pa = v["p_a"]
        pb = soft_probability(list(reversed(v["logprobs"])))
        assert pa + pb == pytest.approx(1.0)


def test_hard_labels_without_log_probs_keep_only_order_consistent_verdicts(tmp_path):
    summary = _fake_loop(tmp_path, factory=Factory(FakeTextOnlyEngine)).run_all()
    prefs = list(load_any(summary["preferences"]))
    assert len(prefs) == 4
    assert all(p.meta["label_kind"] == "hard" and p.meta["soft_label"] == 1.0 for p in prefs)
    assert all(p.chosen.startswith("Safe") for p in prefs)
    with pytest.raises(ValueError, match="soft needs an engine with option log-probs"):
        _fake_loop(tmp_path, "soft", factory=Factory(FakeTextOnlyEngine),
                   cfg=_cfg(preference={"judge": {"labels": "soft"}})).run_all()


def test_position_biased_hard_judge_gives_ties_not_labels(tmp_path):
    class AlwaysA(FakeTextOnlyEngine):
        def generate(self, requests):
            out = super().generate(requests)
            return [GenerationResult(id=o.id, texts=["A) first"]) if "Options:" in r.messages[0]["content"]
                    else o for r, o in zip(requests, out)]

    summary = _fake_loop(tmp_path, factory=Factory(AlwaysA)).run_all()
    assert summary["kept"] == 0 and summary["ties"] == 4


def test_killed_run_continues_without_redoing_finished_chunks(tmp_path):
    full = Factory()
    ref = _fake_loop(tmp_path, "ref", factory=full, chunk_size=1).run_all()
    crashing = Factory(crash_after=7)
    with pytest.raises(RuntimeError, match="simulated crash"):
        _fake_loop(tmp_path, "killed", factory=crashing, chunk_size=1).run_all()
    again = Factory()
    got = _fake_loop(tmp_path, "killed", factory=again, chunk_size=1).run_all()
    assert crashing.calls - 1 + again.calls == full.calls   # nothing asked twice
    assert read_jsonl(Path(got["run_dir"]) / "sl" / "records.jsonl") == \
        read_jsonl(Path(ref["run_dir"]) / "sl" / "records.jsonl")
    assert read_jsonl(Path(got["preferences"])) == read_jsonl(Path(ref["preferences"]))
    idle = Factory()
    _fake_loop(tmp_path, "killed", factory=idle, chunk_size=1).run_all()
    assert idle.calls == 0


def test_resume_refuses_an_edited_constitution(tmp_path):
    rules = _write(tmp_path, GOOD)
    _fake_loop(tmp_path, cfg=_cfg(constitution=str(rules), revisions=1)).run_all()
    _fake_loop(tmp_path, cfg=_cfg(constitution=str(rules), revisions=1))  # unchanged: resumes
    edited = json.loads(json.dumps(GOOD))
    edited["principles"][0]["revision"] = "Rewrite it in a very different way."
    _write(tmp_path, edited)
    with pytest.raises(ValueError, match="rules.yaml changed since"):
        _fake_loop(tmp_path, cfg=_cfg(constitution=str(rules), revisions=1))


def test_samples_source_judges_two_samples_of_the_sl_model(tmp_path):
    class TwoSamples(FakeCAIEngine):
        def generate(self, requests):
            out = super().generate(requests)
            for r, o in zip(requests, out):
                if r.params.n == 2:
                    o.texts = ["Unsafe sample one", "Safe sample two"]
            return out

    trained = []

    def fake_sft(rows, model, out_dir, cfg, ray_cfg=None):
        trained.append((model, len(rows)))
        return Path(out_dir) / "model"

    fac = Factory(TwoSamples)
    loop = _fake_loop(tmp_path, factory=fac, run_sft=fake_sft,
                      cfg=_cfg(sft={"enabled": True}, preference={"source": "samples"}))
    summary = loop.run_all()
    assert trained == [("fake-model", 4)]
    assert summary["sl_model"].endswith("models/sl-cai/model")
    models = [json.loads(line)["model"] for line in
              (Path(summary["run_dir"]) / "pref" / "samples" / "part-00000.jsonl").read_text().splitlines()]
    assert set(models) == {summary["sl_model"]}
    prefs = list(load_any(summary["preferences"]))
    assert len(prefs) == 4 and all(p.chosen == "Safe sample two" for p in prefs)
    assert all(p.meta["pair_kind"] == "samples" for p in prefs)


# --------------------------------------------------------------------------- tiny real model
@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    from rayalign.models.tiny import build_tiny_causal_lm

    return str(build_tiny_causal_lm(tmp_path_factory.mktemp("tiny") / "lm"))


def test_hf_local_option_logprobs_are_the_next_token_log_probs(tiny_lm):
    import torch

    from rayalign.engines.config import EngineConfig
    from rayalign.engines.hf_local import HFLocalEngine, render_chat

    eng = HFLocalEngine(EngineConfig(kind="hf_local", model=tiny_lm, batch_size=2))
    assert isinstance(eng, OptionScorer)
    msgs = [[{"role": "user", "content": f"Which is better {w}? (A) yes (B) no"},
             {"role": "assistant", "content": "The better answer is ("}] for w in ("x", "a longer question")]
    got = eng.option_logprobs([GenerationRequest(id=str(i), messages=m) for i, m in enumerate(msgs)],
                              ["A", "B"])
    ids = eng.option_token_ids(["A", "B"])
    for m, g in zip(msgs, got):  # batched with left padding == one sequence alone
        enc = eng.tokenizer(render_chat(eng.tokenizer, m), return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            lp = torch.log_softmax(eng.model(**enc).logits[0, -1].float(), -1)
        assert g.error is None
        assert g.logprobs == pytest.approx([lp[i].item() for i in ids], abs=1e-4)
        p = soft_probability(g.logprobs)
        assert 0 < p < 1


def _tiny_cfg(tiny_lm: str, **kw) -> dict:
    cfg = {"model": tiny_lm, "revisions": 1, "max_answer_chars": 80,
           "prompts": {"n_prompts": 2}, "policy_engine": {"batch_size": 4},
           "answer": {"max_tokens": 6}, "critique": {"max_tokens": 6}, "revision": {"max_tokens": 6}}
    cfg.update(kw)
    return cfg


def test_cai_loop_on_a_tiny_model(tmp_path, tiny_lm):
    loop = CAILoop(_tiny_cfg(tiny_lm, revisions=2), tmp_path / "run")
    summary = loop.run_all()
    c = load_constitution()
    recs = read_jsonl(tmp_path / "run" / "sl" / "records.jsonl")
    assert len(recs) == 2
    for r in recs:
        assert r["prompt"] and r["answer"]
        assert [x["principle"] for x in r["rounds"]] == [c.draw(0, r["prompt_id"], f"round{k}").id
                                                         for k in (1, 2)]
        assert all(x["critique"] and x["revision"] for x in r["rounds"])
    sft = read_jsonl(tmp_path / "run" / "sl_cai_sft.jsonl")
    assert sft and all(s["prompt"].startswith("<|user|>") and s["prompt"].endswith("<|assistant|>\n")
                       for s in sft)  # the tiny model's chat template, as the engine renders it
    from rayalign.cli.train import _load_sft_examples  # what `rayalign sft` reads

    assert len(_load_sft_examples(str(tmp_path / "run" / "sl_cai_sft.jsonl"), None)) == len(sft)
    prefs = list(load_any(summary["preferences"]))
    assert summary["kept"] + summary["ties"] + summary["failed"] == summary["pairs"]
    for p in prefs:
        assert p.meta["label_kind"] == "soft" and 0.5 < p.meta["soft_label"] < 1


# --------------------------------------------------------------------------- the command
def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run([PY, "-m", "rayalign.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def test_cai_command_as_a_user_runs_it(tmp_path, tiny_lm):
    cfg = _tiny_cfg(tiny_lm, constitution="my_rules.yaml", run_dir="runs/cai")  # relative to the config
    (tmp_path / "cfgs").mkdir()
    (tmp_path / "cfgs" / "my_rules.yaml").write_text(yaml.safe_dump(GOOD))
    (tmp_path / "cfgs" / "cai.yaml").write_text(yaml.safe_dump(cfg))
    r = _cli(["cai", "--config", "cfgs/cai.yaml"], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads(r.stdout[r.stdout.index("{"):])
    run = tmp_path / "runs" / "cai"
    assert summary["run_dir"] == "runs/cai" and summary["prompts"] == 2
    assert summary["constitution"] == str(tmp_path / "cfgs" / "my_rules.yaml")
    recs = read_jsonl(run / "sl" / "records.jsonl")
    assert {x["principle"] for r_ in recs for x in r_["rounds"]} <= {"kind", "safe"}
    # rerun: resumes, nothing left to do
    r2 = _cli(["cai", "--config", "cfgs/cai.yaml"], tmp_path)
    assert r2.returncode == 0, r2.stderr[-2000:]
    man = json.loads((run / "manifest.json").read_text())
    assert man["resumes"] == 1 and man["status"] == "finished"
    # a broken principles file: one line naming the file and the field, exit code 2
    bad = json.loads(json.dumps(GOOD))
    del bad["principles"][0]["compare"]
    (tmp_path / "cfgs" / "my_rules.yaml").write_text(yaml.safe_dump(bad))
    r3 = _cli(["cai", "--config", "cfgs/cai.yaml", "--run-dir", "runs/other"], tmp_path)
    assert r3.returncode == 2
    assert "my_rules.yaml" in r3.stderr and "principles[0].compare: Field required" in r3.stderr
    assert "Traceback" not in r3.stderr


@pytest.mark.parametrize("name", ["cai_cpu.yaml", "cai_gpu.yaml"])
def test_shipped_cai_configs_validate(name):
    from rayalign.cli.jobs import infer_job
    from rayalign.config import load_config

    path = REPO / "jobs" / "configs" / name
    cfg = load_config(CAIConfig, path)
    assert infer_job(path) == "cai"
    load_constitution(cfg.constitution)


@pytest.mark.slow
def test_cai_through_the_ray_data_generation_fanout(ray_local, tmp_path, tiny_lm):
    """Answers, critiques and revisions through ``feedback.pipeline.generate_candidates``
    (engines built inside Ray Data actors); greedy decoding gives the same texts as in-process."""
    fan = CAILoop(_tiny_cfg(tiny_lm, fanout={"enabled": True, "batch_size": 2},
                            preference={"enabled": False}), tmp_path / "fan").run_all()
    local = CAILoop(_tiny_cfg(tiny_lm, preference={"enabled": False}), tmp_path / "local").run_all()
    a = read_jsonl(Path(fan["run_dir"]) / "sl" / "records.jsonl")
    b = read_jsonl(Path(local["run_dir"]) / "sl" / "records.jsonl")
    assert [r["rounds"][0]["principle"] for r in a] == [r["rounds"][0]["principle"] for r in b]
    assert [r["final"] for r in a] == [r["final"] for r in b]

"""`rayalign label` end to end in a fresh process: run files, resume, and the key never leaks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fake_openai_server import FakeOpenAIServer  # noqa: E402
from test_feedback_judges import content_judge, pairs  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # a fresh process + Ray start: ~20-45 s on 2 busy cores
def test_label_cli_writes_run_and_never_leaks_key(tmp_path):
    secret = "sk-live-NEVER-WRITE-ME-0987654321"
    items = pairs(12)
    inp = tmp_path / "pairs.jsonl"
    inp.write_text("".join(it.model_dump_json() + "\n" for it in items))
    with FakeOpenAIServer(answer=content_judge) as srv:
        srv.faults_for = {"question 4\n": ["429", "500"], "question 9\n": ["garbage"] * 10}
        cfg = {"run_dir": str(tmp_path / "run"), "input": str(inp),
               "judge": {"kind": "openai", "model": "fake", "base_urls": [srv.base_url],
                         "api_key_env": "RAYALIGN_TEST_SECRET", "timeout_s": 2, "max_retries": 3,
                         "parse_retries": 1, "concurrency": 1},
               "ray": {"num_cpus": 1}}
        cfg_path = tmp_path / "label.yaml"
        cfg_path.write_text(yaml.safe_dump(cfg))
        env = {**os.environ, "RAYALIGN_TEST_SECRET": secret, "RAY_AUTH_MODE": "disabled",
               "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1"}
        env.pop("RAY_ADDRESS", None)
        proc = subprocess.run([sys.executable, "-m", "rayalign.cli", "-v", "label", "--config", str(cfg_path)],
                              capture_output=True, text=True, env=env, cwd=REPO, timeout=240)
        assert proc.returncode == 0, proc.stderr[-3000:]
        auths = {r["auth"] for r in srv.requests}
    assert auths == {f"Bearer {secret}"}  # the key from the env var reached the server...
    run = tmp_path / "run"
    rows = [json.loads(line) for line in (run / "judgments.jsonl").read_text().splitlines()]
    assert [r["item_id"] for r in rows] == [it.id for it in items]
    assert [r["label"] for r in rows] == [it.label if i != 9 else None for i, it in enumerate(items)]
    assert rows[9]["error"].startswith("parse error")
    stats = json.loads((run / "stats.json").read_text())
    assert stats["n_total"] == 12 and stats["n_errors"] == 1
    agree = json.loads((run / "agreement.json").read_text())
    assert agree["decided"] == 11 and agree["accuracy_decided"] == 1.0
    # ...and appears nowhere else: not in the output, the logs, or any file of the run
    assert secret not in proc.stdout + proc.stderr
    for f in run.rglob("*"):
        if f.is_file():
            assert secret.encode() not in f.read_bytes(), f
    ray_logs = Path("/tmp/ray/session_latest/logs")
    if ray_logs.is_dir():
        for f in ray_logs.rglob("*"):
            if f.is_file() and f.stat().st_size < 50_000_000:
                assert secret.encode() not in f.read_bytes(), f


def test_label_and_eval_judge_cli_in_process(ray_local, tmp_path, capsys):
    from rayalign.cli import main

    items = pairs(6)
    inp = tmp_path / "pairs.jsonl"
    inp.write_text("".join(it.model_dump_json() + "\n" for it in items))
    with FakeOpenAIServer(answer=content_judge) as srv:
        judge = {"kind": "openai", "model": "fake", "base_urls": [srv.base_url], "concurrency": 1}
        cfg_path = tmp_path / "label.yaml"
        cfg_path.write_text(yaml.safe_dump({"run_dir": str(tmp_path / "run"), "input": str(inp),
                                            "judge": judge}))
        assert main(["label", "--config", str(cfg_path)]) == 0
        n1 = len(srv.requests)
        assert main(["label", "--config", str(cfg_path)]) == 0  # resume: all from the cache
        assert len(srv.requests) == n1 == 12
        prompts = tmp_path / "prompts.jsonl"
        prompts.write_text("".join(json.dumps({"id": f"q{i}", "prompt": f"say {i}"}) + "\n" for i in range(5)))
        gpath = tmp_path / "gen.yaml"
        with FakeOpenAIServer(answer=lambda m: "echo " + m[-1]["content"]) as gen_srv:
            gpath.write_text(yaml.safe_dump({"run_dir": str(tmp_path / "gen"), "input": str(prompts), "n": 2,
                                             "engine": {"kind": "openai", "model": "fake",
                                                        "base_urls": [gen_srv.base_url]}}))
            assert main(["generate", "--config", str(gpath)]) == 0
        cands = [json.loads(x) for x in (tmp_path / "gen" / "candidates.jsonl").read_text().splitlines()]
        assert [c["prompt_id"] for c in cands] == [f"q{i}" for i in range(5)]
        assert all(c["texts"] == [f"echo say {i}"] * 2 for i, c in enumerate(cands))
        jpath = tmp_path / "judge.yaml"
        jpath.write_text(yaml.safe_dump({**judge, "both_orders": False}))
        assert main(["eval", "judge", "--judge-config", str(jpath), "--data", str(inp),
                     "--out", str(tmp_path / "eval")]) == 0
    res = json.loads((tmp_path / "eval" / "judge_agreement.json").read_text())
    assert res["agreement"]["n"] == 6 and res["agreement"]["accuracy_decided"] == 1.0
    agree = json.loads((tmp_path / "run" / "agreement.json").read_text())
    assert agree["decided"] == 6 and agree["share_a"] == 0.5
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["resumes"] == 1 and "label" in manifest["steps"]
    stats = json.loads((tmp_path / "run" / "stats.json").read_text())
    assert stats["simulated"] is False and stats["judge"].startswith("openai")
    assert "SIMULATED judge" not in capsys.readouterr().out


def test_label_cli_marks_a_simulated_judge(ray_local, tmp_path, capsys):
    from rayalign.cli import main
    from rayalign.runs import read_jsonl

    items = pairs(8)  # labelled pairs: the simulation corrupts their labels
    inp = tmp_path / "pairs.jsonl"
    inp.write_text("".join(it.model_dump_json() + "\n" for it in items))
    cfg_path = tmp_path / "label.yaml"
    cfg_path.write_text(yaml.safe_dump({
        "run_dir": str(tmp_path / "run"), "input": str(inp),
        "judge": {"kind": "simulated", "concurrency": 1,
                  "settings": {"target_agreement": 0.75, "errors": "uniform"}}}))
    assert main(["label", "--config", str(cfg_path)]) == 0
    out = capsys.readouterr().out
    assert "SIMULATED judge: simulated-labeller(" in out
    stats = json.loads((tmp_path / "run" / "stats.json").read_text())
    assert stats["simulated"] is True and stats["judge"].startswith("simulated-labeller(")
    metrics = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert metrics[-1]["simulated"] is True and metrics[-1]["judge"] == stats["judge"]

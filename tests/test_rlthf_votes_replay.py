"""A recorded-judge data set of your own, as a user runs it: ``rayalign rlthf run`` on a votes
JSONL, the judge's verdicts in both A/B orders, a second judge's verdicts, no code.

The pairs are real (the bundled HH-RLHF slice); the "judges" are files written here: the
main judge is right on most pairs, contradicts itself across orders on some (its mistakes
are concentrated there, as with real position-biased judges), and a second judge disagrees
on a few more. The human answers from the votes (``human.kind: recorded``).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

N = 80


def _write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def recorded_project(tmp_path_factory) -> Path:
    """votes.jsonl + judge_a.jsonl (both orders) + judge_b.jsonl (one order) + rlthf.yaml."""
    from rayalign.data.bundled import load_bundled

    root = tmp_path_factory.mktemp("project")
    rng = random.Random(0)
    pairs = list(load_bundled("hh_rlhf_harmless"))[:N]
    votes, main_rows, second_rows = [], [], []
    for k, p in enumerate(pairs):
        a_is_chosen = k % 2 == 0
        a, b = (p.chosen, p.rejected) if a_is_chosen else (p.rejected, p.chosen)
        win = "A" if a_is_chosen else "B"
        lose = "B" if a_is_chosen else "A"
        pid = f"pair-{k:03d}"
        votes.append({"id": pid, "prompt": p.prompt, "response_a": a, "response_b": b, "votes": [win, win, lose]})
        if k % 5 == 0:    # contradicts itself: picks whatever it saw first
            main_rows += [{"id": pid, "label": "A", "shown_first": "A"}, {"id": pid, "label": "B", "shown_first": "B"}]
        else:
            label = lose if rng.random() < 0.1 else win
            main_rows += [{"id": pid, "label": label, "shown_first": "A", "confidence": 0.8},
                          {"id": pid, "label": label, "shown_first": "B"}]
        second = lose if k % 7 == 0 else win
        second_rows.append({"id": pid, "label": second, "shown_first": "B"})
    _write_jsonl(root / "votes.jsonl", votes)
    _write_jsonl(root / "judge_a.jsonl", main_rows)
    _write_jsonl(root / "judge_b.jsonl", second_rows)
    cfg = {
        "name": "my-recorded-judges", "seed": 0,
        "data": {"kind": "votes", "path": str(root / "votes.jsonl"), "test_fraction": 0.2},
        "labeller": {"kind": "replay", "name": "judge-a", "replay_path": str(root / "judge_a.jsonl"),
                     "extra_judges": [{"kind": "replay", "name": "judge-b", "replay_path": str(root / "judge_b.jsonl")}]},
        "human": {"kind": "recorded"}, "ground_truth": {"mode": "raw"},
        "reward_model": {"embedding_head": {"num_actors": 1}},
        "iterations": 2, "human_budget_pct": 10.0, "baselines": ["ai_only", "random"],
        "ray": {"num_cpus": 2},
    }
    (root / "rlthf.yaml").write_text(yaml.safe_dump(cfg))
    return root


def _rayalign(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rayalign.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600)


def test_rlthf_run_replays_both_orders_and_a_second_judge(recorded_project):
    run = recorded_project / "runs" / "r1"
    out = _rayalign("rlthf", "run", "--config", "rlthf.yaml", "--run-dir", str(run), cwd=recorded_project)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Traceback" not in out.stdout + out.stderr
    assert "judge errors / 100" in out.stdout and "RLTHF (error model)" in out.stdout
    judged = [json.loads(line) for line in (run / "data" / "ai_judgments.jsonl").read_text().splitlines()]
    assert {len(j["order_verdicts"]) for j in judged} == {2}            # both orders kept per pair
    assert any(j["label"] == "tie" for j in judged)                     # self-contradictions are not labels
    assert (run / "data" / "extra_judgments" / "judge-b.jsonl").is_file()
    manifest = json.loads((run / "manifest.json").read_text())
    sig = manifest["steps"]["ai_labels"]["signals"]
    assert sig["order_inconsistent"] > 0 and sig["extra_judges"] == 1 and sig["extra_judge_disagrees"] > 0
    em = json.loads((run / "iterations" / "iter_01" / "error_model.json").read_text())
    assert em["model"]["fitted"] and em["model"]["n_labels"] > 0         # refit on the answers of round 0
    first = [json.loads(line) for line in (run / "iterations" / "iter_00" / "human_labels.jsonl").read_text().splitlines()]
    sel = json.loads((run / "iterations" / "iter_00" / "selection.json").read_text())
    assert sel["targeting"] == "error_model" and len(sel["random_share"]) >= 1
    second = {json.loads(line)["id"]: json.loads(line)["label"]
              for line in (recorded_project / "judge_b.jsonl").read_text().splitlines()}
    warned = {j["item_id"] for j in judged if j["label"] == "tie" or second[j["item_id"]] != j["label"]}
    targeted = sel["human_batch"]
    # asked first: where the judge contradicted itself or the second judge disagrees (the margin
    # may move a few others up; the pure tests pin the ordering itself)
    assert targeted and 2 * len(set(targeted) & warned) >= len(targeted)
    assert len(first) == len(sel["human_batch"]) + len(sel["random_share"]) + len(sel["flip_audit"])


def test_a_verdict_row_naming_an_unknown_pair_is_one_error_line(recorded_project):
    bad = recorded_project / "judge_bad.jsonl"
    rows = (recorded_project / "judge_a.jsonl").read_text().splitlines()
    rows.insert(3, json.dumps({"id": "pair-999", "label": "A", "shown_first": "A"}))
    bad.write_text("\n".join(rows) + "\n")
    out = _rayalign("rlthf", "run", "--config", "rlthf.yaml", "--run-dir", str(recorded_project / "runs" / "bad"),
                    "--set", f"labeller.replay_path={bad}", cwd=recorded_project)
    assert out.returncode != 0
    err = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(err) == 1, out.stderr[-3000:]
    assert "judge_bad.jsonl" in err[0] and "row 3 (line 4)" in err[0] and "pair-999" in err[0]
    assert "Traceback" not in out.stderr

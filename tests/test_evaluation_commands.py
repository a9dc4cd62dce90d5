"""`rayalign eval rm|h2h|alpaca` and `rayalign align` through the real CLI entry point."""

from __future__ import annotations

import json

from rayalign.cli import main


def test_eval_alpaca_from_stored_gpt4_judgments(shared_data, tmp_path, capsys):
    d = shared_data / "alpaca_eval"
    rc = main(["eval", "alpaca", "--annotations",
               str(d / "annotations_gpt4_phi-2-dpo_vs_text_davinci_003.dev.jsonl"),
               "--out", str(tmp_path), "--name", "wr"])
    assert rc == 0
    rows = json.loads((tmp_path / "wr.json").read_text())["rows"]
    assert rows[0]["wins"] == 532 and rows[0]["losses"] == 111 and rows[0]["null"] == 1
    assert (tmp_path / "wr.png").stat().st_size > 1000 and (tmp_path / "wr.md").exists()


def test_eval_rm_with_a_tiny_model_as_judge(tmp_path):
    rc = main(["eval", "rm", "--model", "tiny", "--groups", "2", "--out", str(tmp_path),
               "--batch-size", "8", "--judge-tokens", "8"])
    assert rc == 0
    row = json.loads((tmp_path / "rm_metrics.json").read_text())["rows"][0]
    # A random-weight model never writes "Score: n": every score is unparseable and the
    # metrics say so instead of crediting it (ties and unparsed are wrong answers).
    assert row["n_groups"] == 2 and row["n_unparsed"] == row["n_responses"]
    assert row["pairwise_accuracy"] == 0.0 and row["exact_match"] == 0.0
    assert (tmp_path / "rm_metrics.png").exists()


def test_errors_are_clear(tmp_path, capsys):
    assert main(["eval", "alpaca", "--out", str(tmp_path)]) == 2
    assert "nothing to evaluate" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("recipe: teacher-reward\nmodel: tiny\n")
    assert main(["align", "--config", str(bad)]) == 2
    assert "needs a teacher" in capsys.readouterr().err

"""`rayalign annotate export|import|status` on a run directory's queue."""

from __future__ import annotations

import json

from rayalign.cli import main
from rayalign.data.schema import PairwiseItem
from rayalign.humans.queue import AnnotationQueue, default_queue_path


def _run_with_queue(tmp_path):
    run = tmp_path / "run"
    q = AnnotationQueue(default_queue_path(run))
    items = [PairwiseItem(prompt=f"q{i}", response_a=f"a{i}", response_b=f"b{i}") for i in range(3)]
    q.enqueue("iter00", items, {it.id: "A" for it in items}, {it.id: "r" for it in items})
    return run, q, items


def test_export_label_studio_then_import(tmp_path, capsys):
    run, q, items = _run_with_queue(tmp_path)
    out = tmp_path / "ls.json"
    assert main(["annotate", "export", "--run-dir", str(run), "--batch", "iter00",
                 "--format", "label-studio", "--out", str(out)]) == 0
    tasks = json.loads(out.read_text())
    assert (tmp_path / "ls.label_config.xml").is_file() and len(tasks) == 3
    for t, side in zip(tasks, ("left", "right", "left")):
        t["annotations"] = [{"completed_by": 7, "lead_time": 2.0, "result": [
            {"from_name": "preference", "type": "pairwise", "value": {"selected": side}}]}]
    out.write_text(json.dumps(tasks))
    assert main(["annotate", "import", "--run-dir", str(run), "--batch", "iter00",
                 "--format", "label-studio", str(out)]) == 0
    assert q.labels("iter00") == {items[0].id: "A", items[1].id: "B", items[2].id: "A"}
    assert {a["source"] for a in q.answers("iter00")} == {"label-studio"}
    capsys.readouterr()
    assert main(["annotate", "status", "--run-dir", str(run)]) == 0
    text = capsys.readouterr().out
    assert "iter00" in text and "3 / 3" in text and "66.7%" in text


def test_export_argilla_ranking(tmp_path):
    run, _, items = _run_with_queue(tmp_path)
    out = tmp_path / "arg.json"
    assert main(["annotate", "export", "--run-dir", str(run), "--batch", "iter00", "--format",
                 "argilla", "--question", "ranking", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["settings"]["questions"][0]["type"] == "ranking"
    assert all(r["suggestions"] == {} for r in doc["records"])  # no AI anchoring by default


def test_errors_are_reported_not_raised(tmp_path, capsys):
    run, _, _ = _run_with_queue(tmp_path)
    assert main(["annotate", "status", "--run-dir", str(tmp_path / "missing")]) == 2
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"id": "nope", "responses": {"preference": [
        {"value": "A", "user_id": "u"}]}}]))
    assert main(["annotate", "import", "--run-dir", str(run), "--batch", "iter00",
                 "--format", "argilla", str(bad)]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["annotate", "export", "--run-dir", str(run), "--batch", "zzz",
                 "--format", "argilla", "--out", str(tmp_path / "x.json")]) == 2


def _answered_ls_export(run, tmp_path, batch_flag="iter00"):
    out = tmp_path / "ls.json"
    assert main(["annotate", "export", "--run-dir", str(run), "--batch", batch_flag,
                 "--format", "label-studio", "--out", str(out)]) == 0
    tasks = json.loads(out.read_text())
    for t in tasks:
        t["annotations"] = [{"completed_by": 3, "created_username": " p@x.org, 3", "result": [
            {"from_name": "preference", "type": "pairwise", "value": {"selected": "right"}}]}]
    out.write_text(json.dumps(tasks))
    return out, tasks


def test_import_detects_format_and_batch_and_refuses_mismatch(tmp_path, capsys):
    """Issue 14.15: no silent "imported 0"; --batch and --format may be left out."""
    run, q, items = _run_with_queue(tmp_path)
    # The folder spelling (iterations/iter_00) works for the queue's iter00.
    out, tasks = _answered_ls_export(run, tmp_path, batch_flag="iter_00")
    assert {t["data"]["batch_id"] for t in tasks} == {"iter00"}
    assert main(["annotate", "import", "--run-dir", str(run), "--format", "argilla", str(out)]) == 2
    err = capsys.readouterr().err
    assert "Label Studio" in err and "--format label-studio" in err
    assert q.answers("iter00") == []
    assert main(["annotate", "import", "--run-dir", str(run), str(out)]) == 0
    assert "imported 3 label-studio answers into batch 'iter00'" in capsys.readouterr().out
    assert q.labels("iter00") == {it.id: "B" for it in items}
    assert {a["annotator"] for a in q.answers("iter00")} == {"label-studio:p@x.org"}


def test_import_of_nothing_fails_and_batch_errors_list_valid_ids(tmp_path, capsys):
    run, q, items = _run_with_queue(tmp_path)
    out = tmp_path / "ls.json"
    assert main(["annotate", "export", "--run-dir", str(run), "--batch", "iter00",
                 "--format", "label-studio", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["annotate", "import", "--run-dir", str(run), "--format", "label-studio",
                 str(out)]) == 2  # exported, nobody answered yet
    assert "no answers found" in capsys.readouterr().err
    assert main(["annotate", "export", "--run-dir", str(run), "--batch", "iter_07",
                 "--format", "argilla", "--out", str(tmp_path / "x.json")]) == 2
    assert "(batches: iter00)" in capsys.readouterr().err
    # A file whose tasks carry the wrong batch is refused when --batch says otherwise.
    q.enqueue("iter01", [PairwiseItem(prompt="z", response_a="1", response_b="2")])
    ans, _ = _answered_ls_export(run, tmp_path)
    assert main(["annotate", "import", "--run-dir", str(run), "--batch", "iter01", str(ans)]) == 2
    assert "is from batch 'iter00', but --batch says 'iter01'" in capsys.readouterr().err
    # Tasks without a batch id (hand-made) are placed by their item id.
    tasks = json.loads(ans.read_text())
    for t in tasks:
        del t["data"]["batch_id"]
    ans.write_text(json.dumps(tasks))
    assert main(["annotate", "import", "--run-dir", str(run), str(ans)]) == 0
    assert q.batch_status("iter00")["complete"]

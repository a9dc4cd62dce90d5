"""Label Studio and Argilla files out, answers back into the queue."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from rayalign.data.schema import PairwiseItem
from rayalign.humans.exchange import (
    export_argilla, export_label_studio, import_argilla, import_label_studio,
)
from rayalign.humans.queue import AnnotationQueue


@pytest.fixture()
def items():
    return [PairwiseItem(prompt=f"\n\nHuman: q{i} <script>x</script>\n\nAssistant:",
                         response_a=f"a{i}", response_b=f"b{i}") for i in range(4)]


def test_label_studio_round_trip(tmp_path, items):
    ai = {it.id: ("A" if i % 2 else "B") for i, it in enumerate(items)}
    tasks_path, cfg_path = export_label_studio(items, ai, tmp_path / "batch.json",
                                               rationales={items[0].id: "shorter"},
                                               batch_id="iter_00")
    cfg = ET.fromstring(cfg_path.read_text())  # valid XML
    pw = cfg.find(".//Pairwise")
    assert pw is not None and pw.get("toName") == "response_a,response_b"
    names = {e.get("name") for e in cfg.iter() if e.get("name")}
    assert {"prompt", "response_a", "response_b", "preference", "verdict", "comment"} <= names
    tasks = json.loads(tasks_path.read_text())
    assert [t["data"]["item_id"] for t in tasks] == [it.id for it in items]
    assert tasks[0]["data"]["prompt"] == items[0].prompt and "predictions" not in tasks[0]

    # What Label Studio exports after people worked on the tasks.
    def ann(result, who, lead=4.2, cancelled=False):
        return {"completed_by": {"email": who}, "result": result, "lead_time": lead,
                "was_cancelled": cancelled}
    pick = lambda side: {"from_name": "preference", "to_name": "response_a,response_b",  # noqa: E731
                         "type": "pairwise", "value": {"selected": side}}
    tasks[0]["annotations"] = [ann([pick("left"), {"from_name": "comment", "to_name": "prompt",
                                                   "type": "textarea",
                                                   "value": {"text": ["clear"]}}], "u@x")]
    tasks[1]["annotations"] = [ann([pick("right")], "u@x")]
    tasks[2]["annotations"] = [ann([{"from_name": "verdict", "to_name": "prompt",
                                     "type": "choices", "value": {"choices": ["Tie"]}}], "u@x")]
    tasks[3]["annotations"] = [ann([], "u@x", cancelled=True)]
    exported = tmp_path / "ls_export.json"
    exported.write_text(json.dumps(tasks))
    rows = import_label_studio(exported)
    assert [(r["id"], r["label"]) for r in rows] == [
        (items[0].id, "A"), (items[1].id, "B"), (items[2].id, "tie"), (items[3].id, "skip")]
    assert rows[0]["comment"] == "clear" and rows[0]["annotator"] == "label-studio:u@x"
    assert rows[0]["seconds"] == pytest.approx(4.2)

    q = AnnotationQueue(tmp_path / "q.sqlite")
    q.enqueue("iter_00", items, ai)
    q.import_labels("iter_00", rows)
    assert q.batch_status("iter_00")["complete"]
    assert q.labels("iter_00") == {items[0].id: "A", items[1].id: "B"}


def test_label_studio_import_errors_name_the_task(tmp_path, items):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"data": {"item_id": "x"}, "annotations": [{"result": []}]}]))
    with pytest.raises(ValueError, match="task 0 .*'x'"):
        import_label_studio(bad)
    bad.write_text(json.dumps([{"data": {}}]))
    with pytest.raises(ValueError, match="item_id"):
        import_label_studio(bad)


@pytest.mark.parametrize("question", ["label", "ranking"])
def test_argilla_round_trip(tmp_path, items, question):
    ai = {it.id: "A" for it in items}
    path = export_argilla(items, tmp_path / "argilla.json", ai_labels=ai, question=question,
                          batch_id="iter_00")
    doc = json.loads(path.read_text())
    assert json.loads((tmp_path / "argilla.settings.json").read_text()) == doc["settings"]
    q = doc["settings"]["questions"][0]
    assert q["name"] == "preference"
    assert q["type"] == ("label_selection" if question == "label" else "ranking")
    assert [f["name"] for f in doc["settings"]["fields"]] == ["prompt", "response_a", "response_b"]
    recs = doc["records"]
    assert set(recs[0]) >= {"id", "fields", "metadata", "suggestions", "responses", "vectors"}
    assert recs[0]["suggestions"]["preference"]["agent"] == "ai-judge"

    def val(lab):
        if question == "label":
            return lab
        return {"A": ["A", "B"], "B": ["B", "A"]}[lab]
    recs[0]["responses"] = {"preference": [{"value": val("B"), "user_id": "u1",
                                            "status": "submitted"}],
                            "comment": [{"value": "B is kinder", "user_id": "u1"}]}
    recs[1]["responses"] = {"preference": [{"value": val("A"), "user_id": "u1"}]}
    recs[2]["responses"] = {"preference": [{"value": val("A"), "user_id": "u1",
                                            "status": "discarded"}]}
    recs[3]["responses"] = {"preference": [{"value": val("A"), "user_id": "u1",
                                            "status": "draft"}]}
    # Argilla's own `records.to_json` writes a bare list of records: accept that too.
    exported = tmp_path / "records.json"
    exported.write_text(json.dumps(recs))
    rows = import_argilla(exported)
    assert [(r["id"], r["label"]) for r in rows] == [
        (items[0].id, "B"), (items[1].id, "A"), (items[2].id, "skip")]
    assert rows[0]["comment"] == "B is kinder" and rows[0]["annotator"] == "argilla:u1"
    queue = AnnotationQueue(tmp_path / "q.sqlite")
    queue.enqueue("iter_00", items, ai)
    queue.import_labels("iter_00", rows)
    st = queue.batch_status("iter_00")
    assert st["answered"] == 3 and not st["complete"]  # the draft is still pending


def test_argilla_ranking_api_shape_and_ties(tmp_path, items):
    recs = [{"id": items[0].id, "responses": {"preference": [
        {"value": [{"value": "A", "rank": 2}, {"value": "B", "rank": 1}], "user_id": "u"}]}},
            {"id": items[1].id, "responses": {"preference": [
                {"value": [{"value": "A", "rank": 1}, {"value": "B", "rank": 1}],
                 "user_id": "u"}]}}]
    p = tmp_path / "r.json"
    p.write_text(json.dumps({"records": recs}))
    assert [r["label"] for r in import_argilla(p)] == ["B", "tie"]

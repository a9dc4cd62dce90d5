"""Label Studio and Argilla files out, answers back into the queue."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from rayalign.data.schema import PairwiseItem
from rayalign.humans.exchange import (
    detect_format, export_argilla, export_label_studio, import_argilla, import_label_studio,
    read_answers,
)
from rayalign.humans.guidelines import BETTER_MEANS
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


def test_label_studio_export_keeps_ai_out_of_task_data_unless_asked(tmp_path, items):
    """Issue 14.14: Label Studio's Data Manager shows every data key as a column."""
    ai = {it.id: "A" for it in items}
    why = {it.id: "A is shorter" for it in items}
    path, _ = export_label_studio(items, ai, tmp_path / "t.json", rationales=why, batch_id="b")
    text = path.read_text()
    assert "ai_label" not in text and "ai_rationale" not in text and "A is shorter" not in text
    assert all("predictions" not in t for t in json.loads(text))
    path, _ = export_label_studio(items, ai, tmp_path / "w.json", rationales=why, with_ai=True)
    tasks = json.loads(path.read_text())
    assert tasks[0]["data"]["ai_label"] == "A" and tasks[0]["data"]["ai_rationale"] == "A is shorter"
    assert tasks[0]["predictions"][0]["result"][0]["value"] == {"selected": "left"}


def test_label_studio_1_23_integer_completed_by_stays_readable(tmp_path, items):
    """Issue 14.15: LS 1.23 exports completed_by as an int, the person in created_username."""
    path, _ = export_label_studio(items[:3], {}, tmp_path / "t.json", batch_id="iter00")
    tasks = json.loads(path.read_text())
    pick = [{"from_name": "preference", "type": "pairwise", "value": {"selected": "left"}}]
    tasks[0]["annotations"] = [{"completed_by": 7, "created_username": " ann@lab.org, 7",
                                "result": pick}]
    tasks[1]["annotations"] = [{"completed_by": 8, "created_username": "Bo Li bo@lab.org, 8",
                                "result": pick}]
    tasks[2]["annotations"] = [{"completed_by": 9, "result": pick}]
    path.write_text(json.dumps(tasks))
    rows = import_label_studio(path)
    assert [r["annotator"] for r in rows] == ["label-studio:ann@lab.org", "label-studio:bo@lab.org",
                                              "label-studio:user-9"]
    assert {r["batch_id"] for r in rows} == {"iter00"}


def test_format_is_detected_and_a_mismatch_or_an_empty_file_refused(tmp_path, items):
    ls, _ = export_label_studio(items, {}, tmp_path / "ls.json", batch_id="iter00")
    arg = export_argilla(items, tmp_path / "arg.json", batch_id="iter00")
    assert detect_format(json.loads(ls.read_text())) == "label-studio"
    assert detect_format(json.loads(arg.read_text())) == "argilla"
    assert detect_format(json.loads(arg.read_text())["records"]) == "argilla"
    assert detect_format({"what": 1}) is None and detect_format([]) is None
    # Nobody answered yet: zero recognised rows is an error, not "imported 0".
    with pytest.raises(ValueError, match="no answers found .*4 tasks"):
        read_answers(ls)
    with pytest.raises(ValueError, match="no answers found .*4 records"):
        read_answers(arg, "argilla")
    tasks = json.loads(ls.read_text())
    tasks[0]["annotations"] = [{"completed_by": 1, "result": [
        {"from_name": "preference", "type": "pairwise", "value": {"selected": "right"}}]}]
    ls.write_text(json.dumps(tasks))
    with pytest.raises(ValueError, match="is a Label Studio JSON export.*not argilla.*--format label-studio"):
        read_answers(ls, "argilla")
    fmt, rows = read_answers(ls)
    assert fmt == "label-studio" and [(r["id"], r["label"]) for r in rows] == [(items[0].id, "B")]
    (tmp_path / "junk.json").write_text(json.dumps({"tasks": []}))
    with pytest.raises(ValueError, match="not a Label Studio or Argilla export"):
        read_answers(tmp_path / "junk.json")


def test_one_definition_of_better_everywhere(tmp_path, items):
    """Issue 14.17: Argilla, Label Studio and the page ask the same question."""
    from rayalign.serve.annotate_app import render_page

    export_argilla(items, tmp_path / "a.json")
    assert BETTER_MEANS in json.loads((tmp_path / "a.json").read_text())["settings"]["guidelines"]
    _, cfg = export_label_studio(items, {}, tmp_path / "t.json")
    header = ET.fromstring(cfg.read_text()).find("Header").get("value")
    assert BETTER_MEANS in header
    assert BETTER_MEANS.replace("'", "&#x27;") in render_page("n0nce")

"""Batches out to Label Studio or Argilla and answers back, as plain files.

Teams that already label in Label Studio or Argilla should not have to use our page. We
write the files those tools import (no SDK needed here) and read the files they export,
turning them into queue rows ``{id, label, annotator, comment, seconds}`` for
``AnnotationQueue.import_labels``.

* Label Studio: a tasks JSON (one task per pair, the pair's text in ``data``) and the
  labelling config XML built on the ``<Pairwise>`` control (left = A, right = B) plus a
  Tie/Skip choice and a comment box. Import reads Label Studio's JSON export
  (``annotations[].result[]``; ``pairwise`` results carry ``value.selected`` left/right).
* Argilla 2.x: one JSON file with ``settings`` (fields prompt/response_a/response_b and a
  ``label_selection`` question A/B/tie, or a ``ranking`` question over A and B) and
  ``records`` in the SDK's export shape (``id, fields, metadata, suggestions, responses``),
  so ``rg.Record.from_dict`` accepts every record; the settings are also written alone to
  ``<name>.settings.json`` for ``rg.Settings.from_json``. Import accepts our file or a
  plain list of records as written by ``dataset.records.to_json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping

from rayalign.data.schema import PairwiseItem, other_label
from rayalign.humans.guidelines import BETTER_MEANS, GUIDELINES
from rayalign.runs import atomic_write_text

PAIRWISE_CONTROL = "preference"
VERDICT_CONTROL = "verdict"
COMMENT_CONTROL = "comment"

LABEL_STUDIO_CONFIG = """<View>
  <Header value="Which response is better? {better} Click the better one (A left, B right)."/>
  <Text name="prompt" value="$prompt"/>
  <Pairwise name="preference" toName="response_a,response_b"/>
  <View style="display: flex; gap: 1em;">
    <View style="flex: 1; min-width: 0;">
      <Header value="Response A" size="5"/>
      <Text name="response_a" value="$response_a"/>
    </View>
    <View style="flex: 1; min-width: 0;">
      <Header value="Response B" size="5"/>
      <Text name="response_b" value="$response_b"/>
    </View>
  </View>
  <Header value="Or, instead of picking one:" size="6"/>
  <Choices name="verdict" toName="prompt" choice="single" showInline="true">
    <Choice value="Tie"/>
    <Choice value="Skip"/>
  </Choices>
  <TextArea name="comment" toName="prompt" placeholder="Optional comment" maxSubmissions="1"/>
</View>
""".replace("{better}", BETTER_MEANS.replace("'", "&apos;"))


def label_studio_config_path(tasks_path: str | Path) -> Path:
    """The config XML written beside a tasks file: ``tasks.json`` -> ``tasks.label_config.xml``."""
    p = Path(tasks_path)
    return p.with_name(p.stem + ".label_config.xml")


def _load_json(path: str | Path) -> Any:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"annotation file not found: {p}")
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{p} is not valid JSON: {err}") from None


# -- Label Studio ----------------------------------------------------------------------------
def export_label_studio(items: Iterable[PairwiseItem], ai_labels: Mapping[str, str] | None,
                        path: str | Path, rationales: Mapping[str, str] | None = None,
                        batch_id: str | None = None,
                        with_ai: bool = False) -> tuple[Path, Path]:
    """Write Label Studio tasks JSON at ``path`` and the labelling config XML beside it.

    The AI label and rationale stay out of the tasks unless ``with_ai``: Label Studio's
    Data Manager shows every ``data`` key as a column by default, so keeping them in
    ``data`` would anchor annotators exactly as a pre-filled answer does. ``with_ai``
    writes them to ``data`` and pre-selects the AI label as a prediction. (The queue keeps
    the AI labels; the import never needs them.)
    """
    ai_labels = ai_labels or {}
    rationales = rationales or {}
    tasks = []
    for it in items:
        data: dict[str, Any] = {"item_id": it.id, "prompt": it.prompt,
                                "response_a": it.response_a, "response_b": it.response_b}
        if batch_id:
            data["batch_id"] = batch_id
        task: dict[str, Any] = {"data": data}
        ai = ai_labels.get(it.id)
        if with_ai:
            data["ai_label"] = ai
            data["ai_rationale"] = rationales.get(it.id)
            if ai in ("A", "B"):
                task["predictions"] = [{"model_version": "ai-judge", "result": [{
                    "from_name": PAIRWISE_CONTROL, "to_name": "response_a,response_b",
                    "type": "pairwise", "value": {"selected": "left" if ai == "A" else "right"}}]}]
        tasks.append(task)
    out = Path(path)
    atomic_write_text(out, json.dumps(tasks, ensure_ascii=False, indent=2) + "\n")
    cfg = label_studio_config_path(out)
    atomic_write_text(cfg, LABEL_STUDIO_CONFIG)
    return out, cfg


def _ls_created_username(value: Any) -> str | None:
    """The readable part of Label Studio's ``created_username`` ("First Last email, id")."""
    if not isinstance(value, str) or not value.strip():
        return None
    head = value.rsplit(",", 1)[0].strip()  # drop the trailing ", <id>"
    email = next((w for w in head.split() if "@" in w), None)
    return email or head or None


def _ls_annotator(ann: Mapping[str, Any]) -> str:
    """A readable annotator id for a Label Studio annotation.

    Older exports nest the user (``completed_by: {id, email, ...}``); Label Studio 1.23
    exports only the integer id there, with the name and e-mail in ``created_username``
    (``" user@x.org, 7"``). Prefer the e-mail, then the name, then ``user-<id>``.
    """
    who = ann.get("completed_by")
    if isinstance(who, Mapping):
        name = who.get("email") or " ".join(
            str(who.get(k) or "") for k in ("first_name", "last_name")).strip() or None
        if name:
            return f"label-studio:{name}"
        who = who.get("id")
    name = _ls_created_username(ann.get("created_username"))
    if name:
        return f"label-studio:{name}"
    if isinstance(who, bool) or who is None or who == "":
        return "label-studio"
    return f"label-studio:user-{who}" if isinstance(who, int) else f"label-studio:{who}"


def import_label_studio(path: str | Path, doc: Any = None) -> list[dict[str, Any]]:
    """Rows ``{id, label, annotator, comment, seconds, batch_id}`` from a Label Studio export.

    One row per (task, annotation); cancelled annotations count as skips; a task with no
    annotation gives no row (it stays pending in the queue). ``batch_id`` is the task's
    ``data.batch_id`` (written by our export) or None. ``doc`` is the already-parsed file.
    """
    tasks = _load_json(path) if doc is None else doc
    if not isinstance(tasks, list):
        raise ValueError(f"{path}: a Label Studio JSON export is a list of tasks")
    rows = []
    for ti, task in enumerate(tasks):
        data = task.get("data") if isinstance(task, Mapping) else None
        if not isinstance(data, Mapping) or not data.get("item_id"):
            raise ValueError(f"{path}: task {ti} has no data.item_id (was it exported by "
                             "`rayalign annotate export`?)")
        for ai, ann in enumerate(task.get("annotations") or []):
            label, comment = None, None
            if ann.get("was_cancelled"):
                label = "skip"
            for res in ann.get("result") or []:
                val = res.get("value") or {}
                if res.get("from_name") == PAIRWISE_CONTROL or res.get("type") == "pairwise":
                    sel = val.get("selected")
                    if sel in ("left", "right"):
                        label = label or ("A" if sel == "left" else "B")
                elif res.get("from_name") == VERDICT_CONTROL:
                    ch = [str(c).lower() for c in val.get("choices") or []]
                    if ch and ch[0] in ("tie", "skip"):
                        label = ch[0]  # an explicit Tie/Skip wins over a stray click
                elif res.get("from_name") == COMMENT_CONTROL:
                    text = val.get("text") or []
                    comment = "\n".join(text) if isinstance(text, list) else str(text)
            if label is None:
                raise ValueError(f"{path}: task {ti} (item {data['item_id']!r}) annotation {ai} "
                                 "has neither a pairwise choice nor Tie/Skip")
            secs = ann.get("lead_time")
            batch = data.get("batch_id")
            rows.append({"id": data["item_id"], "label": label, "annotator": _ls_annotator(ann),
                         "comment": comment or None,
                         "seconds": float(secs) if isinstance(secs, (int, float)) else None,
                         "batch_id": str(batch) if batch else None})
    return rows


# -- Argilla ---------------------------------------------------------------------------------
def _argilla_settings(question: str) -> dict[str, Any]:
    def text_field(name: str, title: str) -> dict:
        return {"name": name, "title": title, "required": True, "type": "text",
                "settings": {"type": "text", "use_markdown": False}}

    if question == "label":
        q = {"name": PAIRWISE_CONTROL, "title": "Which response is better?", "required": True,
             "type": "label_selection",
             "settings": {"type": "label_selection", "visible_options": 3, "options": [
                 {"value": "A", "text": "Response A"}, {"value": "B", "text": "Response B"},
                 {"value": "tie", "text": "Tie"}]},
             # rg.LabelQuestion(name="preference", labels={"A": ..., "B": ..., "tie": ...})
             "labels": {"A": "Response A", "B": "Response B", "tie": "Tie"}}
    elif question == "ranking":
        q = {"name": PAIRWISE_CONTROL, "title": "Rank the responses (best first)",
             "required": True, "type": "ranking",
             "settings": {"type": "ranking", "options": [
                 {"value": "A", "text": "Response A"}, {"value": "B", "text": "Response B"}]},
             # rg.RankingQuestion(name="preference", values={"A": ..., "B": ...})
             "values": {"A": "Response A", "B": "Response B"}}
    else:
        raise ValueError(f"argilla question must be 'label' or 'ranking', got {question!r}")
    return {
        "guidelines": f"{GUIDELINES} Discard the record to skip it.",
        "fields": [text_field("prompt", "Prompt"), text_field("response_a", "Response A"),
                   text_field("response_b", "Response B")],
        "questions": [q, {"name": COMMENT_CONTROL, "title": "Comment (optional)",
                          "required": False, "type": "text",
                          "settings": {"type": "text", "use_markdown": False}}],
        "metadata": [{"name": "batch_id", "title": "batch", "type": "terms",
                      "settings": {"type": "terms", "values": None},
                      "visible_for_annotators": False}],
        "allow_extra_metadata": True,
    }


def argilla_settings_path(path: str | Path) -> Path:
    """``batch.json`` -> ``batch.settings.json`` (loadable with ``rg.Settings.from_json``)."""
    p = Path(path)
    return p.with_name(p.stem + ".settings.json")


def export_argilla(items: Iterable[PairwiseItem], path: str | Path,
                   ai_labels: Mapping[str, str] | None = None,
                   question: Literal["label", "ranking"] = "label",
                   batch_id: str | None = None, name: str | None = None) -> Path:
    """Write an Argilla 2.x dataset (settings + records) as one JSON file.

    AI labels, when given, become Argilla *suggestions* (agent ``ai-judge``), which the UI
    shows as pre-filled answers; leave them out for unanchored labels.
    """
    settings = _argilla_settings(question)
    ai_labels = ai_labels or {}
    records = []
    for it in items:
        sugg = {}
        ai = ai_labels.get(it.id)
        if ai in ("A", "B", "tie"):
            if question == "label":
                sugg[PAIRWISE_CONTROL] = {"value": ai, "score": None, "agent": "ai-judge"}
            elif ai in ("A", "B"):
                sugg[PAIRWISE_CONTROL] = {"value": [ai, other_label(ai)],
                                          "score": None, "agent": "ai-judge"}
        records.append({
            "id": it.id,
            "fields": {"prompt": it.prompt, "response_a": it.response_a,
                       "response_b": it.response_b},
            "metadata": {"batch_id": batch_id} if batch_id else {},
            "suggestions": sugg, "responses": {}, "vectors": {}, "_server_id": None,
        })
    doc = {"format": "argilla-2", "name": name or (f"rayalign-{batch_id}" if batch_id else
                                                    "rayalign-preferences"),
           "question": question, "settings": settings, "records": records}
    out = Path(path)
    atomic_write_text(out, json.dumps(doc, ensure_ascii=False, indent=2) + "\n")
    # The settings alone too, for ``rg.Settings.from_json(...)``.
    atomic_write_text(argilla_settings_path(out), json.dumps(settings, indent=2) + "\n")
    return out


def _argilla_value_to_label(value: Any) -> str | None:
    """A label-question value (A/B/tie) or a ranking (best first) -> A/B/tie."""
    if isinstance(value, str):
        return value if value in ("A", "B", "tie") else None
    if isinstance(value, list) and value:
        if all(isinstance(v, Mapping) for v in value):  # API shape [{value, rank}]
            ranks = {v.get("value"): v.get("rank") for v in value}
            if ranks.get("A") is not None and ranks.get("A") == ranks.get("B"):
                return "tie"
            value = [v.get("value") for v in sorted(value, key=lambda v: v.get("rank") or 0)]
        return value[0] if value[0] in ("A", "B") else None
    return None


def import_argilla(path: str | Path, doc: Any = None) -> list[dict[str, Any]]:
    """Rows ``{id, label, annotator, comment, seconds, batch_id}`` from an Argilla export.

    Submitted responses count; ``discarded`` ones are skips; drafts are ignored (the
    person has not finished). Records without responses give no row. ``batch_id`` is the
    record's ``metadata.batch_id`` (written by our export) or None.
    """
    doc = _load_json(path) if doc is None else doc
    records = doc.get("records") if isinstance(doc, Mapping) else doc
    if not isinstance(records, list):
        raise ValueError(f"{path}: expected a list of Argilla records or an object with "
                         "'records'")
    rows = []
    for ri, rec in enumerate(records):
        if not isinstance(rec, Mapping):
            raise ValueError(f"{path}: record {ri} is not an object")
        rid = rec.get("id") or (rec.get("metadata") or {}).get("item_id")
        if not rid:
            raise ValueError(f"{path}: record {ri} has no id")
        responses = rec.get("responses") or {}
        comments = {str(r.get("user_id")): r.get("value")
                    for r in responses.get(COMMENT_CONTROL) or []}
        for r in responses.get(PAIRWISE_CONTROL) or []:
            status = r.get("status", "submitted")
            if status == "draft":
                continue
            user = str(r.get("user_id"))
            label = "skip" if status == "discarded" else _argilla_value_to_label(r.get("value"))
            if label is None:
                raise ValueError(f"{path}: record {ri} (id {rid!r}) has an unreadable "
                                 f"'{PAIRWISE_CONTROL}' response {r.get('value')!r}")
            batch = (rec.get("metadata") or {}).get("batch_id")
            rows.append({"id": rid, "label": label, "annotator": f"argilla:{user}",
                         "comment": comments.get(user) or None, "seconds": None,
                         "batch_id": str(batch) if batch else None})
    return rows


# -- either ----------------------------------------------------------------------------------
FORMAT_NAMES = {"label-studio": "a Label Studio JSON export (a list of tasks with 'data')",
                "argilla": "an Argilla export (records with 'fields'/'responses')"}


def detect_format(doc: Any) -> str | None:
    """``"label-studio"``, ``"argilla"`` or None for a parsed export file.

    Label Studio exports a list of tasks, each with ``data``; Argilla an object with
    ``records`` (our export) or a list of records with ``fields``/``responses``/``id``.
    """
    if isinstance(doc, Mapping):
        if isinstance(doc.get("records"), list) or str(doc.get("format", "")).startswith("argilla"):
            return "argilla"
        return None
    if not isinstance(doc, list) or not doc:
        return None
    if not all(isinstance(x, Mapping) for x in doc):
        return None
    if all("data" in x for x in doc):
        return "label-studio"
    if all(("fields" in x or "responses" in x) and "data" not in x for x in doc):
        return "argilla"
    return None


def read_answers(path: str | Path, fmt: str | None = None) -> tuple[str, list[dict[str, Any]]]:
    """``(format, rows)`` from a Label Studio or Argilla export, the format detected.

    ``fmt`` (from ``--format``) must match the file, so a Label Studio file read "as
    Argilla" is refused instead of silently giving nothing. A file with no recognised
    answer at all is an error: importing it would look like success and change nothing.
    """
    doc = _load_json(path)
    found = detect_format(doc)
    if found is None:
        n = len(doc) if isinstance(doc, (list, Mapping)) else 0
        raise ValueError(f"{path}: not a Label Studio or Argilla export ({type(doc).__name__} "
                         f"of {n} entries); expected {FORMAT_NAMES['label-studio']} or "
                         f"{FORMAT_NAMES['argilla']}")
    if fmt and fmt != found:
        raise ValueError(f"{path} is {FORMAT_NAMES[found]}, not {fmt}: use --format {found} "
                         "(or leave --format out: it is detected)")
    reader = import_label_studio if found == "label-studio" else import_argilla
    rows = reader(path, doc)
    if not rows:
        what = "tasks" if found == "label-studio" else "records"
        n = len(doc.get("records", [])) if isinstance(doc, Mapping) else len(doc)
        raise ValueError(f"{path}: no answers found ({n} {what}, none with a submitted "
                         "annotation); export again after people have answered")
    return found, rows

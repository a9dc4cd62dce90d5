"""The annotation queue: idempotent batches, claims that expire, answers never double-counted."""

from __future__ import annotations

import multiprocessing as mp
import time

import pytest

from rayalign.data.schema import PairwiseItem
from rayalign.humans.base import HumanAnnotator
from rayalign.humans.queue import AnnotationQueue, QueueAnnotator, default_queue_path


def _items(n: int, tag: str = "") -> list[PairwiseItem]:
    return [PairwiseItem(prompt=f"\n\nHuman: question {tag}{i}?\n\nAssistant:",
                         response_a=f"answer a {i}", response_b=f"<b>answer</b> b {i}")
            for i in range(n)]


def test_enqueue_is_idempotent_and_survives_reopen(tmp_path):
    db = default_queue_path(tmp_path)
    q = AnnotationQueue(db)
    items = _items(5)
    ai = {it.id: "A" for it in items}
    assert q.enqueue("iter_00", items, ai, {it.id: "why" for it in items}) == 5
    assert q.enqueue("iter_00", items, ai) == 0
    q2 = AnnotationQueue(db)  # another process / a restart opens the same file
    assert q2.enqueue("iter_00", items[:3], ai) == 0
    st = q2.batch_status("iter_00")
    assert st["total"] == 5 and st["answered"] == 0 and not st["complete"]
    assert [it["id"] for it in q2.items("iter_00")] == [it.id for it in items]


def test_claim_hides_ai_label_and_does_not_hand_out_twice(tmp_path):
    q = AnnotationQueue(tmp_path / "q.sqlite", claim_timeout_s=60)
    items = _items(4)
    q.enqueue("b", items, {it.id: "B" for it in items}, {it.id: "secret" for it in items})
    c1 = q.claim("alice", 2)
    assert len(c1) == 2 and all("ai_label" not in c and "rationale" not in c for c in c1)
    c2 = q.claim("bob", 10)
    assert {c["id"] for c in c1}.isdisjoint({c["id"] for c in c2}) and len(c2) == 2
    # alice asks again: she gets her own live claims back first, nothing new
    again = q.claim("alice", 2)
    assert {c["id"] for c in again} == {c["id"] for c in c1}
    assert q.batch_status("b")["claimed"] == 4


def test_expired_claim_is_handed_out_again(tmp_path):
    q = AnnotationQueue(tmp_path / "q.sqlite", claim_timeout_s=0.05)
    items = _items(1)
    q.enqueue("b", items, {})
    assert [c["id"] for c in q.claim("closed-browser", 1)] == [items[0].id]
    time.sleep(0.1)
    assert [c["id"] for c in q.claim("someone-else", 1)] == [items[0].id]


def test_resubmission_replaces_and_labels_exclude_ties(tmp_path):
    q = AnnotationQueue(tmp_path / "q.sqlite")
    items = _items(4)
    ids = [it.id for it in items]
    q.enqueue("b", items, {ids[0]: "A", ids[1]: "A", ids[2]: "B", ids[3]: "B"})
    out = q.submit(ids[0], "b", "B", "alice", comment="hmm", seconds=3.5)
    assert out["ai_label"] == "A"  # revealed only after answering
    q.submit(ids[0], "b", "A", "alice")  # changed her mind: replaces, not a second vote
    assert len(q.answers("b")) == 1 and q.answers("b")[0]["label"] == "A"
    q.submit(ids[1], "b", "tie", "alice")
    q.submit(ids[2], "b", "skip", "alice")
    assert q.claim("alice", 5)[0]["id"] == ids[3]
    st = q.batch_status("b")
    assert st["answered"] == 3 and st["pending"] == 1 and not st["complete"]
    q.submit(ids[3], "b", "B", "alice")
    st = q.batch_status("b")
    assert st["complete"] and st["counts"] == {"A": 1, "B": 1, "tie": 1, "skip": 1}
    assert st["agreement_with_ai"] == 1.0 and st["compared_with_ai"] == 2
    assert q.labels("b") == {ids[0]: "A", ids[3]: "B"}
    assert q.claim("alice", 5) == []


def test_bad_input_is_refused_with_names(tmp_path):
    q = AnnotationQueue(tmp_path / "q.sqlite")
    items = _items(2)
    q.enqueue("b", items, {})
    with pytest.raises(ValueError, match="label 'C'"):
        q.submit(items[0].id, "b", "C", "alice")
    with pytest.raises(KeyError, match="nope"):
        q.submit("nope", "b", "A", "alice")
    with pytest.raises(ValueError, match="row 1"):
        q.import_labels("b", [{"id": items[0].id, "label": "A"}, {"id": "zzz", "label": "B"}])
    assert q.answers("b") == []  # all-or-nothing
    with pytest.raises(KeyError, match="unknown annotation batch"):
        q.import_labels("missing", [])


def test_majority_over_annotators_and_import(tmp_path):
    q = AnnotationQueue(tmp_path / "q.sqlite")
    items = _items(2)
    ids = [it.id for it in items]
    q.enqueue("b", items, {})
    n = q.import_labels("b", [{"id": ids[0], "label": "A", "annotator": "x"},
                              {"id": ids[0], "label": "A", "annotator": "y"},
                              {"id": ids[0], "label": "B", "annotator": "z"},
                              {"id": ids[1], "label": "A", "annotator": "x"},
                              {"id": ids[1], "label": "B", "annotator": "y"}])
    assert n == 5
    assert q.final_answers("b") == {ids[0]: "A", ids[1]: "tie"}
    # x re-imports with a changed answer: it replaces x's vote (x:B, y:A, z:B), no 6th row
    q.import_labels("b", [{"id": ids[0], "label": "B", "annotator": "x"}])
    assert len(q.answers("b")) == 5
    assert q.final_answers("b")[ids[0]] == "B"


def test_queue_annotator_waits_until_complete(tmp_path):
    q = AnnotationQueue(tmp_path / "q.sqlite")
    ann = QueueAnnotator(q, "people")
    assert isinstance(ann, HumanAnnotator) and ann.simulated is False
    items = _items(3)
    ai = {it.id: "A" for it in items}
    assert ann.request_labels("iter_01", items, ai) is None
    assert ann.request_labels("iter_01", items, ai) is None
    assert q.batch_status("iter_01")["total"] == 3  # not enqueued twice
    q.submit(items[0].id, "iter_01", "B", "p")
    q.submit(items[1].id, "iter_01", "skip", "p")
    assert ann.request_labels("iter_01", items, ai) is None
    q.submit(items[2].id, "iter_01", "A", "p")
    # a restarted driver with a fresh annotator object gets the same answer
    again = QueueAnnotator(AnnotationQueue(q.db_path), "people")
    assert again.request_labels("iter_01", items, ai) == {items[0].id: "B", items[2].id: "A"}
    assert ann.request_labels("empty", [], {}) == {}


def _claimer(db: str, name: str, out) -> None:
    q = AnnotationQueue(db, claim_timeout_s=600)
    got = []
    while True:
        c = q.claim(name, 1)
        if not c:
            break
        q.submit(c[0]["id"], c[0]["batch_id"], "A", name)
        got.append(c[0]["id"])
    out.put(got)


def test_two_processes_never_label_the_same_item(tmp_path):
    db = str(tmp_path / "q.sqlite")
    q = AnnotationQueue(db)
    items = _items(30)
    q.enqueue("b", items, {})
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_claimer, args=(db, f"p{i}", out)) for i in range(2)]
    for p in procs:
        p.start()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    flat = [i for r in results for i in r]
    assert sorted(flat) == sorted(it.id for it in items)  # each exactly once
    assert len(q.answers("b")) == 30 and q.batch_status("b")["complete"]


def test_batch_ids_resolve_in_either_spelling_and_errors_list_them(tmp_path):
    """Issue 14.15: the driver's iter00 and the run folder's iter_00 name one batch."""
    from rayalign.humans.queue import UnknownBatchError

    q = AnnotationQueue(tmp_path / "q.sqlite")
    one = [PairwiseItem(prompt="p", response_a="a", response_b="b")]
    q.enqueue("iter00", one)
    q.enqueue("random-3", one)
    assert q.resolve_batch("iter00") == "iter00"
    assert q.resolve_batch("iter_00") == "iter00" and q.resolve_batch("ITER-00") == "iter00"
    assert q.resolve_batch("random_3") == "random-3"
    with pytest.raises(UnknownBatchError, match=r"'iter_01'.*\(batches: iter00, random-3\)"):
        q.resolve_batch("iter_01")
    with pytest.raises(ValueError, match=r"batches: iter00, random-3"):
        q.items("nope")
    q.enqueue("iter_00", one)  # both spellings really present: exact wins, no guessing
    assert q.resolve_batch("iter_00") == "iter_00"
    assert q.batches_of([one[0].id, "x"]) == {one[0].id: ["iter00", "random-3", "iter_00"], "x": []}


def test_release_one_item_only_of_the_claimer(tmp_path):
    q = AnnotationQueue(tmp_path / "q.sqlite")
    items = [PairwiseItem(prompt=f"p{i}", response_a="a", response_b="b") for i in range(3)]
    q.enqueue("b", items)
    mine = q.claim("ana", 2)
    theirs = q.claim("bob", 1)
    assert q.release("bob", item_id=mine[0]["id"]) == 0  # not bob's claim
    assert q.release("ana", item_id=mine[0]["id"], batch_id="b") == 1
    assert q.claim("carl", 1)[0]["id"] == mine[0]["id"]  # free again at once
    assert q.release("ana") == 1 and q.release("bob") == 1
    assert theirs[0]["id"] not in {m["id"] for m in mine}

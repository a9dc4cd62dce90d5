"""``rayalign annotate ...``: serve the annotation page, export/import batches, show status."""

from __future__ import annotations

import argparse
from pathlib import Path

from rayalign.cli.common import add_run_dir_argument
from rayalign.data.schema import PairwiseItem
from rayalign.humans.queue import AnnotationQueue, default_queue_path

FORMATS = ("label-studio", "argilla")


def _queue(run: str, must_exist: bool = True) -> AnnotationQueue:
    run_dir = Path(run)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory not found: {run_dir}")
    path = default_queue_path(run_dir)
    if must_exist and not path.exists():
        raise FileNotFoundError(f"{run_dir} has no annotation queue yet ({path}); it is created "
                                "when an RLTHF run started with `--set human.kind=queue` "
                                "reaches its human step")
    return AnnotationQueue(path)


def _print_status(q: AnnotationQueue) -> None:
    rows = q.status()
    if not rows:
        print("no batches in the queue yet")
        return
    print(f"{'batch':<24} {'answered':>10} {'A':>5} {'B':>5} {'tie':>5} {'skip':>5} "
          f"{'agree w/ AI':>12}  complete")
    for s in rows:
        c = s["counts"]
        agree = "-" if s["agreement_with_ai"] is None else f"{100 * s['agreement_with_ai']:.1f}%"
        print(f"{s['batch_id']:<24} {s['answered']:>4} / {s['total']:<3} {c['A']:>5} {c['B']:>5} "
              f"{c['tie']:>5} {c['skip']:>5} {agree:>12}  {'yes' if s['complete'] else 'no'}")


def cmd_status(args: argparse.Namespace) -> int:
    _print_status(_queue(args.run_dir))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from rayalign.humans.exchange import (
        argilla_settings_path, export_argilla, export_label_studio,
    )

    q = _queue(args.run_dir)
    batch = q.resolve_batch(args.batch)
    rows = q.items(batch, with_ai=True)
    items = [PairwiseItem(id=r["id"], prompt=r["prompt"], response_a=r["response_a"],
                          response_b=r["response_b"], meta=r["meta"]) for r in rows]
    ai = {r["id"]: r["ai_label"] for r in rows if r["ai_label"]}
    if args.format == "label-studio":
        tasks, cfg = export_label_studio(
            items, ai, args.out, rationales={r["id"]: r["rationale"] for r in rows
                                             if r["rationale"]},
            batch_id=batch, with_ai=args.with_ai)
        print(f"wrote {len(items)} Label Studio tasks to {tasks} and the labelling config to {cfg}")
    else:
        out = export_argilla(items, args.out, ai_labels=ai if args.with_ai else None,
                             question=args.question, batch_id=batch)
        print(f"wrote {len(items)} Argilla records ({args.question} question) to {out} and the "
              f"dataset settings to {argilla_settings_path(out)}")
    return 0


def _assign_batches(q: AnnotationQueue, rows: list[dict], batch: str | None,
                    path: str) -> dict[str, list[dict]]:
    """Group import rows by queue batch: the batch each row carries, ``--batch``, or the
    one batch that holds the item. Any disagreement or ambiguity is an error naming the row.
    """
    forced = q.resolve_batch(batch) if batch else None
    where = q.batches_of(sorted({r["id"] for r in rows}))
    groups: dict[str, list[dict]] = {}
    for i, r in enumerate(rows):
        carried = q.resolve_batch(r["batch_id"]) if r.get("batch_id") else None
        if forced and carried and carried != forced:
            raise ValueError(f"{path}: row {i} (item {r['id']!r}) is from batch {carried!r}, "
                             f"but --batch says {forced!r}")
        b = forced or carried
        if b is None:
            held = where.get(r["id"]) or []
            if len(held) != 1:
                raise ValueError(
                    f"{path}: row {i} (item {r['id']!r}) carries no batch id and the item is in "
                    f"{'no batch' if not held else 'batches ' + ', '.join(held)}; pass --batch "
                    f"(batches: {', '.join(q.batches()) or 'none yet'})")
            b = held[0]
        groups.setdefault(b, []).append({**r, "batch_id": b})
    return groups


def cmd_import(args: argparse.Namespace) -> int:
    from rayalign.humans.exchange import read_answers

    q = _queue(args.run_dir)
    fmt, rows = read_answers(args.file, args.format)
    groups = _assign_batches(q, rows, args.batch, args.file)
    for b, grp in groups.items():  # check every batch before writing any
        known = {it["id"] for it in q.items(b, with_ai=False)}
        bad = next((r for r in grp if r["id"] not in known), None)
        if bad is not None:
            raise ValueError(f"{args.file}: item {bad['id']!r} is not in batch {b!r}")
    for b, grp in groups.items():
        n = q.import_labels(b, grp, source=fmt)
        print(f"imported {n} {fmt} answers into batch {b!r}")
    _print_status(q)
    return 0


def add_export(e: argparse.ArgumentParser) -> None:
    add_run_dir_argument(e)
    e.add_argument("--batch", required=True, help="queue batch id (iter00 and iter_00 both work)")
    e.add_argument("--format", choices=FORMATS, required=True)
    e.add_argument("--out", required=True, help="output JSON file")
    e.add_argument("--question", choices=("label", "ranking"), default="label",
                   help="Argilla question type (label A/B/tie, or a ranking of A and B)")
    e.add_argument("--with-ai", action="store_true",
                   help="include the AI label and rationale (Label Studio: task data and a "
                        "prediction; Argilla: a suggestion); anchors annotators, off by default")
    e.set_defaults(func=cmd_export)


def add_import(i: argparse.ArgumentParser) -> None:
    add_run_dir_argument(i)
    i.add_argument("--batch", default=None,
                   help="queue batch (default: the batch id each exported task carries; "
                        "iter00 and iter_00 both work)")
    i.add_argument("--format", choices=FORMATS, default=None,
                   help="the file's format (default: detected; a mismatch is refused)")
    i.add_argument("file", help="the tool's JSON export")
    i.set_defaults(func=cmd_import)


def add_status(t: argparse.ArgumentParser) -> None:
    add_run_dir_argument(t)
    t.set_defaults(func=cmd_status)

"""Curve landmarks on synthetic curves with known answers, and the selection rules."""

from __future__ import annotations

import numpy as np
import pytest

from rayalign.rlthf.curve import analyze_curve
from rayalign.rlthf.select import (
    backoff_for_iteration,
    build_training_set,
    select,
    select_human_batch,
    trusted_region,
)


def piecewise_curve(n=1000, head=0.1, tail=0.1, head_drop=8.0, mid_drop=2.0, tail_drop=8.0):
    """Descending margins: steep head (first head*n), flat middle, steep tail (last tail*n)."""
    h, t = int(head * n), int(tail * n)
    m = n - h - t
    a = np.linspace(head_drop + mid_drop / 2, mid_drop / 2, h, endpoint=False)
    b = np.linspace(mid_drop / 2, -mid_drop / 2, m, endpoint=False)
    c = np.linspace(-mid_drop / 2, -mid_drop / 2 - tail_drop, t)
    return np.concatenate([a, b, c])


def test_landmarks_found_where_slope_changes():
    m = piecewise_curve()
    c = analyze_curve(m, smooth_frac=0.01)
    assert c.fallback is None
    assert 90 <= c.elbow <= 115          # head ends at 100
    assert 885 <= c.knee <= 910          # tail starts at 900
    assert c.elbow_margin == pytest.approx(m[c.elbow])
    # reflection: first margin <= -(elbow margin), right of the knee
    assert c.reflection >= c.knee
    assert m[c.reflection] <= -c.elbow_margin
    assert m[c.reflection - 1] > -c.elbow_margin or c.reflection == c.knee


def test_gaussian_margins_landmarks_in_the_tails():
    rng = np.random.default_rng(0)
    m = np.sort(rng.normal(0.5, 1.0, 4000))[::-1]
    c = analyze_curve(m)
    assert c.fallback is None
    assert 0.03 * 4000 < c.elbow < 0.25 * 4000
    assert 0.75 * 4000 < c.knee < 0.97 * 4000


@pytest.mark.parametrize("margins,reason", [
    (np.zeros(100), "flat"),
    (np.linspace(1, -1, 5), "too few"),
    (np.array([]), "too few"),
])
def test_degenerate_curves_fall_back_without_flips(margins, reason):
    c = analyze_curve(margins)
    assert reason in c.fallback
    assert c.reflection is None


def test_all_positive_curve_has_no_reflection():
    m = piecewise_curve() + 20.0
    c = analyze_curve(m, smooth_frac=0.01)
    assert c.reflection is None


def test_unsorted_or_nan_margins_rejected():
    with pytest.raises(ValueError, match="descending"):
        analyze_curve(np.array([0.0, 1.0] * 20))
    with pytest.raises(ValueError, match="NaN"):
        analyze_curve(np.array([np.nan] * 30))


def test_selection_regions():
    m = piecewise_curve(n=200, head=0.1, tail=0.1)
    c = analyze_curve(m, smooth_frac=0.02)
    order = [f"p{i}" for i in range(200)]
    sel = select(order, c, budget=10, backoff=0.5, already_human={f"p{c.reflection - 1}"})
    # flips: strictly right of the reflection point
    assert sel.flips == order[c.reflection + 1:]
    # human batch walks left from the reflection point and skips answered pairs
    assert len(sel.human_batch) == 10
    assert sel.human_batch[0] == order[c.reflection]
    assert f"p{c.reflection - 1}" not in sel.human_batch
    assert set(sel.human_batch).isdisjoint(sel.flips)
    # trusted: left of the knee, backed off 50% from the knee side
    assert sel.trusted == order[: round(c.knee * 0.5)]


def test_human_batch_from_bottom_when_no_reflection_and_budget_cap():
    c = analyze_curve(np.linspace(5, 1, 100))
    assert c.reflection is None
    order = [str(i) for i in range(100)]
    batch, start = select_human_batch(order, c, budget=3, already_human={"99"})
    assert start == 99 and batch == ["98", "97", "96"]
    assert select_human_batch(order, c, budget=0, already_human=set())[0] == []


def test_trusted_region_rejects_bad_backoff():
    c = analyze_curve(piecewise_curve(n=100))
    with pytest.raises(ValueError):
        trusted_region([str(i) for i in range(100)], c, backoff=1.0)


def test_paper_backoff_schedule():
    assert [backoff_for_iteration(k) for k in range(1, 8)] == [0.6, 0.6, 0.6, 0.4, 0.2, 0.1, 0.1]
    with pytest.raises(ValueError):
        backoff_for_iteration(0)


def test_training_set_amplifies_humans_and_dedups():
    labels = {"a": "A", "b": "B", "c": "A", "d": "B"}
    rows = build_training_set(labels=labels, human_ids={"a", "d"}, trusted=["a", "b"], flips=["c"],
                              amplification=4)
    got = {i: (lab, w) for i, lab, w in rows}
    assert got == {"a": ("A", 4.0), "b": ("B", 1.0), "c": ("A", 1.0), "d": ("B", 4.0)}
    rows = build_training_set(labels=labels, human_ids=set(), trusted=["b"], flips=["c"],
                              amplification=1, train_on_flips=False)
    assert [r[0] for r in rows] == ["b"]
    with pytest.raises(ValueError):
        build_training_set(labels=labels, human_ids=set(), trusted=[], flips=[], amplification=0)


def test_flip_audit_sample_is_seeded_and_precision_counts_agreement():
    from rayalign.rlthf.select import audit_precision, audit_sample

    flips = [f"f{i}" for i in range(50)]
    a = audit_sample(flips, 6, seed="audit:0:1")
    assert len(a) == 6 == len(set(a)) and set(a) <= set(flips)
    assert a == audit_sample(flips, 6, seed="audit:0:1") != audit_sample(flips, 6, seed="audit:0:2")
    assert audit_sample(flips[:3], 6, seed="s") and len(audit_sample(flips[:3], 6, seed="s")) == 3
    assert audit_sample([], 6, seed="s") == [] and audit_sample(flips, 0, seed="s") == []
    labels = {"x": "A", "y": "A", "z": "B"}
    # flipped labels would be B, B, A: the human agrees on x and z
    assert audit_precision(["x", "y", "z"], labels, {"x": "B", "y": "A", "z": "A"}) == pytest.approx(2 / 3)
    assert audit_precision(["x"], labels, {}) is None

"""Deterministic, order-independent splits, shards and A/B orders."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest

from rayalign.data.bundled import load_bundled
from rayalign.data.schema import PreferencePair
from rayalign.data.splits import assign_ab_order, shard, train_test_split


@pytest.fixture(scope="module")
def pairs() -> list[PreferencePair]:
    return list(load_bundled("hh_rlhf_harmless"))


def _ids(xs):
    return [x.id for x in xs]


def test_train_test_split_exact_disjoint_covering_and_order_free(pairs):
    train, test = train_test_split(pairs, 0.2, seed=7)
    assert len(test) == round(len(pairs) * 0.2) and len(train) + len(test) == len(pairs)
    assert not set(_ids(train)) & set(_ids(test))
    assert set(_ids(train)) | set(_ids(test)) == set(_ids(pairs))
    shuffled = pairs[:]
    random.Random(1).shuffle(shuffled)
    train2, test2 = train_test_split(shuffled, 0.2, seed=7)
    assert set(_ids(test2)) == set(_ids(test))  # input order does not matter
    assert _ids(train) == [p.id for p in pairs if p.id in set(_ids(train))]  # input order kept
    _, test3 = train_test_split(pairs, 0.2, seed=8)
    assert set(_ids(test3)) != set(_ids(test))  # the seed matters
    assert train_test_split(pairs, 0.0, 1)[1] == [] and train_test_split(pairs, 1.0, 1)[0] == []
    with pytest.raises(ValueError):
        train_test_split(pairs, 1.5, 0)


def test_split_is_stable_across_python_processes(pairs):
    code = ("from rayalign.data.bundled import load_bundled\n"
            "from rayalign.data.splits import train_test_split\n"
            "print(','.join(sorted(p.id for p in train_test_split(list(load_bundled('hh_rlhf_harmless')), 0.1, 3)[1])))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONHASHSEED": "123", "PATH": ""}).stdout.strip()
    assert out == ",".join(sorted(_ids(train_test_split(pairs, 0.1, 3)[1])))


def test_shards_partition_and_balance(pairs):
    shards = [shard(pairs, 4, i, seed=0) for i in range(4)]
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == len(pairs)
    all_ids = [i for s in shards for i in _ids(s)]
    assert len(all_ids) == len(set(all_ids)) == len(pairs)
    rev = shard(pairs[::-1], 4, 2, seed=0)
    assert set(_ids(rev)) == set(_ids(shards[2]))
    assert set(_ids(shard(pairs, 4, 2, seed=1))) != set(_ids(shards[2]))
    with pytest.raises(ValueError):
        shard(pairs, 4, 4)
    # dict records work too (e.g. rows from a Ray Dataset)
    rows = [{"id": p.id} for p in pairs[:100]]
    assert [r["id"] for r in shard(rows, 3, 0, seed=0)] == _ids(shard(pairs[:100], 3, 0, seed=0))


def test_assign_ab_order_is_seeded_balanced_and_keeps_the_winner(pairs):
    items = assign_ab_order(pairs, seed=11)
    assert len(items) == len(pairs)
    n_a = sum(i.label == "A" for i in items)
    assert 0.45 < n_a / len(items) < 0.55
    for p, it in zip(pairs, items):
        assert it.id == p.id and it.prompt == p.prompt
        winner = it.response_a if it.label == "A" else it.response_b
        loser = it.response_b if it.label == "A" else it.response_a
        assert (winner, loser) == (p.chosen, p.rejected)
        assert it.to_preference().chosen == p.chosen
    assert [i.label for i in assign_ab_order(pairs, seed=11)] == [i.label for i in items]
    assert [i.label for i in assign_ab_order(pairs[::-1], seed=11)] == [i.label for i in items][::-1]
    other = [i.label for i in assign_ab_order(pairs, seed=12)]
    assert other != [i.label for i in items]

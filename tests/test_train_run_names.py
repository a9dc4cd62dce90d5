"""Ray Train run folders: private to an output dir, stable across reruns into that dir (no training)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rayalign.training import ray_train as tu
from rayalign.training.config import TrainScaling


@pytest.mark.parametrize("kind", ["rm", "sft", "dpo"])
def test_shared_storage_gets_one_run_name_per_output_dir(tmp_path, kind):
    shared = TrainScaling(storage_path="/shared/ray_train")
    a1 = tu.ray_run_location(shared, tmp_path / "run_a", kind)
    a2 = tu.ray_run_location(shared, tmp_path / "x" / ".." / "run_a", kind)  # same dir, other spelling
    b = tu.ray_run_location(shared, tmp_path / "run_b", kind)
    assert a1 == a2, "a rerun into the same output dir must find its checkpoints again"
    assert a1 != b, "another output dir must never restore this run's checkpoints"
    assert a1[0] == b[0] == "/shared/ray_train"
    assert a1[1].startswith(f"{kind}-") and a1[1] != kind
    # the kind stays part of the identity as well
    other_kind = "sft" if kind != "sft" else "dpo"
    assert tu.ray_run_location(shared, tmp_path / "run_a", other_kind) != a1


def test_relative_output_dir_means_the_same_as_its_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shared = TrainScaling(storage_path="s3://bucket/ray")
    assert (tu.ray_run_location(shared, Path("runs/rm"), "rm")
            == tu.ray_run_location(shared, tmp_path / "runs" / "rm", "rm"))
    assert tu.ray_run_location(shared, Path("runs/rm"), "rm")[0] == "s3://bucket/ray"


def test_default_storage_lives_inside_the_output_dir(tmp_path):
    loc_a = tu.ray_run_location(TrainScaling(), tmp_path / "a", "rm")
    loc_b = tu.ray_run_location(TrainScaling(), tmp_path / "b", "rm")
    assert loc_a == (str((tmp_path / "a" / "ray_train").resolve()), "rm")
    assert loc_a != loc_b


def test_run_torch_trainer_hands_the_location_to_ray_train(tmp_path, monkeypatch):
    import ray.train.torch

    import rayalign.ray_utils

    seen = []

    class FakeTrainer:
        def __init__(self, **kw):
            seen.append(kw["run_config"])

        def fit(self):
            return "result"

    monkeypatch.setattr(ray.train.torch, "TorchTrainer", FakeTrainer)
    monkeypatch.setattr(rayalign.ray_utils, "init_ray", lambda cfg=None: None)
    shared = TrainScaling(storage_path=str(tmp_path / "shared"))
    for out in ("one", "two", "one"):
        assert tu.run_torch_trainer(lambda c: None, {}, shared, tmp_path / out, name="dpo") == "result"
    names = [rc.name for rc in seen]
    assert names[0] == names[2] != names[1]
    assert all(n.startswith("dpo-") for n in names)
    assert {rc.storage_path for rc in seen} == {str(tmp_path / "shared")}

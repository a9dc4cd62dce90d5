"""Cluster manifests: valid YAML, right kinds, and consistent with the package they run."""

from __future__ import annotations

import importlib
import shlex
from pathlib import Path

import pytest
import yaml

from rayalign.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "cluster"
KUBERAY = sorted((CLUSTER / "kuberay").glob("*.yaml"))
IMAGE = "rayalign:0.1.0-gpu"


def _docs(path: Path) -> list[dict]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert docs, path
    return docs


def _all_kuberay() -> list[tuple[Path, dict]]:
    return [(p, d) for p in KUBERAY for d in _docs(p)]


def _check_entrypoint(entrypoint: str) -> None:
    """`python -m rayalign.cli <job> --config <file>`: a real sub-command, a real config."""
    argv = shlex.split(entrypoint)
    assert argv[:3] == ["python", "-m", "rayalign.cli"], entrypoint
    args = build_parser().parse_args(argv[3:])
    assert callable(getattr(args, "func", None)), entrypoint
    cfg = ROOT / args.config
    assert cfg.is_file(), f"{entrypoint}: no {cfg}"
    assert str(cfg.relative_to(ROOT)).startswith("jobs/configs/")
    # and the config validates against the job's own model
    from rayalign.config import load_config
    from rayalign.policy.train_config import DPOJobConfig, SFTJobConfig
    from rayalign.rewards.commands import RMTrainJobConfig

    model = {"rm": RMTrainJobConfig, "dpo": DPOJobConfig, "sft": SFTJobConfig}.get(argv[3])
    if model is not None:
        load_config(model, cfg)


def _containers(pod_template: dict) -> list[dict]:
    return pod_template["spec"]["containers"]


def _cluster_specs(doc: dict) -> list[dict]:
    kind = doc["kind"]
    if kind == "RayCluster":
        return [doc["spec"]]
    if kind == "RayJob":
        return [doc["spec"]["rayClusterSpec"]]
    if kind == "RayService":
        return [doc["spec"]["rayClusterConfig"]]
    raise AssertionError(kind)


def test_kuberay_kinds_and_api_versions():
    kinds = sorted({d["kind"] for _p, d in _all_kuberay()})
    assert kinds == ["RayCluster", "RayJob", "RayService"]
    for path, doc in _all_kuberay():
        assert doc["apiVersion"] == "ray.io/v1", path
        assert doc["metadata"]["name"]


def test_kuberay_images_ray_version_and_gpus_are_consistent():
    import ray

    for path, doc in _all_kuberay():
        for spec in _cluster_specs(doc):
            assert spec["rayVersion"] == ray.__version__, path
            for c in _containers(spec["headGroupSpec"]["template"]):
                assert c["image"] == IMAGE, path
            for group in spec["workerGroupSpecs"]:
                gpus = int(group["rayStartParams"]["num-gpus"])
                assert gpus == 8, path  # 8 x A100 per node
                assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
                for c in _containers(group["template"]):
                    assert c["image"] == IMAGE, path
                    assert int(c["resources"]["limits"]["nvidia.com/gpu"]) == gpus, path


def test_rayjob_entrypoints_run_real_commands_on_real_configs():
    jobs = [d for _p, d in _all_kuberay() if d["kind"] == "RayJob"]
    assert len(jobs) >= 2
    for doc in jobs:
        _check_entrypoint(doc["spec"]["entrypoint"])
        env = yaml.safe_load(doc["spec"]["runtimeEnvYAML"])
        assert env["working_dir"] == "/home/ray/rayalign"  # where cluster/Dockerfile puts it


def test_rayservice_imports_a_real_app_builder_with_valid_args():
    from rayalign.serve.reward_app import RMServeConfig

    svc = [d for _p, d in _all_kuberay() if d["kind"] == "RayService"]
    assert len(svc) == 1
    serve_cfg = yaml.safe_load(svc[0]["spec"]["serveConfigV2"])
    for app in serve_cfg["applications"]:
        module, _, attr = app["import_path"].partition(":")
        assert callable(getattr(importlib.import_module(module), attr))
        cfg = RMServeConfig.model_validate(app["args"])  # unknown keys would fail here
        assert cfg.route_prefix == app["route_prefix"]


def test_cluster_launcher_a100_nodes():
    import ray

    cfg = yaml.safe_load((CLUSTER / "ray-cluster-a100.yaml").read_text())
    nodes = cfg["available_node_types"]
    assert cfg["head_node_type"] in nodes
    gpu_nodes = {k: v for k, v in nodes.items() if v["resources"].get("GPU")}
    assert gpu_nodes
    for node in gpu_nodes.values():
        assert node["resources"]["GPU"] == 8
        assert node["node_config"]["InstanceType"] in ("p4d.24xlarge", "p4de.24xlarge")
        assert node["min_workers"] <= node["max_workers"] <= cfg["max_workers"]
    assert cfg["docker"]["image"] == IMAGE
    dockerfile = (CLUSTER / "Dockerfile").read_text()
    assert f"rayproject/ray:{ray.__version__}-" in dockerfile
    assert any("--dashboard-host=127.0.0.1" in c for c in cfg["head_start_ray_commands"])


@pytest.mark.parametrize("name", ["rm_a100.yaml", "dpo_a100.yaml"])
def test_gpu_job_configs_fit_the_cluster(name):
    from rayalign.config import load_config
    from rayalign.policy.train_config import DPOJobConfig
    from rayalign.rewards.commands import RMTrainJobConfig

    model = RMTrainJobConfig if name.startswith("rm") else DPOJobConfig
    cfg = load_config(model, ROOT / "jobs" / "configs" / name)
    scaling = cfg.rm.scaling if name.startswith("rm") else cfg.train.scaling
    launcher = yaml.safe_load((CLUSTER / "ray-cluster-a100.yaml").read_text())
    max_gpus = sum(n["resources"].get("GPU", 0) * n["max_workers"]
                   for n in launcher["available_node_types"].values() if "max_workers" in n)
    assert scaling.use_gpu and scaling.num_workers <= max_gpus
    assert scaling.storage_path and scaling.storage_path.startswith("/shared")

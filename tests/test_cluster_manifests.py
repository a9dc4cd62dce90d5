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
    from rayalign.training.config import DPOJobConfig, SFTJobConfig
    from rayalign.rewards.lora import RMTrainJobConfig

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
    from rayalign.training.config import DPOJobConfig
    from rayalign.rewards.lora import RMTrainJobConfig

    model = RMTrainJobConfig if name.startswith("rm") else DPOJobConfig
    cfg = load_config(model, ROOT / "jobs" / "configs" / name)
    scaling = cfg.rm.scaling if name.startswith("rm") else cfg.train.scaling
    launcher = yaml.safe_load((CLUSTER / "ray-cluster-a100.yaml").read_text())
    max_gpus = sum(n["resources"].get("GPU", 0) * n["max_workers"]
                   for n in launcher["available_node_types"].values() if "max_workers" in n)
    assert scaling.use_gpu and scaling.num_workers <= max_gpus
    assert scaling.storage_path and scaling.storage_path.startswith("/shared")


# --- every absolute path a cluster job uses is on a volume its pods mount ---------------------

CONFIGS = ROOT / "jobs" / "configs"
CLUSTER_CONFIGS = sorted({p for pat in ("*_a100.yaml", "*_cluster.yaml", "*_gpu.yaml")
                          for p in CONFIGS.glob(pat)})


def _pod_templates(spec: dict) -> list[dict]:
    return [spec["headGroupSpec"]["template"]] + [g["template"] for g in spec["workerGroupSpecs"]]


def _mount_paths(template: dict) -> list[list[str]]:
    """Per container of the pod: the mountPaths it has, each backed by a volume of the pod."""
    volumes = {v["name"] for v in template["spec"].get("volumes", [])}
    out = []
    for c in _containers(template):
        mounts = c.get("volumeMounts", [])
        assert all(m["name"] in volumes for m in mounts), f"{c['name']}: mount without a volume"
        out.append([m["mountPath"] for m in mounts])
    return out


def _abs_paths(node) -> list[str]:
    """Every string value in a parsed YAML tree that is an absolute filesystem path."""
    if isinstance(node, dict):
        return [p for v in node.values() for p in _abs_paths(v)]
    if isinstance(node, list):
        return [p for v in node for p in _abs_paths(v)]
    if isinstance(node, str) and node.startswith("/") and not node.startswith("//"):
        return [node]
    return []


def _under(path: str, mount: str) -> bool:
    from pathlib import PurePosixPath

    return mount != "/" and PurePosixPath(path).is_relative_to(PurePosixPath(mount))


def _assert_mounted(paths: list[str], spec: dict, where: str) -> None:
    assert paths, f"{where}: no absolute paths found (is the walk broken?)"
    for template in _pod_templates(spec):
        for mounts in _mount_paths(template):
            missing = [p for p in paths if not any(_under(p, m) for m in mounts)]
            assert not missing, f"{where}: {missing} not under any of the pod's mounts {mounts}"


def _entrypoint_config(entrypoint: str) -> Path:
    args = build_parser().parse_args(shlex.split(entrypoint)[3:])
    return ROOT / args.config


def test_under_is_a_path_prefix_not_a_string_prefix():
    assert _under("/shared/data/x.jsonl", "/shared") and _under("/shared", "/shared")
    assert not _under("/shared2/x", "/shared") and not _under("/data/x", "/shared")
    assert _abs_paths({"a": ["/x", "rel/y", "http://h:1/v1"], "b": {"c": "/z"}, "d": 3}) == ["/x", "/z"]


def test_rayjob_configs_only_use_paths_their_pods_mount():
    jobs = [(p, d) for p, d in _all_kuberay() if d["kind"] == "RayJob"]
    assert jobs
    for path, doc in jobs:
        cfg_path = _entrypoint_config(doc["spec"]["entrypoint"])
        paths = _abs_paths(yaml.safe_load(cfg_path.read_text()))
        _assert_mounted(paths, doc["spec"]["rayClusterSpec"],
                        f"{path.name} ({doc['metadata']['name']}) running {cfg_path.name}")


@pytest.mark.parametrize("cfg_path", CLUSTER_CONFIGS, ids=lambda p: p.name)
def test_cluster_configs_only_use_paths_the_standing_cluster_mounts(cfg_path):
    """`rayalign submit <config>` to kuberay/raycluster.yaml: every cluster config must fit it."""
    (standing,) = [d for p, d in _all_kuberay() if d["kind"] == "RayCluster"]
    paths = _abs_paths(yaml.safe_load(cfg_path.read_text()))
    _assert_mounted(paths, standing["spec"], f"raycluster.yaml running {cfg_path.name}")


def test_cluster_configs_are_found():
    names = {p.name for p in CLUSTER_CONFIGS}
    assert {"rm_a100.yaml", "dpo_a100.yaml", "rlthf_hh_cluster.yaml", "align_gpu.yaml"} <= names


def test_rayservice_model_dir_is_mounted():
    (svc,) = [d for _p, d in _all_kuberay() if d["kind"] == "RayService"]
    serve_cfg = yaml.safe_load(svc["spec"]["serveConfigV2"])
    # the apps' args (model_dir), not route_prefix: "/rm" is a URL path, not a file
    paths = [p for app in serve_cfg["applications"] for p in _abs_paths(app["args"])]
    _assert_mounted(paths, svc["spec"]["rayClusterConfig"], "rayservice-rm.yaml")


def test_gpu_workers_of_every_cluster_get_a_memory_backed_dev_shm():
    for path, doc in _all_kuberay():
        if doc["kind"] == "RayService":
            continue  # inference replicas: no NCCL all-reduce, no data-loader workers
        for spec in _cluster_specs(doc):
            for group in spec["workerGroupSpecs"]:
                t = group["template"]
                vols = {v["name"]: v for v in t["spec"]["volumes"]}
                for c in _containers(t):
                    shm = [m for m in c["volumeMounts"] if m["mountPath"] == "/dev/shm"]
                    assert shm, f"{path.name} ({doc['metadata']['name']}): no /dev/shm on {c['name']}"
                    assert vols[shm[0]["name"]]["emptyDir"]["medium"] == "Memory", path

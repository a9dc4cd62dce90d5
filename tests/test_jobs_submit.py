"""Ray Jobs submission: the spec (fast) and a real `ray start --head` cluster (slow)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ray_cli_helpers import free_port, ray_auth_headers

from rayalign.cli import build_parser
from rayalign.config import ConfigError
from rayalign.cli.jobs import JOB_BY_PREFIX, PROJECT_ROOT, build_submission, infer_job

CONFIGS = PROJECT_ROOT / "jobs" / "configs"


def _is_subcommand(job: str) -> bool:
    """True when `rayalign <job> --help` parses, i.e. the job is a real sub-command."""
    parser = build_parser()
    try:
        parser.parse_args([*job.split(), "--help"])
    except SystemExit as e:
        return e.code == 0
    return False


def test_every_prefix_maps_to_a_real_subcommand(capsys):
    for _prefix, job in JOB_BY_PREFIX:
        assert _is_subcommand(job), job
    capsys.readouterr()


def test_submission_spec_for_every_shipped_config(capsys):
    configs = sorted(CONFIGS.glob("*.yaml"))
    assert configs
    for cfg in configs:
        spec = build_submission(cfg)
        job = spec["metadata"]["rayalign_job"]
        assert _is_subcommand(job), (cfg.name, job)
        rel = cfg.relative_to(PROJECT_ROOT).as_posix()
        assert spec["entrypoint"] == f"python -m rayalign.cli {job} --config {rel}"
        env = spec["runtime_env"]
        assert env["working_dir"] == str(PROJECT_ROOT)
        assert ".venv" in env["excludes"] and "runs" in env["excludes"]
        assert env["env_vars"]["HF_HUB_OFFLINE"] == "1"
        assert not any(k.endswith(("_KEY", "_TOKEN", "_SECRET")) for k in env["env_vars"])
    capsys.readouterr()


def test_job_inference_and_errors(tmp_path):
    assert infer_job(CONFIGS / "rm_tiny.yaml") == "rm train"
    assert infer_job(CONFIGS / "dpo_tiny.yaml") == "dpo"
    odd = tmp_path / "whatever.yaml"
    odd.write_text("a: 1\n")
    with pytest.raises(ConfigError, match="--job"):
        infer_job(odd)
    with pytest.raises(ConfigError, match="outside the project"):
        build_submission(odd, job="dpo")
    spec = build_submission(CONFIGS / "dpo_tiny.yaml", extra_args=["--set", "train.beta=0.2"],
                            entrypoint_num_gpus=1)
    assert spec["entrypoint"].endswith("--set train.beta=0.2")
    assert spec["entrypoint_num_gpus"] == 1


@pytest.fixture
def local_ray_cluster():
    """A real head node via `ray start --head --block` in its own process group, so exactly
    the processes it started are stopped afterwards (other Ray instances may share the
    machine). Yields the dashboard (Jobs API) URL once it answers."""
    import signal

    import httpx

    ray_bin = Path(sys.executable).parent / "ray"
    gcs, dash = free_port(), free_port()
    # The job's `python` is the one on the head's PATH, as with an activated venv.
    # Token auth ON (Ray 2.60's default for new clusters): submit/status/logs and the job's
    # own driver must all authenticate with the token in ~/.ray/auth_token.
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("RAY_ADDRESS", None)
    temp = Path("/tmp") / f"rayjobs{gcs}"
    proc = subprocess.Popen(
        [str(ray_bin), "start", "--head", "--block", f"--port={gcs}", "--num-cpus=2",
         "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
         f"--temp-dir={temp}", "--disable-usage-stats"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    address = f"http://127.0.0.1:{dash}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{address}/api/version", timeout=2,
                             headers=ray_auth_headers()).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("the local Ray head did not come up")
            time.sleep(1)
        yield address, env
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.slow
def test_submit_status_logs_against_a_real_local_cluster(local_ray_cluster, tmp_path):
    """Submit the tiny RM job config to a real cluster, wait, then read status and logs."""
    import json

    address, env = local_ray_cluster
    rayalign_bin = Path(sys.executable).parent / "rayalign"
    run_dir = tmp_path / "rm_job"
    out = subprocess.run(
        [str(rayalign_bin), "submit", "jobs/configs/rm_tiny.yaml", "--address", address,
         "--wait", "--timeout", "600",
         "--job-args", f"--run-dir {run_dir} --set rm.num_epochs=1"],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=700)
    assert out.returncode == 0, out.stderr[-6000:]
    job_id = json.loads(out.stdout.strip().splitlines()[-1])["job_id"]
    st = subprocess.run([str(rayalign_bin), "status", job_id, "--address", address],
                        env=env, capture_output=True, text=True, timeout=60)
    assert json.loads(st.stdout)["status"] == "SUCCEEDED"
    logs = subprocess.run([str(rayalign_bin), "logs", job_id, "--address", address],
                          env=env, capture_output=True, text=True, timeout=60).stdout
    assert "held-out preference accuracy" in logs and "model_dir" in logs
    assert (run_dir / "model" / "rayalign_rm.json").is_file()
    # without the token the cluster's Jobs API refuses to talk
    import httpx

    assert httpx.get(f"{address}/api/jobs/", timeout=10).status_code in (401, 403)


@pytest.mark.parametrize("name", ["rm_tiny.yaml", "rm_a100.yaml", "dpo_tiny.yaml",
                                  "dpo_a100.yaml", "sft_tiny.yaml"])
def test_training_job_configs_validate_and_name_existing_local_data(name):
    from rayalign.config import load_config
    from rayalign.cli.common import resolve_config_path as _resolve
    from rayalign.training.config import DPOJobConfig, SFTJobConfig
    from rayalign.rewards.lora import RMTrainJobConfig

    model = {"rm": RMTrainJobConfig, "dpo": DPOJobConfig, "sft": SFTJobConfig}[name.split("_")[0]]
    path = CONFIGS / name
    cfg = load_config(model, path)
    if name.endswith("_tiny.yaml"):  # runnable here: the data ships in jobs/data/
        assert Path(_resolve(cfg.data.path, str(path))).is_file()

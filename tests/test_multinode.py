"""A real two-node Ray cluster on this machine: placement, node loss mid-fit, Ray Jobs.

Head and worker are separate ``ray start --block`` processes (each in its own process
group, so the test stops exactly what it started), bound to 127.0.0.1, token auth on,
with distinct resources (``head`` / ``worker_node``; one ``train_slot`` each) so that
placement is observable and a 2-worker Ray Train run must put one worker on each node.

One test, several phases, timed (the times are printed; see benchmarks/README.md):
1. the embedding stage (Ray Data actor pool, one actor per node) encodes on both nodes;
2. a 2-worker LoRA RM fit; once it has reported a checkpoint, the worker node is killed
   (SIGKILL to its process group: raylet and workers die at once, like a lost machine) and a
   fresh worker node is added; FailureConfig restarts the worker group from the checkpoint,
   and the fit finishes with a model that ranks held-out pairs right;
3. ``rayalign submit`` of the tiny RM job to the cluster's Jobs API.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ray_cli_helpers import free_port, ray_auth_headers

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow


class TwoNodeCluster:
    def __init__(self, tmp: Path):
        self.gcs, self.dash = free_port(), free_port()
        self.temp = Path("/tmp") / f"rmn{self.gcs}"
        self.logs = tmp
        # Token auth on; single-machine (loopback-only) mode, as rayalign.ray_utils uses.
        self.env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0",
                    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
                    "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
                    "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
        self.env.pop("RAY_ADDRESS", None)
        self.procs: list[subprocess.Popen] = []
        self.worker: subprocess.Popen | None = None
        self.killed: set[int] = set()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs}"

    @property
    def jobs_url(self) -> str:
        return f"http://127.0.0.1:{self.dash}"

    def _spawn(self, args: list[str], log: str) -> subprocess.Popen:
        out = open(self.logs / log, "ab")
        p = subprocess.Popen(args, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                             start_new_session=True)
        self.procs.append(p)
        return p

    def start_head(self) -> None:
        self._spawn([str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
                     f"--port={self.gcs}", "--num-cpus=2", '--resources={"head": 1, "train_slot": 1}',
                     "--include-dashboard=true", "--dashboard-host=127.0.0.1",
                     f"--dashboard-port={self.dash}", f"--dashboard-agent-listen-port={free_port()}",
                     f"--temp-dir={self.temp}", "--disable-usage-stats"], "head.log")
        self.wait_nodes(1)

    def add_worker(self) -> None:
        self.worker = self._spawn(
            [sys.executable, str(REPO / "tests" / "ray_worker_node.py"), "start", "--block",
             f"--address={self.address}", "--node-ip-address=127.0.0.1", "--num-cpus=2",
             '--resources={"worker_node": 1, "train_slot": 1}',
             f"--dashboard-agent-listen-port={free_port()}", "--disable-usage-stats"], "worker.log")

    def kill_worker(self) -> None:
        """Lose the worker node: SIGKILL its raylet, agents and workers (one process group)."""
        assert self.worker is not None
        self.killed.add(self.worker.pid)
        os.killpg(self.worker.pid, signal.SIGKILL)
        self.worker.wait(30)

    def alive_nodes(self) -> list[dict]:
        import httpx

        try:  # Ray's state API on the dashboard (token auth on)
            r = httpx.get(f"{self.jobs_url}/api/v0/nodes?limit=100", timeout=5, headers=ray_auth_headers())
            nodes = r.json()["data"]["result"]["result"]
        except Exception:
            return []
        return [n for n in nodes if n.get("state") == "ALIVE"]

    def wait_nodes(self, n: int, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while len(self.alive_nodes()) != n:
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.procs
                                                  if p.pid not in self.killed):
                raise AssertionError(f"cluster did not reach {n} alive node(s); see {self.logs}")
            time.sleep(1)

    def run_job(self, *args: str, timeout: float = 900) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, str(REPO / "tests" / "multinode_job.py"), *args],
                                env={**self.env, "RAY_ADDRESS": self.address}, cwd=REPO,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def stop(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for p in self.procs:
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        shutil.rmtree(self.temp, ignore_errors=True)


@pytest.fixture
def two_nodes(tmp_path):
    cluster = TwoNodeCluster(tmp_path)
    try:  # the finalizer runs whatever happens after the first process started
        cluster.start_head()
        cluster.add_worker()
        cluster.wait_nodes(2)
        yield cluster
    finally:
        cluster.stop()


def _result(proc: subprocess.Popen, timeout: float) -> dict:
    out, _ = proc.communicate(timeout=timeout)
    lines = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, out[-6000:]
    return json.loads(lines[-1][len("RESULT "):])


def test_two_node_cluster_placement_node_loss_and_submit(two_nodes, tmp_path):
    cluster, times = two_nodes, {}

    # 1. The encoder stage of the RM (Ray Data, 2 actors x 2 CPUs) runs on both nodes.
    t0 = time.monotonic()
    data = _result(cluster.run_job("data"), timeout=600)
    times["data_stage_s"] = round(time.monotonic() - t0, 1)
    assert data["n"] == 160 and data["dim"] == 384
    kinds = {node: kind[0] for node, kind in data["nodes"].items()}
    assert sorted(kinds.values()) == ["head", "worker_node"]
    assert set(data["placement"]) == set(kinds), data["placement"]  # texts encoded on both
    assert sum(data["placement"].values()) == 160

    # 2. 2-worker Ray Train fit, one worker per node; lose the worker node after a checkpoint.
    out = tmp_path / "train"
    t0 = time.monotonic()
    job = cluster.run_job("train", str(out))
    ckpts = out / "rm" / "ray_train" / "rm"
    deadline = time.monotonic() + 600
    while not (ckpts.is_dir() and any(p.name.startswith("checkpoint_") for p in ckpts.iterdir())):
        assert job.poll() is None, "training ended before the node could be lost: " + job.stdout.read()[-4000:]
        assert time.monotonic() < deadline, "no checkpoint within 10 minutes"
        time.sleep(0.2)
    times["first_checkpoint_s"] = round(time.monotonic() - t0, 1)
    cluster.kill_worker()
    killed_at = time.monotonic()
    cluster.add_worker()  # a replacement machine joins
    train = _result(job, timeout=900)
    times["fit_total_s"] = round(time.monotonic() - t0, 1)
    times["recovery_after_kill_s"] = round(time.monotonic() - killed_at, 1)
    m = train["metrics"]
    assert m["world_size"] == 2
    assert 0 < m["resumed_from_step"] < m["global_step"], m  # restarted from a checkpoint
    assert m["global_step"] == 24                             # 96 pairs / 16 per step x 4 epochs
    assert train["heldout_acc"] >= 0.9, train["heldout_acc"]
    # One worker per node in both attempts: the lost node ran one worker of the first group,
    # the replacement one of the second, the head one of each.
    from collections import Counter

    lost = next(n for n, k in kinds.items() if k == "worker_node")
    head = next(n for n, k in kinds.items() if k == "head")
    per_node = Counter(w["node"] for w in train["workers"])
    new = [n for n in per_node if n not in kinds]
    assert per_node[lost] == 1 and per_node[head] == 2 and len(new) == 1 and per_node[new[0]] == 1, train["workers"]
    assert not train["nodes"][lost]["alive"] and train["nodes"][new[0]]["alive"]

    # 3. rayalign submit (Ray Jobs) to the same cluster.
    t0 = time.monotonic()
    run_dir = tmp_path / "rm_job"
    sub = subprocess.run(
        [str(BIN / "rayalign"), "submit", "jobs/configs/rm_tiny.yaml", "--address", cluster.jobs_url,
         "--wait", "--timeout", "600", "--job-args", f"--run-dir {run_dir} --set rm.num_epochs=1"],
        cwd=REPO, env=cluster.env, capture_output=True, text=True, timeout=700)
    assert sub.returncode == 0, sub.stderr[-6000:]
    assert json.loads(sub.stdout.strip().splitlines()[-1])["status"] == "SUCCEEDED"
    assert (run_dir / "model" / "rayalign_rm.json").is_file()
    times["submit_s"] = round(time.monotonic() - t0, 1)
    print("multinode timings:", json.dumps(times))  # recorded in benchmarks/README.md

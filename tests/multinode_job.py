"""Driver side of tests/test_multinode.py: runs ON the two-node cluster (RAY_ADDRESS set),
prints one JSON line with what it observed. A separate process so that the test's own
embedded Ray (other tests share it) and this cluster never meet in one process.

    python tests/multinode_job.py data              # Ray Data encoder stage over both nodes
    python tests/multinode_job.py train OUT_DIR     # 2-worker Ray Train RM fit, one per node
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def data_stage() -> dict:
    import ray

    from rayalign.rewards.embedding_head import embed_with_ray

    ray.init()
    # Start feeding the pool only once both actors (one per node) have loaded MiniLM: on an
    # overloaded machine the first actor would otherwise finish everything alone.
    ray.data.DataContext.get_current().wait_for_min_actors_s = 300
    texts = {f"t{i}": f"text number {i}: " + "word " * (i % 40) for i in range(160)}
    placement: dict[str, int] = {}
    t0 = time.time()
    keys, vecs = embed_with_ray(texts, "minilm", num_actors=2, batch_size=16, cpus_per_actor=2,
                                placement=placement)
    return {"placement": placement, "n": len(keys), "dim": int(vecs.shape[1]),
            "seconds": time.time() - t0,
            "nodes": {n["NodeID"]: sorted(k for k in n["Resources"] if k in ("head", "worker_node"))
                      for n in ray.nodes() if n["Alive"]}}


def train_stage(out: Path) -> dict:
    import numpy as np
    import ray
    from ray.util.state import list_actors

    from rayalign.models.tiny import build_tiny_causal_lm
    from rayalign.rewards.lora import LoraRMConfig, train_lora_rm
    from rayalign.rewards.scoring import score_pairs
    from rayalign.training.config import LoraSettings, TrainScaling
    from toy_data import toy_preference_pairs

    ray.init()
    base = build_tiny_causal_lm(out / "tiny_lm")
    cfg = LoraRMConfig(
        base_model=str(base), learning_rate=3e-3, num_epochs=4, effective_batch_size=16,
        per_device_batch_size=8, max_length=64, checkpoint_every_steps=2,
        lora=LoraSettings(r=8, alpha=16, dropout=0.0),
        # One worker per node: each node offers one "train_slot".
        scaling=TrainScaling(num_workers=2, max_failures=3,
                             resources_per_worker={"CPU": 1, "train_slot": 1}))
    t0 = time.time()
    model_dir = train_lora_rm(toy_preference_pairs(96, seed=1), cfg, out / "rm")
    fit_s = time.time() - t0
    meta = json.loads((model_dir / "rayalign_rm.json").read_text())
    workers = [{"node": a.node_id, "state": a.state, "pid": a.pid}
               for a in list_actors(filters=[("class_name", "=", "RayTrainWorker")], detail=True,
                                    limit=1000)]
    heldout = toy_preference_pairs(24, seed=2)
    items = [p.to_pairwise(a_is_chosen=(i % 2 == 0)) for i, p in enumerate(heldout)]
    rewards = score_pairs(model_dir, items, batch_size=8, num_actors=1)
    pred = np.where(rewards[:, 0] > rewards[:, 1], "A", "B")
    acc = float(np.mean(pred == np.array([it.label for it in items])))
    return {"metrics": meta["metrics"], "workers": workers, "fit_seconds": fit_s, "heldout_acc": acc,
            "nodes": {n["NodeID"]: {"alive": n["Alive"],
                                    "kind": sorted(k for k in n["Resources"] if k in ("head", "worker_node"))}
                      for n in ray.nodes()}}


if __name__ == "__main__":
    stage = sys.argv[1]
    result = data_stage() if stage == "data" else train_stage(Path(sys.argv[2]))
    print("RESULT " + json.dumps(result, default=str), flush=True)

"""How many CPUs a CPU-only Ray Train worker gets when the config does not say.

WHY: Ray Train's default is 1 CPU per worker, and Ray sets a worker's torch/OMP thread count
from its CPU reservation, so a CPU training run used one core of a 2-core laptop (DPO 6.9k
tokens/s vs 10.2-10.5k with both cores, issue 17). Train V2's controller reserves no CPU and
the RLTHF driver actor none either, so the free CPUs can go to the workers -- capped at the
largest node, or a worker could never be placed.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def default_cpus_per_worker(num_workers: int, free_cpus: float, largest_node_cpus: float,
                            reserve_cpus: float = 0.0) -> int:
    """``floor((free - reserve) / workers)``, at least 1, at most one node's CPUs."""
    share = int((free_cpus - reserve_cpus) // max(1, num_workers))
    return max(1, min(share, int(largest_node_cpus) if largest_node_cpus >= 1 else share))


def worker_resources(num_workers: int, use_gpu: bool,
                     configured: dict[str, float] | None) -> dict[str, float] | None:
    """``resources_per_worker`` to give Ray Train: the configured value, Ray's default on GPU
    (``None``), else a CPU count from the running cluster (logged, so the run log says it)."""
    if configured is not None or use_gpu:
        return configured
    import ray

    free = float(ray.available_resources().get("CPU", 0.0))
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    largest = max((float(n.get("Resources", {}).get("CPU", 0.0)) for n in nodes), default=0.0)
    cpus = default_cpus_per_worker(num_workers, free, largest)
    log.info("Ray Train: %d CPU worker(s) x %d CPU (= torch threads) each; %.0f CPUs free in the "
             "cluster, largest node %.0f (set scaling.resources_per_worker to override)",
             num_workers, cpus, free, largest)
    return {"CPU": float(cpus)}

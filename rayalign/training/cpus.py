"""How many CPUs a CPU-only Ray Train worker gets when the config does not say.

WHY: Ray Train's default is 1 CPU per worker, and Ray sets a worker's torch/OMP thread count
from its CPU reservation, so a CPU training run used one core of a 2-core laptop (DPO 6.9k
tokens/s vs 10.2-10.5k with both cores, issue 17). Train V2's controller reserves no CPU and
the RLTHF driver actor none either, so the free CPUs can go to the workers -- capped at the
largest node, or a worker could never be placed.
"""

from __future__ import annotations

import logging

from rayalign.ray_utils import cluster_cpus, cpu_share

log = logging.getLogger(__name__)


def worker_resources(num_workers: int, use_gpu: bool,
                     configured: dict[str, float] | None) -> dict[str, float] | None:
    """``resources_per_worker`` to give Ray Train: the configured value, Ray's default on GPU
    (``None``), else a CPU count from the running cluster (logged, so the run log says it)."""
    if configured is not None or use_gpu:
        return configured
    free, largest = cluster_cpus()
    cpus = cpu_share(num_workers, free, largest)
    log.info("Ray Train: %d CPU worker(s) x %d CPU (= torch threads) each; %.0f CPUs free in the "
             "cluster, largest node %.0f (set scaling.resources_per_worker to override)",
             num_workers, cpus, free, largest)
    return {"CPU": float(cpus)}

"""Starting Ray the same way everywhere: embedded locally, or the cluster in RAY_ADDRESS."""

from __future__ import annotations

import logging
import os

from rayalign.config import RayConfig

log = logging.getLogger(__name__)


#: Ray's single-machine mode (its default on macOS/Windows): the node's address is the
#: loopback one, so GCS, raylet, workers and agents listen on 127.0.0.1 instead of every
#: interface. ``_node_ip_address="127.0.0.1"`` does not do it in Ray 2.60 (``ray.init``
#: resolves a loopback address to the host's routable one).
_SINGLE_MACHINE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def loopback_only() -> None:
    """Make the next embedded cluster (and its child processes) listen on loopback only."""
    os.environ[_SINGLE_MACHINE_ENV] = "0"
    import sys

    consts = sys.modules.get("ray._private.ray_constants")
    if consts is not None:  # ray already imported: the flag was read at import time
        consts.ENABLE_RAY_CLUSTER = False


def init_ray(cfg: RayConfig | None = None) -> None:
    """Start (or join) Ray once per process.

    With no address and no ``RAY_ADDRESS`` this is the embedded local cluster: loopback
    only, with Ray's token auth left on (Ray 2.60 turns it on for a new local cluster and
    keeps the token in ``~/.ray/auth_token``). ``RAY_AUTH_MODE=disabled`` in the environment
    still opts out. A real cluster keeps whatever its operator set.
    """
    import ray

    if ray.is_initialized():
        return
    if not (cfg.address if cfg else None) and not os.environ.get("RAY_ADDRESS"):
        loopback_only()
    cfg = cfg or RayConfig()
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    from rayalign.output import plain_ray_prefixes

    plain_ray_prefixes()
    kwargs: dict = {"include_dashboard": cfg.include_dashboard, "log_to_driver": True,
                    "configure_logging": False}
    if address:
        kwargs["address"] = address
    else:
        if cfg.num_cpus:
            kwargs["num_cpus"] = cfg.num_cpus
        if cfg.num_gpus is not None:
            kwargs["num_gpus"] = cfg.num_gpus
    ray.init(**kwargs)
    log.info("ray started: %s", ray.cluster_resources())


def cpu_share(n: int, free_cpus: float, largest_node_cpus: float, reserve_cpus: float = 0.0) -> int:
    """CPUs for each of ``n`` workers or actors splitting the free CPUs:
    ``floor((free - reserve) / n)``, at least 1, at most one node's CPUs (or it could never
    be placed). Ray sets each one's torch/OMP threads from this reservation."""
    share = int((free_cpus - reserve_cpus) // max(1, n))
    return max(1, min(share, int(largest_node_cpus) if largest_node_cpus >= 1 else share))


def cluster_cpus() -> tuple[float, float]:
    """``(free CPUs, CPUs of the largest alive node)`` of the running cluster; (0, 0) if none."""
    import ray

    if not ray.is_initialized():
        return 0.0, 0.0
    free = float(ray.available_resources().get("CPU", 0.0))
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    return free, max((float(n.get("Resources", {}).get("CPU", 0.0)) for n in nodes), default=0.0)

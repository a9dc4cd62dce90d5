"""Starting Ray the same way everywhere: embedded locally, or the cluster in RAY_ADDRESS."""

from __future__ import annotations

import logging
import os

from rayalign.config import RayConfig

log = logging.getLogger(__name__)


def init_ray(cfg: RayConfig | None = None) -> None:
    """Start (or join) Ray once per process.

    With no address and no ``RAY_ADDRESS`` this is the embedded local cluster. Token auth
    (on by default in Ray 2.60) is switched off only for that embedded cluster; a real
    cluster keeps whatever auth its operator set.
    """
    import ray

    if ray.is_initialized():
        return
    cfg = cfg or RayConfig()
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    if not address:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
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

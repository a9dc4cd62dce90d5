"""Issue 14 item 1: the embedded Ray cluster listens on loopback only, token auth on."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

PROBE = textwrap.dedent("""
    import ipaddress, json, os, psutil, ray
    from rayalign.ray_utils import init_ray
    from rayalign.config import RayConfig
    init_ray(RayConfig(num_cpus=1))

    @ray.remote
    def f():
        return 1

    @ray.remote
    class A:
        def ping(self):
            return 2

    assert ray.get(f.remote()) == 1 and ray.get(A.remote().ping.remote()) == 2
    me = psutil.Process()
    pids = {me.pid} | {p.pid for p in me.children(recursive=True)}
    socks = []
    for c in psutil.net_connections(kind="inet"):
        if c.status == psutil.CONN_LISTEN and c.pid in pids:
            ip = c.laddr.ip.removeprefix("::ffff:")
            socks.append([ip, c.laddr.port, psutil.Process(c.pid).name(),
                          ipaddress.ip_address(ip).is_loopback])
    print(json.dumps({"socks": socks, "auth": os.environ.get("RAY_AUTH_MODE")}))
    ray.shutdown()
""")


def test_embedded_cluster_listens_on_loopback_only_with_token_auth():
    import json

    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "RAY_ADDRESS")}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["socks"], "found no listening socket at all: the probe is broken"
    public = [s for s in got["socks"] if not s[3]]
    assert not public, public
    assert got["auth"] == "token"

"""``ray start`` for a second node on this machine, in Ray's loopback-only mode.

Ray 2.60 binds to 127.0.0.1 only in its single-machine mode
(``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, what ``rayalign.ray_utils`` uses), and in that mode
its CLI refuses to start a worker node ("Multi-node Ray clusters are not supported on
Windows and OSX"). The test needs exactly that: two nodes, loopback only. This launcher
lifts the CLI's refusal and nothing else: the raylet and every process it starts still
run in loopback mode (the environment variable stays 0, and ``ray._private`` still reads it).

Usage: python tests/ray_worker_node.py start --address 127.0.0.1:PORT ... (``ray start`` args)
"""

import types

import ray._private.ray_constants as ray_constants
import ray.scripts.scripts as scripts

view = types.SimpleNamespace(**{k: getattr(ray_constants, k) for k in dir(ray_constants)
                                if not k.startswith("__")})
view.ENABLE_RAY_CLUSTER = True  # what the CLI's worker-node check reads, only there
scripts.ray_constants = view

if __name__ == "__main__":
    scripts.main()

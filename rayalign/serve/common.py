"""The Ray Serve HTTP proxy shared by every rayalign app (annotation page, RM, LLM).

Serve runs one HTTP proxy per cluster and every application joins it: ``serve.start`` with
other ``http_options`` on a running Serve only logs a warning and keeps the old ones. So an
app asked to listen on ``127.0.0.1`` could silently end up on a proxy bound to ``0.0.0.0``
(reachable from other machines) that someone started earlier. ``ensure_proxy`` reads the
*running* proxy's options from the Serve controller and

* starts Serve on the requested host/port when none runs;
* joins a running proxy whose host matches (loopback aliases count as the same host); a
  different port is joined with a warning and the real port in the returned URL;
* refuses (``ProxyHostMismatch``) when the running proxy's host differs: joining would
  expose the app more widely than asked (or less widely than asked, which is a silent
  outage for remote users). Stop the other Serve apps (``serve shutdown``) or ask for the
  host it already uses.

``decide_proxy`` is the pure decision, unit-tested without starting Serve.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

log = logging.getLogger(__name__)

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})


class ProxyHostMismatch(RuntimeError):
    """A running Serve proxy listens on another host than the one requested."""


def is_loopback(host: str | None) -> bool:
    return host in LOOPBACK_HOSTS


def same_host(a: str | None, b: str | None) -> bool:
    return a == b or (is_loopback(a) and is_loopback(b))


def describe_bind(host: str | None, port: int) -> str:
    """``0.0.0.0:8000 (all interfaces: reachable from other machines)`` and the like."""
    where = f"[{host}]" if host and ":" in host else str(host)
    if is_loopback(host):
        note = "this machine only"
    elif host in WILDCARD_HOSTS:
        note = "all interfaces: reachable from other machines"
    else:
        note = "reachable from other machines on that interface"
    return f"{where}:{port} ({note})"


def connect_url(host: str | None, port: int) -> str:
    """A URL a local client can connect to on a proxy bound to ``host:port``."""
    if host in WILDCARD_HOSTS or host is None:
        host = "127.0.0.1"  # bound to every interface: loopback reaches it
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


@dataclass(frozen=True)
class ProxyDecision:
    action: Literal["start", "join", "refuse"]
    #: Where the proxy listens (or will) after the decision.
    host: str | None
    port: int
    #: A warning (join) or the reason (refuse); None when nothing needs saying.
    message: str | None = None


def decide_proxy(requested_host: str, requested_port: int,
                 running: tuple[str | None, int] | None) -> ProxyDecision:
    """What to do given the requested bind and the running proxy's ``(host, port)`` (or None)."""
    if running is None:
        return ProxyDecision("start", requested_host, int(requested_port))
    host, port = running
    if not same_host(host, requested_host):
        wider = is_loopback(requested_host) and not is_loopback(host)
        risk = (" Joining it would expose this app to other machines." if wider else
                " Joining it would not make this app reachable where you asked.")
        return ProxyDecision(
            "refuse", host, port,
            f"a Ray Serve HTTP proxy already runs on this cluster bound to "
            f"{describe_bind(host, port)}, but host {requested_host!r} was requested; Serve "
            f"shares one proxy per cluster and cannot rebind it.{risk} Stop the running "
            f"Serve apps first (`serve shutdown`), or request --host {host}.")
    if int(port) != int(requested_port):
        return ProxyDecision(
            "join", host, port,
            f"Ray Serve already runs on this cluster with its HTTP proxy on port {port}; "
            f"port {requested_port} was requested but the app is served on port {port}")
    return ProxyDecision("join", host, port)


def running_proxy() -> tuple[str | None, int] | None:
    """``(host, port)`` of the running Serve proxy, read from the controller; None if none."""
    from ray.serve.context import _get_global_client

    try:
        client = _get_global_client()
    except Exception:
        return None
    cfg = client.http_config
    return cfg.host, int(cfg.port)


def ensure_proxy(host: str, port: int) -> tuple[str | None, int]:
    """Start Serve on ``host:port`` or join the running proxy (see module doc); its real bind.

    Raises ``ProxyHostMismatch`` when the running proxy listens on another host.
    """
    from ray import serve

    decision = decide_proxy(host, port, running_proxy())
    if decision.action == "refuse":
        raise ProxyHostMismatch(decision.message)
    if decision.action == "start":
        serve.start(http_options={"host": host, "port": int(port)})
    elif decision.message:
        log.warning(decision.message)
    bound = running_proxy()
    if bound is None:  # pragma: no cover - Serve just started or was joined
        raise RuntimeError("Ray Serve is not running after serve.start")
    if not is_loopback(bound[0]):
        log.warning("Ray Serve HTTP proxy bound to %s", describe_bind(*bound))
    return bound


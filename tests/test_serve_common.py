"""The shared-proxy decision: never join a Serve proxy bound to another host (no Serve started)."""

from __future__ import annotations

import pytest

from rayalign.serve.common import connect_url, decide_proxy, describe_bind


def test_no_running_proxy_starts_on_the_requested_bind():
    d = decide_proxy("127.0.0.1", 8300, None)
    assert (d.action, d.host, d.port, d.message) == ("start", "127.0.0.1", 8300, None)


@pytest.mark.parametrize("requested,running", [
    ("127.0.0.1", "127.0.0.1"), ("localhost", "127.0.0.1"), ("127.0.0.1", "::1"),
    ("0.0.0.0", "0.0.0.0"),
])
def test_same_host_joins(requested, running):
    d = decide_proxy(requested, 8000, (running, 8000))
    assert d.action == "join" and d.host == running and d.message is None


def test_loopback_request_on_a_public_proxy_is_refused():
    d = decide_proxy("127.0.0.1", 8300, ("0.0.0.0", 8000))
    assert d.action == "refuse" and d.host == "0.0.0.0" and d.port == 8000
    assert "0.0.0.0:8000" in d.message and "expose" in d.message and "--host 0.0.0.0" in d.message


@pytest.mark.parametrize("requested,running", [("0.0.0.0", "127.0.0.1"), ("10.0.0.5", "0.0.0.0")])
def test_any_other_host_difference_is_refused(requested, running):
    assert decide_proxy(requested, 8000, (running, 8000)).action == "refuse"


def test_other_port_joins_with_a_warning_naming_the_real_port():
    d = decide_proxy("127.0.0.1", 8300, ("127.0.0.1", 8000))
    assert d.action == "join" and d.port == 8000 and "8000" in d.message


def test_urls_and_descriptions_show_the_real_bind():
    assert connect_url("0.0.0.0", 8000) == "http://127.0.0.1:8000"
    assert connect_url("::1", 8000) == "http://[::1]:8000"
    assert connect_url("10.0.0.5", 80) == "http://10.0.0.5:80"
    assert "reachable from other machines" in describe_bind("0.0.0.0", 8000)
    assert "this machine only" in describe_bind("127.0.0.1", 8000)

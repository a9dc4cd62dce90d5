"""Helpers for tests that start Ray clusters with the ``ray start`` CLI (loopback only)."""

from __future__ import annotations

import socket
from pathlib import Path


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_auth_headers() -> dict[str, str]:
    """The bearer header for Ray's token auth (the token ``ray start`` keeps in ~/.ray)."""
    token = Path.home() / ".ray" / "auth_token"
    return {"Authorization": f"Bearer {token.read_text().strip()}"} if token.is_file() else {}

"""Loopback ports for listeners that start a moment after the port is chosen: the Temporal
SDK's metrics exporter (it cannot report a port it picked itself), and the sandbox's, the
demo's and the benchmarks' children, which are told their port on the command line."""

from __future__ import annotations

import random
import socket
import threading
from pathlib import Path

# Below this, ports are registered to well-known services more often than not.
_LOWEST = 15000
_EPHEMERAL_DEFAULT = (32768, 60999)  # Linux's default net.ipv4.ip_local_port_range
_given: set[int] = set()
_lock = threading.Lock()
_random = random.SystemRandom()


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return _EPHEMERAL_DEFAULT


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_loopback_port() -> int:
    """A port nothing on 127.0.0.1 listens on now, below the kernel's ephemeral range.

    Why not bind port 0 and hand the kernel's answer on: that port comes from the ephemeral
    range, which is also where the kernel takes the local port of every outgoing
    connection. Between the answer and the child's bind, any client on the machine may take
    it, and the child dies with "address already in use" (`make bench` did, starting a
    Temporal dev server while fifty runs' clients connected). A port below the range is
    never given to an outgoing connection, so only another listener can take it; ports
    given out once in this process are not given again.
    """
    low, _ = _ephemeral_range()
    with _lock:
        if low - _LOWEST >= 1000:
            for _ in range(200):
                port = _random.randrange(_LOWEST, low)
                if port not in _given and _bindable(port):
                    _given.add(port)
                    return port
        # No room below the range (an unusual ip_local_port_range): the kernel's choice.
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        _given.add(port)
        return port

"""drpilot.frontdoor.ports: a port chosen for a child that binds it a moment later."""

import socket

from drpilot.frontdoor import ports


def test_a_chosen_port_is_below_the_ephemeral_range_and_free():
    """Outgoing connections take their local port from the ephemeral range, so a port chosen
    there can be gone before the child binds it (`make bench` lost a Temporal dev server
    that way); below the range only another listener can take it."""
    low, _ = ports._ephemeral_range()
    chosen = [ports.free_loopback_port() for _ in range(50)]
    assert all(port < low for port in chosen), [p for p in chosen if p >= low]
    assert len(set(chosen)) == len(chosen)  # never the same port twice in one process
    for port in chosen[:5]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_a_port_someone_listens_on_is_never_chosen(monkeypatch):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        monkeypatch.setattr(ports, "_ephemeral_range", lambda: (busy + 1, 60999))
        monkeypatch.setattr(ports, "_LOWEST", busy - 2000)
        draws = iter([busy, busy, busy - 1500])  # the busy port comes up first, twice
        monkeypatch.setattr(ports._random, "randrange", lambda a, b: next(draws))
        assert ports.free_loopback_port() == busy - 1500

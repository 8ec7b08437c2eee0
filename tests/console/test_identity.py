"""Who is asking: believed from the SSO proxy's header only when the request comes from a
trusted proxy; the console refuses to start without an identity source."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from drpilot.console.identity import IdentityError, IdentitySource


def request(peer: str, **headers: str) -> Request:
    raw = [(k.lower().replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "method": "GET", "path": "/", "headers": raw, "client": (peer, 40000)})


def configure(**given) -> IdentitySource:
    options = {"header": None, "trusted_proxies": [], "dev": None, "host": "127.0.0.1"} | given
    return IdentitySource.configure(**options)


@pytest.mark.parametrize(("given", "message"), [
    ({}, "the console needs to know who is asking: pass --identity-header NAME with --trusted-proxy ADDRESS "
         "(the SSO proxy in front of it), or --dev-identity NAME on 127.0.0.1"),
    ({"header": "X-Forwarded-Email"}, "--identity-header X-Forwarded-Email is believed only from the SSO proxy: pass --trusted-proxy ADDRESS"),
    ({"dev": "me", "host": "0.0.0.0"}, "--dev-identity serves only 127.0.0.1, not 0.0.0.0: behind SSO use --identity-header"),
    ({"header": "X-Forwarded-Email", "trusted_proxies": ["proxy.local"]},
     "--trusted-proxy proxy.local: not an IP address or network (e.g. 10.0.0.5 or 10.0.0.0/24)"),
])
def test_no_usable_identity_source_is_refused_in_one_line(given, message):
    with pytest.raises(IdentityError) as raised:
        configure(**given)
    assert str(raised.value) == message


def test_the_header_is_believed_only_from_a_trusted_proxy():
    source = configure(header="X-Forwarded-Email", trusted_proxies=["10.0.0.0/24", "127.0.0.1"])
    assert source.who(request("10.0.0.7", X_Forwarded_Email="alice@example.com")) == "alice@example.com"
    assert source.who(request("127.0.0.1", X_Forwarded_Email=" bob@example.com ")) == "bob@example.com"
    assert source.who(request("10.0.1.7", X_Forwarded_Email="alice@example.com")) is None  # not the proxy
    assert source.who(request("10.0.0.7")) is None
    assert source.who(request("10.0.0.7", X_Forwarded_Email="a" * 300)) is None


def test_the_dev_identity_is_everyone():
    assert configure(dev="me@laptop").who(request("127.0.0.1", X_Forwarded_Email="alice@example.com")) == "me@laptop"

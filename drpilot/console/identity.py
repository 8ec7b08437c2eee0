"""Who is asking: the person the organization's SSO proxy (oauth2-proxy, IAP, an OIDC load
balancer) names in a header, believed only from the proxy's own addresses; or, for a console
on one's own machine, a fixed development identity. The console speaks no OIDC itself: the
proxy in front of it already does, and one login belongs in one place."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from starlette.requests import Request

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
LOOPBACK = "127.0.0.1"
MAX_IDENTITY = 256


class IdentityError(ValueError):
    """The console was started without a usable identity source; one line."""


@dataclass(frozen=True)
class IdentitySource:
    header: str | None = None
    trusted: tuple[Network, ...] = ()
    dev: str | None = None

    @classmethod
    def configure(cls, *, header: str | None, trusted_proxies: list[str], dev: str | None, host: str) -> IdentitySource:
        if dev and header:
            raise IdentityError("--dev-identity and --identity-header exclude each other: choose one")
        if dev:
            if host != LOOPBACK:
                raise IdentityError(f"--dev-identity serves only {LOOPBACK}, not {host}: behind SSO use --identity-header")
            return cls(dev=dev.strip())
        if not header:
            raise IdentityError(
                "the console needs to know who is asking: pass --identity-header NAME with --trusted-proxy ADDRESS "
                f"(the SSO proxy in front of it), or --dev-identity NAME on {LOOPBACK}"
            )
        if not trusted_proxies:
            raise IdentityError(f"--identity-header {header} is believed only from the SSO proxy: pass --trusted-proxy ADDRESS")
        networks = []
        for value in trusted_proxies:
            try:
                networks.append(ipaddress.ip_network(value, strict=False))
            except ValueError:
                raise IdentityError(f"--trusted-proxy {value}: not an IP address or network (e.g. 10.0.0.5 or 10.0.0.0/24)") from None
        return cls(header=header, trusted=tuple(networks))

    def describe(self) -> str:
        if self.dev:
            return f"development identity {self.dev}"
        return f"header {self.header} from {', '.join(map(str, self.trusted))}"

    def who(self, request: Request) -> str | None:
        """The identity of the request, or None: not from a trusted proxy, or no usable name."""
        if self.dev:
            return self.dev
        assert self.header is not None
        try:
            peer = ipaddress.ip_address(request.client.host if request.client else "")
        except ValueError:
            return None
        if not any(peer in network for network in self.trusted):
            return None
        value = request.headers.get(self.header, "").strip()
        if not value or len(value) > MAX_IDENTITY or not value.isprintable():
            return None
        return value

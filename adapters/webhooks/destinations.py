"""Where webhooks may be sent: http(s) only, and not into the operator's own networks.

A destination whose host resolves into loopback, link-local, private, shared (CGNAT),
multicast, reserved or unspecified addresses is refused, unless it falls in one of the
networks the operator allows (``MODELYARD_WEBHOOK_ALLOWED_NETWORKS``, e.g. ``127.0.0.0/8``
for tests). It is checked when a subscription is made and again before every try, since
what a name resolves to can change.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from urllib.parse import urlsplit

from modelyard.domain.shared.errors import InvalidRequest

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


# A refused destination is the domain's INVALID_REQUEST (a subscription with such a URL is
# a request that cannot be), raised under a name that says why.
DestinationRefused = InvalidRequest


def allowed_networks(text: str) -> tuple[Network, ...]:
    """The networks of a comma-separated CIDR list (empty: none); a bad entry raises ValueError."""
    return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip())


def _internal(address: Address) -> bool:
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        address = mapped
    return bool(
        address.is_loopback
        or address.is_link_local
        or address.is_private
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or (isinstance(address, ipaddress.IPv4Address) and address in ipaddress.ip_network("100.64.0.0/10"))
    )


def check_address(address: Address, allowed: Sequence[Network]) -> None:
    """Refuse an internal address outside the allowed networks."""
    if any(address in network for network in allowed if network.version == address.version):
        return
    if _internal(address):
        raise DestinationRefused(
            f"Webhooks are not sent to {address} (loopback, private, link-local or reserved);"
            " an operator can allow its network with MODELYARD_WEBHOOK_ALLOWED_NETWORKS."
        )


def check_destination(url: str, allowed: Sequence[Network]) -> None:
    """Refuse a URL that is not http(s) or whose host resolves to a refused address."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise DestinationRefused(f"A webhook url must be an absolute http(s) URL; got {url!r}.")
    host = parts.hostname
    try:
        literal: Address | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        check_address(literal, allowed)
        return
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        found = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (OSError, ValueError) as exc:
        raise DestinationRefused(f"The webhook host {host!r} does not resolve: {exc}.") from None
    for *_, sockaddr in found:
        check_address(ipaddress.ip_address(sockaddr[0]), allowed)

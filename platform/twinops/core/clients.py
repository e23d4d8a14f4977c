"""Who is asking: the client's address, read from a trusted reverse proxy's X-Forwarded-For and from nowhere else."""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from django.conf import settings
from django.http import HttpRequest

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8)
def _networks(listed: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(n, strict=False) for n in listed)


def _trusted(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def from_trusted_proxy(request: HttpRequest) -> bool:
    """Tell whether the request comes straight from a trusted proxy (TWINOPS_TRUSTED_PROXIES); none: never."""
    networks = _networks(tuple(settings.TRUSTED_PROXIES))
    return bool(networks) and _trusted(str(request.META.get("REMOTE_ADDR", "")), networks)


def client_address(request: HttpRequest) -> str:
    """Return the client's address: the connecting one, unless it is a trusted proxy (TWINOPS_TRUSTED_PROXIES).

    Behind a trusted proxy, X-Forwarded-For is read from the right (each proxy appends whom it heard from) and the
    first address that is not a trusted proxy is the client; what lies left of it was written by the client and is
    not believed. A malformed hop counts as the last trusted proxy's address, never as a name a client chose.
    """
    remote = str(request.META.get("REMOTE_ADDR", ""))
    networks = _networks(tuple(settings.TRUSTED_PROXIES))
    if not networks or not _trusted(remote, networks):
        return remote
    client = remote
    hops = [h.strip() for h in str(request.META.get("HTTP_X_FORWARDED_FOR", "")).split(",") if h.strip()]
    for hop in reversed(hops):
        try:
            client = str(ipaddress.ip_address(hop))
        except ValueError:
            return client
        if not _trusted(client, networks):
            return client
    return client

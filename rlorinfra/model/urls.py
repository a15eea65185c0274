"""What counts as this machine: the one loopback rule every layer uses."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

_LOOPBACK_V4 = ipaddress.ip_network("127.0.0.0/8")
_LOOPBACK_V6 = ipaddress.ip_address("::1")


def is_loopback(url: str) -> bool:
    """True when the host of ``url`` is literally this machine, so plain http cannot leak the key.

    Only three spellings count, decided from the text before any DNS lookup:
    the name ``localhost``, an IPv4 literal in 127.0.0.0/8 (``127.0.0.2`` too)
    and the IPv6 literal ``::1`` (``[::1]`` in a URL). Names that merely end in
    ``.localhost`` (``evil.localhost``) or resolve to 127.0.0.1 do not count: a
    resolver or a hosts file could point them anywhere.
    """
    try:
        host = (urlsplit(url).hostname or "").lower()
    except ValueError:  # e.g. an unclosed "[" in the host
        return False
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if address.version == 4:
        return address in _LOOPBACK_V4
    return address == _LOOPBACK_V6

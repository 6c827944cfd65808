"""Who can reach the gateway, and the rule that ties gateway keys to it.

A gateway without a key serves every client that reaches it, so it may listen only on
loopback.  The rule is checked wherever the keys or the address can change: at start
(``daemon.server``), at every reload (``daemon.reload``) and when the last key is
revoked (``waystone key revoke``).  Each place words its refusal for its reader.
"""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def open_without_keys(host: str, key_count: int) -> bool:
    """Whether this many keys on this address would serve the network without a key."""
    return key_count == 0 and not is_loopback(host)

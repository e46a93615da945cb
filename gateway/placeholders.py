"""Placeholder values of the example configuration, which must never run in the field.

The Debian package installs the documented example as /etc/gateway/gateway.toml and starts
the service. A gateway that ran with the example's identity would sign and publish under a
name the HES does not know, or collide with another site's, so the packaged unit runs
``gateway run --refuse-placeholders``: with placeholders left, it exits 2 with one line per
value to change (the unit does not restart on exit 2), and ``gateway check-config`` names
them as warnings.

A placeholder is:
- a gateway id containing the word ``example``;
- a host name in the domains reserved for documentation (RFC 2606/6761: ``example``,
  ``example.com``, ``.net``, ``.org``, and ``invalid``) or an address in the documentation
  ranges (RFC 5737: 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24; RFC 3849: 2001:db8::/32),
  as an MQTT broker or a TCP serial server.
No real deployment can use these: the names do not resolve and the ranges are not routed.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from gateway.config import GatewayConfig, TomlLocator, _dotted

_RESERVED_DOMAINS = ("example", "example.com", "example.net", "example.org", "invalid")
_DOCUMENTATION_NETWORKS = tuple(
    ipaddress.ip_network(net) for net in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
)


def is_documentation_host(host: str) -> bool:
    """True for a host name or address reserved for documentation and examples."""
    name = host.strip("[]").rstrip(".").lower()
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return any(name == domain or name.endswith("." + domain) for domain in _RESERVED_DOMAINS)
    return any(address in network for network in _DOCUMENTATION_NETWORKS)


def placeholder_settings(config: GatewayConfig) -> list[tuple[tuple[str | int, ...], str]]:
    """Each setting that still holds a placeholder: (location, reason)."""
    found: list[tuple[tuple[str | int, ...], str]] = []
    if "example" in config.gateway.id.lower():
        found.append((("gateway", "id"), f"{config.gateway.id!r} is the example's placeholder; "
                                         "set this gateway's own identity"))
    for index, uplink in enumerate(config.uplinks.mqtt):
        if is_documentation_host(uplink.host):
            found.append((("uplinks", "mqtt", index, "url"), f"{uplink.host} is a documentation placeholder; "
                                                             "set the HES broker's address"))
    for index, bus in enumerate(config.buses):
        tcp = getattr(bus, "tcp", None)
        if tcp and is_documentation_host(tcp.rpartition(":")[0]):
            found.append((("buses", index, "tcp"), f"{tcp} is a documentation placeholder; "
                                                   "set the TCP serial server's address"))
    return found


def placeholder_problems(config: GatewayConfig, path: str | Path) -> list[str]:
    """``file:line: field: reason`` for each placeholder left in the file at ``path``."""
    found = placeholder_settings(config)
    if not found:
        return []
    try:
        locator = TomlLocator(Path(path).read_text(encoding="utf-8"))
    except OSError:
        locator = TomlLocator("")
    return [f"{path}:{locator.line_of(list(loc))}: {_dotted(list(loc))}: {reason}" for loc, reason in found]

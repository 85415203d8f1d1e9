"""Who is asking: the client id, the version a device announces, the network a request comes from."""

from __future__ import annotations

import ipaddress
import re

from deviceflow.config import Config
from deviceflow.errors import InvalidClient, InvalidRequest, VersionMismatch

USER_AGENT_VERSION = re.compile(r"^[^/\s]+/(\d+(?:\.\d+){0,2})(?:[\s;(]|$)")
# What a limit counts one client under: an IPv6 host holds a whole /64; a site (a household, a hosted
# machine, a tunnel broker's customer) holds at most a /48.
IPV6_NETWORK, IPV6_SITE = 64, 48


def check_client(config: Config, client_id: str | None) -> str:
    """The client id, if the proxy serves it: CLIENT_ID or EXTERNAL_CLIENT_ID, or any one for a generic
    FLOW=DEVICE proxy (no CLIENT_ID configured)."""
    if not client_id:
        raise InvalidRequest("client_id is required")
    if config.device_mode and not config.client_id:
        return client_id
    if client_id not in config.allowed_client_ids:
        raise InvalidClient("unknown client_id")
    return client_id


def check_user_agent(config: Config, user_agent: str | None) -> None:
    """VERSION_MIN: refuse devices older than the configured version."""
    if config.version_min is None:
        return
    match = USER_AGENT_VERSION.match(user_agent or "")
    wanted = ".".join(map(str, config.version_min))
    if not match:
        raise VersionMismatch(f"User-Agent must be Name/x.y.z with a version of at least {wanted}")
    version = tuple(int(p) for p in match.group(1).split("."))
    width = max(len(version), len(config.version_min))
    if version + (0,) * (width - len(version)) < config.version_min + (0,) * (width - len(config.version_min)):
        raise VersionMismatch(f"this client is too old: version {wanted} or newer is required")


def application_name(user_agent: str | None) -> str:
    """The product name a device announces (`DomoticzLinky/2.6.0` -> DomoticzLinky), shown to the person."""
    name = (user_agent or "").split("/", 1)[0].split(" ", 1)[0]
    return name if re.fullmatch(r"[A-Za-z0-9._-]{1,40}", name) else ""


def network_of(address: str, ipv6_prefix: int = IPV6_NETWORK) -> str:
    """The key a client address is counted under: an IPv4 address itself (an IPv4-mapped IPv6
    one included), an IPv6 address's network of `ipv6_prefix` bits, since one host holds a whole
    /64 and picks any address in it."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.version == 4:
        return str(ip)
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.ip_network(f"{ip}/{ipv6_prefix}", strict=False))

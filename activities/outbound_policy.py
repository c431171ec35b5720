"""Where `http` and `ai` steps may connect, judged on the address actually connected to.

Every TCP connection the steps' HTTP client opens goes through `PolicyBackend.connect_tcp`: the
host is resolved here, every address is judged, and the socket is opened to that same address (the
IP, never the name again) — so a name that resolves differently the second time (DNS rebinding), a
redirect to another host, or a numeric trick like `http://2130706433/` meets the same check. Rules,
first match wins:

| rule               | addresses                                                         | outcome            |
|--------------------|-------------------------------------------------------------------|--------------------|
| `engine_service`   | the API, the Temporal frontend, the Temporal Web UI (host:port; a  | always denied      |
|                    | service on loopback: that port on every loopback address)          |                    |
| `denied_by_setting`| an `RTE_OUTBOUND_DENY` entry                                       | denied             |
| `unspecified`      | 0.0.0.0/8, :: (connecting there reaches this host)                 | always denied      |
| `cloud_metadata`   | 169.254.169.254, 169.254.170.2, 100.100.100.200, fd00:ec2::254, …   | denied unless an allow entry names that very address |
| `link_local`       | 169.254.0.0/16, fe80::/10                                          | denied unless an allow entry inside the range covers it |
| `loopback`         | 127.0.0.0/8, ::1                                                   | allowed only by an `RTE_OUTBOUND_ALLOW` entry |
| `private`          | every other non-public address (10/8, 172.16/12, 192.168/16,       | allowed only by an `RTE_OUTBOUND_ALLOW` entry |
|                    | 100.64/10, fc00::/7, multicast, reserved…)                         |                    |
| `public`           | the rest                                                           | allowed            |

Entries of `RTE_OUTBOUND_ALLOW` / `RTE_OUTBOUND_DENY` are comma-separated: an address or CIDR
(`10.0.0.0/8`, `::1`), optionally with a port (`127.0.0.1:8080`, `[::1]:8080`), or a host name with
an optional port (`billing.internal:443`, matched against the name the URL asks for). IPv4 addresses
embedded in IPv6 ones (`::ffff:127.0.0.1`, NAT64 `64:ff9b::…`, 6to4 `2002:…`) are judged as IPv4.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from rte.errors import EngineError, ErrorCategory

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

UNSPECIFIED = (ipaddress.ip_network("0.0.0.0/8"), ipaddress.ip_network("::/128"))
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
LINK_LOCAL = (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10"))
# Instance-metadata and host-agent endpoints of the big clouds: they hand out credentials.
CLOUD_METADATA = tuple(
    ipaddress.ip_address(address)
    for address in (
        "169.254.169.254",  # AWS, GCP, Azure, OCI, DigitalOcean…
        "169.254.170.2",  # AWS ECS task credentials
        "169.254.170.23",  # AWS EKS pod identity
        "100.100.100.200",  # Alibaba Cloud
        "168.63.129.16",  # Azure wire server (a public address)
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "fd00:ec2::23",  # AWS EKS pod identity over IPv6
    )
)
NAT64 = ipaddress.ip_network("64:ff9b::/96")
DNS_CACHE_S = 30.0
_HOST_NAME = re.compile(r"^(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*\.?$")


class OutboundRefused(EngineError):
    """A connection the outbound policy does not allow: non-retryable, category `policy`."""

    def __init__(self, message: str, rule: str) -> None:
        super().__init__(ErrorCategory.POLICY, message, retryable=False, details={"rule": rule})
        self.rule = rule


@dataclass(frozen=True)
class AddressRule:
    """One allow or deny entry: a network or a host name, optionally limited to one port."""

    text: str
    network: IPNetwork | None = None
    host: str | None = None
    port: int | None = None

    def matches(self, host: str, address: IPAddress, port: int) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.network is not None:
            return address.version == self.network.version and address in self.network
        return self.host == normal_host(host)


def parse_rule(text: str) -> AddressRule:
    """`10.0.0.0/8`, `127.0.0.1:8080`, `[::1]:80`, `::1`, `billing.internal:443` → a rule, or ValueError."""
    entry = text.strip()
    host, port = entry, None
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"outbound rule {text!r}: expected [address]:port")
            port = _port(rest[1:], text)
    elif entry.count(":") == 1:
        host, _, raw_port = entry.partition(":")
        port = _port(raw_port, text)
    if not host:
        raise ValueError(f"outbound rule {text!r}: no address or host")
    try:
        return AddressRule(entry, network=ipaddress.ip_network(host, strict=False), port=port)
    except ValueError:
        pass
    name = normal_host(host)
    if "/" in host or not _HOST_NAME.match(name):
        raise ValueError(
            f"outbound rule {text!r}: not an address, a CIDR or a host name "
            "(examples: 10.0.0.0/8, 127.0.0.1:8080, [::1]:8080, billing.internal:443)"
        )
    return AddressRule(entry, host=name, port=port)


def _port(raw: str, text: str) -> int:
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ValueError(f"outbound rule {text!r}: the port must be a number from 1 to 65535")
    return int(raw)


def normal_host(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


def canonical(address: IPAddress) -> IPAddress:
    """IPv4 addresses carried inside IPv6 ones are judged as the IPv4 address they reach."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.sixtofour is not None:
            return address.sixtofour
        if address in NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if address.scope_id:
            return ipaddress.IPv6Address(str(address).split("%", 1)[0])
    return address


@dataclass(frozen=True)
class EngineService:
    """One of the engine's own endpoints, never a step's target."""

    name: str
    host: str
    port: int

    @property
    def on_this_host(self) -> bool:
        """Bound to loopback or every interface: then every loopback address reaches it."""
        if self.host == "localhost":
            return True
        try:
            address = ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return address.is_loopback or address.is_unspecified

    def matches(self, host: str, address: IPAddress, port: int, resolved: Iterable[IPAddress]) -> bool:
        if port != self.port:
            return False
        if normal_host(host) == self.host or address in resolved:
            return True
        return self.on_this_host and any(
            address.version == network.version and address in network for network in (*LOOPBACK, *UNSPECIFIED)
        )


def service_from(name: str, location: str) -> EngineService | None:
    """`host:port` or a URL → the service, or None when it names no port we can tell."""
    parts = urlsplit(location if "://" in location else f"//{location}")
    try:
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:
        return None
    if not parts.hostname or port is None:
        return None
    return EngineService(name, normal_host(parts.hostname), port)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    rule: str
    reason: str


@dataclass(frozen=True)
class OutboundPolicy:
    """The rules in force for one worker; hashable, so each policy gets its own pooled client."""

    allow: tuple[AddressRule, ...] = ()
    deny: tuple[AddressRule, ...] = ()
    services: tuple[EngineService, ...] = ()

    @classmethod
    def from_settings(cls, settings: Any) -> OutboundPolicy:
        locations = (
            ("the Temporal frontend", settings.temporal_address),
            ("the Temporal Web UI", settings.temporal_ui_url),
            ("the engine's API", settings.api_url),
        )
        services = tuple(
            service for name, location in locations if (service := service_from(name, location)) is not None
        )
        return cls(
            allow=tuple(parse_rule(entry) for entry in settings.outbound_allow),
            deny=tuple(parse_rule(entry) for entry in settings.outbound_deny),
            services=services,
        )

    def decide(
        self, host: str, address: IPAddress, port: int, service_addresses: Iterable[IPAddress] = ()
    ) -> Decision:
        """Judge one connection attempt: the name the URL asked for, the address, the port."""
        address = canonical(address)
        known = tuple(service_addresses)
        where = f"{address}:{port}" if address.version == 4 else f"[{address}]:{port}"
        for service in self.services:
            if service.matches(host, address, port, known):
                return Decision(False, "engine_service", f"{where} is {service.name}")
        for rule in self.deny:
            if rule.matches(host, address, port):
                return Decision(
                    False, "denied_by_setting", f"{where} matches RTE_OUTBOUND_DENY {rule.text!r}"
                )
        if any(address in network for network in UNSPECIFIED if network.version == address.version):
            return Decision(False, "unspecified", f"{where} is an unspecified address (it reaches this host)")
        if address in CLOUD_METADATA:
            if self._explicit(address, ipaddress.ip_network(address)):
                return Decision(True, "allowed_by_setting", f"{where} is allowed explicitly")
            return Decision(
                False,
                "cloud_metadata",
                f"{where} is a cloud metadata endpoint; allow it only by naming it in RTE_OUTBOUND_ALLOW",
            )
        for network in LINK_LOCAL:
            if address.version == network.version and address in network:
                if self._explicit(address, network):
                    return Decision(True, "allowed_by_setting", f"{where} is allowed explicitly")
                return Decision(
                    False,
                    "link_local",
                    f"{where} is link-local; allow it only with an RTE_OUTBOUND_ALLOW entry inside {network}",
                )
        category = _category(address)
        if category == "public":
            return Decision(True, "public", f"{where} is a public address")
        for rule in self.allow:
            if rule.matches(host, address, port):
                return Decision(
                    True, "allowed_by_setting", f"{where} matches RTE_OUTBOUND_ALLOW {rule.text!r}"
                )
        return Decision(False, category, f"{where} is a {category} address not listed in RTE_OUTBOUND_ALLOW")

    def _explicit(self, address: IPAddress, within: IPNetwork) -> bool:
        """Allowed by an address entry that lies inside `within` (a broad 0.0.0.0/0 does not count)."""
        return any(
            rule.network is not None
            and rule.network.version == within.version
            and rule.network.subnet_of(within)  # type: ignore[arg-type]
            and address in rule.network
            for rule in self.allow
        )


def _category(address: IPAddress) -> str:
    if address.is_loopback:
        return "loopback"
    if not address.is_global or address.is_multicast or address.is_reserved:
        return "private"
    return "public"


class PolicyBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend with the policy in front of every TCP connection it opens."""

    def __init__(self, policy: OutboundPolicy) -> None:
        self.policy = policy
        self._inner = httpcore.AnyIOBackend()
        self._services: dict[str, tuple[float, tuple[IPAddress, ...]]] = {}

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await _resolve(host, port, timeout)
        known = await self._service_addresses()
        refusal: Decision | None = None
        last_error: Exception | None = None
        for address in addresses:
            decision = self.policy.decide(host, address, port, known)
            if not decision.allowed:
                refusal = refusal or decision
                continue
            try:
                # The very address that was judged: the name is never resolved again.
                return await self._inner.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                last_error = error
        if last_error is not None:
            raise last_error
        assert refusal is not None
        raise OutboundRefused(
            f"the outbound policy refuses {host}:{port}: {refusal.reason} (rule {refusal.rule})",
            refusal.rule,
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise OutboundRefused("the outbound policy refuses unix sockets (rule unix_socket)", "unix_socket")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)

    async def _service_addresses(self) -> tuple[IPAddress, ...]:
        """The engine's services by address too (a name such as `temporal` in a compose network)."""
        found: list[IPAddress] = []
        now = time.monotonic()
        for service in self.policy.services:
            cached = self._services.get(service.host)
            if cached is None or now - cached[0] > DNS_CACHE_S:
                try:
                    cached = (now, tuple(canonical(a) for a in await _resolve(service.host, service.port, 5)))
                except httpcore.ConnectError:
                    cached = (now, ())
                self._services[service.host] = cached
            found.extend(cached[1])
        return tuple(found)


async def _resolve(host: str, port: int, timeout_s: float | None) -> list[IPAddress]:
    name = normal_host(host)
    try:
        return [ipaddress.ip_address(name)]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout_s):
            infos = await loop.getaddrinfo(name, port, type=socket.SOCK_STREAM)
    except TimeoutError:
        raise httpcore.ConnectTimeout(f"resolving {name} took longer than {timeout_s} s") from None
    except OSError as error:
        raise httpcore.ConnectError(f"cannot resolve {name}: {error}") from None
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _canonname, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


class PolicyTransport(httpx.AsyncHTTPTransport):
    """httpx's transport whose connection pool opens every connection through `PolicyBackend`."""

    def __init__(self, policy: OutboundPolicy, limits: httpx.Limits) -> None:
        super().__init__(limits=limits, trust_env=False)
        # httpx builds its pool without a way to pass a network backend: replace the pool with the
        # same settings plus ours. tests/activities/test_outbound_policy.py proves it is in force.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=PolicyBackend(policy),
        )

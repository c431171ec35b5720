"""The outbound policy: its rules one by one, then enforced on real connections to local servers
(resolved names, numeric tricks, redirects, the engine's own services)."""

from __future__ import annotations

import ipaddress
from urllib.parse import quote

import pytest

from activities.ai import handle_ai
from activities.http import handle_http
from activities.outbound_policy import OutboundPolicy, parse_rule
from rte.config import Settings
from rte.errors import EngineError, ErrorCategory


def policy(*allow: str, deny: tuple[str, ...] = (), **settings: str) -> OutboundPolicy:
    base = {"temporal_address": "127.0.0.1:7233", "temporal_ui_url": "http://127.0.0.1:8233"}
    chosen = Settings(
        outbound_allow=list(allow),
        outbound_deny=list(deny),
        **(base | {"api_url": "http://127.0.0.1:8000"} | settings),
    )
    return OutboundPolicy.from_settings(chosen)


def judge(rules: OutboundPolicy, address: str, port: int = 443, host: str | None = None) -> tuple[bool, str]:
    decision = rules.decide(host or address, ipaddress.ip_address(address), port)
    return decision.allowed, decision.rule


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("93.184.215.14", (True, "public")),
        ("127.0.0.1", (False, "loopback")),
        ("127.9.9.9", (False, "loopback")),
        ("::1", (False, "loopback")),
        ("::ffff:127.0.0.1", (False, "loopback")),  # IPv4-mapped
        ("64:ff9b::7f00:1", (False, "loopback")),  # NAT64 of 127.0.0.1
        ("2002:7f00:1::", (False, "loopback")),  # 6to4 of 127.0.0.1
        ("10.1.2.3", (False, "private")),
        ("172.16.0.1", (False, "private")),
        ("192.168.1.1", (False, "private")),
        ("100.64.0.1", (False, "private")),  # carrier-grade NAT
        ("fd12::1", (False, "private")),
        ("224.0.0.1", (False, "private")),  # multicast
        ("169.254.1.1", (False, "link_local")),
        ("fe80::1", (False, "link_local")),
        ("169.254.169.254", (False, "cloud_metadata")),
        ("100.100.100.200", (False, "cloud_metadata")),
        ("168.63.129.16", (False, "cloud_metadata")),
        ("fd00:ec2::254", (False, "cloud_metadata")),
        ("0.0.0.0", (False, "unspecified")),
        ("::", (False, "unspecified")),
    ],
)
def test_the_default_policy_allows_public_addresses_only(address, expected):
    assert judge(policy(), address) == expected


def test_loopback_and_private_ranges_follow_the_allow_list():
    rules = policy("127.0.0.0/8", "10.0.0.0/8", "[::1]:8080", "192.168.1.5:9000", "billing.internal")
    assert judge(rules, "127.0.0.1", 5000) == (True, "allowed_by_setting")
    assert judge(rules, "10.200.0.1") == (True, "allowed_by_setting")
    assert judge(rules, "::1", 8080) == (True, "allowed_by_setting")
    assert judge(rules, "::1", 8081) == (False, "loopback")  # the entry names one port
    assert judge(rules, "192.168.1.5", 9000) == (True, "allowed_by_setting")
    assert judge(rules, "192.168.1.5", 22) == (False, "private")
    assert judge(rules, "172.20.0.9", host="billing.internal") == (True, "allowed_by_setting")
    assert judge(rules, "172.20.0.9", host="other.internal") == (False, "private")


def test_metadata_and_link_local_need_an_entry_inside_their_own_range():
    broad = policy("0.0.0.0/0", "::/0")
    assert judge(broad, "169.254.169.254") == (False, "cloud_metadata")
    assert judge(broad, "169.254.7.7") == (False, "link_local")
    assert judge(broad, "0.0.0.0") == (False, "unspecified")
    link_local = policy("169.254.0.0/16")
    assert judge(link_local, "169.254.7.7") == (True, "allowed_by_setting")
    assert judge(link_local, "169.254.169.254") == (False, "cloud_metadata")  # named only by itself
    assert judge(policy("169.254.169.254"), "169.254.169.254") == (True, "allowed_by_setting")


def test_the_engines_own_services_are_refused_even_when_loopback_is_allowed():
    rules = policy("127.0.0.0/8", "::1")
    assert judge(rules, "127.0.0.1", 7233) == (False, "engine_service")  # Temporal frontend
    assert judge(rules, "127.0.0.1", 8233) == (False, "engine_service")  # Temporal Web UI
    assert judge(rules, "127.0.0.1", 8000) == (False, "engine_service")  # the API
    assert judge(rules, "127.0.0.2", 8233) == (False, "engine_service")  # any loopback address
    assert judge(rules, "::1", 7233) == (False, "engine_service")
    assert judge(rules, "127.0.0.1", 8001) == (True, "allowed_by_setting")
    named = policy("10.0.0.0/8", temporal_address="temporal:7233")
    assert judge(named, "10.0.0.7", 7233, host="temporal") == (False, "engine_service")
    assert judge(named, "10.0.0.7", 7234, host="temporal") == (True, "allowed_by_setting")


def test_a_deny_entry_wins_over_an_allow_entry():
    rules = policy("10.0.0.0/8", deny=("10.0.0.5", "10.9.0.0/16:5432"))
    assert judge(rules, "10.0.0.5") == (False, "denied_by_setting")
    assert judge(rules, "10.9.1.1", 5432) == (False, "denied_by_setting")
    assert judge(rules, "10.9.1.1", 443) == (True, "allowed_by_setting")


@pytest.mark.parametrize("entry", ["10.0.0.0/33", "127.0.0.1:0", "127.0.0.1:http", "bad host!", "", "[::1]x"])
def test_a_malformed_entry_is_refused_with_its_text(entry):
    with pytest.raises(ValueError, match="outbound rule"):
        parse_rule(entry)


# On real connections ------------------------------------------------------------------------------


async def refused(params: dict, ctx) -> EngineError:
    with pytest.raises(EngineError) as caught:
        await handle_http(params, ctx)
    assert caught.value.category is ErrorCategory.POLICY
    assert not caught.value.retryable
    return caught.value


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "localhost", "2130706433", "0x7f.1", "127.1", "[::ffff:127.0.0.1]"]
)
async def test_loopback_by_any_spelling_is_refused_by_the_default_policy(server, make_ctx, host):
    port = server.base_url.rsplit(":", 1)[1]
    error = await refused({"url": f"http://{host}:{port}/echo"}, make_ctx(policy=policy()))
    assert error.details["rule"] == "loopback"
    assert "(rule loopback)" in error.message and "RTE_OUTBOUND_ALLOW" in error.message
    assert server.requests == []


async def test_the_same_request_passes_once_loopback_is_allowed(server, make_ctx):
    output = await handle_http({"url": server.url("/echo")}, make_ctx(policy=policy("127.0.0.1")))
    assert output["path"] == "/echo"


async def test_an_allowed_host_cannot_redirect_to_a_refused_one(server, other_server, make_ctx):
    only_first = policy(f"127.0.0.1:{server.base_url.rsplit(':', 1)[1]}")
    bounce = server.url("/redirect?to=" + quote(other_server.url("/echo"), safe=""))
    error = await refused({"url": bounce}, make_ctx(policy=only_first))
    assert error.details["rule"] == "loopback"
    assert len(server.requests) == 1 and other_server.requests == []


async def test_steps_cannot_reach_the_engines_api_or_temporal_even_with_loopback_allowed(
    server, other_server, make_ctx
):
    # The second server stands in for the engine's API; the first redirects to it.
    rules = policy("127.0.0.0/8", api_url=other_server.base_url)
    error = await refused({"url": other_server.url("/echo")}, make_ctx(policy=rules))
    assert error.details["rule"] == "engine_service" and "the engine's API" in error.message
    bounce = server.url("/redirect?to=" + quote(other_server.url("/echo"), safe=""))
    assert (await refused({"url": bounce}, make_ctx(policy=rules))).details["rule"] == "engine_service"
    assert other_server.requests == []
    rules = policy("127.0.0.0/8", temporal_ui_url=other_server.base_url)
    error = await refused({"url": other_server.url("/echo")}, make_ctx(policy=rules))
    assert "the Temporal Web UI" in error.message


async def test_the_ai_step_meets_the_same_policy(server, make_ctx, connections):
    connections.add("llm", "openai", {"api_key": "sk-policy-test"}, {"base_url": server.url("/v1")})
    with pytest.raises(EngineError) as caught:
        await handle_ai({"model": "m", "prompt": "x"}, make_ctx("ai", connection="llm", policy=policy()))
    assert caught.value.category is ErrorCategory.POLICY and caught.value.details["rule"] == "loopback"
    assert server.requests == []

"""Fingerprints, normalisation, trends and suggestions: pure functions, no server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rte import analysis
from rte.analysis import Failure, fingerprint, normalise_message, suggest

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            "GET https://api.example.com/orders/17?page=2 answered 503 Service Unavailable",
            "GET https://api.example.com/<path> answered 503 Service Unavailable",
        ),
        (
            "GET http://127.0.0.1:8080/ got no answer within 0.5 s",
            "GET http://127.0.0.1:8080 got no answer within <n> s",
        ),
        (
            "order 550e8400-e29b-41d4-a716-446655440000 of orders-3f2a9c1b7d4e is missing",
            "order <uuid> of orders-<id> is missing",
        ),
        ("key 'customer_42' not found in \"x\"", "key '<value>' not found in \"<value>\""),
        ("mail ada@example.com bounced after 3 tries", "mail <email> bounced after <n> tries"),
        ("request req_8f2Kx91abcdef failed", "request <id> failed"),
    ],
)
def test_what_varies_between_occurrences_becomes_a_placeholder(message: str, expected: str) -> None:
    assert normalise_message(message) == expected


def test_http_statuses_are_kept_so_a_404_and_a_400_differ() -> None:
    assert "404" in normalise_message("GET http://h/x answered 404 Not Found")
    assert fingerprint("http", "http_4xx", "h", "GET http://h/a answered 404 Not Found") != fingerprint(
        "http", "http_4xx", "h", "GET http://h/a answered 400 Bad Request"
    )


def test_the_same_failure_on_other_ids_has_one_fingerprint() -> None:
    first = fingerprint("http", "http_5xx", "crm", "GET https://crm/orders/1 answered 502 Bad Gateway")
    second = fingerprint("http", "http_5xx", "crm", "GET https://crm/orders/99?x=1 answered 502 Bad Gateway")
    assert first == second and len(first) == 16


@pytest.mark.parametrize(
    "other",
    [
        ("ai", "http_5xx", "crm"),  # another step kind
        ("http", "network", "crm"),  # another category
        ("http", "http_5xx", "billing"),  # another connection
    ],
)
def test_kind_category_and_target_each_separate_fingerprints(other: tuple[str, str, str]) -> None:
    message = "GET https://crm/x answered 502 Bad Gateway"
    assert fingerprint("http", "http_5xx", "crm", message) != fingerprint(*other, message)


def test_host_of_drops_user_info_and_path() -> None:
    assert analysis.host_of("https://user:pw@API.example.com:8443/a?b=1") == "api.example.com:8443"
    assert analysis.host_of("/relative") is None
    assert analysis.host_of(None) is None


def test_details_are_bounded_and_a_long_traceback_keeps_its_end() -> None:
    trace = "Traceback\n" + "  frame\n" * 2000 + "ValueError: the real cause"
    kept = analysis.bounded_details({"traceback": trace, "body_excerpt": "x" * 5000})
    assert kept is not None
    assert kept["traceback"].endswith("ValueError: the real cause")
    assert len(kept["traceback"]) <= analysis.MAX_TRACEBACK + 1
    assert len(kept["body_excerpt"]) == 2048
    assert analysis.bounded_details({}) is None


def _failure(at: datetime, execution: str = "e1", print_: str = "f1", **extra: object) -> Failure:
    fields: dict[str, object] = {
        "at": at,
        "execution_id": execution,
        "definition_id": "orders",
        "step_path": "orders/fetch",
        "kind": "http",
        "category": "rate_limit",
        "message": "GET https://crm/x answered 429 Too Many Requests",
        "fingerprint": print_,
        "retryable": True,
    }
    return Failure(**(fields | extra))  # type: ignore[arg-type]


def test_grouping_counts_first_and_last_seen_and_affected_executions() -> None:
    failures = [
        _failure(NOW - timedelta(hours=5), "e1"),
        _failure(NOW - timedelta(hours=1), "e2"),
        _failure(NOW - timedelta(minutes=5), "e2"),
        _failure(NOW - timedelta(hours=2), "e3", "f2", category="auth"),
    ]
    patterns = analysis.group(failures, NOW - timedelta(hours=24), NOW)
    top = patterns[0]
    assert (top.fingerprint, top.count) == ("f1", 3)
    assert top.first_seen == NOW - timedelta(hours=5) and top.last_seen == NOW - timedelta(minutes=5)
    assert top.executions == ["e2", "e1"]  # newest first
    assert top.workflows == ["orders"] and top.steps == ["orders/fetch"]
    assert sum(count for _start, count in top.trend.counts) == 3
    assert top.trend.bucket == "hour" and len(top.trend.counts) == 25
    assert patterns[1].fingerprint == "f2"


def test_trend_says_rising_falling_new_or_steady() -> None:
    since = NOW - timedelta(days=7)
    late = [NOW - timedelta(hours=h) for h in (1, 2, 3, 4, 5)]
    early = [NOW - timedelta(days=6, hours=h) for h in (1, 2)]
    assert analysis.trend(late + early[:1], since, NOW).direction == "rising"
    assert analysis.trend(late[:1] + early + [NOW - timedelta(days=5)], since, NOW).direction == "falling"
    assert analysis.trend(late, since, NOW).direction == "new"
    assert analysis.trend(late[:2] + early, since, NOW).direction == "steady"
    assert analysis.trend(late, since, NOW).bucket == "day"


def test_a_failure_followed_by_a_later_first_attempt_success_of_the_same_step_is_recovered() -> None:
    failures = [_failure(NOW - timedelta(hours=2)), _failure(NOW - timedelta(minutes=1))]
    marked = analysis.mark_recovered(failures, {("orders", "orders/fetch"): NOW - timedelta(hours=1)}, {})
    assert [f.recovered for f in marked] == [True, False]


def test_a_failure_retried_successfully_in_the_same_execution_is_recovered() -> None:
    failures = [_failure(NOW - timedelta(minutes=2), "e1"), _failure(NOW - timedelta(minutes=2), "e2")]
    marked = analysis.mark_recovered(failures, {}, {("e1", "orders/fetch", None): NOW - timedelta(minutes=1)})
    assert [f.recovered for f in marked] == [True, False]


def test_rate_limits_suggest_lower_concurrency_and_a_retry() -> None:
    ids = [s.id for s in suggest("rate_limit", True, recovered=0, seen=0)]
    assert ids[0] == "lower_concurrency" and "retry" in ids


def test_auth_suggests_verifying_the_connection_and_no_retry() -> None:
    found = suggest("auth", False, recovered=0, seen=3)
    assert found[0].id == "verify_connection" and found[0].applicable
    assert "retry" not in [s.id for s in found]


@pytest.mark.parametrize("category", ["validation", "expression", "http_4xx"])
def test_definition_and_input_errors_are_fixed_not_retried(category: str) -> None:
    found = suggest(category, False, recovered=0, seen=5)
    assert found[0].id in ("fix_definition", "fix_input") and not found[0].applicable
    assert found[0].confidence > 0.9
    assert "retry" not in [s.id for s in found]


def test_timeouts_suggest_raising_the_timeout() -> None:
    assert "raise_timeout" in [s.id for s in suggest("timeout", True, recovered=0, seen=4)]


def test_retry_confidence_follows_what_happened_before() -> None:
    never = next(s for s in suggest("http_5xx", True, recovered=0, seen=8) if s.id == "retry")
    always = next(s for s in suggest("http_5xx", True, recovered=8, seen=8) if s.id == "retry")
    prior = next(s for s in suggest("http_5xx", True, recovered=0, seen=0) if s.id == "retry")
    assert never.confidence < prior.confidence < always.confidence
    assert prior.confidence == 0.7
    assert always.confidence == pytest.approx((8 + 2 * 0.7) / 10, abs=1e-3)
    assert "8 of 8" in always.evidence


def test_a_non_retryable_failure_that_retries_keep_fixing_is_offered_a_retry() -> None:
    flaky = suggest("http_4xx", False, recovered=9, seen=10)
    assert "retry" in [s.id for s in flaky]

"""Error analysis across executions: fingerprints, patterns, trends and recovery suggestions.

Pure functions over plain records, so they are tested without a server and shared by the worker
(which fingerprints each failed attempt as it records it) and the API (which groups them).

A *fingerprint* names "the same failure": step kind, error category, where the step went (its
connection, else the host it called) and the message with everything that varies between
occurrences (numbers, ids, uuids, quoted values, URL paths and queries) replaced by placeholders.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlsplit

from rte.errors import NON_RETRYABLE_CATEGORIES, ErrorCategory

MAX_MESSAGE = 2048
MAX_NORMALISED = 300
MAX_DETAILS_JSON = 6144
MAX_TRACEBACK = 3000

# Order matters: URLs before paths and numbers, uuids before hex ids, quoted values before numbers.
_URL = re.compile(r"\b([a-z][a-z0-9+.-]*://[^/\s?#'\"]+)([^\s'\"]*)", re.IGNORECASE)
_UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.IGNORECASE)
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+\.[\w.-]+\b")
_QUOTED = re.compile(r"'[^'\n]{0,200}'|\"[^\"\n]{0,200}\"")
# Hex runs of 8+ with at least one digit (execution suffixes, hashes, request ids).
_HEX_ID = re.compile(r"\b(?=[0-9a-f]*\d)[0-9a-f]{8,}\b", re.IGNORECASE)
# Mixed letter/digit tokens of 6+ characters that look generated (ord_8f2Kx91, req-123abc).
_TOKEN_ID = re.compile(r"\b(?=[\w-]*\d)(?=[\w-]*[a-z])[\w-]{10,}\b", re.IGNORECASE)
_NUMBER = re.compile(r"(?<![<\w])-?\d+(?:\.\d+)?(?![\w>])")
# HTTP statuses stay: a 404 and a 400 are different failures even in the same category.
_STATUS = re.compile(r"\b(answered|status|HTTP) ([1-5]\d\d)\b")
_SPACES = re.compile(r"\s+")
_PRIVATE = 0xE000


def normalise_message(message: str) -> str:
    """The message with what varies between occurrences replaced by placeholders."""
    kept: list[str] = []  # spans later rules must not touch (URL origins, HTTP statuses)

    def keep(text: str) -> str:
        kept.append(text)
        return chr(_PRIVATE + len(kept) - 1)  # one private-use character: no rule matches it

    def url(match: re.Match[str]) -> str:
        # Path and query both vary per call: one placeholder, so "/a" and "/b?x=1" match.
        return keep(match.group(1)) + ("/<path>" if match.group(2).strip("/") else "")

    text = _URL.sub(url, message[:MAX_MESSAGE])
    text = _UUID.sub("<uuid>", text)
    text = _EMAIL.sub("<email>", text)
    text = _QUOTED.sub(lambda m: f"{m.group(0)[0]}<value>{m.group(0)[0]}", text)
    text = _STATUS.sub(lambda m: f"{m.group(1)} {keep(m.group(2))}", text)
    text = _HEX_ID.sub("<id>", text)
    text = _TOKEN_ID.sub("<id>", text)
    text = _NUMBER.sub("<n>", text)
    text = "".join(kept[ord(c) - _PRIVATE] if _PRIVATE <= ord(c) < _PRIVATE + len(kept) else c for c in text)
    return _SPACES.sub(" ", text).strip()[:MAX_NORMALISED]


def host_of(url: str | None) -> str | None:
    """host[:port] of a URL, without user info; None when there is none."""
    if not url:
        return None
    netloc = urlsplit(url).netloc.rsplit("@", 1)[-1]
    return netloc.lower()[:255] or None


def fingerprint(kind: str, category: str, target: str | None, message: str) -> str:
    """A stable 16-hex id of (kind, category, connection or host, normalised message)."""
    key = "\x1f".join([kind or "", category or "", target or "", normalise_message(message)])
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def bounded_details(details: dict[str, Any] | None) -> dict[str, Any] | None:
    """Details worth keeping with a failure, bounded: body excerpt, trimmed traceback, small values."""
    if not details:
        return None
    kept: dict[str, Any] = {}
    for key, value in details.items():
        if key == "traceback" and isinstance(value, str):
            # The end of a traceback says where it broke; keep that.
            value = value if len(value) <= MAX_TRACEBACK else "…" + value[-MAX_TRACEBACK:]
        elif isinstance(value, str):
            value = value[:2048]
        kept[key] = value
    # Through JSON once: the column stores JSON, and anything else (a datetime…) becomes text.
    kept = json.loads(json.dumps(kept, default=str))
    if len(json.dumps(kept)) > MAX_DETAILS_JSON:
        small = {k: v for k, v in kept.items() if isinstance(v, str | int | float | bool) or v is None}
        kept = {k: v[:1024] if isinstance(v, str) else v for k, v in small.items()} | {"_truncated": True}
    return kept


# Patterns ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    """One failure, from a step attempt (SQL store) or a failed execution (Temporal)."""

    at: datetime
    execution_id: str
    definition_id: str
    step_path: str
    kind: str
    category: str
    message: str
    fingerprint: str
    retryable: bool
    attempt: int = 1
    item_index: int | None = None
    run_id: str = ""
    http_status: int | None = None
    connection_id: str | None = None
    host: str | None = None
    details: dict[str, Any] | None = None
    source: Literal["step_attempt", "execution"] = "step_attempt"
    recovered: bool = False  # a later attempt or execution ran the same step successfully


Direction = Literal["new", "rising", "falling", "steady"]


@dataclass
class Trend:
    bucket: Literal["hour", "day"]
    counts: list[tuple[datetime, int]]
    direction: Direction


@dataclass
class Pattern:
    fingerprint: str
    kind: str
    category: str
    target: str | None
    message: str  # normalised
    retryable: bool
    count: int
    first_seen: datetime
    last_seen: datetime
    workflows: list[str]
    executions: list[str]
    steps: list[str]
    recovered: int
    trend: Trend
    failures: list[Failure] = field(default_factory=list)  # newest first


def bucket_for(window: timedelta) -> Literal["hour", "day"]:
    return "hour" if window <= timedelta(hours=48) else "day"


def trend(times: Iterable[datetime], since: datetime, until: datetime) -> Trend:
    """Counts per hour (windows up to 48 h) or day, oldest first, and which way they go.

    The direction compares the later half of the window with the earlier half: "rising" when the
    later half has at least 1.5× as many (and 2 more), "falling" the other way round, "new" when
    everything happened in the later half and there were at least 2, else "steady".
    """
    bucket = bucket_for(until - since)
    size = timedelta(hours=1) if bucket == "hour" else timedelta(days=1)
    start = _floor(since, bucket)
    slots = max(1, int((until - start) / size) + 1)
    counts = [0] * slots
    middle = since + (until - since) / 2
    early = late = 0
    for at in times:
        index = int((at - start) / size)
        if 0 <= index < slots:
            counts[index] += 1
        if at < middle:
            early += 1
        else:
            late += 1
    direction: Direction = "steady"
    if early == 0 and late >= 2:
        direction = "new"
    elif late >= 1.5 * early and late - early >= 2:
        direction = "rising"
    elif early >= 1.5 * late and early - late >= 2:
        direction = "falling"
    return Trend(bucket, [(start + size * i, count) for i, count in enumerate(counts)], direction)


def _floor(at: datetime, bucket: str) -> datetime:
    at = at.astimezone(UTC)
    at = at.replace(minute=0, second=0, microsecond=0)
    return at.replace(hour=0) if bucket == "day" else at


def group(failures: Sequence[Failure], since: datetime, until: datetime) -> list[Pattern]:
    """Failures grouped by fingerprint, most frequent first."""
    by_print: dict[str, list[Failure]] = {}
    for failure in failures:
        by_print.setdefault(failure.fingerprint, []).append(failure)
    patterns = []
    for key, members in by_print.items():
        members.sort(key=lambda f: f.at, reverse=True)
        first = members[-1]
        patterns.append(
            Pattern(
                fingerprint=key,
                kind=first.kind,
                category=first.category,
                target=first.connection_id or first.host,
                message=normalise_message(first.message),
                retryable=first.retryable,
                count=len(members),
                first_seen=members[-1].at,
                last_seen=members[0].at,
                workflows=sorted({f.definition_id for f in members if f.definition_id}),
                executions=list(dict.fromkeys(f.execution_id for f in members)),
                steps=sorted({f.step_path for f in members}),
                recovered=sum(1 for f in members if f.recovered),
                trend=trend((f.at for f in members), since, until),
                failures=members,
            )
        )
    patterns.sort(key=lambda p: (-p.count, -p.last_seen.timestamp()))
    return patterns


# Suggestions ------------------------------------------------------------------------------------

Action = Literal[
    "retry",
    "verify_connection",
    "raise_timeout",
    "lower_concurrency",
    "fix_definition",
    "fix_input",
    "fix_code",
    "check_service",
    "investigate",
]
# Actions the API can perform in one call (POST /errors/patterns/{fingerprint}/apply).
APPLICABLE: frozenset[str] = frozenset({"retry", "verify_connection", "raise_timeout", "lower_concurrency"})

# How likely a plain retry is to succeed before any history is known, per category.
RETRY_PRIOR: dict[str, float] = {
    ErrorCategory.HTTP_5XX: 0.7,
    ErrorCategory.NETWORK: 0.7,
    ErrorCategory.RATE_LIMIT: 0.6,
    ErrorCategory.TIMEOUT: 0.5,
    ErrorCategory.INTERNAL: 0.3,
    ErrorCategory.USER_CODE: 0.2,
    ErrorCategory.CANCELLED: 0.3,
}
NON_RETRYABLE_PRIOR = 0.05
PRIOR_WEIGHT = 2.0  # the prior counts as this many observed failures
# A non-retryable failure is still offered a retry when history shows retries mostly succeed.
FLAKY_THRESHOLD = 0.5

# category → (action, prior confidence, title, what to do)
RULES: dict[str, list[tuple[Action, float, str, str]]] = {
    ErrorCategory.RATE_LIMIT: [
        (
            "lower_concurrency",
            0.7,
            "Lower the step's concurrency",
            "The service is rate limiting: halve the for_each concurrency (or the workflow's "
            "max_concurrency) so fewer requests are in flight; honour Retry-After with more attempts.",
        )
    ],
    ErrorCategory.AUTH: [
        (
            "verify_connection",
            0.8,
            "Re-verify the connection",
            "The service refused the credentials: verify the connection and replace its secret "
            "(`rte connections set`) if it expired or was revoked.",
        )
    ],
    ErrorCategory.TIMEOUT: [
        (
            "raise_timeout",
            0.6,
            "Raise the step timeout",
            "The step ran out of time: double its timeout (and `with.timeout_s` for http steps).",
        )
    ],
    ErrorCategory.HTTP_5XX: [
        ("check_service", 0.3, "Check the service", "The service failed on its side; see its status.")
    ],
    ErrorCategory.NETWORK: [
        ("check_service", 0.3, "Check the network", "The service could not be reached; check its address.")
    ],
    ErrorCategory.VALIDATION: [
        (
            "fix_input",
            0.8,
            "Fix the input or the step's parameters",
            "The request or its data is invalid; retrying cannot help.",
        )
    ],
    ErrorCategory.EXPRESSION: [
        (
            "fix_definition",
            0.9,
            "Fix the expression",
            "A jq expression failed on the data it got: fix the expression in the definition, "
            "or the input that does not have the expected shape. Retrying cannot help.",
        )
    ],
    ErrorCategory.HTTP_4XX: [
        (
            "fix_definition",
            0.8,
            "Fix the request",
            "The service refused the request as sent (wrong URL, method or body): fix the "
            "definition or the input. Retrying cannot help.",
        )
    ],
    ErrorCategory.SANDBOX_LIMIT: [
        ("fix_code", 0.8, "Fix the script or raise its limits", "The script hit a sandbox limit.")
    ],
    ErrorCategory.USER_CODE: [("fix_code", 0.7, "Fix the step's code", "The step's own code raised.")],
    ErrorCategory.CONFIGURATION: [
        ("fix_definition", 0.9, "Fix the configuration", "A connection or setting is missing or wrong.")
    ],
    ErrorCategory.RAISED: [
        ("fix_input", 0.7, "Review the raised error", "The definition raised this error on purpose.")
    ],
    ErrorCategory.REJECTED: [("investigate", 0.5, "Review the rejection", "A person rejected the step.")],
    ErrorCategory.POLICY: [
        (
            "fix_definition",
            0.9,
            "Change the target, or the policy that refuses it",
            "A security policy refused the request (an outbound target, or where a connection's "
            "credentials may go): point the step elsewhere, or have an admin change RTE_OUTBOUND_ALLOW "
            "or the connection's allowed_origins. Retrying cannot help.",
        )
    ],
    ErrorCategory.CANCELLED: [("investigate", 0.5, "Check why it was cancelled", "Someone cancelled it.")],
}


@dataclass(frozen=True)
class Suggestion:
    id: Action
    title: str
    detail: str
    confidence: float
    applicable: bool
    evidence: str


def retry_success_rate(category: str, recovered: int, seen: int) -> float:
    """How likely a retry is to succeed: what happened before, smoothed towards the category prior.

    rate = (recovered + PRIOR_WEIGHT × prior) / (seen + PRIOR_WEIGHT), where `seen` failures had
    `recovered` later successes of the same step (a retry in the same execution, or a later
    execution of the same workflow).
    """
    prior = RETRY_PRIOR.get(category, NON_RETRYABLE_PRIOR if category in NON_RETRYABLE_CATEGORIES else 0.4)
    return (recovered + PRIOR_WEIGHT * prior) / (seen + PRIOR_WEIGHT)


def suggest(category: str, retryable: bool, recovered: int, seen: int) -> list[Suggestion]:
    """Recovery suggestions for a failure or a pattern, most confident first.

    A fix suggestion's confidence is its rule prior smoothed the same way by the failures that a
    retry did *not* recover: (seen − recovered + PRIOR_WEIGHT × prior) / (seen + PRIOR_WEIGHT).
    """
    rate = retry_success_rate(category, recovered, seen)
    evidence = (
        f"{recovered} of {seen} failure(s) like this were followed by a success of the same step"
        if seen
        else "no history yet: the category's prior"
    )
    found: list[Suggestion] = []
    if retryable or rate >= FLAKY_THRESHOLD:
        found.append(
            Suggestion(
                "retry",
                "Retry the failed executions",
                "Start each affected failed execution again with the same plan and parameters.",
                round(rate, 3),
                True,
                evidence,
            )
        )
    for action, prior, title, detail in RULES.get(category, []):
        confidence = (seen - recovered + PRIOR_WEIGHT * prior) / (seen + PRIOR_WEIGHT)
        found.append(Suggestion(action, title, detail, round(confidence, 3), action in APPLICABLE, evidence))
    if not found:
        found.append(
            Suggestion(
                "investigate",
                "Investigate",
                "No rule covers this failure; read its details.",
                0.3,
                False,
                evidence,
            )
        )
    found.sort(key=lambda s: -s.confidence)
    return found


def mark_recovered(
    failures: Sequence[Failure],
    later_first_attempt: dict[tuple[str, str], datetime],
    same_execution: dict[tuple[str, str, int | None], datetime],
) -> list[Failure]:
    """Failures with `recovered` set when the same step succeeded after them.

    Either a later attempt of the same execution's step (and item) completed — a retry worked — or
    the same workflow step completed at its first attempt after the failure, in another execution.
    """
    marked = []
    for failure in failures:
        retried = same_execution.get((failure.execution_id, failure.step_path, failure.item_index))
        later = later_first_attempt.get((failure.definition_id, failure.step_path))
        recovered = (retried is not None and retried > failure.at) or (
            later is not None and later > failure.at
        )
        marked.append(replace(failure, recovered=recovered))
    return marked

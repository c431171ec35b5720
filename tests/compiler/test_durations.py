"""Durations as people write them."""

from __future__ import annotations

import pytest

from workflows.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25), ("30s", 30), ("5m", 300), ("1h", 3600), ("1d", 86400), ("1h30m", 5400),
        (10, 10), (1.5, 1.5), ("10", 10), ("PT30S", 30), ("P1DT2H", 93600), ("pt1m", 60), ("P1W", 604800),
    ],
)  # fmt: skip
def test_accepted_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("5 minutes", "invalid duration '5 minutes': use seconds (10), a value like 250ms"),
        ("", "invalid duration ''"),
        ("PT", "invalid duration 'PT'"),
        ("P1M", "years and months have no fixed length"),
        (-1, "it must not be negative"),
        ("-5", "it must not be negative"),
        (True, "invalid duration True"),
        (None, "invalid duration None"),
        (float("inf"), "finite"),
    ],
)
def test_rejected_durations_say_what_is_accepted(text: object, message: str) -> None:
    with pytest.raises(ValueError, match="invalid duration") as raised:
        parse_duration(text)
    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.25, "250ms"), (30, "30s"), (90, "1m30s"), (86400, "1d"), (0, "0s")]
)
def test_durations_print_short(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text

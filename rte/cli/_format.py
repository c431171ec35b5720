"""How the commands show times, durations and statuses in a terminal."""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime, timedelta

from rich.console import Console

STATUS_STYLES = {
    "running": "cyan",
    "waiting": "magenta",
    "paused": "magenta",
    "completed": "green",
    "failed": "bold red",
    "cancelled": "yellow",
    "terminated": "yellow",
    "timed_out": "red",
    "continued_as_new": "dim",
}
_AGO = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def stdout_console() -> Console:
    """Tables on stdout: as wide as the terminal, or never cut short when piped (`| grep` sees whole ids)."""
    return Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 4096)


def styled_status(status: str) -> str:
    return f"[{STATUS_STYLES.get(status, 'white')}]{status}[/]"


def when(value: datetime | None) -> str:
    """A moment in the local time zone, to the second."""
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else ""


def duration(milliseconds: float | None) -> str:
    if milliseconds is None:
        return ""
    seconds = milliseconds / 1000
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, seconds = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """`30m`, `2h`, `7d` (that long ago) or an ISO 8601 time (local time when it names no zone, as
    the tables show times).

    Raises ValueError with a message fit for the user.
    """
    if match := _AGO.match(text.strip()):
        amount, unit = int(match.group(1)), match.group(2)
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[unit]: amount})
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"--since takes a duration like 30m, 2h or 7d, or a time like 2026-01-31T09:00 — not '{text}'"
        ) from None
    return moment if moment.tzinfo else moment.astimezone()

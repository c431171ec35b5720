"""Durations as people write them in definitions: "250ms", "30s", "5m", "1h30m", "1d", 10, "PT30S"."""

from __future__ import annotations

import math
import re

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_NUMBER = r"\d+(?:\.\d+)?"
_SHORT_PART = re.compile(rf"({_NUMBER})\s*(ms|s|m|h|d)", re.IGNORECASE)
_SHORT = re.compile(rf"(?:{_NUMBER}\s*(?:ms|s|m|h|d)\s*)+", re.IGNORECASE)
_PLAIN = re.compile(rf"-?{_NUMBER}")
# Years and months are left out on purpose: they have no fixed length in seconds.
_ISO = re.compile(
    rf"P(?:(?P<weeks>{_NUMBER})W)?(?:(?P<days>{_NUMBER})D)?"
    rf"(?:T(?:(?P<hours>{_NUMBER})H)?(?:(?P<minutes>{_NUMBER})M)?(?:(?P<seconds>{_NUMBER})S)?)?",
    re.IGNORECASE,
)
_ISO_SECONDS = {"weeks": 604800.0, "days": 86400.0, "hours": 3600.0, "minutes": 60.0, "seconds": 1.0}

FORMATS_HINT = "use seconds (10), a value like 250ms, 30s, 5m, 1h30m, 1d, or ISO 8601 like PT30S"


def parse_duration(value: object) -> float:
    """Seconds in a duration; ValueError with a message a person can act on otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"invalid duration {value!r}: {FORMATS_HINT}")
    if isinstance(value, int | float):
        return _checked(float(value), value)
    text = value.strip()
    if _PLAIN.fullmatch(text):
        return _checked(float(text), value)
    if _SHORT.fullmatch(text):
        total = sum(float(number) * _UNIT_SECONDS[unit.lower()] for number, unit in _SHORT_PART.findall(text))
        return _checked(total, value)
    iso = _ISO.fullmatch(text)
    if iso and text.upper() not in ("P", "PT") and not text.upper().endswith("T"):
        total = sum(float(amount) * _ISO_SECONDS[name] for name, amount in iso.groupdict().items() if amount)
        return _checked(total, value)
    date_part = text.upper().split("T", 1)[0]
    if date_part.startswith("P") and ("Y" in date_part or "M" in date_part):
        raise ValueError(f"invalid duration {value!r}: years and months have no fixed length; use days")
    raise ValueError(f"invalid duration {value!r}: {FORMATS_HINT}")


def _checked(seconds: float, original: object) -> float:
    if math.isnan(seconds) or math.isinf(seconds):
        raise ValueError(f"invalid duration {original!r}: it must be a finite number of seconds")
    if seconds < 0:
        raise ValueError(f"invalid duration {original!r}: it must not be negative")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest readable form: 0.25 → "250ms", 90 → "1m30s", 86400 → "1d"."""
    if 0 < seconds < 1:
        return f"{round(seconds * 1000)}ms"
    parts: list[str] = []
    remaining = seconds
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        count = int(remaining // size)
        if count:
            parts.append(f"{count}{unit}")
            remaining -= count * size
    if remaining or not parts:
        parts.append(f"{remaining:g}s")
    return "".join(parts)

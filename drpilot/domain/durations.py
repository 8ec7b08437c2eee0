"""Human durations ("90s", "5m", "1h30m") as runbooks and CLI flags spell them.

A duration is kept as a `timedelta` in memory and written back in the same short form, so
a runbook survives a round trip through JSON (the Temporal payload converter) unchanged.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema
from pydantic_core import PydanticCustomError

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
PATTERN = r"^(\d+(\.\d+)?(ms|s|m|h|d))+$"


def parse_duration(text: str) -> timedelta:
    """Parse "1h30m" / "90s" / "250ms"; raise ValueError naming the accepted forms."""
    cleaned = text.strip().replace(" ", "")
    pos, seconds = 0, 0.0
    for match in _PART.finditer(cleaned):
        if match.start() != pos:
            break
        seconds += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if not cleaned or pos != len(cleaned):
        raise ValueError(f"not a duration: {text!r} (use e.g. 90s, 5m, 1h30m)")
    try:
        return timedelta(seconds=seconds)
    except OverflowError:  # beyond timedelta's 999999999 days (or infinite: 1e400s)
        raise DurationTooLong(f"duration too long: {text!r} (at most {MAX_DAYS} days)") from None


MAX_DAYS = timedelta.max.days


class DurationTooLong(ValueError):
    """A well-formed duration beyond what a timedelta holds."""


def format_duration(value: timedelta) -> str:
    """The shortest exact spelling: 300s -> "5m", 5400s -> "1h30m", 0.25s -> "250ms"."""
    total_ms = round(value.total_seconds() * 1000)
    if total_ms == 0:
        return "0s"
    parts = []
    for unit, size_ms in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        count, total_ms = divmod(total_ms, size_ms)
        if count:
            parts.append(f"{count}{unit}")
    if total_ms:
        parts.append(f"{total_ms}ms")
    return "".join(parts)


def _coerce(value: object) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise PydanticCustomError("duration", "expected a duration such as 90s, 5m or 1h30m")
    if isinstance(value, int | float):
        # A bare number is ambiguous (seconds? minutes?): make the author say the unit.
        raise PydanticCustomError(
            "duration", "expected a duration with a unit such as 90s, 5m or 1h30m"
        )
    if isinstance(value, str):
        try:
            return parse_duration(value)
        except DurationTooLong:
            raise PydanticCustomError(
                "duration", "expected a duration of at most {max_days} days such as 90s, 5m or 1h30m", {"max_days": MAX_DAYS}
            ) from None
        except ValueError:
            pass
    raise PydanticCustomError("duration", "expected a duration such as 90s, 5m or 1h30m")


Duration = Annotated[
    timedelta,
    BeforeValidator(_coerce),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"type": "string", "pattern": PATTERN, "examples": ["90s", "5m", "1h30m"]}),
]

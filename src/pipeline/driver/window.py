"""The backfill window of a run (`--start-date` / `--end-date`, inclusive).

The driver sets `ctx.window` (a `DateWindow`, or None for "everything") before any step runs;
jobs read it with `getattr(ctx, "window", None)` and keep only the landing data it contains.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from pipeline.settings import ConfigError


@dataclass(frozen=True)
class DateWindow:
    """Landing dates from `start` to `end`, both inclusive; a missing bound is open."""

    start: date | None = None
    end: date | None = None

    def __post_init__(self) -> None:
        if self.start and self.end and self.end < self.start:
            raise ConfigError(f"--end-date {self.end} is before --start-date {self.start}")

    def contains(self, day: date | datetime) -> bool:
        if isinstance(day, datetime):
            day = day.date()
        return (self.start is None or day >= self.start) and (self.end is None or day <= self.end)

    @property
    def bounded(self) -> bool:
        return self.start is not None or self.end is not None

    @property
    def landing_filter(self) -> str:
        """What the window keeps, for plans, logs and the run state."""
        if self.start and self.end:
            if self.start == self.end:
                return f"landing date {self.start}"
            return f"landing dates {self.start} to {self.end} (inclusive)"
        if self.start:
            return f"landing dates from {self.start}"
        if self.end:
            return f"landing dates up to {self.end}"
        return "all landing dates"

    def to_dict(self) -> dict[str, str | None]:
        return {
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat() if self.end else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> DateWindow | None:
        if not data or not (data.get("start") or data.get("end")):
            return None
        return parse_window(data.get("start"), data.get("end"))


def parse_window(start: str | None, end: str | None) -> DateWindow | None:
    """The window from the two flags' text; None when neither is given."""
    if not start and not end:
        return None
    return DateWindow(_parse_date(start, "--start-date"), _parse_date(end, "--end-date"))


def _parse_date(text: str | None, flag: str) -> date | None:
    if not text:
        return None
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text.strip()):
            raise ValueError(text)
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(f"{flag}: expected a date YYYY-MM-DD, got {text!r}") from None

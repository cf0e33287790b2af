"""The generated period, its calendar, and timestamp formatting.

All instants are integers since the Unix epoch in UTC (seconds for CRM, microseconds for the
Parquet sources, milliseconds for Kafka), so nothing depends on the local time zone or wall clock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

DAY_S = 86_400
DAY_US = DAY_S * 1_000_000
_EPOCH = date(1970, 1, 1)


@dataclass(frozen=True)
class Period:
    """`days` calendar days ending at `end` inclusive; day index 0 is `start`."""

    end: date
    days: int

    @property
    def start(self) -> date:
        return self.end - timedelta(days=self.days - 1)

    @property
    def start_s(self) -> int:
        return (self.start - _EPOCH).days * DAY_S

    @property
    def end_s(self) -> int:
        """First second after the period."""
        return self.start_s + self.days * DAY_S

    def date(self, day: int) -> date:
        return self.start + timedelta(days=day)

    def day_of_s(self, ts_s: np.ndarray | int) -> np.ndarray | int:
        """Day index of epoch seconds (negative before the period)."""
        return (ts_s - self.start_s) // DAY_S

    def day_weights(self) -> np.ndarray:
        """Relative activity per day: quieter weekends and a gentle growth trend."""
        weekday = np.array([self.date(d).weekday() for d in range(self.days)])
        weights = np.where(weekday >= 5, 0.55, 1.0) * np.linspace(0.9, 1.1, self.days)
        return weights / weights.sum()

    @property
    def hot_day(self) -> int:
        """The period's last Friday: the sale day of a skewed sample."""
        return max(d for d in range(self.days - 7, self.days) if self.date(d).weekday() == 4)

    def hot_day_weights(self, share: float) -> np.ndarray:
        """day_weights with `share` of the activity on hot_day, the rest in the usual rhythm."""
        weights = self.day_weights()
        weights[self.hot_day] = 0.0
        weights *= (1 - share) / weights.sum()
        weights[self.hot_day] = share
        return weights

    def business_days(self) -> list[int]:
        """Day indexes that are neither weekends nor holidays (days the FX vendor publishes)."""
        return [d for d in range(self.days) if self.date(d).weekday() < 5 and not is_holiday(self.date(d))]


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    """n-th (1-based; -1 = last) given weekday of a month."""
    if n > 0:
        first = date(year, month, 1)
        return first + timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))
    last = date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)
    return last - timedelta(days=(last.weekday() - weekday) % 7)


def _observed(day: date) -> date:
    """Fixed-date holidays on a weekend are observed on the nearest weekday."""
    return (
        day - timedelta(days=1)
        if day.weekday() == 5
        else day + timedelta(days=1 if day.weekday() == 6 else 0)
    )


def is_holiday(day: date) -> bool:
    """A few market holidays (US-style), enough to leave realistic extra gaps in the FX files."""
    y = day.year
    holidays = {
        _observed(date(y, 1, 1)),
        _nth_weekday(y, 5, 0, -1),  # Memorial Day
        _observed(date(y, 7, 4)),
        _nth_weekday(y, 9, 0, 1),  # Labor Day
        _nth_weekday(y, 11, 3, 4),  # Thanksgiving
        _observed(date(y, 12, 25)),
    }
    return day in holidays


def diurnal_seconds(rng: np.random.Generator, n: int) -> np.ndarray:
    """Seconds into the UTC day, peaking in European/US business hours."""
    centre = np.where(rng.random(n) < 0.35, 10.5, 16.5) * 3600
    return np.mod(rng.normal(centre, 3.5 * 3600), DAY_S).astype(np.int64)


def iso_s(ts_s: int) -> str:
    """One epoch second as `YYYY-MM-DDTHH:MM:SSZ` (used in the small, loop-built CRM data)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts_s))


def iso_array(values: np.ndarray, unit: str) -> np.ndarray:
    """Vectorised ISO-8601 UTC strings with a `Z` suffix; `unit` is 's', 'ms' or 'us'."""
    text = np.datetime_as_string(np.asarray(values, dtype=np.int64).astype(f"datetime64[{unit}]"), unit=unit)
    return np.strings.add(text, "Z")

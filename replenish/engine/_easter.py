"""The Western Easter cycle on day numbers (NumPy only): Easter Sunday of a year, and each
day's offset from it. Moving feasts (Good Friday, Ascension, Corpus Christi) fall on another
date each year; these give the synthetic holidays (:mod:`replenish.engine.synth`) and the
days a location closes every year (:mod:`replenish.engine.closed`)."""
from __future__ import annotations

import numpy as np

__all__ = ["easter_sunday", "easter_offset"]


def easter_sunday(year: np.ndarray) -> np.ndarray:
    """Day numbers (days since 1970-01-01) of Western (Gregorian) Easter Sunday of each
    year (integers, any shape): the anonymous Gregorian computus (Meeus, Astronomical
    Algorithms, ch. 8)."""
    year = np.asarray(year, np.int64)
    a, b, c = year % 19, year // 100, year % 100
    d, e = b // 4, b % 4
    g = (b - (b + 8) // 25 + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = c // 4, c % 4
    leap = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * leap) // 451
    n = h + leap - 7 * m + 114                   # month n // 31 (3 or 4), day n % 31 + 1
    first = (year - 1970).astype("datetime64[Y]").astype("datetime64[M]") \
        + (n // 31 - 1).astype("timedelta64[M]")
    return first.astype("datetime64[D]").astype(np.int64) + n % 31


def easter_offset(days: np.ndarray, step_days: int = 1) -> np.ndarray:
    """Periods from Western Easter Sunday of the period's year, float32, NaN outside the
    Easter cycle.

    ``days``: day numbers (days since 1970-01-01, any integer shape), the first day of each
    period; ``step_days`` 1 (daily) or 7 (weekly: the offset of the week's first day in whole
    weeks, rounded down). The cycle runs from 49 days before Easter (Carnival, Ash Wednesday
    at -46) to 63 after (Ascension +39, Whit Monday +50, Corpus Christi +60): moving feasts
    that shift demand (shops closed on Good Friday, busy on Holy Saturday) but fall on other
    dates each year, so neither the day of year nor a 0/1 holiday flag tells them apart.
    """
    days = np.asarray(days, np.int64)
    year = days.astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970
    off = days - easter_sunday(year)
    inside = (off >= -49) & (off <= 63)
    return np.where(inside, np.floor_divide(off, step_days), np.nan).astype(np.float32)

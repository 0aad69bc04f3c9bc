"""Days a location is closed every year, read from its history: forecast as zero demand.

A shop that sold nothing on 25 December and on Good Friday in each of the last years, while
it sold on the days around them, will be closed on them again. A forecasting model learns
such days poorly: a fixed-date closure is a single day a year, and a moving one (Good
Friday, Corpus Christi) falls on another date each year, so neither the day of the year nor
a 0/1 holiday flag (which open holidays, Easter Monday, share) tells it apart; the bakery's
models forecast about 14 units a series for Good Friday 2018, when every shop was closed.

For each location and each day of the forecast horizon (daily data only), the day recurs
as the same date of earlier years (a fixed date: month and day) and, inside the Easter cycle
(49 days before Easter Sunday to 63 after, :func:`replenish.engine._easter.easter_offset`),
as the same day of earlier years' Easter cycles. Each earlier occurrence the history covers
is either

- *closed*: every series of the location has a known demand of 0 that day, the location
  sold on at least ``min_open_around`` of the 8 same weekdays in the 4 weeks before and
  after it, and on that weekday it sells most weeks (at most ``max_zero_share`` of its
  history's days of that weekday without sales): a quiet, intermittent or not yet opened
  location, or one closed on that weekday anyway, is no evidence;
- *open*: the location sold something that day;
- neither (not in the history, an unknown period, or no sales around it).

A horizon day is closed when, for its date or for its day of the Easter cycle, the latest
``min_years`` earlier occurrences that are closed or open are all closed (older years do not
count: a shop that changed its opening days follows its new ones). Its forecasts, every
quantile of every series of the location, are then 0 units.

Pure NumPy on a :class:`~replenish.engine.panel.Panel`; the forecaster applies it
(``ForecastConfig.closed_days``).
"""
from __future__ import annotations

import numpy as np

from ._easter import easter_offset, easter_sunday
from .panel import Panel

__all__ = ["closed_days"]

_AROUND_WEEKS = 4   # weeks before and after an occurrence whose same weekday shows it open


def closed_days(panel: Panel, horizon: int, min_years: int = 2,
                min_open_around: int = 7, max_zero_share: float = 0.1
                ) -> tuple[np.ndarray, dict]:
    """Which forecast periods of ``panel`` fall on a day its location is closed every year.

    Parameters
    ----------
    panel : Panel
        Histories (daily; for weekly data nothing is closed).
    horizon : int
        Periods after each series' last period.
    min_years : int
        The latest earlier years, closed or open that day, that must all have been closed.
    min_open_around : int
        Of the 8 same weekdays in the 4 weeks around an earlier closed day, those on which
        the location sold.
    max_zero_share : float
        The most of a location's days of a weekday without sales for its zeros on that
        weekday to count as closures.

    Returns
    -------
    mask : ndarray of bool, shape (n_series, horizon)
        True: the location is closed that day; forecast zero demand.
    info : dict
        ``{"series_days": int, "locations": int, "dates": [str, ...]}`` (the distinct
        closed dates, first ten).
    """
    n = panel.n_series
    mask = np.zeros((n, horizon), bool)
    info = {"series_days": 0, "locations": 0, "dates": []}
    if panel.freq != "D" or n == 0 or horizon < 1 or panel.n_rows == 0:
        return mask, info
    loc_codes, loc = np.unique(np.asarray(panel.location).astype(str), return_inverse=True)
    loc = loc.ravel()
    n_loc = len(loc_codes)
    day0 = int(panel.start.astype("datetime64[D]").astype(np.int64).min())
    rows_day = panel.row_dates().astype("datetime64[D]").astype(np.int64) - day0
    n_days = int(rows_day.max()) + 1
    row_loc = loc[panel.series_of_row]
    y = panel.demand.astype(np.float64)
    known = np.isfinite(y)
    flat = row_loc * n_days + rows_day
    size = n_loc * n_days
    total = np.bincount(flat[known], weights=y[known], minlength=size).reshape(n_loc, n_days)
    n_known = np.bincount(flat[known], minlength=size).reshape(n_loc, n_days)
    n_rows = np.bincount(flat, minlength=size).reshape(n_loc, n_days)
    sold = total > 0
    # every series of the location that has a row that day knows a zero, and some do
    zero = (n_rows > 0) & (n_known == n_rows) & (total == 0)
    # the same weekday in the weeks around: a shop closed on Sundays is no evidence that it
    # closes on the Sunday a date fell on
    around = np.zeros((n_loc, n_days), np.int64)
    for weeks in range(1, _AROUND_WEEKS + 1):
        for sign in (-1, 1):
            shift = sign * 7 * weeks
            src = np.arange(n_days) + shift
            ok = (src >= 0) & (src < n_days)
            around[:, ok] += sold[:, src[ok]]
    # and a location that sells on that weekday most weeks: of its days of that weekday with
    # rows, at most max_zero_share sold nothing (an intermittent seller's zeros are no sign)
    weekday = (day0 + np.arange(n_days) + 3) % 7
    has = n_rows > 0
    share = np.ones((n_loc, 7))
    for wd in range(7):
        cols = weekday == wd
        days_with_rows = has[:, cols].sum(1)
        share[:, wd] = np.where(days_with_rows > 0, zero[:, cols].sum(1) / np.maximum(
            days_with_rows, 1), 1.0)
    closed = zero & (around >= min_open_around) & (share[:, weekday] <= max_zero_share)

    # the horizon's distinct days (series of a location mostly end together)
    end = panel.end.astype("datetime64[D]").astype(np.int64)
    days = end[:, None] + np.arange(1, horizon + 1)                       # (n, H)
    cell_loc = np.broadcast_to(loc[:, None], days.shape)
    key, inv = np.unique(np.stack([cell_loc.ravel(), days.ravel()], 1), axis=0,
                         return_inverse=True)
    k_loc, k_day = key[:, 0], key[:, 1]
    years_back = (n_days // 365) + 1
    back = np.arange(1, years_back + 1)

    # earlier occurrences of each key day: the same date (month, day), and the same day of
    # the Easter cycle, in each earlier year
    d = k_day.astype("datetime64[D]")
    month = d.astype("datetime64[M]")
    dom = (d - month.astype("datetime64[D]")).astype(np.int64)
    m_back = month[:, None] - back[None, :].astype("timedelta64[M]") * 12
    same_date = m_back.astype("datetime64[D]").astype(np.int64) + dom[:, None]
    same_date = np.where(same_date.astype("datetime64[D]").astype("datetime64[M]") == m_back,
                         same_date, -10 ** 9)                            # 29 February
    e_off = easter_offset(k_day)
    year = d.astype("datetime64[Y]").astype(np.int64) + 1970
    same_cycle = easter_sunday(year[:, None] - back[None, :]) + np.nan_to_num(e_off)[:, None] \
        .astype(np.int64)
    same_cycle = np.where(np.isfinite(e_off)[:, None], same_cycle, -10 ** 9)

    def rule(occ: np.ndarray) -> np.ndarray:
        col = occ - day0
        inside = (col >= 0) & (col < n_days)
        colc = np.clip(col, 0, n_days - 1)
        row = k_loc[:, None]
        was_closed = inside & closed[row, colc]
        was_open = inside & sold[row, colc]
        # the latest min_years years that tell (closed or open; ``occ`` runs back from the
        # latest) were all closed: a shop that changed its opening days follows its new ones
        tells = was_closed | was_open
        latest = tells & (np.cumsum(tells, 1) <= min_years)
        return (latest & was_closed).sum(1) >= min_years

    shut = rule(same_date) | rule(same_cycle)
    mask = shut[inv.ravel()].reshape(n, horizon)
    if mask.any():
        info = {"series_days": int(mask.sum()), "locations": int(len(np.unique(k_loc[shut]))),
                "dates": sorted({str(np.datetime64(int(v), "D")) for v in k_day[shut]})[:10]}
    return mask, info

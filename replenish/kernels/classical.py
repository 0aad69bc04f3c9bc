"""The classical replenishment policy of an ERP, for every item at once: the baseline a
backtest compares against.

Forecast: a moving average of the last ``window`` periods (``season=None``), or a seasonal
moving average (each future period gets the mean of the same period of the last
``window // season`` seasons; ``window == season`` is the seasonal naive forecast). Its
uncertainty: ``sigma``, the standard deviation of the method's own one-period-ahead errors
over the last ``error_window`` periods. Policy: over the protection interval ``P = R + L``
periods (review period plus lead time), mean demand ``mu_P`` (the sum of the period
forecasts) and ``sigma_P = sigma * sqrt(P)`` (errors independent from period to period, no
lead-time variance term: the textbook ERP formula); reorder point ``mu_P + z sigma_P``
(cycle service level; or the fill-rate level of the normal loss function), order-up-to the
reorder point plus the EOQ when there is a fixed order cost.

Histories are dense ``(n, T)`` arrays, the last column the latest period, NaN before a
series' first period. Units: demand in units per period, ``P`` in periods.
"""
from __future__ import annotations

import numpy as np

from ._backend import get_xp
from .policies import economic_order_quantity, fill_rate_level, service_level_z

__all__ = ["moving_average_forecast", "forecast_error_std", "classical_policy"]


def _window_means(xp, x, window: int, season: int | None):
    """Mean of the values a forecast made after period t would use, for every t.

    Returns (n, T + 1, m) with ``m = season or 1`` phases: entry ``[:, t, p]`` is the
    forecast, made with the periods before ``t``, for a period ``p`` steps into the season
    (for a plain moving average, m = 1). NaN values are skipped; no value at all: NaN.
    """
    n, horizon = x.shape
    ok = xp.isfinite(x)
    v = xp.where(ok, x, 0.0)
    if season is None:
        cs = xp.concatenate([xp.zeros((n, 1)), xp.cumsum(v, axis=1)], axis=1)
        cn = xp.concatenate([xp.zeros((n, 1)), xp.cumsum(ok, axis=1)], axis=1)
        lo = xp.maximum(xp.arange(horizon + 1) - window, 0)
        total = cs - cs[:, lo]
        count = cn - cn[:, lo]
        with np.errstate(invalid="ignore", divide="ignore"):
            return xp.where(count > 0, total / xp.where(count > 0, count, 1), xp.nan)[:, :, None]
    seasons = max(1, window // season)
    out = xp.full((n, horizon + 1, season), xp.nan)
    for p in range(season):
        total = xp.zeros((n, horizon + 1))
        count = xp.zeros((n, horizon + 1))
        for k in range(1, seasons + 1):
            back = k * season - p          # period t + p is k seasons after t + p - k * season
            idx = xp.arange(horizon + 1) - back
            valid = idx >= 0
            src = xp.clip(idx, 0, max(horizon - 1, 0))
            got = xp.where(valid[None, :], v[:, src], 0.0) if horizon else total
            has = xp.where(valid[None, :], ok[:, src], False) if horizon else count > 0
            total = total + got
            count = count + has
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, :, p] = xp.where(count > 0, total / xp.where(count > 0, count, 1), xp.nan)
    return out


def moving_average_forecast(history, horizon: int, *, window: int, season: int | None = None):
    """Point forecasts of the ``horizon`` periods after the last column of ``history``.

    Parameters
    ----------
    history : ndarray, shape (n, T)
        Demand, units per period (NaN: no data).
    horizon : int
        Periods to forecast.
    window : int
        Periods averaged (for a seasonal average: ``window // season`` seasons).
    season : int, optional
        Season length in periods (7 for days of the week).

    Returns
    -------
    ndarray of float64, shape (n, horizon)
        Units per period; NaN for a series without any value in the window.
    """
    xp = get_xp(history)
    x = xp.asarray(history, dtype=xp.float64)
    n, t_len = x.shape
    means = _window_means(xp, x, window, season)[:, t_len]     # made after the last period
    if season is None:
        return xp.repeat(means, horizon, axis=1)
    return means[:, xp.arange(horizon) % season]


def forecast_error_std(history, *, window: int, season: int | None = None, errors: int = 56):
    """Standard deviation of the method's one-period-ahead errors over the last ``errors``
    periods, units per period, shape (n,).

    The forecast of period ``t`` uses the periods before it (for the seasonal average, the
    same phase of earlier seasons). A series with fewer than two errors gets the standard
    deviation of its demand values instead, and 0 without any.
    """
    xp = get_xp(history)
    x = xp.asarray(history, dtype=xp.float64)
    n, t_len = x.shape
    means = _window_means(xp, x, window, season)[:, :t_len, 0]   # forecast of period t, one ahead
    err = x - means
    err = err[:, max(t_len - errors, 0):]
    ok = xp.isfinite(err)
    cnt = ok.sum(axis=1)
    e = xp.where(ok, err, 0.0)
    mean = e.sum(axis=1) / xp.maximum(cnt, 1)
    var = (xp.where(ok, (err - mean[:, None]) ** 2, 0.0)).sum(axis=1) / xp.maximum(cnt - 1, 1)
    finite = xp.isfinite(x)
    xv = xp.where(finite, x, 0.0)
    xc = finite.sum(axis=1)
    xm = xv.sum(axis=1) / xp.maximum(xc, 1)
    xvar = xp.where(finite, (x - xm[:, None]) ** 2, 0.0).sum(axis=1) / xp.maximum(xc - 1, 1)
    sd = xp.where(cnt >= 2, xp.sqrt(var), xp.where(xc >= 2, xp.sqrt(xvar), 0.0))
    return sd


def classical_policy(forecast, sigma, *, protection, service_level, target: str = "csl",
                     review_period=1.0, order_cost=0.0, holding_cost=0.0):
    """Reorder point and order-up-to level from a point forecast and its error std.

    Parameters
    ----------
    forecast : ndarray, shape (n, H)
        Point forecast per period from today, units per period (H >= ``protection``; past
        H the last period repeats).
    sigma : ndarray, shape (n,)
        Standard deviation of one period's forecast error, units.
    protection : ndarray, shape (n,)
        Review period plus lead time, periods (may be fractional).
    service_level : float or ndarray, shape (n,)
        Cycle service level (``"csl"``) or fill rate (``"fill_rate"``) aimed at.
    target : {"csl", "fill_rate"}
    review_period : ndarray, shape (n,)
        Periods between reviews (the fill rate's units per cycle).
    order_cost, holding_cost : ndarray, shape (n,)
        Currency per order; currency per unit per period (for the EOQ).

    Returns
    -------
    dict of ndarray, shape (n,)
        ``protection_demand_mean``, ``protection_demand_std``, ``safety_stock``,
        ``reorder_point``, ``order_up_to`` (units).
    """
    xp = get_xp(forecast)
    f = xp.asarray(forecast, dtype=xp.float64)
    n, horizon = f.shape
    prot = xp.broadcast_to(xp.asarray(protection, dtype=xp.float64), (n,))
    whole = xp.floor(prot).astype(xp.int64)
    frac = prot - whole
    cs = xp.concatenate([xp.zeros((n, 1)), xp.cumsum(f, axis=1)], axis=1)
    last = f[:, -1]
    inside = xp.minimum(whole, horizon)
    mu = cs[xp.arange(n), inside] + (whole - inside) * last
    nxt = f[xp.arange(n), xp.minimum(whole, horizon - 1)]
    mu = mu + frac * nxt
    sd = xp.asarray(sigma, dtype=xp.float64) * xp.sqrt(prot)
    level = xp.broadcast_to(xp.asarray(service_level, dtype=xp.float64), (n,))
    rate = f.mean(axis=1)
    eoq = economic_order_quantity(xp.broadcast_to(xp.asarray(order_cost, dtype=xp.float64), (n,)),
                                  xp.broadcast_to(xp.asarray(holding_cost, dtype=xp.float64), (n,)), rate)
    if target == "fill_rate":
        cycle = xp.maximum(eoq, rate * xp.asarray(review_period, dtype=xp.float64))
        rop = fill_rate_level(mu, sd, (1 - level) * cycle)
        no_cycle = cycle <= 0
        rop = xp.where(no_cycle, mu + service_level_z(level) * sd, rop)
    elif target == "csl":
        rop = mu + service_level_z(level) * sd
    else:
        raise ValueError("target must be 'csl' or 'fill_rate'")
    rop = xp.maximum(rop, 0.0)
    return {"protection_demand_mean": mu, "protection_demand_std": sd, "safety_stock": rop - mu,
            "reorder_point": rop, "order_up_to": rop + eoq}

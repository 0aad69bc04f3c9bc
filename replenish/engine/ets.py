"""Exponential smoothing (statsforecast's AutoETS) for the backtest's classical policy.

``replenish backtest --classical ets`` replaces the classical policy's moving average with an
AutoETS forecast per series, fitted at each origin on the history up to it (Hyndman et al.'s
state-space ETS with the model chosen by AICc, as implemented by statsforecast). Its
uncertainty is, like the moving average's, the standard deviation of its own one-period-ahead
in-sample errors over the last ``errors`` periods, and the policy is the same normal
``z * sigma * sqrt(L + R)`` one (:func:`replenish.kernels.classical.classical_policy`).

statsforecast is an optional dependency (the ``bench`` extra); nothing else imports it.
Units: demand in units per period.
"""
from __future__ import annotations

import numpy as np

__all__ = ["ets_forecasts"]


def _autoets(season: int):
    try:
        from statsforecast.models import AutoETS
    except ImportError as e:   # pragma: no cover - depends on the environment
        raise ImportError("backtest --classical ets needs statsforecast "
                          "(pip install 'statsforecast>=2.0', or the package's [bench] extra)") from e
    return AutoETS(season_length=max(int(season), 1))


def ets_forecasts(history: np.ndarray, horizon: int, *, season: int, errors: int):
    """AutoETS forecasts of every series of ``history``.

    Parameters
    ----------
    history : ndarray, shape (n, T)
        Demand, units per period, the last column the latest period; NaN before a series'
        start and on unknown periods (those are left out: the fit sees the known periods in
        order).
    horizon : int
        Periods to forecast after the last column.
    season : int
        Season length in periods (7 for daily data, 52 for weekly data); AutoETS chooses
        whether to use it.
    errors : int
        Number of the latest in-sample one-period-ahead errors whose standard deviation is
        ``sigma``.

    Returns
    -------
    (forecast, sigma, failed)
        ``forecast`` (n, horizon) units per period, never negative; ``sigma`` (n,) units per
        period; ``failed`` a boolean mask (n,) of the series AutoETS could not fit (fewer
        than 3 known periods, or a numerical failure): their rows are NaN, for the caller to
        fill from its fallback (and count).
    """
    x = np.asarray(history, np.float64)
    n = x.shape[0]
    model = _autoets(season)
    f = np.full((n, horizon), np.nan)
    sigma = np.full(n, np.nan)
    failed = np.zeros(n, bool)
    for i in range(n):
        y = x[i][np.isfinite(x[i])]
        if len(y) < 3:
            failed[i] = True
            continue
        if np.all(y == y[0]):            # constant: nothing to fit, no error
            f[i], sigma[i] = max(y[0], 0.0), 0.0
            continue
        try:
            r = model.forecast(y=y, h=horizon, fitted=True)
        except Exception:                # statsforecast raises on degenerate series
            failed[i] = True
            continue
        mean = np.asarray(r["mean"], np.float64)
        resid = (y - np.asarray(r["fitted"], np.float64))[-errors:]
        resid = resid[np.isfinite(resid)]
        if not np.all(np.isfinite(mean)) or len(resid) < 2:
            failed[i] = True
            continue
        f[i] = np.maximum(mean, 0.0)
        sigma[i] = float(np.std(resid, ddof=1))
    return f, sigma, failed

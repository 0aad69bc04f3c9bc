"""Scale-free forecast accuracy over many series (M5 definitions, as in ANCHORS.md).

- RMSSE of a point forecast (the median): per series, the root of the mean squared error
  over the horizon divided by the mean squared first difference of the series' in-sample
  history; then the plain mean over series.
- SPL of quantile forecasts: per series, the pinball loss averaged over horizon periods and
  quantile levels, divided by the mean absolute first difference of the in-sample history;
  then the plain mean over series.

Series whose history has no change at all (scale 0, or fewer than 2 periods) have no
defined scaled error; they are left out of the means and counted in ``excluded``.
Unknown values (NaN: missing periods, ``gaps="missing"``) are left out: a first difference
with an unknown end is not in the scale, an unknown actual is not scored (a series without
any known actual is excluded).
Histories are given the Panel way: one flat ``values`` array plus ``indptr`` offsets.
"""
from __future__ import annotations

import numpy as np

__all__ = ["history_scales", "rmsse", "spl", "pinball", "interpolate_quantiles"]


def history_scales(values: np.ndarray, indptr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean squared and mean absolute first differences of each series' history.

    Parameters
    ----------
    values : ndarray, shape (n_rows,)
        In-sample demand of all series, concatenated (units per period).
    indptr : ndarray of int, shape (n_series + 1,)
        Offsets of each series into ``values``.

    Returns
    -------
    msd, mad : ndarray of float64, shape (n_series,)
        Mean squared (units^2) and mean absolute (units) first difference over the pairs of
        consecutive periods whose demand is known; NaN where a series has no such pair.
    """
    values = np.asarray(values, np.float64)
    indptr = np.asarray(indptr, np.int64)
    d = np.diff(values)
    same = np.ones(len(d), bool)
    inner = indptr[1:-1]
    same[inner[(inner > 0) & (inner <= len(d))] - 1] = False   # pairs across series edges
    same &= np.isfinite(d)                                      # pairs with an unknown end
    sid = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))[1:] if len(values) \
        else np.zeros(0, np.int64)
    n = np.bincount(sid[same], minlength=len(indptr) - 1).astype(np.float64)
    sq = np.bincount(sid[same], weights=d[same] ** 2, minlength=len(indptr) - 1)
    ab = np.bincount(sid[same], weights=np.abs(d[same]), minlength=len(indptr) - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, sq / n, np.nan), np.where(n > 0, ab / n, np.nan)


def _mean_over_series(per_series: np.ndarray, scale: np.ndarray, scored: np.ndarray
                      ) -> tuple[float, np.ndarray, int]:
    ok = np.isfinite(scale) & (scale > 0) & scored
    per_series = np.where(ok, per_series, np.nan)
    mean = float(np.mean(per_series[ok])) if ok.any() else float("nan")
    return mean, per_series, int((~ok).sum())


def rmsse(actual: np.ndarray, forecast: np.ndarray, values: np.ndarray,
          indptr: np.ndarray, return_per_series: bool = False):
    """Root mean squared scaled error of point forecasts, averaged over series.

    Parameters
    ----------
    actual, forecast : ndarray, shape (n_series, horizon)
        Realised demand and its point forecast (units per period).
    values, indptr
        In-sample history (see :func:`history_scales`).
    return_per_series : bool
        Also return the per-series RMSSE (NaN where undefined) and the excluded count.
    """
    msd, _ = history_scales(values, indptr)
    actual = np.asarray(actual, np.float64)
    known = np.isfinite(actual)
    sq = np.where(known, (actual - np.asarray(forecast, np.float64)) ** 2, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mse = sq.sum(1) / known.sum(1)
        per = np.sqrt(mse / msd)
    mean, per, excluded = _mean_over_series(per, msd, known.any(1))
    return (mean, per, excluded) if return_per_series else mean


def pinball(actual: np.ndarray, quantiles: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Pinball loss of quantile forecasts, shape (n_series, horizon, Q), units.

    ``levels[q] * (y - f)`` when the actual ``y`` is at or above the forecast ``f``,
    ``(1 - levels[q]) * (f - y)`` below it.
    """
    y = np.asarray(actual, np.float64)[..., None]
    f = np.asarray(quantiles, np.float64)
    lv = np.asarray(levels, np.float64)
    return np.where(y >= f, lv * (y - f), (1 - lv) * (f - y))


def spl(actual: np.ndarray, quantiles: np.ndarray, levels: np.ndarray, values: np.ndarray,
        indptr: np.ndarray, return_per_series: bool = False):
    """Scaled pinball loss, averaged over horizon, quantile levels and series.

    Parameters
    ----------
    actual : ndarray, shape (n_series, horizon)
    quantiles : ndarray, shape (n_series, horizon, Q)
        Quantile forecasts at ``levels`` (units per period).
    levels : ndarray, shape (Q,)
    values, indptr
        In-sample history (see :func:`history_scales`).
    """
    _, mad = history_scales(values, indptr)
    actual = np.asarray(actual, np.float64)
    known = np.isfinite(actual)
    loss = np.where(known[..., None], pinball(np.where(known, actual, 0.0), quantiles, levels), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        per = loss.sum(axis=(1, 2)) / (known.sum(1) * len(np.atleast_1d(levels))) / mad
    mean, per, excluded = _mean_over_series(per, mad, known.any(1))
    return (mean, per, excluded) if return_per_series else mean


def interpolate_quantiles(quantiles: np.ndarray, levels: np.ndarray,
                          new_levels: np.ndarray) -> np.ndarray:
    """Quantiles at other levels, linear in the level between known ones.

    Levels outside ``levels`` are extrapolated linearly from the two outermost known ones
    and clipped at zero (demand is never negative); the result stays non-decreasing.

    Parameters
    ----------
    quantiles : ndarray, shape (..., Q)
    levels : ndarray, shape (Q,), increasing
    new_levels : ndarray, shape (Q2,)

    Returns
    -------
    ndarray, shape (..., Q2)
    """
    q = np.asarray(quantiles, np.float64)
    lv = np.asarray(levels, np.float64)
    new = np.asarray(new_levels, np.float64)
    j = np.clip(np.searchsorted(lv, new, side="right") - 1, 0, len(lv) - 2)
    w = (new - lv[j]) / (lv[j + 1] - lv[j])
    out = q[..., j] + w * (q[..., j + 1] - q[..., j])
    return np.maximum.accumulate(np.maximum(out, 0.0), axis=-1)

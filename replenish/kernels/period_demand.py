"""Per-period demand distributions from quantile forecasts.

The demand of one item in one period is described by quantile forecasts
``quantiles[i, h, :]`` at probability levels ``levels``.  We turn them into a full
distribution (its quantile function) as follows, so that moments, samples and
tail probabilities all refer to the *same* distribution:

* between two forecast quantiles the quantile function is linear (demand is
  uniform in between);
* below the lowest level ``p_1`` the first segment's slope is extended down to
  probability 0 and clipped at zero demand: a linear segment from
  ``(0, max(0, q_1 - slope_1 * p_1))`` to ``(p_1, q_1)``;
* above the highest level ``p_Q`` the tail is exponential,
  ``Q(u) = q_Q + beta * log((1 - p_Q) / (1 - u))`` with
  ``beta = slope_Q * (1 - p_Q)``, which keeps the density continuous at ``q_Q``
  and gives a mean excess of ``beta`` (unbounded, light-tailed, never negative).

Quantiles below zero are clipped to zero (demand is never negative) and crossed
quantiles are sorted (monotone rearrangement, Chernozhukov et al. 2010).
Periods beyond the forecast horizon repeat the last period's distribution.
"""
from __future__ import annotations

import numpy as np

from ._backend import asarray, compute_dtype, get_xp, to_numpy
from ._validate import check_finite

__all__ = ["prepare_quantiles", "knots", "basis_weights", "quantile_function", "daily_moments"]

_FINITE_CHECK_CHUNK = 1 << 22  # elements per finiteness pass; bounds the bool temporary


def prepare_quantiles(levels, quantiles, check_values=True):
    """Validate quantile forecasts.

    Parameters
    ----------
    levels : array_like, shape (Q,)
        Probability levels, strictly increasing inside (0, 1), ``Q >= 2``.
    quantiles : array_like, shape (n, H, Q)
        Demand quantiles per item and period, units of stock per period.
    check_values : bool
        ``False`` skips the finiteness pass over the forecasts, for callers
        whose own pass detects non-finite values (the fused host kernels).

    Returns
    -------
    levels : numpy.ndarray, shape (Q,)
        Float64 host copy of the levels (they only feed tiny weight tables).
    quantiles : ndarray, shape (n, H, Q)
        The forecasts as an array of the input's backend and float dtype.

    Raises
    ------
    ValueError
        On wrong shapes, non-finite values or levels outside (0, 1).
    """
    xp = get_xp(quantiles, levels)
    q = asarray(quantiles, xp)
    q = q.astype(compute_dtype(xp, q), copy=False)
    p = np.asarray(to_numpy(levels), dtype=np.float64)
    if p.ndim != 1 or p.shape[0] < 2:
        raise ValueError(f"levels must have shape (Q,) with Q >= 2, got shape {p.shape}")
    check_finite("levels", p, np)
    if not (np.all(p > 0) and np.all(p < 1)):
        raise ValueError("levels must lie strictly inside (0, 1)")
    if not np.all(np.diff(p) > 0):
        raise ValueError("levels must be strictly increasing")
    if q.ndim != 3 or q.shape[-1] != p.shape[0]:
        raise ValueError(f"quantiles must have shape (n, H, {p.shape[0]}), got {q.shape}")
    if q.shape[1] < 1:
        raise ValueError("quantiles must cover at least one period (H >= 1)")
    if check_values:
        check_quantile_values(q)
    return p, q


def check_quantile_values(q):
    """Raise ``ValueError`` with the count of non-finite forecasts in ``q`` (any shape)."""
    xp = get_xp(q)
    flat = q.reshape(-1)
    bad = 0
    for start in range(0, flat.size, _FINITE_CHECK_CHUNK):
        part = flat[start:start + _FINITE_CHECK_CHUNK]
        # A finite sum proves every entry finite (NaN and inf propagate); only
        # count entries, an extra pass, when it is not (or when it overflowed).
        with np.errstate(over="ignore", invalid="ignore"):  # the count below settles it
            total = part.sum()
        if not bool(xp.isfinite(total)):
            bad += int(xp.count_nonzero(~xp.isfinite(part)))
    if bad:
        raise ValueError(
            f"quantiles has {bad} non-finite entr{'y' if bad == 1 else 'ies'} (NaN or infinite) "
            f"out of {flat.size}; replenishment inputs must be finite"
        )


def knots(levels, q, copy=True):
    """Quantile-function knots of a chunk of forecasts.

    Parameters
    ----------
    levels : numpy.ndarray, shape (Q,)
        Validated levels.
    q : ndarray, shape (c, H, Q)
        Quantile forecasts, units per period.
    copy : bool
        ``False`` lets the function clip ``q`` in place (pass a private copy).

    Returns
    -------
    ndarray, shape (c, H, Q + 2)
        ``[x_0, q_1, ..., q_Q, beta]``: the value at probability 0, the
        (clipped, sorted) forecast quantiles, and the exponential-tail scale, all
        in units per period.  The quantile function is a linear combination of
        these with weights that depend only on the probability (see
        :func:`basis_weights`).
    """
    xp = get_xp(q)
    q = xp.maximum(q, 0, out=None if copy else q)
    if bool(xp.any(q[..., 1:] < q[..., :-1])):
        q = xp.sort(q, axis=-1)
    p = levels
    first = (q[..., 1] - q[..., 0]) * q.dtype.type(p[0] / (p[1] - p[0]))
    x0 = xp.maximum(q[..., 0] - first, 0)
    beta = (q[..., -1] - q[..., -2]) * q.dtype.type((1 - p[-1]) / (p[-1] - p[-2]))
    return xp.concatenate([x0[..., None], q, beta[..., None]], axis=-1)


def basis_weights(levels, u):
    """Weights turning knots into quantile-function values.

    Parameters
    ----------
    levels : numpy.ndarray, shape (Q,)
    u : numpy.ndarray, shape (M,)
        Probabilities in [0, 1).

    Returns
    -------
    numpy.ndarray, shape (M, Q + 2), float64
        ``Q(u[m]) = knots @ W[m]``.
    """
    p = np.concatenate([[0.0], levels])
    n_q = levels.shape[0]
    u = np.asarray(u, dtype=np.float64)
    w = np.zeros(u.shape + (n_q + 2,))
    inner = u <= levels[-1]
    k = np.clip(np.searchsorted(p, u, side="right") - 1, 0, n_q - 1)
    frac = np.where(inner, (u - p[k]) / (p[k + 1] - p[k]), 0.0)
    rows = np.arange(u.shape[0])
    w[rows, k] = np.where(inner, 1.0 - frac, 0.0)
    w[rows, k + 1] += np.where(inner, frac, 0.0)
    tail = ~inner
    w[rows[tail], n_q] = 1.0
    w[rows[tail], n_q + 1] = np.log((1.0 - levels[-1]) / (1.0 - u[tail]))
    return w


def quantile_function(levels, quantiles, u):
    """Evaluate each period's demand quantile function.

    Parameters
    ----------
    levels : array_like, shape (Q,)
        Forecast probability levels.
    quantiles : array_like, shape (n, H, Q)
        Quantile forecasts, units per period.
    u : float or array_like, shape (M,)
        Probabilities in [0, 1).

    Returns
    -------
    ndarray, shape (n, H) for scalar ``u``, else (n, H, M)
        Demand quantiles in units per period, including the documented tails.
    """
    p, q = prepare_quantiles(levels, quantiles)
    xp = get_xp(q)
    u_arr = np.atleast_1d(np.asarray(u, dtype=np.float64))
    if np.any((u_arr < 0) | (u_arr >= 1)) or not np.all(np.isfinite(u_arr)):
        raise ValueError("u must lie in [0, 1)")
    w = asarray(basis_weights(p, u_arr).T, xp, dtype=q.dtype)
    out = knots(p, q) @ w
    return out[..., 0] if np.ndim(u) == 0 else out


def _moments_from_knots(levels, kn):
    # Exact moments of the piecewise-linear + exponential-tail distribution.
    # The variance is accumulated around the mean (not E[X^2] - mean^2) because
    # the raw form cancels catastrophically in float32 for low-variation items.
    xp = get_xp(kn)
    n_q = levels.shape[0]
    dt = kn.dtype.type
    pe = np.concatenate([[0.0], levels])
    w = asarray(np.diff(pe), xp, dtype=kn.dtype)
    tail_w = dt(1.0 - levels[-1])
    xs = kn[..., : n_q + 1]
    beta = kn[..., n_q + 1]
    mids = (xs[..., :-1] + xs[..., 1:]) * dt(0.5)
    tail_mean = xs[..., n_q] + beta
    mean = mids @ w + tail_w * tail_mean
    dev = mids - mean[..., None]
    width = xs[..., 1:] - xs[..., :-1]
    var = (dev * dev + width * width * dt(1.0 / 12.0)) @ w
    td = tail_mean - mean
    var = var + tail_w * (td * td + beta * beta)
    return mean, var


def daily_moments(levels, quantiles):
    """Mean and variance of demand in each period.

    Parameters
    ----------
    levels : array_like, shape (Q,)
    quantiles : array_like, shape (n, H, Q)
        Quantile forecasts, units per period.

    Returns
    -------
    mean : ndarray, shape (n, H)
        Expected demand, units per period.
    var : ndarray, shape (n, H)
        Variance of demand, units squared.
    """
    p, q = prepare_quantiles(levels, quantiles)
    return _moments_from_knots(p, knots(p, q))

"""Fused host kernels (Numba) for the per-period passes of the normal path.

On the host, NumPy runs each step of :func:`replenish.kernels._moments.period_summary`
(two small matrix products, a dot, a dozen elementwise operations) as a separate
pass over ``n * H`` rows, and BLAS is slow on products with 7-wide inner
dimensions.  Here one compiled loop reads each forecast once and writes each
period's mean, variance and median once: rows are taken in blocks of
``_BLOCK``, transposed into a scratch buffer (one contiguous lane per quantile
level), and the arithmetic then runs down those lanes, which the compiler turns
into SIMD code.  The interval sums and the order-timing scan are per-item loops.

The formulas are those of :mod:`._moments` with one change that only helps
float32: for a row whose lowest knot is not clipped, the variance
``d^T G d - (g_m . d)^2`` is a positive semi-definite quadratic form in the
forecast differences ``d``, so it is evaluated as ``||U d||^2`` with ``U`` the
Cholesky factor of ``G - g_m g_m^T`` (no cancellation between two large terms);
a clipped lowest knot adds ``e (2 (g_r - c_0 g_m) . d + (M_00 - c_0^2) e)``.

The NumPy implementations stay the reference (``tests/kernels/test_kernels_cpu.py``
checks these against them) and the fallback: without Numba, or with
``REPLENISH_NUMBA=0`` in the environment, they run instead.  Kernels are
compiled on first use (about 1-2 s) and cached on disk by Numba; one compiled
version per number of quantile levels and float dtype.
"""
from __future__ import annotations

import functools
import logging
import math
import os

import numpy as np

log = logging.getLogger(__name__)

_BLOCK = 512  # rows per transposed block: 8 lanes x 512 x 4 B fits in L1 with room to spare


@functools.lru_cache(maxsize=1)
def _numba():
    # imported on first use (about 0.3 s), not with the package; the NumPy path keeps
    # working where Numba is missing
    try:
        import numba  # noqa: PLC0415
    except ImportError:  # pragma: no cover - only on installs without numba
        log.warning("numba is not installed: the normal path runs on plain NumPy (about 2x slower)")
        return None
    return numba


class NonFiniteForecasts(ValueError):
    """A forecast passed to the fused period summary is NaN or infinite."""


def enabled() -> bool:
    """True when the fused host kernels run (Numba importable and not switched off)."""
    if os.environ.get("REPLENISH_NUMBA", "1").strip().lower() in ("0", "false", "no"):
        return False
    return _numba() is not None


@functools.lru_cache(maxsize=32)
def summary_constants(levels_key, dtype_str):
    """Coefficients of the fused period summary for one set of levels and dtype.

    Returns ``(U, g_mean, g_median, g_clip, scalars, j)``: ``U`` (m, m) upper
    triangular, the three (m,) dot vectors, ``scalars = [slope, cm0, med0,
    M_00 - cm0^2]`` and the index ``j`` of the central forecast.
    """
    from ._moments import _design  # noqa: PLC0415  -- avoids an import cycle

    _, second, k = _design(levels_key)
    m = len(levels_key) - 1
    g = second[:, :m]
    g_r, g_m, g_med = second[:, m], second[:, m + 1], second[:, m + 2]
    cov = g - np.outer(g_m, g_m)
    cov = (cov + cov.T) / 2
    # the quantile function is linear in d with independent basis functions, so cov is
    # positive definite; the tiny ridge only guards against rounding for near-equal levels
    ridge = 1e-13 * max(float(np.trace(cov)), 1e-300)
    upper = np.linalg.cholesky(cov + ridge * np.eye(m)).T
    dt = np.dtype(dtype_str)
    scal = np.array([k["slope"], k["cm0"], k["med0"], k["m00"] - k["cm0"] ** 2])
    arrays = [np.ascontiguousarray(a, dtype=dt) for a in (upper.ravel(), g_m, g_med, g_r - k["cm0"] * g_m, scal)]
    return (*arrays, int(k["j"]))


@functools.lru_cache(maxsize=16)
def _summary_kernel(m):
    """Compiled period-summary loop for ``m + 1`` quantile levels (``m`` is a compile-time constant)."""
    block = _BLOCK
    width = m + 1

    @_numba().njit(nogil=True, cache=True, fastmath={"contract"})
    def kernel(flat, upper, g_m, g_med, g_clip, scal, j, mean, var, med, scratch, low):  # pragma: no cover
        # flat: (rows * width,) forecasts; mean/var/med: (rows,) outputs; returns the rows whose
        # forecasts are negative or crossing (the caller then takes the general path) and the
        # rows with a non-finite mean or variance (a NaN or infinite forecast, or an overflow)
        rows = mean.shape[0]
        zero = flat.dtype.type(0)
        two = flat.dtype.type(2)
        slope, cm0, med0, k0 = scal[0], scal[1], scal[2], scal[3]
        bad = 0
        nonfinite = 0
        for start in range(0, rows, block):
            b = min(block, rows - start)
            base = start * width
            for r in range(b):
                for k in range(width):
                    scratch[k * block + r] = flat[base + r * width + k]
            mo = mean[start:start + b]
            vo = var[start:start + b]
            do = med[start:start + b]
            for r in range(b):
                lo = scratch[r]
                s_mean = zero
                s_med = zero
                s_clip = zero
                for k in range(m):
                    dd = scratch[(k + 1) * block + r] - scratch[k * block + r]
                    lo = dd if dd < lo else lo
                    s_mean += g_m[k] * dd
                    s_med += g_med[k] * dd
                    s_clip += g_clip[k] * dd
                acc = zero
                for a in range(m):
                    y = zero
                    for c in range(a, m):
                        y += upper[a * m + c] * (scratch[(c + 1) * block + r] - scratch[c * block + r])
                    acc += y * y
                low[r] = lo
                e = (scratch[block + r] - scratch[r]) * slope - scratch[r]
                e = e if e > zero else zero
                centre = scratch[j * block + r]
                mo[r] = centre + s_mean + cm0 * e
                do[r] = centre + s_med + med0 * e
                v = acc + e * (two * s_clip + k0 * e)
                vo[r] = v if v > zero else zero
            for r in range(b):  # a separate loop: a counter in the loop above stops vectorization
                if low[r] < zero:
                    bad += 1
                check = mo[r] + vo[r]  # NaN or inf in any forecast reaches the mean; overflow the variance
                if not check - check == zero:
                    nonfinite += 1
        return bad, nonfinite

    return kernel


def period_summary(levels, q):
    """Fused :func:`replenish.kernels._moments.period_summary` for NumPy input.

    Parameters
    ----------
    levels : numpy.ndarray, shape (Q,)
        Validated probability levels.
    q : numpy.ndarray, shape (c, H, Q), float32 or float64
        Quantile forecasts, units per period.

    Returns
    -------
    (mean, var, median) : numpy.ndarray, each shape (c, H), or None
        Units per period, units squared, units per period; ``None`` when some
        forecast is negative or crossed (those need clipping and sorting: the
        caller's general path).

    Raises
    ------
    NonFiniteForecasts
        When a forecast is NaN or infinite (every such value reaches its
        period's mean), so callers may skip a separate finiteness pass.
    """
    c, horizon, n_q = q.shape
    flat = np.ascontiguousarray(q).reshape(-1)
    consts = summary_constants(tuple(float(v) for v in levels), q.dtype.str)
    rows = c * horizon
    out = [np.empty(rows, dtype=q.dtype) for _ in range(3)]
    scratch = np.empty(n_q * _BLOCK, dtype=q.dtype)
    low = np.empty(_BLOCK, dtype=q.dtype)
    bad, nonfinite = _summary_kernel(n_q - 1)(flat, *consts, *out, scratch, low)
    if nonfinite:
        raise NonFiniteForecasts(
            f"quantiles has non-finite entries (NaN or infinite) in {nonfinite} item-period"
            f"{'' if nonfinite == 1 else 's'} out of {rows}; replenishment inputs must be finite")
    if bad:
        return None
    return tuple(a.reshape(c, horizon) for a in out)


def _intervals(mean_d, var_d, length_a, length_b, length_var, out):  # pragma: no cover - compiled
    # out rows: mean and std over length_a, mean and std over length_b, mean per period over the horizon
    n, horizon = mean_d.shape
    for i in range(n):
        la = length_a[i]
        lb = length_b[i]
        full_a = int(la)  # whole periods inside the interval; the next one counts by its fraction
        full_b = int(lb)
        mu_a = var_a = mu_b = var_b = 0.0
        cum_m = cum_v = 0.0
        for h in range(max(full_a, full_b)):
            if h == full_a:
                mu_a, var_a = cum_m, cum_v
            if h == full_b:
                mu_b, var_b = cum_m, cum_v
            idx = min(h, horizon - 1)  # past the horizon the last period repeats
            cum_m += mean_d[i, idx]
            cum_v += var_d[i, idx]
        if full_a >= full_b:
            mu_a, var_a = cum_m, cum_v
        if full_b >= full_a:
            mu_b, var_b = cum_m, cum_v
        f = la - full_a
        idx = min(full_a, horizon - 1)
        mu_a += f * mean_d[i, idx]
        var_a += f * f * var_d[i, idx]
        f = lb - full_b
        idx = min(full_b, horizon - 1)
        mu_b += f * mean_d[i, idx]
        var_b += f * f * var_d[i, idx]
        total = 0.0
        for h in range(horizon):
            total += mean_d[i, h]
        rate_a = mu_a / la if la > 0 else mean_d[i, 0]
        rate_b = mu_b / lb if lb > 0 else mean_d[i, 0]
        var_a += length_var[i] * rate_a * rate_a
        var_b += length_var[i] * rate_b * rate_b
        out[0, i] = mu_a
        out[1, i] = np.sqrt(var_a) if var_a > 0 else 0.0
        out[2, i] = mu_b
        out[3, i] = np.sqrt(var_b) if var_b > 0 else 0.0
        out[4, i] = total / horizon


_SQRT_HALF = 0.7071067811865476
_INV_SQRT_2PI = 0.3989422804014327


def _outcomes(mu, sd, s, big_s, rate, review, hold, short, k, out):  # pragma: no cover - compiled
    # rows of out: fill rate, cycle service level, on hand, backorders, holding, stockout and ordering cost
    # np.float64(x), not float(x): Numba keeps float32 for the latter
    for i in range(mu.shape[0]):
        m = np.float64(mu[i])
        sig = np.float64(sd[i])
        lo = np.float64(s[i])
        lot = max(np.float64(big_s[i]) - lo, np.float64(rate[i]) * np.float64(review[i]))
        if sig > 0:
            z = (lo - m) / sig
            pdf = _INV_SQRT_2PI * math.exp(-0.5 * z * z)
            tail = 0.5 * math.erfc(z * _SQRT_HALF)
            cdf = 0.5 * math.erfc(-z * _SQRT_HALF)
            g_s = sig * max(pdf - z * tail, 0.0)
            g2_s = sig * sig * max(0.5 * ((z * z + 1) * tail - z * pdf), 0.0)
            z = (lo + lot - m) / sig
            pdf = _INV_SQRT_2PI * math.exp(-0.5 * z * z)
            tail = 0.5 * math.erfc(z * _SQRT_HALF)
            g_sq = sig * max(pdf - z * tail, 0.0)
            g2_sq = sig * sig * max(0.5 * ((z * z + 1) * tail - z * pdf), 0.0)
        else:
            cdf = 1.0 if lo >= m else 0.0
            g_s = max(m - lo, 0.0)
            g_sq = max(m - lo - lot, 0.0)
            g2_s = 0.5 * g_s * g_s
            g2_sq = 0.5 * g_sq * g_sq
        if lot > 0:
            back = (g2_s - g2_sq) / lot
            fill = 1 - (g_s - g_sq) / lot
            orders = np.float64(rate[i]) / lot
        else:
            back = g_s
            fill = cdf
            orders = 1.0 if rate[i] > 0 else 0.0
        orders = min(orders, 1 / max(np.float64(review[i]), 1.0))
        on_hand = max(lo - m + lot / 2 + back, 0.0)
        back = max(back, 0.0)
        out[0, i] = min(max(fill, 0.0), 1.0)
        out[1, i] = min(max(cdf, 0.0), 1.0)
        out[2, i] = on_hand
        out[3, i] = back
        out[4, i] = hold[i] * on_hand
        out[5, i] = short[i] * back
        out[6, i] = k[i] * orders


def _until(position, reorder_point, demand, out):  # pragma: no cover - compiled
    n, horizon = demand.shape
    for i in range(n):
        level = position[i]
        out[i] = np.nan
        for t in range(horizon):
            if level <= reorder_point[i]:
                out[i] = t
                break
            level -= demand[i, t]


@functools.lru_cache(maxsize=1)
def _compiled():
    jit = _numba().njit(nogil=True, cache=True)
    return jit(_intervals), jit(_until), jit(_outcomes)


def interval_moments(daily_mean, daily_var, length, length_var=None, length_b=None):
    """Fused interval sums of :func:`replenish.kernels.lead_time.interval_demand_moments` (checked inputs).

    Parameters
    ----------
    daily_mean, daily_var : numpy.ndarray, shape (n, H)
        Per-period demand mean (units) and variance (units squared).
    length, length_b : array_like, shape (n,)
        Interval lengths in periods (``length_b`` optional: a second interval,
        such as review period plus lead time, summed in the same pass).
    length_var : array_like, shape (n,), optional
        Variance of the interval length, periods squared.

    Returns
    -------
    numpy.ndarray, shape (5, n)
        Mean and std over ``length``, mean and std over ``length_b`` (zeros
        without it), all units; and the mean demand per period over the
        horizon (units per period).  Sums run in float64 per item; the result
        has the input's dtype.
    """
    n = daily_mean.shape[0]
    dt = daily_mean.dtype

    def per_item(a):
        return np.ascontiguousarray(np.broadcast_to(0.0 if a is None else a, (n,)), dtype=np.float64)

    out = np.empty((5, n), dtype=dt)
    _compiled()[0](np.ascontiguousarray(daily_mean), np.ascontiguousarray(daily_var, dtype=dt), per_item(length),
                   per_item(length_b), per_item(length_var), out)
    return out


def periods_until_order(position, reorder_point, demand):
    """Fused :func:`replenish.kernels.orders.periods_until_order` (checked inputs).

    A per-item scan that stops at the first period whose starting position is
    at or below the reorder point (units in, float periods out, NaN beyond the
    horizon).
    """
    n = demand.shape[0]
    out = np.empty(n, dtype=demand.dtype)
    _compiled()[1](np.ascontiguousarray(np.broadcast_to(position, (n,))),
                   np.ascontiguousarray(np.broadcast_to(reorder_point, (n,))),
                   np.ascontiguousarray(demand), out)
    return out


def outcomes_normal(mu, sd, reorder_point, order_up_to, rate, review, holding_cost, stockout_cost, order_cost):
    """Fused :func:`replenish.kernels.outcomes.outcomes_normal` (checked (n,) arrays of one dtype).

    One per-item pass in float64 (loss functions through ``erfc``), results in
    the input's dtype: an array of shape (7, n), rows in the order of
    :data:`replenish.kernels.outcomes.OUTCOME_KEYS`; units and formulas as there.
    """
    n = mu.shape[0]
    out = np.empty((7, n), dtype=mu.dtype)
    args = [np.ascontiguousarray(np.broadcast_to(a, (n,))) for a in (
        mu, sd, reorder_point, order_up_to, rate, review, holding_cost, stockout_cost, order_cost)]
    _compiled()[2](*args, out)
    return out

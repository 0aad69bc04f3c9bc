"""Per-period mean, variance and median straight from quantile forecasts, by two small matrix products.

For non-negative, non-crossing forecasts every knot of a period's quantile
function (see :mod:`replenish.kernels.lead_time`) minus a central forecast
``c = q_j`` is a linear function of the consecutive forecast differences
``d = (q_2 - q_1, ..., q_Q - q_{Q-1})``, except the value at probability 0,
which is clipped at zero demand: ``x_0 = x_0_lin + e`` with
``e = max(0, -x_0_lin)``.  Hence, with fixed matrices built from the levels,

* ``mean - c = d @ g_m + e * cm_0`` and ``median - c = d @ g_med + e * med_0``;
* ``E[(X - c)^2] = d^T G d + 2 e (d @ g_r) + e^2 M_00``;
* ``variance = E[(X - c)^2] - (mean - c)^2``.

Working on differences keeps float32 exact where it matters (constant demand
gives zero variance, low-variation items keep their digits), and the
differences double as the check that forecasts are non-negative and do not
cross.  Two ``(n*H, Q)``-row products and a row-wise dot replace about a dozen
elementwise passes over the knots; chunks failing the check take the general
path (clip, sort, knots).  NumPy input runs the same formulas as one fused,
compiled loop (:mod:`._cpu`); this array code serves CuPy and is the reference.
"""
from __future__ import annotations

import functools

import numpy as np

from . import _cpu
from ._backend import asarray, get_xp
from .period_demand import _moments_from_knots, basis_weights, knots

__all__ = ["period_summary"]


@functools.lru_cache(maxsize=32)
def _design(levels_key):
    p = np.asarray(levels_key, dtype=np.float64)
    n_q = p.shape[0]
    n_k = n_q + 2
    pe = np.concatenate([[0.0], p])
    w = np.diff(pe)
    tail = 1.0 - p[-1]
    j = int(np.argmin(np.abs(p - 0.5)))  # centre on the forecast nearest the median
    # first product: [q_1, d_1 .. d_{Q-1}] = q @ first
    first = np.zeros((n_q, n_q))
    first[0, 0] = 1.0
    for k in range(1, n_q):
        first[k, k] = 1.0
        first[k - 1, k] = -1.0
    # centred knots from the differences: y = d @ cen  (x0 before clipping)
    cen = np.zeros((n_q - 1, n_k))
    for k in range(n_q):  # y_{k+1} = q_{k+1} - q_j = +-sum of the differences in between
        lo, hi = sorted((k, j))
        cen[lo:hi, k + 1] = 1.0 if k > j else -1.0
    slope = p[0] / (p[1] - p[0])
    cen[:, 0] = cen[:, 1]
    cen[0, 0] -= slope
    cen[n_q - 2, n_k - 1] = tail / (p[-1] - p[-2])
    # second moment about c of the piecewise-linear + exponential-tail law: y^T M y
    m2 = np.zeros((n_k, n_k))
    for k in range(n_q):
        m2[k, k] += w[k] / 3
        m2[k + 1, k + 1] += w[k] / 3
        m2[k, k + 1] += w[k] / 6
        m2[k + 1, k] += w[k] / 6
    m2[n_q, n_q] += tail
    m2[n_q, n_k - 1] += tail
    m2[n_k - 1, n_q] += tail
    m2[n_k - 1, n_k - 1] += 2 * tail
    cm = np.zeros(n_k)  # mean = knots @ cm
    cm[:n_q] += w / 2
    cm[1:n_q + 1] += w / 2
    cm[n_q] += tail
    cm[n_k - 1] = tail
    med = basis_weights(p, np.array([0.5]))[0]
    u0 = np.zeros(n_k)
    u0[0] = 1.0
    second = np.concatenate([cen @ m2 @ cen.T, (cen @ m2 @ u0)[:, None], (cen @ cm)[:, None],
                             (cen @ med)[:, None]], axis=1)
    consts = dict(m00=m2[0, 0], cm0=cm[0], med0=med[0], j=j, slope=slope)
    return first, second, consts


def period_summary(levels, q):
    """Mean, variance and median of demand in each period of a chunk.

    Parameters
    ----------
    levels : numpy.ndarray, shape (Q,)
        Validated probability levels.
    q : ndarray, shape (c, H, Q)
        Quantile forecasts, units per period (a view is fine: not modified).

    Returns
    -------
    mean, var, median : ndarray, shape (c, H)
        Units per period, units squared, units per period.
    """
    xp = get_xp(q)
    c, horizon, n_q = q.shape
    if xp is np and _cpu.enabled() and q.size:
        fused = _cpu.period_summary(levels, q)
        return fused if fused is not None else _general(levels, q)
    first, second, k = _design(tuple(float(v) for v in levels))
    dt = q.dtype.type
    rows = q.reshape(c * horizon, n_q)
    # Transposed products, (Q, n*H): each derived quantity is then a contiguous row, so the
    # elementwise steps below stream memory instead of striding through narrow columns.
    d = asarray(first.T, xp, dtype=q.dtype) @ rows.T
    if d.shape[1] and float(d.min()) < 0:  # negative or crossing forecasts: clip and sort first
        return _general(levels, q)
    diffs = d[1:]
    z = asarray(second.T, xp, dtype=q.dtype) @ diffs
    m = n_q - 1
    quad = xp.einsum("kn,kn->n", z[:m], diffs)
    e = xp.maximum(diffs[0] * dt(k["slope"]) - d[0], 0)
    centre = rows[:, k["j"]]
    shift = z[m + 1] + dt(k["cm0"]) * e
    var = xp.maximum(quad + e * (2 * z[m] + dt(k["m00"]) * e) - shift * shift, 0)
    mean = centre + shift
    med = centre + z[m + 2] + dt(k["med0"]) * e
    return mean.reshape(c, horizon), var.reshape(c, horizon), med.reshape(c, horizon)


def _general(levels, q):
    # negative or crossing forecasts: clip and sort into knots first
    xp = get_xp(q)
    kn = knots(levels, q)
    mean, var = _moments_from_knots(levels, kn)
    med = kn @ asarray(basis_weights(levels, np.array([0.5]))[0], xp, dtype=q.dtype)
    return mean, var, med

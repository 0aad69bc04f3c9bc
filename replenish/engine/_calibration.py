"""Quantile recalibration on held-out periods.

A quantile forecaster trained by pinball loss is often over-confident out of sample (its
central 90% interval covers fewer than 90% of new actuals), and safety stock set from such
tails misses its service level. Recalibration (Kuleshov, Fenner and Ermon, "Accurate
uncertainties for deep learning using calibrated regression", ICML 2018) measures where the
held-out actuals fall in their forecast distributions (the probability integral transform,
PIT, randomised over point masses such as zero demand) and maps each nominal level ``tau`` to
the level ``tau'`` at which the forecasts are right ``tau`` of the time: the empirical
``tau``-quantile of the PITs. Forecasts are then read at ``tau'`` instead of ``tau``.

The forecast distribution of a period is the piecewise-linear quantile function through the
model's levels, extended beyond the outermost levels linearly in normal scores (the slope of
the two outermost knots), and clipped at zero demand. All quantities are units per period.
"""
from __future__ import annotations

import numpy as np
from scipy.special import ndtri

__all__ = ["quantiles_at", "pit", "fit_levels", "GRID"]

#: Probability grid on which forecast distributions are evaluated for the PIT.
GRID = (np.arange(2000) + 0.5) / 2000

#: Recalibrated levels stay inside (LEVEL_MIN, 1 - LEVEL_MIN).
LEVEL_MIN = 1e-4


def quantiles_at(levels: np.ndarray, q, new_levels: np.ndarray):
    """Read forecasts at other probability levels.

    Parameters
    ----------
    levels : ndarray, shape (L,)
        Increasing levels of ``q``'s last axis, in (0, 1); L >= 2.
    q : ndarray or torch.Tensor, shape (..., L)
        Non-decreasing quantiles, units per period (a torch tensor stays on its device).
    new_levels : ndarray, shape (K,)
        Levels in (0, 1) to read.

    Returns
    -------
    ndarray or torch.Tensor (as ``q``), shape (..., K)
        Quantiles at ``new_levels`` (units per period, >= 0, non-decreasing when
        ``new_levels`` is): linear between knots, linear in normal scores beyond them.
    """
    levels = np.asarray(levels, dtype=np.float64)
    new_levels = np.asarray(new_levels, dtype=np.float64)
    z, zn = ndtri(levels), ndtri(new_levels)
    cols = []
    for k, t in enumerate(new_levels):
        # q[a] + c * (q[b] - q[a]): exactly q[a] where the two knots are equal
        if t < levels[0]:
            a, b, c = 0, 1, (zn[k] - z[0]) / (z[1] - z[0])
        elif t > levels[-1]:
            a, b, c = -1, -2, -(zn[k] - z[-1]) / (z[-1] - z[-2])
        else:
            j = min(int(np.searchsorted(levels, t, side="right")) - 1, len(levels) - 2)
            a, b, c = j, j + 1, (t - levels[j]) / (levels[j + 1] - levels[j])
        cols.append(q[..., a] + float(c) * (q[..., b] - q[..., a]))
    if isinstance(q, np.ndarray):
        return np.maximum(np.stack(cols, -1), 0).astype(q.dtype, copy=False)
    import torch  # noqa: PLC0415  -- only for tensor input
    return torch.stack(cols, -1).clamp_(min=0)


def pit(levels: np.ndarray, q: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Randomised PIT of actuals ``y`` (shape (N,)) under forecasts ``q`` (shape (N, L)).

    ``u = F(y-) + V (F(y) - F(y-))`` with ``V`` uniform: uniform on (0, 1) when the
    forecasts are calibrated, also for actuals on a point mass (zero demand). F is
    evaluated on :data:`GRID` (resolution 0.0005).
    """
    qg = quantiles_at(levels, q, GRID)                    # (N, G), non-decreasing
    y = y[:, None].astype(qg.dtype)
    below = (qg < y).sum(axis=1) / len(GRID)
    at_most = (qg <= y).sum(axis=1) / len(GRID)
    return below + rng.random(len(below)) * (at_most - below)


def fit_levels(levels: np.ndarray, q: np.ndarray, y: np.ndarray, seed: int = 0,
               max_points: int = 50_000) -> np.ndarray:
    """Recalibrated levels: where to read the forecasts so that each level holds.

    Parameters
    ----------
    levels : ndarray, shape (L,)
        The model's levels.
    q : ndarray, shape (N, L)
        Held-out forecasts (any number of series and periods, flattened), units per period.
    y : ndarray, shape (N,)
        Their actual demand, units per period.
    seed : int
        Seed of the PIT randomisation and of the subsample (``max_points``).

    Returns
    -------
    ndarray, shape (L,)
        ``tau'`` for each level ``tau``: the empirical ``tau``-quantile of the PITs, kept
        increasing and inside (1e-4, 1 - 1e-4).
    """
    rng = np.random.default_rng(seed)
    keep = np.isfinite(y) & np.isfinite(q).all(axis=1)
    q, y = q[keep], y[keep]
    if len(y) > max_points:
        pick = rng.choice(len(y), max_points, replace=False)
        q, y = q[pick], y[pick]
    u = pit(levels, q, y, rng)
    new = np.quantile(u, np.asarray(levels, dtype=np.float64))
    new = np.clip(new, LEVEL_MIN, 1 - LEVEL_MIN)
    return np.maximum.accumulate(new)

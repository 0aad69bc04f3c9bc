"""Demand over the lead time or the protection interval (review period plus lead time).

Demand over an interval of length ``T`` periods (lead time ``L``, or review
period plus lead time ``R + L``) is the sum over periods of independent period
demands (see :mod:`replenish.kernels.period_demand` for each period's
distribution); a fractional last period contributes that fraction of its
demand, and periods beyond the forecast horizon repeat the last one.  Quantiles
are never added across periods: for independent periods that would overstate
the spread (``L * z * sigma`` instead of ``sqrt(L) * z * sigma``).

Two routes: moments (for the normal approximation) and Monte-Carlo samples
(see :mod:`replenish.kernels._sampling`).
"""
from __future__ import annotations

import math

import numpy as np

from . import _cpu
from ._backend import get_xp
from ._sampling import SamplingProblem
from ._validate import check_finite, item_array, lead_time_pmf_array
from .period_demand import daily_moments
from .undershoot import trigger_demand

__all__ = [
    "interval_demand_moments",
    "lead_time_demand_moments",
    "lead_time_moments",
    "mixture_demand_moments",
    "sample_lead_time_demand",
]


def interval_weights(length, n_days, xp, dtype):
    """Share of each period's demand inside an interval starting now.

    ``w[i, h] = clip(length[i] - h, 0, 1)``: whole periods count fully, a
    fractional last period counts by its fraction.  Shape (n, n_days).
    """
    h = xp.arange(n_days, dtype=dtype)
    return xp.clip(length[:, None] - h[None, :], 0, 1)


def _extend_days(a, n_days):
    # Periods past the horizon repeat the last forecast period.
    xp = get_xp(a)
    horizon = a.shape[1]
    if n_days <= horizon:
        return a[:, :n_days]
    idx = xp.minimum(xp.arange(n_days), horizon - 1)
    return a[:, idx]


def lead_time_moments(lead_time, lead_time_std=None, lead_time_pmf=None, *, n, xp, dtype):
    """Mean and variance of the (random) lead time in periods, each shape (n,).

    ``lead_time_pmf`` (probabilities over 0..Lmax periods, shape (Lmax+1,) or
    (n, Lmax+1)) takes precedence; otherwise ``lead_time`` is the mean and
    ``lead_time_std`` (default 0) the standard deviation.
    """
    if lead_time_pmf is not None:
        pmf = lead_time_pmf_array(lead_time_pmf, n, xp, dtype)
        lags = xp.arange(pmf.shape[1], dtype=dtype)
        mean = pmf @ lags
        var = xp.maximum(pmf @ (lags * lags) - mean * mean, 0)
        return xp.broadcast_to(mean, (n,)), xp.broadcast_to(var, (n,))
    mean = item_array("lead_time", lead_time, n, xp, dtype, low=0.0)
    if lead_time_std is None:
        return mean, xp.zeros((n,), dtype=dtype)
    sd = item_array("lead_time_std", lead_time_std, n, xp, dtype, low=0.0)
    return mean, sd * sd


def interval_demand_moments(daily_mean, daily_var, length, length_var=None):
    """Mean and standard deviation of demand summed over an interval.

    Parameters
    ----------
    daily_mean, daily_var : ndarray, shape (n, H)
        Per-period demand mean (units) and variance (units squared).
    length : ndarray, shape (n,)
        Expected interval length in periods (``E[L]`` or ``R + E[L]``).
    length_var : ndarray, shape (n,), optional
        Variance of the interval length (periods squared), from lead-time
        uncertainty.

    Returns
    -------
    mean, std : ndarray, shape (n,)
        Units of stock over the interval.

    Notes
    -----
    Periods are independent, so variances add (a fractional period with share
    ``f`` adds ``f**2`` of its variance).  Lead-time uncertainty adds
    ``Var(L) * d**2`` where ``d`` is the average per-period demand over the
    interval: the classic ``E[L] Var(D) + Var(L) E[D]^2`` (Silver, Pyke and
    Peterson, 1998, sec. 7.11) with the first term generalised to
    non-stationary forecasts.
    """
    xp = get_xp(daily_mean)
    for name, a in (("daily_mean", daily_mean), ("daily_var", daily_var), ("length", length)):
        check_finite(name, a, xp)
    return _interval_moments(daily_mean, daily_var, length, length_var)


def _interval_moments(daily_mean, daily_var, length, length_var=None):
    # unchecked core of interval_demand_moments (the plan's own arrays are finite by construction)
    xp = get_xp(daily_mean)
    dtype = daily_mean.dtype
    if xp is np and _cpu.enabled() and length.size and daily_mean.shape[1]:
        out = _cpu.interval_moments(daily_mean, daily_var, length, length_var)
        return out[0], out[1]
    n_days = max(int(math.ceil(float(xp.max(length)))) if length.size else 0, 1)
    w = interval_weights(length, n_days, xp, dtype)
    mean = xp.einsum("ij,ij->i", w, _extend_days(daily_mean, n_days))
    var = xp.einsum("ij,ij->i", w * w, _extend_days(daily_var, n_days))
    if length_var is not None:
        rate = xp.where(length > 0, mean / xp.maximum(length, dtype.type(1e-30)), daily_mean[:, 0])
        var = var + length_var * rate * rate
    return mean, xp.sqrt(xp.maximum(var, 0))


def mixture_demand_moments(daily_mean, daily_var, lead_time_pmf, offset):
    """Exact mean and standard deviation of demand over ``offset + L``, discrete L.

    Parameters
    ----------
    daily_mean, daily_var : ndarray, shape (n, H)
        Per-period demand mean (units) and variance (units squared).
    lead_time_pmf : ndarray, shape (1, Lmax+1) or (n, Lmax+1)
        Validated lead-time probabilities over 0..Lmax periods.
    offset : ndarray, shape (n,)
        Periods added to every lead time (the review period, or 0).

    Returns
    -------
    mean, std : ndarray, shape (n,)
        Units; the moments of the mixture over lead times
        (``E[D] = sum_l p_l M_l``, ``Var = sum_l p_l (V_l + M_l^2) - E[D]^2``),
        exact also for non-stationary forecasts.
    """
    xp = get_xp(daily_mean)
    for name, a in (("daily_mean", daily_mean), ("daily_var", daily_var), ("offset", offset)):
        check_finite(name, a, xp)
    n_lags = lead_time_pmf.shape[1]
    first = second = 0
    for lag in range(n_lags):
        m, s = _interval_moments(daily_mean, daily_var, offset + lag)
        w = lead_time_pmf[:, lag]
        first = first + w * m
        second = second + w * (s * s + m * m)
    return first, xp.sqrt(xp.maximum(second - first * first, 0))


def lead_time_demand_moments(levels, quantiles, lead_time, *, lead_time_std=None,
                             lead_time_pmf=None, review_period=0.0):
    """Normal-approximation moments of demand over review period plus lead time.

    Parameters
    ----------
    levels : array_like, shape (Q,)
    quantiles : array_like, shape (n, H, Q)
        Quantile forecasts, units per period.
    lead_time : float or array_like, shape (n,)
        Mean lead time, periods (ignored when ``lead_time_pmf`` is given).
    lead_time_std : float or array_like, shape (n,), optional
        Lead-time standard deviation, periods.
    lead_time_pmf : array_like, shape (Lmax+1,) or (n, Lmax+1), optional
        Lead-time probabilities over 0..Lmax periods.
    review_period : float or array_like, shape (n,)
        Review period R, periods (0: the lead time alone).

    Returns
    -------
    mean, std : ndarray, shape (n,)
        Demand over ``R + L``, units of stock.  Exact for a deterministic or
        discrete lead time; with ``lead_time_std`` the lead-time term is the
        first-order approximation of :func:`interval_demand_moments`.
    """
    mean_d, var_d = daily_moments(levels, quantiles)
    xp = get_xp(mean_d)
    n = mean_d.shape[0]
    review = item_array("review_period", review_period, n, xp, mean_d.dtype, low=0.0)
    if lead_time_pmf is not None:
        pmf = lead_time_pmf_array(lead_time_pmf, n, xp, mean_d.dtype)
        return mixture_demand_moments(mean_d, var_d, pmf, review)
    lt_mean, lt_var = lead_time_moments(lead_time, lead_time_std, None, n=n, xp=xp, dtype=mean_d.dtype)
    return interval_demand_moments(mean_d, var_d, review + lt_mean, lt_var)


def sample_lead_time_demand(levels, quantiles, lead_time, *, lead_time_std=None, lead_time_pmf=None,
                            review_period=0.0, n_samples=1000, seed=0, chunk_size=None, order_gap=None,
                            moq=None, case_pack=None, max_order=None):
    """Monte-Carlo samples of demand over review period plus lead time (or, given an order
    rule, of the demand a cycle-service reorder point protects under it).

    Parameters
    ----------
    levels : array_like, shape (Q,)
    quantiles : array_like, shape (n, H, Q)
        Quantile forecasts, units per period.
    lead_time : float or array_like, shape (n,)
        (Mean) lead time, periods.
    lead_time_std : float or array_like, shape (n,), optional
        Lead-time standard deviation, periods; the lead time is then lognormal
        with this mean and standard deviation.
    lead_time_pmf : array_like, shape (Lmax+1,) or (n, Lmax+1), optional
        Lead-time probabilities over 0..Lmax periods (overrides the above).
    review_period : float or array_like, shape (n,)
        Review period, periods.
    n_samples : int
        Samples per item.
    seed : int
        Seed; equal inputs and seed give equal samples.
    chunk_size : int, optional
        Items sampled together (they share random numbers, see Notes).
    order_gap, moq, case_pack, max_order : float or array_like, shape (n,), optional
        The order rule (units; ``order_gap`` is ``S - s``): when any is given, the samples
        are of the demand a cycle-service reorder point protects under that rule, the
        lead time's demand plus the undershoot below ``s`` at the review that orders
        (:func:`replenish.kernels.undershoot.trigger_demand`, as
        :func:`replenish.kernels.plan_orders` plans with ``method="sample"``). Pass the
        plan's ``review_period`` too: its default here is 0 (continuous review), that of
        ``plan_orders`` is 1.

    Returns
    -------
    ndarray, shape (n, n_samples)
        Demand over ``R + L`` (or, with an order rule, the demand just described) in units
        of stock.

    Notes
    -----
    Materialises all samples; :func:`replenish.kernels.plan.plan_orders` uses the
    chunked generator instead.  See :mod:`replenish.kernels._sampling` for the
    sampling scheme.
    """
    prob = SamplingProblem.build(levels, quantiles, lead_time, lead_time_std=lead_time_std,
                                 lead_time_pmf=lead_time_pmf, review_period=review_period,
                                 n_samples=n_samples, seed=seed, chunk_size=chunk_size)
    xp = prob.xp
    out = xp.empty((prob.n, n_samples), dtype=prob.dtype)
    rule = None
    if any(a is not None for a in (order_gap, moq, case_pack, max_order)):
        rule = [item_array(name, 0.0 if a is None else a, prob.n, xp, prob.dtype, low=0.0)
                for name, a in (("order_gap", order_gap), ("moq", moq), ("case_pack", case_pack))]
        rule.append(xp.full((prob.n,), xp.inf, dtype=prob.dtype) if max_order is None
                    else item_array("max_order", max_order, prob.n, xp, prob.dtype, low=0.0))
    for idx, d_l, d_pi, _ in prob.chunks():
        if rule is not None:
            gap, m, p, cap = (a[idx] for a in rule)
            d_pi = trigger_demand(xp, d_l, d_pi, gap=gap, moq=m, case_pack=p, max_order=cap, seed=seed)
        out[idx] = d_pi
    return out

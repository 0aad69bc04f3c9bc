"""Expected outcomes of a chosen (s, S) policy: costs per period, fill rate, cycle service level.

Model: (s, Q) with backorders evaluated on the demand over the interval ``s``
protects (the "lead-time demand" arguments: :func:`replenish.kernels.plan_orders`
passes the demand over the review period plus the lead time, which covers the
position falling below ``s`` between reviews),
``Q = max(S - s, mean demand per review period)`` (with periodic review an
order goes out at most once per review, and each carries at least about a
review period's demand).
With ``G`` the loss function ``E[(D - x)^+]`` and ``G2`` the second-order loss
``E[((D - x)^+)^2] / 2`` of lead-time demand ``D`` (Zipkin, *Foundations of
Inventory Management*, 2000, ch. 6; Hadley and Whitin, 1963):

* expected backorders ``B = (G2(s) - G2(s + Q)) / Q`` (``G(s)`` when ``Q = 0``);
* expected on hand ``I = s + Q / 2 - E[D] + B``;
* fill rate ``1 - (G(s) - G(s + Q)) / Q`` (``P(D <= s)`` when ``Q = 0``);
* cycle service level ``P(D <= s)``;
* orders per period ``min(d / Q, 1 / max(R, 1))``.

Costs are per period: ``h I``, ``p B`` and ``K * orders``, with ``h`` and ``p``
per unit per period and ``K`` per order.  Multiply by periods per year for
annual figures.  For normal demand these are exact and sum to stockpyl's
``rq.r_q_cost``.
"""
from __future__ import annotations

import numpy as np

from . import _cpu, _normal
from ._backend import asarray, get_xp, special
from ._validate import check_finite

__all__ = ["normal_loss", "normal_second_order_loss", "outcomes_normal", "outcomes_samples"]


def _floats(*arrays):
    xp = get_xp(*arrays)
    ref = next((a for a in arrays if getattr(a, "dtype", None) is not None and a.dtype.kind == "f"), None)
    dtype = ref.dtype if ref is not None else xp.float64
    return xp, [asarray(a, xp, dtype=dtype) for a in arrays]


def normal_loss(x, mean, std):
    """Expected shortage ``E[(D - x)^+]`` for normal ``D``.

    Parameters
    ----------
    x, mean, std : ndarray, shape (n,)
        Stock level, demand mean and standard deviation, units.

    Returns
    -------
    ndarray, shape (n,)
        Units short.  ``std = 0`` gives ``(mean - x)^+``.
    """
    xp, (x, mu, sd) = _floats(x, mean, std)
    pos = sd > 0
    z = (x - mu) / xp.where(pos, sd, 1)
    return xp.where(pos, sd * _normal.loss(z), xp.maximum(mu - x, 0))


def normal_second_order_loss(x, mean, std):
    """Second-order loss ``E[((D - x)^+)^2] / 2`` for normal ``D``, units squared."""
    xp, (x, mu, sd) = _floats(x, mean, std)
    pos = sd > 0
    z = (x - mu) / xp.where(pos, sd, 1)
    short = xp.maximum(mu - x, 0)
    return xp.where(pos, sd * sd * _normal.second_loss(z), 0.5 * short * short)


#: The expected outcomes of a policy, in this order (the fused host kernel fills them by row).
OUTCOME_KEYS = ("expected_fill_rate", "expected_cycle_service_level", "expected_on_hand", "expected_backorders",
                "expected_holding_cost", "expected_stockout_cost", "expected_ordering_cost")


def _assemble(xp, dtype, *, mean, s, lot, cdf_s, g_s, g_sq, g2_s, g2_sq, demand_rate, review,
              holding_cost, stockout_cost, order_cost):
    has_lot = lot > 0
    safe = xp.where(has_lot, lot, 1)
    backorders = xp.where(has_lot, (g2_s - g2_sq) / safe, g_s)
    fill = xp.where(has_lot, 1 - (g_s - g_sq) / safe, cdf_s)
    on_hand = xp.maximum(s - mean + lot / 2 + backorders, 0)
    per_review = 1 / xp.maximum(review, 1)
    orders = xp.where(has_lot, demand_rate / safe, xp.where(demand_rate > 0, 1.0, 0.0))
    orders = xp.minimum(orders, per_review)
    values = (xp.clip(fill, 0, 1), xp.clip(cdf_s, 0, 1), on_hand, xp.maximum(backorders, 0),
              holding_cost * on_hand, stockout_cost * xp.maximum(backorders, 0), order_cost * orders)
    return {k: v.astype(dtype, copy=False) for k, v in zip(OUTCOME_KEYS, values)}


def _lot(xp, reorder_point, order_up_to, demand_rate, review):
    return xp.maximum(order_up_to - reorder_point, demand_rate * review)


def outcomes_normal(lead_time_demand_mean, lead_time_demand_std, reorder_point, order_up_to, *,
                    demand_rate, review_period, holding_cost, stockout_cost, order_cost):
    """Expected outcomes of an (s, S) policy under normal lead-time demand.

    Parameters
    ----------
    lead_time_demand_mean, lead_time_demand_std : ndarray, shape (n,)
        Demand over the lead time, units.
    reorder_point, order_up_to : ndarray, shape (n,)
        ``s`` and ``S``, units.
    demand_rate : ndarray, shape (n,)
        Mean demand per period, units.
    review_period : ndarray, shape (n,)
        Periods between reviews (0: continuous review).
    holding_cost, stockout_cost : ndarray, shape (n,)
        Currency per unit per period (on hand / backordered).
    order_cost : ndarray, shape (n,)
        Currency per order.

    Returns
    -------
    dict of ndarray, shape (n,)
        ``expected_fill_rate``, ``expected_cycle_service_level`` (fractions),
        ``expected_on_hand``, ``expected_backorders`` (units) and
        ``expected_holding_cost``, ``expected_stockout_cost``,
        ``expected_ordering_cost`` (currency per period).  See the module notes.
    """
    xp, (s, mu, sd, big_s, rate, rev, h, p, k) = _floats(
        reorder_point, lead_time_demand_mean, lead_time_demand_std, order_up_to, demand_rate, review_period,
        holding_cost, stockout_cost, order_cost)
    for name, a in (("reorder_point", s), ("lead_time_demand_mean", mu), ("lead_time_demand_std", sd),
                    ("order_up_to", big_s)):
        check_finite(name, a, xp)
    dtype = s.dtype
    if xp is np and _cpu.enabled():
        return dict(zip(OUTCOME_KEYS, _cpu.outcomes_normal(mu, sd, s, big_s, rate, rev, h, p, k)))
    lot = _lot(xp, s, big_s, rate, rev)
    pos = sd > 0
    z = (s - mu) / xp.where(pos, sd, 1)
    cdf = xp.where(pos, special(xp).ndtr(z), xp.where(s >= mu, 1.0, 0.0))
    return _assemble(xp, dtype, mean=mu, s=s, lot=lot, cdf_s=cdf,
                     g_s=normal_loss(s, mu, sd), g_sq=normal_loss(s + lot, mu, sd),
                     g2_s=normal_second_order_loss(s, mu, sd), g2_sq=normal_second_order_loss(s + lot, mu, sd),
                     demand_rate=rate, review=rev, holding_cost=h, stockout_cost=p, order_cost=k)


def outcomes_samples(lead_time_demand, reorder_point, order_up_to, *, demand_rate, review_period,
                     holding_cost, stockout_cost, order_cost):
    """Expected outcomes of an (s, S) policy from lead-time demand samples.

    Parameters
    ----------
    lead_time_demand : ndarray, shape (n, S)
        Samples of demand over the lead time, units.
    reorder_point, order_up_to, demand_rate, review_period, holding_cost, stockout_cost, order_cost
        As in :func:`outcomes_normal`, each shape (n,).

    Returns
    -------
    dict of ndarray, shape (n,)
        As :func:`outcomes_normal`, with empirical loss functions (the mean
        over samples of ``(D - x)^+`` and ``((D - x)^+)^2 / 2``).
    """
    check_finite("lead_time_demand", lead_time_demand, get_xp(lead_time_demand))
    return _outcomes_samples(lead_time_demand, reorder_point, order_up_to, demand_rate=demand_rate,
                             review_period=review_period, holding_cost=holding_cost, stockout_cost=stockout_cost,
                             order_cost=order_cost)


def _outcomes_samples(lead_time_demand, reorder_point, order_up_to, *, demand_rate, review_period,
                      holding_cost, stockout_cost, order_cost):
    # unchecked core of outcomes_samples
    xp = get_xp(lead_time_demand, reorder_point)
    d = lead_time_demand
    dtype = d.dtype
    s, big_s, rate, rev, h, p, k = (asarray(a, xp, dtype=dtype) for a in (
        reorder_point, order_up_to, demand_rate, review_period, holding_cost, stockout_cost, order_cost))
    lot = _lot(xp, s, big_s, rate, rev)
    n_s = d.shape[1]
    half = dtype.type(0.5 / n_s)

    def losses(dd, x):
        # one temporary, reduced twice: these passes dominate the sampling path
        short = dd - x[:, None]
        xp.maximum(short, 0, out=short)
        return short, short.sum(axis=1) / n_s, xp.einsum("ij,ij->i", short, short) * half

    short, g_s, g2_s = losses(d, s)
    cdf = 1 - xp.count_nonzero(short, axis=1).astype(dtype) / n_s
    del short
    # (D - s - Q)^+ vanishes for every sample on most rows; only compute where it does not
    g_sq = xp.zeros_like(g_s)
    g2_sq = xp.zeros_like(g_s)
    rows = xp.nonzero(s + lot < d.max(axis=1))[0]
    if rows.size:
        _, g_sq[rows], g2_sq[rows] = losses(d[rows], (s + lot)[rows])
    mean = d.sum(axis=1) / n_s
    return _assemble(xp, dtype, mean=mean, s=s, lot=lot, cdf_s=cdf, g_s=g_s, g_sq=g_sq,
                     g2_s=g2_s, g2_sq=g2_sq, demand_rate=rate, review=rev, holding_cost=h,
                     stockout_cost=p, order_cost=k)

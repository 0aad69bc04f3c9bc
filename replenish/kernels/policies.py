"""Inventory policies: safety stock, reorder point, order-up-to, (s, S), EOQ, newsvendor.

Conventions: demand in units of stock, time in periods (days or weeks, the
forecast's period), costs in currency.  Holding and stockout (backorder) costs
are per unit per period, as in Snyder and Shen, *Fundamentals of Supply Chain
Theory* (the conventions of stockpyl).  Service levels are clipped to
``[1e-6, 1 - 1e-6]``.
"""
from __future__ import annotations

from . import _normal
from ._backend import asarray, get_xp, is_cupy, special
from ._validate import SERVICE_LEVEL_MAX, SERVICE_LEVEL_MIN, check_finite

__all__ = [
    "service_level_z",
    "safety_stock",
    "reorder_point",
    "order_up_to_level",
    "normal_policy",
    "fill_rate_level",
    "critical_fractile",
    "newsvendor_quantity",
    "economic_order_quantity",
    "ss_power_approximation",
    "rq_policy",
    "empirical_quantile",
    "empirical_fill_rate_level",
]


_COST_NAMES = ("demand_mean", "demand_std", "lead_time", "order_cost", "holding_cost", "stockout_cost")


def _arrays(*args, names=None):
    """Common backend and float dtype for the inputs; with ``names``, reject non-finite values."""
    xp = get_xp(*args)
    ref = next((a for a in args if hasattr(a, "dtype") and a.dtype.kind == "f"), None)
    dtype = ref.dtype if ref is not None else (xp.float32 if is_cupy(xp) else xp.float64)
    arrays = [asarray(a, xp, dtype=dtype) for a in args]
    for name, a in zip(names or (), arrays):
        check_finite(name, a, xp)
    return xp, arrays


def service_level_z(service_level):
    """Standard-normal quantile of a service level.

    Parameters
    ----------
    service_level : float or ndarray, shape (n,)
        Probability; clipped to ``[1e-6, 1 - 1e-6]``.

    Returns
    -------
    ndarray, shape (n,)
        ``z`` such that ``Phi(z) = service_level`` (dimensionless).
    """
    xp, (a,) = _arrays(service_level, names=("service_level",))
    return special(xp).ndtri(xp.clip(a, SERVICE_LEVEL_MIN, SERVICE_LEVEL_MAX))


def safety_stock(demand_std, service_level):
    """Safety stock ``z * sigma`` under normally distributed protection-interval demand.

    Parameters
    ----------
    demand_std : float or ndarray, shape (n,)
        Standard deviation of demand over the protection interval, units
        (``sigma * sqrt(L)`` for i.i.d. periods).
    service_level : float or ndarray, shape (n,)
        Cycle service level (probability of no stockout per cycle).

    Returns
    -------
    ndarray, shape (n,)
        Units of stock; negative when ``service_level < 0.5``.
    """
    xp, (sd, _) = _arrays(demand_std, service_level, names=("demand_std", "service_level"))
    return service_level_z(service_level).astype(sd.dtype) * sd


def reorder_point(lead_time_demand_mean, lead_time_demand_std, service_level):
    """Reorder point of a continuous-review (s, Q) policy, normal lead-time demand.

    Parameters
    ----------
    lead_time_demand_mean, lead_time_demand_std : float or ndarray, shape (n,)
        Mean and standard deviation of demand over the lead time, units.
    service_level : float or ndarray, shape (n,)
        Cycle service level.

    Returns
    -------
    ndarray, shape (n,)
        ``max(mu + z sigma, 0)``, units of inventory position.
    """
    xp, (mu, sd, _) = _arrays(lead_time_demand_mean, lead_time_demand_std, service_level,
                              names=("lead_time_demand_mean", "lead_time_demand_std", "service_level"))
    return xp.maximum(mu + safety_stock(sd, service_level), 0)


def order_up_to_level(protection_demand_mean, protection_demand_std, service_level, minimum=None):
    """Order-up-to level of a periodic-review (R, S) policy, normal demand.

    Parameters
    ----------
    protection_demand_mean, protection_demand_std : float or ndarray, shape (n,)
        Mean and standard deviation of demand over review period plus lead
        time, units.
    service_level : float or ndarray, shape (n,)
        Cycle service level.
    minimum : float or ndarray, shape (n,), optional
        Lower bound, units (e.g. the reorder point, or reorder point + EOQ).

    Returns
    -------
    ndarray, shape (n,)
        Units of inventory position.
    """
    xp, (mu, sd, _) = _arrays(protection_demand_mean, protection_demand_std, service_level,
                              names=("protection_demand_mean", "protection_demand_std", "service_level"))
    out = xp.maximum(mu + safety_stock(sd, service_level), 0)
    return out if minimum is None else xp.maximum(out, asarray(minimum, xp, dtype=out.dtype))


def normal_policy(lead_time_demand_mean, lead_time_demand_std, protection_demand_mean,
                  protection_demand_std, service_level, min_lot=0.0):
    """Safety stock, reorder point and order-up-to level in one call.

    Parameters
    ----------
    lead_time_demand_mean, lead_time_demand_std : ndarray, shape (n,)
        Demand over the lead time L, units.
    protection_demand_mean, protection_demand_std : ndarray, shape (n,)
        Demand over review period plus lead time R + L, units.
    service_level : float or ndarray, shape (n,)
        Cycle service level.
    min_lot : float or ndarray, shape (n,)
        Minimum distance from reorder point to order-up-to level, units (the
        EOQ of an (s, S) policy with fixed order cost; 0 otherwise).

    Returns
    -------
    dict of ndarray, shape (n,)
        ``safety_stock`` (``reorder_point - lead_time_demand_mean``),
        ``reorder_point`` and ``order_up_to`` in units.  On CuPy inputs this is a
        single fused kernel.
    """
    xp, arrays = _arrays(lead_time_demand_mean, lead_time_demand_std, protection_demand_mean,
                         protection_demand_std, service_level, min_lot,
                         names=("lead_time_demand_mean", "lead_time_demand_std", "protection_demand_mean",
                                "protection_demand_std", "service_level", "min_lot"))
    return _normal_policy(xp, *arrays)


def _normal_policy(xp, mu_l, sd_l, mu_p, sd_p, level, lot):
    # unchecked core of normal_policy (plan_orders validates its inputs once)
    level = xp.clip(level, SERVICE_LEVEL_MIN, SERVICE_LEVEL_MAX)
    if is_cupy(xp):
        from . import _cuda  # noqa: PLC0415  -- device-only module

        ss, rop, out = _cuda.normal_policy(mu_l, sd_l, mu_p, sd_p, level, lot)
        return {"safety_stock": ss, "reorder_point": rop, "order_up_to": out}
    z = special(xp).ndtri(level).astype(mu_l.dtype)
    rop = xp.maximum(mu_l + z * sd_l, 0)
    out = xp.maximum(xp.maximum(mu_p + z * sd_p, 0), rop + lot)
    return {"safety_stock": rop - mu_l, "reorder_point": rop, "order_up_to": out}


def fill_rate_level(demand_mean, demand_std, allowed_shortage):
    """Stock level whose expected shortage equals an allowance, normal demand.

    Solves ``sigma * G((x - mu) / sigma) = allowed_shortage`` with ``G`` the
    standard normal loss function: the fill-rate condition
    ``1 - E[shortage per cycle] / Q = beta`` with allowance ``(1 - beta) Q``
    (Silver, Pyke and Peterson, 1998, sec. 7.7).

    Parameters
    ----------
    demand_mean, demand_std : ndarray, shape (n,)
        Demand over the risk interval, units.
    allowed_shortage : ndarray, shape (n,)
        Expected units short per replenishment cycle that are tolerated.

    Returns
    -------
    ndarray, shape (n,)
        Level ``x`` in units (not clipped).  Deterministic demand
        (``sigma = 0``) gives ``mu - allowed_shortage``.
    """
    xp, (mu, sd, b) = _arrays(demand_mean, demand_std, allowed_shortage,
                              names=("demand_mean", "demand_std", "allowed_shortage"))
    positive = sd > 0
    z = _normal.loss_inverse(b / xp.where(positive, sd, 1))
    return xp.where(positive, mu + z * sd, mu - b)


def critical_fractile(underage_cost, overage_cost):
    """Newsvendor critical fractile ``cu / (cu + co)``.

    Parameters
    ----------
    underage_cost : float or ndarray, shape (n,)
        Cost per unit short (lost margin, or backorder cost per unit per period),
        currency per unit.
    overage_cost : float or ndarray, shape (n,)
        Cost per unit left over (purchase cost minus salvage, or holding cost
        per unit per period), currency per unit.

    Returns
    -------
    ndarray, shape (n,)
        Optimal probability of not running out, in (0, 1).
    """
    xp, (cu, co) = _arrays(underage_cost, overage_cost, names=("underage_cost", "overage_cost"))
    tot = cu + co
    return xp.where(tot > 0, cu / xp.where(tot > 0, tot, 1), 0.5)


def newsvendor_quantity(demand_mean, demand_std, underage_cost, overage_cost):
    """Newsvendor order quantity (perishable or one-shot items), normal demand.

    Parameters
    ----------
    demand_mean, demand_std : float or ndarray, shape (n,)
        Demand over the selling period (or the periods until the next
        delivery arrives), units.
    underage_cost, overage_cost : float or ndarray, shape (n,)
        Currency per unit short / per unit left over.

    Returns
    -------
    ndarray, shape (n,)
        ``max(mu + sigma * Phi^-1(cu / (cu + co)), 0)`` units.
    """
    return reorder_point(demand_mean, demand_std, critical_fractile(underage_cost, overage_cost))


def economic_order_quantity(order_cost, holding_cost, demand_rate):
    """Economic order quantity ``sqrt(2 K D / h)``.

    Parameters
    ----------
    order_cost : float or ndarray, shape (n,)
        Fixed cost per order, currency.
    holding_cost : float or ndarray, shape (n,)
        Holding cost per unit per period, currency.
    demand_rate : float or ndarray, shape (n,)
        Mean demand per period, units.

    Returns
    -------
    ndarray, shape (n,)
        Units per order; 0 when there is no fixed cost or no demand, ``inf``
        when holding is free but ordering is not.
    """
    xp, (k, h, d) = _arrays(order_cost, holding_cost, demand_rate,
                            names=("order_cost", "holding_cost", "demand_rate"))
    num = 2 * k * d
    ratio = num / xp.where(h > 0, h, 1)
    return xp.where(num > 0, xp.where(h > 0, xp.sqrt(ratio), xp.inf), 0).astype(ratio.dtype)


def ss_power_approximation(demand_mean, demand_std, lead_time, order_cost, holding_cost, stockout_cost):
    """(s, S) policy by the revised power approximation, periodic review.

    Ehrhardt and Mosier, *A revision of the power approximation for computing
    (s, S) policies*, Management Science 30 (1984) 618-622.  Costs per unit per
    period; demand over ``L + 1`` periods is what a period-start order protects.

    Parameters
    ----------
    demand_mean, demand_std : float or ndarray, shape (n,)
        Demand per period, units.
    lead_time : float or ndarray, shape (n,)
        Lead time, periods.
    order_cost, holding_cost, stockout_cost : float or ndarray, shape (n,)
        ``K`` currency per order; ``h``, ``p`` currency per unit per period.

    Returns
    -------
    s, S : ndarray, shape (n,)
        Reorder point and order-up-to level, units of inventory position.
    """
    xp, (mu, sd, lt, k, h, p) = _arrays(demand_mean, demand_std, lead_time, order_cost, holding_cost,
                                        stockout_cost, names=_COST_NAMES)
    periods = lt + 1
    mu_l = mu * periods
    sd_l = xp.maximum(sd * xp.sqrt(periods), 1e-12)
    cv2 = xp.where(mu > 0, (sd_l / xp.where(mu > 0, mu, 1)) ** 2, 0)
    q_p = 1.30 * mu ** 0.494 * (k / h) ** 0.506 * (1 + cv2) ** 0.116
    z = xp.sqrt(q_p / sd_l * h / p)
    s_p = 0.973 * mu_l + sd_l * (0.183 / z + 1.063 - 2.192 * z)
    # For small lots relative to the spread, cap by the newsvendor level (E&M 1984).
    s0 = mu_l + sd_l * special(xp).ndtri(critical_fractile(p, h))
    small = q_p / sd_l <= 1.5
    s = xp.where(small, xp.minimum(s_p, s0), s_p)
    big_s = xp.where(small, xp.minimum(s_p + q_p, s0), s_p + q_p)
    return s, big_s


def rq_policy(demand_mean, demand_std, lead_time, order_cost, holding_cost, stockout_cost, n_iter=100):
    """Continuous-review (r, Q) policy by the Hadley-Whitin iteration (EIL approximation).

    Alternates ``r = F^-1(1 - Q h / (p D))`` and
    ``Q = sqrt(2 D (K + p n(r)) / h)`` starting from the EOQ, for all items at
    once (Hadley and Whitin, *Analysis of Inventory Systems*, 1963).

    Parameters
    ----------
    demand_mean, demand_std : float or ndarray, shape (n,)
        Demand per period ``D``, units (normal).
    lead_time : float or ndarray, shape (n,)
        Lead time, periods.
    order_cost, holding_cost, stockout_cost : float or ndarray, shape (n,)
        ``K`` currency per order; ``h`` per unit per period; ``p`` per unit short.

    Returns
    -------
    r, Q : ndarray, shape (n,)
        Reorder point and order quantity, units.  Where ``Q h >= p D`` the
        stockout probability target is infeasible and ``r`` is the 1e-6 quantile.
    """
    xp, (d, tau, lt, k, h, p) = _arrays(demand_mean, demand_std, lead_time, order_cost, holding_cost,
                                        stockout_cost, names=_COST_NAMES)
    mu = d * lt
    sigma = tau * xp.sqrt(lt)
    q = xp.sqrt(2 * k * d / h)
    r = xp.zeros_like(q)
    for _ in range(n_iter):
        level = 1 - q * h / xp.where(p * d > 0, p * d, 1)
        r = mu + sigma * service_level_z(level)
        n_r = sigma * _normal.loss((r - mu) / xp.maximum(sigma, 1e-30)).astype(q.dtype)
        q = xp.sqrt(2 * d * (k + p * n_r) / h)
    return r, q


def empirical_quantile(samples, level, overwrite=False):
    """Per-item quantile of samples: the smallest sample with empirical CDF >= level.

    Parameters
    ----------
    samples : ndarray, shape (n, S)
        Demand samples, units.
    level : float or ndarray, shape (n,)
        Probability; clipped to ``[1e-6, 1 - 1e-6]``.
    overwrite : bool
        Allow reordering ``samples`` in place (saves a copy of the samples).

    Returns
    -------
    ndarray, shape (n,)
        Units.  (Inverse empirical CDF, Hyndman-Fan type 1: monotone in
        ``level`` and guarantees an in-sample service level >= ``level``.)
    """
    check_finite("samples", samples, get_xp(samples))
    return _empirical_quantile(samples, level, overwrite)


def _empirical_quantile(samples, level, overwrite=False):
    # unchecked core of empirical_quantile (plan_orders' samples are finite by construction)
    xp = get_xp(samples)
    n, s = samples.shape
    lv = xp.clip(asarray(level, xp, dtype=xp.float64), SERVICE_LEVEL_MIN, SERVICE_LEVEL_MAX)
    k = xp.clip(xp.ceil(lv * s).astype(xp.int64) - 1, 0, s - 1)
    if k.ndim == 0 or (k.size and bool(xp.all(k == k.reshape(-1)[0]))):
        kk = int(k.reshape(-1)[0]) if k.size else 0
        if overwrite and not is_cupy(xp):
            samples.partition(kk, axis=1)
            return samples[:, kk].copy()
        return xp.partition(samples, kk, axis=1)[:, kk]
    srt = samples if overwrite else samples.copy()
    srt.sort(axis=1)
    return xp.take_along_axis(srt, xp.broadcast_to(k, (n,))[:, None], axis=1)[:, 0]


def empirical_fill_rate_level(samples, allowed_shortage):
    """Level whose empirical expected shortage ``mean((D - x)^+)`` equals an allowance.

    Exact for the empirical distribution: the loss is piecewise linear between
    sorted samples, so after one sort the crossing is found by counting and one
    linear interpolation (no iterative search).

    Parameters
    ----------
    samples : ndarray, shape (n, S)
        Demand samples over the risk interval, units.
    allowed_shortage : ndarray, shape (n,)
        Tolerated expected units short per cycle.

    Returns
    -------
    ndarray, shape (n,)
        Level in units (may be negative when the allowance exceeds the mean).
    """
    check_finite("samples", samples, get_xp(samples))
    return _empirical_fill_rate_level(samples, allowed_shortage)


def _empirical_fill_rate_level(samples, allowed_shortage):
    # unchecked core of empirical_fill_rate_level
    xp = get_xp(samples)
    n, s = samples.shape
    srt = xp.sort(samples, axis=1)
    target = asarray(allowed_shortage, xp, dtype=srt.dtype) * s
    above = xp.arange(s - 1, 0, -1, dtype=srt.dtype)  # samples strictly above position k
    # S * loss at each sorted sample, as a reverse cumulative sum of non-negative
    # terms (no cancellation): sum_{j >= k} (S-1-j) * (d_{j+1} - d_j).
    terms = above[None, :] * (srt[:, 1:] - srt[:, :-1])
    tot = xp.zeros((n, s), dtype=srt.dtype)
    tot[:, :-1] = xp.flip(xp.cumsum(xp.flip(terms, axis=1), axis=1), axis=1)
    count = (tot > target[:, None]).sum(axis=1)
    k = xp.clip(count - 1, 0, s - 2 if s > 1 else 0)
    at = xp.take_along_axis(srt, k[:, None], axis=1)[:, 0]
    tk = xp.take_along_axis(tot, k[:, None], axis=1)[:, 0]
    n_above = (s - 1 - k).astype(srt.dtype)
    inside = at + (tk - target) / xp.maximum(n_above, 1)
    below = srt[:, 0] - (target - tot[:, 0]) / s
    return xp.where(count == 0, below, inside)

"""Exceptions a planner acts on, each with the money at stake: pure array arithmetic.

One call raises every reason code for every item at once (no loop over items).  Money
is in currency: the expected stockout cost an action avoids (or that a constraint
causes), or the value of stock that should not be there.  A unit short is priced at
``stockout_cost`` where given, else at ``unit_cost`` (the value of the lost sale at cost).
Expected units short of a stock ``y`` against demand over the protection interval (review
period plus lead time) are the normal loss ``sigma * G((y - mu) / sigma)`` (as in
:mod:`replenish.kernels.outcomes`).

Reason codes (:data:`EXCEPTION_CODES`) and the money of each:

``expedite``
    The mean forecast uses up the inventory position before an order placed today can
    arrive (mean lead-time demand above the position): expected units short over the lead
    time times the price of a unit short.  No order today can prevent it.
``order_today``
    An order is to be placed today: the expected stockout cost it avoids over the
    protection interval.
``excess``
    Days of supply on hand above ``excess_periods`` periods, or the position above the
    order-up-to level by more than the fraction ``excess_ratio``: the value of the stock
    above the order-up-to level.
``no_demand``
    No demand for ``no_demand_periods`` periods while stock is on hand: the value on hand.
``moq_inflated``, ``case_pack_inflated``
    The MOQ or case pack raised the order above the need by more than the fraction
    ``inflation_ratio``: the value of the extra units.
``capped_max_order``, ``capped_budget``
    The maximum order or the budget cut the order below the need: the expected stockout
    cost of the units cut.
``forecast_bias``
    The forecasts of recent runs were biased beyond ``bias_threshold`` (a fraction of the
    actual demand, from an evaluate ledger): the stock the bias misplaces in the
    protection interval, ``|b| / (1 + b)`` of its mean demand, valued at unit cost when
    over-forecast and at the price of a unit short when under-forecast.
``new_item``
    Fewer than ``new_item_periods`` periods of history: the value of the order-up-to
    level resting on that short history.
"""
from __future__ import annotations

from ._backend import asarray, get_xp
from ._validate import item_array
from .outcomes import normal_loss

__all__ = ["EXCEPTION_CODES", "exception_values", "top_exception", "periods_since_demand"]

EXCEPTION_CODES = ("expedite", "order_today", "excess", "no_demand", "moq_inflated",
                   "case_pack_inflated", "capped_max_order", "capped_budget", "forecast_bias",
                   "new_item")


def exception_values(*, on_hand, position, order_quantity, need, binding, lead_time_demand_mean,
                     lead_time_demand_std, protection_demand_mean, protection_demand_std,
                     order_up_to, demand_rate, unit_cost, stockout_cost=None,
                     periods_since_demand=None, history_periods=None, forecast_bias=None,
                     excess_periods=90.0, excess_ratio=0.5, no_demand_periods=56.0,
                     inflation_ratio=0.5, bias_threshold=0.25, new_item_periods=56.0,
                     min_value=0.0):
    """Money at stake of every reason code for every item.

    Parameters
    ----------
    on_hand, position, order_quantity : ndarray, shape (n,)
        Units on hand, inventory position before ordering, final order.
    need : ndarray, shape (n,)
        Units the policy asked for before MOQ, case pack, maximum and budget
        (:func:`replenish.kernels.explain.binding_rule`).
    binding : ndarray of int, shape (n,)
        Codes of :data:`replenish.kernels.explain.BINDING_RULES`.
    lead_time_demand_mean, lead_time_demand_std : ndarray, shape (n,)
        Demand over the lead time, units.
    protection_demand_mean, protection_demand_std : ndarray, shape (n,)
        Demand over review period plus lead time, units.
    order_up_to : ndarray, shape (n,)
        Units.
    demand_rate : ndarray, shape (n,)
        Mean demand per period, units.
    unit_cost : ndarray, shape (n,)
        Currency per unit.
    stockout_cost : ndarray, shape (n,), optional
        Currency per unit short; NaN or <= 0 where not given (``unit_cost`` is used).
    periods_since_demand, history_periods : ndarray, shape (n,), optional
        Periods since the last period with demand, periods of history; NaN where unknown
        (the codes that need them are not raised there).
    forecast_bias : ndarray, shape (n,), optional
        Bias of recent forecasts, a fraction of actual demand (positive: over-forecast);
        NaN where unknown.
    excess_periods, no_demand_periods, new_item_periods : float
        Thresholds in periods.
    excess_ratio, inflation_ratio, bias_threshold : float
        Thresholds as fractions.
    min_value : float
        Exceptions worth less than this (currency) are not raised.

    Returns
    -------
    ndarray of float64, shape (n, len(EXCEPTION_CODES))
        Money at stake (currency, >= 0) where the code is raised, NaN where not.
    """
    xp = get_xp(position, order_quantity, protection_demand_mean)
    n = asarray(position, xp).shape[0]
    dt = xp.float64

    def arr(name, v, fill=None):
        if v is None:
            return xp.full((n,), xp.nan if fill is None else fill, dtype=dt)
        a = xp.broadcast_to(asarray(v, xp, dtype=dt), (n,))
        return a

    oh, pos, qty = arr("on_hand", on_hand), arr("position", position), arr("order_quantity", order_quantity)
    need_a = arr("need", need)
    bind = xp.broadcast_to(asarray(binding, xp), (n,))
    mu_l, sd_l = arr("ltd_mean", lead_time_demand_mean), arr("ltd_std", lead_time_demand_std)
    mu_p, sd_p = arr("pd_mean", protection_demand_mean), arr("pd_std", protection_demand_std)
    oul, rate = arr("order_up_to", order_up_to), arr("demand_rate", demand_rate)
    cost = item_array("unit_cost", unit_cost, n, xp, dt, low=0.0)
    short_cost = arr("stockout_cost", stockout_cost)
    price = xp.where(xp.isfinite(short_cost) & (short_cost > 0), short_cost, cost)
    since, hist, bias = (arr("periods_since_demand", periods_since_demand),
                         arr("history_periods", history_periods), arr("forecast_bias", forecast_bias))

    def short(y):   # expected units short over the protection interval at stock y
        return normal_loss(y, mu_p, sd_p)

    val = xp.full((n, len(EXCEPTION_CODES)), xp.nan, dtype=dt)

    def put(code, cond, money):
        j = EXCEPTION_CODES.index(code)
        money = xp.maximum(xp.where(cond, money, 0.0), 0.0)
        val[:, j] = xp.where(cond & (money >= min_value), money, xp.nan)

    put("expedite", (mu_l > pos + 1e-9) & (mu_l > 0), normal_loss(pos, mu_l, sd_l) * price)
    put("order_today", qty > 0, (short(pos) - short(pos + qty)) * price)
    dos = xp.where(rate > 0, oh / xp.where(rate > 0, rate, 1), xp.where(oh > 0, xp.inf, 0.0))
    above = pos - oul
    put("excess", (above > 0) & ((dos > excess_periods) | (pos > oul * (1 + excess_ratio))),
        above * cost)
    put("no_demand", (since >= no_demand_periods) & (oh > 0), oh * cost)
    extra = qty - need_a
    inflated = (need_a > 0) & (extra > inflation_ratio * need_a)
    put("moq_inflated", inflated & (bind == 1), extra * cost)
    put("case_pack_inflated", inflated & (bind == 2), extra * cost)
    cut = (short(pos + qty) - short(pos + need_a)) * price
    put("capped_max_order", bind == 3, cut)
    put("capped_budget", bind == 4, cut)
    b = xp.where(xp.isfinite(bias), bias, 0.0)
    misplaced = xp.abs(b) / xp.maximum(1 + b, 0.1) * mu_p
    put("forecast_bias", xp.isfinite(bias) & (xp.abs(b) > bias_threshold),
        misplaced * xp.where(b > 0, cost, price))
    put("new_item", hist < new_item_periods, oul * cost)
    return val


def top_exception(values):
    """The code of each item's most valuable exception.

    Parameters
    ----------
    values : ndarray, shape (n, K)
        Output of :func:`exception_values`.

    Returns
    -------
    code : ndarray of int64, shape (n,)
        Index into :data:`EXCEPTION_CODES`, -1 where no exception is raised.
    value : ndarray of float64, shape (n,)
        Its money at stake, currency (NaN where none).
    """
    xp = get_xp(values)
    raised = xp.isfinite(values)
    any_ = raised.any(axis=1)
    code = xp.argmax(xp.where(raised, values, -1.0), axis=1)
    value = xp.take_along_axis(values, code[:, None], 1)[:, 0]
    return xp.where(any_, code, -1), xp.where(any_, value, xp.nan)


def periods_since_demand(demand, indptr):
    """Periods since each series last had positive demand (grouped flat layout).

    Parameters
    ----------
    demand : ndarray, shape (N,)
        All series' demand, one after the other, units per period.
    indptr : ndarray of int, shape (n + 1,)
        Series ``i`` is ``demand[indptr[i]:indptr[i + 1]]``; every series has at least one
        period.

    Returns
    -------
    ndarray of float64, shape (n,)
        0 when the last period had demand; the series' length when it never had any.
    """
    xp = get_xp(demand, indptr)
    d = asarray(demand, xp)
    ptr = asarray(indptr, xp).astype(xp.int64)
    idx = xp.arange(d.shape[0], dtype=xp.int64)
    # running maximum of the positions with demand: at a series' last period it is that
    # series' last demand unless it lies before the series' start
    last = xp.maximum.accumulate(xp.where(d > 0, idx, -1)) if d.shape[0] else idx
    end = ptr[1:] - 1
    start = ptr[:-1]
    at_end = last[xp.maximum(end, 0)] if d.shape[0] else end
    length = (ptr[1:] - start).astype(xp.float64)
    return xp.where(at_end >= start, (end - at_end).astype(xp.float64), length)

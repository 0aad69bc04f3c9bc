"""Why an order is what it is: the stock the order-up-to level covers, the rule that set the
quantity, days of supply and the projected stockout.

Pure array functions (NumPy or CuPy), applied to the outputs of
:func:`replenish.kernels.plan_orders`.  Units: stock in units, time in periods of the
forecast (days or weeks), money in currency.

The order-up-to level ``S`` splits into three parts that add up exactly:

* **pipeline stock**: mean demand over the lead time ``L`` (what is on order on average
  while a replenishment travels; Little's law);
* **cycle stock**: mean demand over the review period ``R`` (the protection interval's
  mean minus the lead time's; with rounded orders the mean undershoot below ``s`` at the
  review that orders, :mod:`replenish.kernels.undershoot`) plus the lot-size part
  ``S - s`` (EOQ with a fixed order cost); on average half of it is on hand;
* **safety stock**: ``s`` minus the mean demand over ``R + L``, itself split into a
  demand-uncertainty and a lead-time-uncertainty part (SAP IBP's "demand" and "supply"
  components): the demand part is the safety stock that certain lead times would need at
  the same safety factor, ``SS * sigma_D / sigma``, with ``sigma_D^2`` the variance of
  demand over ``R + E[L]`` (periods independent) and ``sigma^2 = sigma_D^2 + Var(L) d^2``
  (Silver, Pyke and Peterson 1998, sec. 7.11, ``d`` the mean demand per period over the
  interval); the lead-time part is the rest.  For a normal cycle-service target the
  demand part equals the safety stock of the same plan with ``lead_time_std = 0``.
"""
from __future__ import annotations

from ._backend import asarray, get_xp
from ._validate import check_finite, item_array
from .lead_time import _interval_moments

__all__ = ["BINDING_RULES", "stock_components", "binding_rule", "periods_of_supply",
           "periods_until_stockout", "projected_inventory"]

#: Codes of :func:`binding_rule`, in this order (code 0: none).
BINDING_RULES = ("none", "moq", "case_pack", "max_order", "budget")


def stock_components(mean_demand, var_demand, *, lead_time, lead_time_std=None, review_period,
                     lead_time_demand_mean, protection_demand_mean, safety_stock, reorder_point,
                     order_up_to):
    """Pipeline, cycle and safety stock (with its two parts) of each item's order-up-to level.

    Parameters
    ----------
    mean_demand, var_demand : ndarray, shape (n, H)
        Per-period demand mean (units) and variance (units squared), e.g. from
        :func:`replenish.kernels.daily_moments`.
    lead_time : ndarray, shape (n,)
        Mean lead time, periods.
    lead_time_std : ndarray, shape (n,), optional
        Standard deviation of the lead time, periods (default 0).
    review_period : ndarray, shape (n,)
        Review period, periods.
    lead_time_demand_mean, protection_demand_mean, safety_stock, reorder_point, order_up_to : ndarray, shape (n,)
        The plan's outputs (units).

    Returns
    -------
    dict of ndarray, shape (n,), units
        ``pipeline_stock``, ``cycle_stock``, ``safety_stock_demand``,
        ``safety_stock_lead_time``; ``pipeline_stock + cycle_stock + safety_stock_demand +
        safety_stock_lead_time == order_up_to`` (up to rounding).  The safety parts have the
        sign of the safety stock (negative below a 0.5 target).
    """
    xp = get_xp(mean_demand, order_up_to)
    mean_d = asarray(mean_demand, xp)
    dt = mean_d.dtype if mean_d.dtype.kind == "f" else xp.float64
    mean_d = mean_d.astype(dt, copy=False)
    var_d = asarray(var_demand, xp, dtype=dt)
    n = mean_d.shape[0]

    def arr(name, v, **kw):
        return item_array(name, v, n, xp, dt, **kw)

    lead = arr("lead_time", lead_time, low=0.0)
    lead_sd = arr("lead_time_std", 0.0 if lead_time_std is None else lead_time_std, low=0.0)
    review = arr("review_period", review_period, low=0.0)
    mu_l = arr("lead_time_demand_mean", lead_time_demand_mean)
    mu_p = arr("protection_demand_mean", protection_demand_mean)
    ss = arr("safety_stock", safety_stock)
    rop = arr("reorder_point", reorder_point)
    oul = arr("order_up_to", order_up_to)
    for name, a in (("mean_demand", mean_d), ("var_demand", var_d)):
        check_finite(name, a, xp)
    length = lead + review
    # demand variance over R + E[L] alone, and the lead-time term the plan adds to it
    mean_i, sd_demand = _interval_moments(mean_d, var_d, length, None)
    rate = xp.where(length > 0, mean_i / xp.maximum(length, 1e-30), mean_d[:, 0])
    var_lead = lead_sd * lead_sd * rate * rate
    total = xp.sqrt(sd_demand * sd_demand + var_lead)
    share = xp.where(total > 0, sd_demand / xp.where(total > 0, total, 1), 1.0)
    ss_demand = ss * share
    return {"pipeline_stock": mu_l, "cycle_stock": (mu_p - mu_l) + (oul - rop),
            "safety_stock_demand": ss_demand, "safety_stock_lead_time": ss - ss_demand}


def binding_rule(position, reorder_point, order_up_to, order_quantity, *, planned_quantity=None,
                 moq=None, tol=1e-4):
    """Which rule set each order quantity, and the quantity the policy alone asked for.

    Parameters
    ----------
    position : ndarray, shape (n,)
        Inventory position before ordering, units.
    reorder_point, order_up_to : ndarray, shape (n,)
        ``s`` and ``S``, units.
    order_quantity : ndarray, shape (n,)
        Final order, units (after a budget, if any).
    planned_quantity : ndarray, shape (n,), optional
        Order before the budget (default: ``order_quantity``), units; the output of
        :func:`replenish.kernels.order_quantity` (MOQ, case pack, maximum applied).
    moq : ndarray, shape (n,), optional
        Minimum order quantity, units.
    tol : float
        Relative tolerance (of ``max(1, |S|)``) when comparing quantities.

    Returns
    -------
    code : ndarray of int8, shape (n,)
        Index into :data:`BINDING_RULES`: ``budget`` when the final order is below the
        planned one; ``max_order`` when the planned order is below the need (the cap, or a
        cap below the MOQ, cut it); ``moq`` when the MOQ exceeds the need; ``case_pack``
        when rounding up to the case pack raised it; else ``none`` (also: no order needed).
    need : ndarray, shape (n,)
        ``S - position`` when ``position <= s`` (or when an order was planned), else 0:
        units the policy asks for before MOQ, case pack, maximum and budget.
    """
    xp = get_xp(position, order_up_to, order_quantity)
    pos = asarray(position, xp)
    dt = pos.dtype if pos.dtype.kind == "f" else xp.float64
    n = pos.shape[0]

    def arr(name, v):
        return item_array(name, v, n, xp, dt)

    pos = arr("position", pos)
    rop, oul = arr("reorder_point", reorder_point), arr("order_up_to", order_up_to)
    qty = arr("order_quantity", order_quantity)
    planned = qty if planned_quantity is None else arr("planned_quantity", planned_quantity)
    moq_a = arr("moq", 0.0 if moq is None else moq)
    eps = tol * xp.maximum(1.0, xp.abs(oul))
    need = xp.where((pos <= rop) | (planned > 0), xp.maximum(oul - pos, 0), 0)
    code = xp.zeros((n,), dtype=xp.int8)
    has = need > eps
    code = xp.where(has & (planned > need + eps), 2, code)          # rounded up to the pack
    code = xp.where(has & (moq_a > need + eps) & (planned >= moq_a - eps), 1, code)
    code = xp.where(has & (planned < need - eps), 3, code)          # cut by the maximum
    code = xp.where(qty < planned - eps, 4, code)                   # cut by the budget
    return code.astype(xp.int8), need


def periods_of_supply(stock, demand_rate):
    """Periods the stock lasts at a constant demand rate: ``stock / rate``.

    Parameters
    ----------
    stock : ndarray, shape (n,)
        Units (on hand, or the position after the order).
    demand_rate : ndarray, shape (n,)
        Mean demand per period, units.

    Returns
    -------
    ndarray, shape (n,)
        Periods; 0 for no stock, ``inf`` for stock and no demand.
    """
    xp = get_xp(stock, demand_rate)
    s = asarray(stock, xp)
    dt = s.dtype if s.dtype.kind == "f" else xp.float64
    s = s.astype(dt, copy=False)
    rate = item_array("demand_rate", demand_rate, s.shape[0], xp, dt, low=0.0)
    live = (s > 0) & (rate > 0)
    return xp.where(live, s / xp.where(live, rate, 1), xp.where(s > 0, xp.inf, 0.0)).astype(dt)


def periods_until_stockout(stock, mean_demand):
    """When the stock runs out under the mean forecast, no order placed.

    Parameters
    ----------
    stock : ndarray, shape (n,)
        Units available now (the inventory position: on hand plus on order minus
        backorders, the pipeline assumed to arrive in time).
    mean_demand : ndarray, shape (n, H)
        Mean demand per period, units; period 0 is today (H >= 1).

    Returns
    -------
    ndarray, shape (n,)
        Periods from now (fractional: linear within the period) until the cumulative mean
        demand reaches the stock; 0 when there is no stock; ``NaN`` when it lasts the whole
        horizon.
    """
    xp = get_xp(stock, mean_demand)
    d = asarray(mean_demand, xp)
    dt = d.dtype if d.dtype.kind == "f" else xp.float64
    d = d.astype(dt, copy=False)
    s = item_array("stock", stock, d.shape[0], xp, dt)
    check_finite("mean_demand", d, xp)
    cum = xp.cumsum(d, axis=1)
    over = cum >= s[:, None]
    hit = over.any(axis=1)
    first = xp.argmax(over, axis=1)
    before = xp.where(first > 0, xp.take_along_axis(cum, xp.maximum(first - 1, 0)[:, None], 1)[:, 0], 0)
    in_period = xp.take_along_axis(d, first[:, None], 1)[:, 0]
    frac = xp.where(in_period > 0, (s - before) / xp.where(in_period > 0, in_period, 1), 0)
    t = first.astype(dt) + xp.clip(frac, 0, 1)
    t = xp.where(s <= 0, 0.0, t)
    return xp.where(hit | (s <= 0), t, xp.nan).astype(dt)


def projected_inventory(on_hand, on_order, backorders, mean_demand, *, reorder_point, order_up_to,
                        lead_time, review_period, first_order, moq=None, case_pack=None,
                        max_order=None, pipeline_arrival=None):
    """Projected on-hand stock and inventory position under the mean forecast.

    The policy is followed period by period: at each review (every ``review_period``
    periods, from today) an order up to ``S`` is placed when the position is at or below
    ``s`` (today's is ``first_order``), MOQ, case pack and maximum applied; each order
    arrives ``lead_time`` periods later (rounded to whole periods).  Demand is met from
    stock when there is any (lost otherwise, so the on-hand line stays >= 0).

    Parameters
    ----------
    on_hand, on_order, backorders : ndarray, shape (n,)
        Units now.
    mean_demand : ndarray, shape (n, H)
        Mean demand per period, units.
    reorder_point, order_up_to : ndarray, shape (n,)
        ``s`` and ``S``, units.
    lead_time, review_period : ndarray, shape (n,)
        Periods.
    first_order : ndarray, shape (n,)
        Today's order, units (the plan's ``order_quantity``).
    moq, case_pack, max_order : ndarray, shape (n,), optional
        Order constraints, units.
    pipeline_arrival : ndarray, shape (n,), optional
        Period at which the units on order arrive (arrival dates are not an input of the
        plan; default: half the lead time, rounded).

    Returns
    -------
    dict of ndarray
        ``on_hand`` and ``position`` (n, H + 1): at the start of each period and after the
        last; ``orders`` and ``arrivals`` (n, H): units placed / received in each period.
    """
    from .orders import _order_quantity

    xp = get_xp(on_hand, mean_demand)
    d = asarray(mean_demand, xp)
    dt = d.dtype if d.dtype.kind == "f" else xp.float64
    d = d.astype(dt, copy=False)
    n, horizon = d.shape

    def arr(name, v):
        return item_array(name, 0.0 if v is None else v, n, xp, dt)

    oh, oo, bo = arr("on_hand", on_hand), arr("on_order", on_order), arr("backorders", backorders)
    rop, oul = arr("reorder_point", reorder_point), arr("order_up_to", order_up_to)
    lead = xp.rint(arr("lead_time", lead_time)).astype(xp.int64)
    review = xp.maximum(xp.rint(arr("review_period", review_period)), 1).astype(xp.int64)
    moq_a, pack = arr("moq", moq), arr("case_pack", case_pack)
    if max_order is None:
        cap = xp.full((n,), xp.inf, dtype=dt)
    else:
        cap = xp.broadcast_to(asarray(max_order, xp, dtype=dt), (n,))
        if bool(xp.any(xp.isnan(cap))):
            raise ValueError("max_order has NaN entries (use None or inf for no cap)")
    first = arr("first_order", first_order)
    arrive_at = (xp.rint(lead / 2).astype(xp.int64) if pipeline_arrival is None
                 else xp.rint(arr("pipeline_arrival", pipeline_arrival)).astype(xp.int64))
    width = horizon + (int(xp.max(lead)) if n else 0) + 2
    incoming = xp.zeros((n, width), dtype=dt)
    rows = xp.arange(n)
    incoming[rows, xp.clip(arrive_at, 0, width - 1)] += oo
    stock = xp.maximum(oh - bo, 0)
    position = oh + oo - bo
    out_oh = xp.zeros((n, horizon + 1), dtype=dt)
    out_pos = xp.zeros((n, horizon + 1), dtype=dt)
    orders = xp.zeros((n, horizon), dtype=dt)
    arrivals = xp.zeros((n, horizon), dtype=dt)
    for t in range(horizon):
        if t == 0:
            q = first
        else:
            q = _order_quantity(xp, position, rop, oul, moq_a, pack, cap)
            q = xp.where(t % review == 0, q, 0)
        orders[:, t] = q
        position = position + q
        incoming[rows, xp.clip(t + lead, 0, width - 1)] += q
        got = incoming[:, t]
        arrivals[:, t] = got
        stock = stock + got                      # received at the start of the period
        out_oh[:, t] = stock
        out_pos[:, t] = position
        stock = xp.maximum(stock - d[:, t], 0)   # unmet demand is lost in this projection
        position = position - d[:, t]
    out_oh[:, horizon] = stock
    out_pos[:, horizon] = position
    return {"on_hand": out_oh, "position": out_pos, "orders": orders, "arrivals": arrivals}

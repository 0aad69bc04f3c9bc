"""Budget and capacity allocation of order units across items, by marginal value."""
from __future__ import annotations

from ._backend import asarray, get_xp, special
from ._validate import check_finite, item_array

__all__ = ["allocate_budget"]


def allocate_budget(order_quantity, *, group, demand_mean, demand_std, position, unit_cost=None,
                    stockout_cost=1.0, budget=None, capacity=None, case_pack=None, moq=None, n_iter=60):
    """Cut planned orders to a budget (currency) or capacity (units) per group.

    Each unit of stock raised from inventory position ``y`` to ``y + 1`` avoids
    an expected ``p * P(D > y)`` of stockout cost, ``D`` the demand over the
    protection interval (normal).  Units are kept in decreasing order of that
    value per currency unit (per unit of capacity with ``capacity``), across
    all items of a group, until the group's limit is reached.  Because the value
    decreases in ``y`` this greedy choice is the Lagrangian solution: for a
    price ``lam`` an item keeps the units up to
    ``y*(lam) = mu + sigma * Phi^-1(1 - lam * c / p)``; ``lam`` is found per group
    by bisection, all groups at once (no loop over items or groups).  Kept
    quantities are rounded down to the case pack and dropped below the MOQ, so
    the limit always holds; the leftover is less than about one case pack per
    item at the margin.

    Parameters
    ----------
    order_quantity : ndarray, shape (n,)
        Planned (unconstrained) orders, units.
    group : ndarray of int, shape (n,)
        Group code per item (location id), ``0 <= group < G``.
    demand_mean, demand_std : ndarray, shape (n,)
        Demand over the protection interval (review period plus lead time), units.
    position : ndarray, shape (n,)
        Inventory position before ordering, units.
    unit_cost : float or ndarray, shape (n,), optional
        Currency per unit; required with ``budget``.
    stockout_cost : float or ndarray, shape (n,)
        Currency per unit short; only ratios between items matter.
    budget : float or ndarray, shape (G,), optional
        Spend limit per group, currency.
    capacity : float or ndarray, shape (G,), optional
        Unit limit per group (exactly one of ``budget`` and ``capacity``).
    case_pack, moq : float or ndarray, shape (n,), optional
        Order multiple and minimum order quantity, units.
    n_iter : int
        Bisection steps (60 resolve the price to 1e-18 of its range).

    Returns
    -------
    ndarray, shape (n,)
        Allocated order units, ``<= order_quantity``.
    """
    if (budget is None) == (capacity is None):
        raise ValueError("pass exactly one of budget and capacity")
    xp = get_xp(order_quantity, demand_mean, group)
    q_plan = asarray(order_quantity, xp)
    dt = q_plan.dtype if q_plan.dtype.kind == "f" else xp.float64
    n = q_plan.shape[0]
    q_plan = item_array("order_quantity", q_plan, n, xp, dt, low=0.0)
    mu = item_array("demand_mean", demand_mean, n, xp, dt)
    sd = item_array("demand_std", demand_std, n, xp, dt, low=0.0)
    pos = item_array("position", position, n, xp, dt)
    p = item_array("stockout_cost", stockout_cost, n, xp, dt, low=0.0, strict=True)
    grp = asarray(group, xp)
    if grp.shape != (n,) or grp.dtype.kind not in "iu":
        raise ValueError(f"group must be integer codes of shape ({n},)")
    limit_in = budget if budget is not None else capacity
    lim = asarray(limit_in, xp, dtype=xp.float64)
    n_groups = int(xp.max(grp)) + 1 if (lim.ndim == 0 and n) else (lim.shape[0] if lim.ndim else 1)
    lim_name = "budget" if budget is not None else "capacity"
    check_finite(lim_name, lim, xp)
    if bool(xp.any(lim < 0)):
        raise ValueError(f"{lim_name} must be >= 0")
    lim = xp.broadcast_to(lim, (n_groups,))
    if n and (int(xp.min(grp)) < 0 or int(xp.max(grp)) >= n_groups):
        raise ValueError(f"group codes must lie in [0, {n_groups})")
    if budget is not None:
        if unit_cost is None:
            raise ValueError("budget allocation needs unit_cost")
        cost = item_array("unit_cost", unit_cost, n, xp, dt, low=0.0, strict=True)
    else:
        cost = xp.ones((n,), dtype=dt)
    pack = item_array("case_pack", 0.0 if case_pack is None else case_pack, n, xp, dt, low=0.0)
    moq_a = item_array("moq", 0.0 if moq is None else moq, n, xp, dt, low=0.0)
    ndtri = special(xp).ndtri
    # Prices and spend are float64: a float32 sum over a million items errs by
    # ~1e-4 of the total, enough to overshoot a budget.
    ratio = (cost / p).astype(xp.float64)
    has_pack = pack > 0
    safe_pack = xp.where(has_pack, pack, 1)

    def kept(lam_item):
        # units whose marginal value per cost is at least lam
        tail = xp.clip(1 - lam_item * ratio, 1e-300, 1.0)
        level = mu + sd * ndtri(xp.minimum(tail, 1 - 1e-16)).astype(dt)
        level = xp.where(tail > 1e-300, level, -xp.inf)
        q = xp.clip(level - pos, 0, q_plan)
        q = xp.where(lam_item <= 0, q_plan, q)
        q = xp.where(has_pack, xp.floor(q / safe_pack) * safe_pack, q)
        return xp.where(q < moq_a, 0, q)

    def spend(q):
        return xp.bincount(grp, weights=(q * cost).astype(xp.float64), minlength=n_groups)

    lo = xp.zeros((n_groups,))
    hi = xp.full((n_groups,), float(xp.max(1 / ratio)) * (1 + 1e-9) if n else 1.0)
    feasible_at_zero = spend(q_plan) <= lim
    for _ in range(n_iter):
        mid = 0.5 * (lo + hi)
        ok = spend(kept(mid[grp])) <= lim
        hi = xp.where(ok, mid, hi)
        lo = xp.where(ok, lo, mid)
    lam = xp.where(feasible_at_zero, 0.0, hi)
    return kept(lam[grp]).astype(dt, copy=False)

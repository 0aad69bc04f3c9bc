"""Simulation of whole networks, the levels coupled: store orders are the DC's demand.

:func:`replenish.kernels.simulate_inventory` simulates items that an infinite supplier
serves after their lead times. Here the items are the nodes of distribution trees (one
forest of all networks, ``parent[j]`` -1 for a root): a root orders from the outside
supplier as there, every other node orders from its parent, and a parent short of stock
ships late, so its children's receipts wait. One call simulates every node of every
network over the same periods, the loop being over periods and levels only (NumPy or
CuPy, vectorized over nodes).

Each period ``t``, with the single-stage simulator's order of events:

1. **Receipts**: shipments due in ``t`` arrive; at a store they fill backorders first, the
   rest goes on hand.
2. **Review** (every ``review_period`` periods, offset ``review_offset``): inventory
   position = on hand + in transit + still owed by the parent - backorders (a store's to
   its shoppers, an inner node's to its children); at or below the reorder point order up
   to the order-up-to level with the MOQ, case pack and cap of
   :func:`replenish.kernels.orders.order_quantity`. A root's order arrives ``lead_time``
   periods later (0: at once); another node's order goes to its parent.
3. **Shipping**, level by level from the roots down: each parent ships what its children
   are owed (their open orders, old and new) from its stock on hand; a parent short of
   stock rations it in proportion to what each child is owed, the rest stays owed.
   Shipped units arrive ``lead_time`` periods later (0: in this period, before the
   store's demand).
4. **Demand** (stores, the leaves) is met from stock on hand; what is not met is
   backordered, or lost with ``lost_sales=True``.

When every parent always has the stock, each store behaves exactly as
:func:`simulate_inventory` with the same policy and lead time (tested). Lead times are
fixed whole periods (transport; the wait for a parent's stock is the only randomness in
a receipt's time); no shelf life. Replenishment cycles follow the single-stage simulator:
a review that orders (zero units under (R, S) included) starts the cycle that begins when
that order is due to arrive (its nominal arrival, ``lead_time`` after the order); a cycle
with a stockout (a shopper not served at once, or at an inner node a child's order not
shipped at once) counts against the cycle service level, so a store whose DC ships late
loses service in the cycle the goods were due in.

Measures per node, shape (N, 1) (one segment: :func:`simulation_totals` reads them): the
keys of :data:`replenish.kernels.simulate.SIM_KEYS` (for an inner node ``demand`` is its
children's orders, ``sold`` the units shipped in the period they were ordered, ``short``
those shipped late, ``backorder_sum`` the units owed to children), plus ``delay_sum``
(unit-periods its own orders waited at its parent). Float64 on every backend.
"""
from __future__ import annotations

import numpy as np

from ._backend import asarray, get_xp
from ._tree import segment_sum, tree_structure
from ._validate import check_finite, item_array
from .orders import _order_quantity
from .simulate import SIM_KEYS

__all__ = ["simulate_network", "NETWORK_SIM_KEYS"]

#: What :func:`simulate_network` returns per node (shape (N, 1)).
NETWORK_SIM_KEYS = SIM_KEYS + ("delay_sum",)
_DAILY = ("on_hand", "backorders", "received", "ordered", "shipped", "owed")


def simulate_network(demand, parent, *, reorder_point, order_up_to, lead_time, review_period=1,
                     review_offset=0, moq=None, case_pack=None, max_order=None, on_hand=0.0,
                     pipeline=None, backorders=0.0, lost_sales=False, unit_cost=1.0,
                     holding_cost_rate=0.25, stockout_cost=0.0, order_cost=0.0,
                     periods_per_year=365.0, record=False) -> dict:
    """Simulate every node of many distribution networks, coupled, over ``T`` periods.

    Parameters
    ----------
    demand : array_like, shape (N, T)
        Shoppers' demand per node and period, units (>= 0); only leaves (stores) may have
        any. Its backend (NumPy or CuPy) decides where the simulation runs.
    parent : array_like of int, shape (N,)
        The forest of nodes (-1: a root, supplied by an outside supplier with ample stock).
    reorder_point, order_up_to : array_like, shape (N,)
        ``s`` and ``S`` of each node, units of its inventory position (installation
        stock: its own stock, in transit to it and owed to it, less what it owes).
    lead_time : array_like, shape (N,)
        Whole periods from shipping (by the parent or the supplier) to receipt, >= 0.
    review_period, review_offset : int or array_like, shape (N,)
        Reviews in the periods with ``(t - review_offset) % review_period == 0``.
    moq, case_pack, max_order : float or array_like, shape (N,), optional
        Order constraints, units.
    on_hand, backorders : float or array_like, shape (N,)
        Starting stock and (stores') backorders, units.
    pipeline : array_like, shape (N, P), optional
        Units in transit to each node, arriving at the start of periods 0..P-1.
    lost_sales : bool
        Stores' unmet demand is lost (True) or backordered (False). Children's orders at a
        parent are always backordered.
    unit_cost, holding_cost_rate, stockout_cost, order_cost : float or array_like, shape (N,)
        As :func:`replenish.kernels.simulate_inventory` (currency).
    periods_per_year : float
    record : bool
        Also return per-period paths (``"daily"``: (N, T) arrays ``on_hand``,
        ``backorders``, ``received``, ``ordered``, ``shipped`` (to children) and ``owed``
        (by the parent)).

    Returns
    -------
    dict
        :data:`NETWORK_SIM_KEYS`, each (N, 1) float64.
    """
    st = tree_structure(parent)
    xp = get_xp(demand, reorder_point, order_up_to)
    d = asarray(demand, xp)
    n = st.n_nodes
    if d.ndim != 2 or d.shape[0] != n:
        raise ValueError(f"demand must have shape ({n}, T), got {d.shape}")
    d = d.astype(xp.float64)
    check_finite("demand", d, xp)
    if bool(xp.any(d < 0)):
        raise ValueError(f"demand must be >= 0; {int(xp.count_nonzero(d < 0))} entries are not")
    inner = asarray(~st.leaf, xp)
    if bool(xp.any(d[inner] > 0)):
        raise ValueError("demand: only leaves (stores) have shoppers; "
                         f"{int(xp.count_nonzero((d[inner] > 0).any(axis=1)))} inner nodes have demand")
    f64 = np.dtype(np.float64)

    def node(name, value, low=None):
        return xp.ascontiguousarray(item_array(name, value, n, xp, f64, low=low)).copy()

    def whole(name, value, low=0.0):
        a = node(name, value, low)
        if bool(xp.any(a != xp.floor(a))):
            raise ValueError(f"{name} must be whole periods")
        return a.astype(xp.int64)

    s_lvl, big_s = node("reorder_point", reorder_point), node("order_up_to", order_up_to)
    lead = whole("lead_time", lead_time)
    review = xp.maximum(whole("review_period", review_period), 1)
    offset = whole("review_offset", review_offset, low=None)
    moq_a = node("moq", 0.0 if moq is None else moq, 0.0)
    pack = node("case_pack", 0.0 if case_pack is None else case_pack, 0.0)
    cap = xp.full((n,), xp.inf) if max_order is None else xp.broadcast_to(
        asarray(max_order, xp, dtype=xp.float64), (n,)).copy()
    hold = node("unit_cost", unit_cost, 0.0) * node("holding_cost_rate", holding_cost_rate, 0.0) \
        / float(periods_per_year)
    short_cost, order_cost_a = node("stockout_cost", stockout_cost, 0.0), node("order_cost", order_cost, 0.0)

    width = int(lead.max()) + 1 if n else 1
    pipe = xp.zeros((width, n))
    if pipeline is not None:
        pl = asarray(pipeline, xp, dtype=xp.float64)
        if pl.ndim != 2 or pl.shape[0] != n:
            raise ValueError(f"pipeline must have shape ({n}, P), got {pl.shape}")
        if pl.shape[1] > width:
            pipe = xp.concatenate([pipe, xp.zeros((pl.shape[1] - width, n))])
            width = pl.shape[1]
        pipe[:pl.shape[1]] = pl.T
    events = (pipe > 0) * 1.0
    pipe_total = pipe.sum(axis=0)
    stock = node("on_hand", on_hand, 0.0)
    backlog = node("backorders", backorders, 0.0)
    met = xp.minimum(stock, backlog)
    stock, backlog = stock - met, backlog - met
    owed = xp.zeros(n)                     # units this node's parent still owes it
    cyc_len = xp.zeros(n, xp.int64)
    flag = xp.zeros(n, bool)
    is_root = asarray(st.parent < 0, xp)
    leaf = asarray(st.leaf, xp)
    levels = [(st.by_depth[k + 1], st.parent[st.by_depth[k + 1]]) for k in range(len(st.by_depth) - 1)]
    horizon = d.shape[1]
    acc = {k: xp.zeros(n) for k in NETWORK_SIM_KEYS}
    daily = {k: xp.zeros((horizon, n)) for k in _DAILY} if record else {}

    def owed_to_children():
        out = xp.zeros(n)
        for kids, up in levels:
            sums, ids = segment_sum(xp, owed[kids][None, :], up)
            out[asarray(ids, xp)] = sums[0]
        return out

    def receive(qty):
        """Units arriving (``qty`` per node, 0 where none): stores fill backorders first."""
        fill = xp.where(leaf, xp.minimum(qty, backlog), 0.0)
        backlog[...] = backlog - fill
        stock[...] = stock + qty - fill

    for t in range(horizon):
        slot = t % width
        got = pipe[slot].copy()
        pipe[slot] = 0.0
        pipe_total -= got
        due = events[slot] > 0
        events[slot] = 0.0
        receive(got)
        acc["received"] += got
        # review
        position = stock + pipe_total + owed - xp.where(leaf, backlog, owed_to_children())
        rev = ((t - offset) % review) == 0
        ordering = rev & (position <= s_lvl)
        q = xp.where(ordering, _order_quantity(xp, position, s_lvl, big_s, moq_a, pack, cap), 0.0)
        acc["orders"] += q > 0
        acc["ordered"] += q
        now = ordering & (lead == 0)
        ev = (t + lead) % width
        later = ordering & ~now
        idx = xp.nonzero(later)[0]
        events[ev[idx], idx] += 1.0
        due = due | now
        from_supplier = xp.where(is_root, q, 0.0)
        at_once = xp.where(now, from_supplier, 0.0)
        receive(at_once)
        acc["received"] += at_once
        ridx = xp.nonzero(is_root & later)[0]
        pipe[ev[ridx], ridx] += q[ridx]
        pipe_total[ridx] += q[ridx]
        owed += xp.where(is_root, 0.0, q)
        if record:
            daily["ordered"][t] = q
            daily["received"][t] = got + at_once
        close = due & (cyc_len > 0)
        acc["cycles"] += close
        acc["stockout_cycles"] += close & flag
        flag &= ~close
        cyc_len[close] = 0
        # shipping, from the roots down
        shipped_out = xp.zeros(n)
        for kids, up in levels:
            kx, ux = asarray(kids, xp), asarray(up, xp)
            want, ids = segment_sum(xp, owed[kx][None, :], up)
            idx_p = asarray(ids, xp)
            want = want[0]
            give = xp.minimum(stock[idx_p], want)
            ratio = xp.zeros(n)
            ratio[idx_p] = xp.where(want > 0, give / xp.where(want > 0, want, 1.0), 0.0)
            stock[idx_p] -= give
            shipped_out[idx_p] += give
            r = ratio[ux]
            ship = owed[kx] * r
            new = q[kx]
            # the parent's "demand" is its children's new orders; "sold" what of them left now
            dem_p, _ = segment_sum(xp, new[None, :], up)
            sold_p, _ = segment_sum(xp, (new * r)[None, :], up)
            acc["demand"][idx_p] += dem_p[0]
            acc["sold"][idx_p] += sold_p[0]
            acc["short"][idx_p] += dem_p[0] - sold_p[0]
            owed[kx] = owed[kx] - ship
            arrive_now = lead[kx] == 0
            inst = xp.zeros(n)
            inst[kx] = xp.where(arrive_now, ship, 0.0)
            receive(inst)
            acc["received"] += inst
            if record:
                daily["received"][t] += inst
            lat = kx[~arrive_now]
            pipe[(t + lead[lat]) % width, lat] += ship[~arrive_now]
            pipe_total[lat] += ship[~arrive_now]
        # shoppers at the stores
        dem = d[:, t]
        sold = xp.minimum(dem, xp.maximum(stock, 0.0))
        stock -= sold
        short = dem - sold
        if lost_sales:
            acc["lost"] += short
        else:
            backlog += short
        waiting = owed_to_children()
        owes = xp.where(leaf, backlog, waiting)
        out_flag = xp.where(leaf, (short > 0) | (backlog > 0), (waiting > 0))
        flag |= out_flag
        acc["demand"] += dem
        acc["sold"] += sold
        acc["short"] += short
        acc["stockout_periods"] += out_flag
        acc["on_hand_sum"] += stock
        acc["backorder_sum"] += owes
        acc["delay_sum"] += owed
        cyc_len += 1
        if record:
            daily["on_hand"][t] = stock
            daily["backorders"][t] = owes
            daily["shipped"][t] = shipped_out
            daily["owed"][t] = owed
    out = {k: v[:, None] for k, v in acc.items()}
    out["periods"] = xp.full((n, 1), float(horizon))
    out["holding_cost"] = out["on_hand_sum"] * hold[:, None]
    out["stockout_cost"] = out["short"] * short_cost[:, None]
    out["ordering_cost"] = out["orders"] * order_cost_a[:, None]
    out["waste_cost"] = xp.zeros((n, 1))
    if record:
        out["daily"] = {k: v.T for k, v in daily.items()}
    return out

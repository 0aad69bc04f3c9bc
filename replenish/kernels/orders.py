"""Order quantities and order timing from the inventory position."""
from __future__ import annotations

import numpy as np

from . import _cpu
from ._backend import asarray, get_xp, is_cupy
from ._validate import check_finite

__all__ = ["inventory_position", "order_quantity", "periods_until_order"]


def inventory_position(on_hand, on_order, backorders=None):
    """Inventory position ``on_hand + on_order - backorders``.

    Parameters
    ----------
    on_hand, on_order : float or ndarray, shape (n,)
        Units physically in stock / ordered but not yet received.
    backorders : float or ndarray, shape (n,), optional
        Units owed to customers.

    Returns
    -------
    ndarray, shape (n,)
        Units (negative when backorders exceed stock plus pipeline).
    """
    xp = get_xp(on_hand, on_order, backorders)
    parts = {"on_hand": on_hand, "on_order": on_order, "backorders": 0.0 if backorders is None else backorders}
    arrays = {}
    for name, value in parts.items():
        arrays[name] = asarray(value, xp)
        check_finite(name, arrays[name], xp)
    return arrays["on_hand"] + arrays["on_order"] - arrays["backorders"]


def order_quantity(position, reorder_point, order_up_to, *, moq=None, case_pack=None, max_order=None):
    """Order quantity of an (s, S) rule with MOQ, case pack and cap.

    If ``position <= reorder_point`` order ``order_up_to - position``; round up
    to a multiple of ``case_pack``; at least ``moq`` (itself rounded up to the
    case pack) when positive; at most ``max_order`` rounded down to the case
    pack.  When that cap is below the MOQ no feasible order exists and the
    quantity is 0.

    Parameters
    ----------
    position : ndarray, shape (n,)
        Inventory position, units.
    reorder_point, order_up_to : ndarray, shape (n,)
        ``s`` and ``S``, units of inventory position.
    moq : float or ndarray, shape (n,), optional
        Minimum order quantity, units (default none).
    case_pack : float or ndarray, shape (n,), optional
        Order multiple, units (default or 0: no rounding; pass 1 for whole units).
    max_order : float or ndarray, shape (n,), optional
        Largest allowed order, units (default, or ``inf``: unbounded).

    Returns
    -------
    ndarray, shape (n,)
        Units to order now (>= 0).  On CuPy inputs this is one fused kernel.
    """
    xp = get_xp(position, reorder_point, order_up_to, moq, case_pack, max_order)
    pos = asarray(position, xp)
    dt = pos.dtype if pos.dtype.kind == "f" else xp.float64
    pos = pos.astype(dt, copy=False)
    rop = asarray(reorder_point, xp, dtype=dt)
    out = asarray(order_up_to, xp, dtype=dt)
    moq_a = asarray(0.0 if moq is None else moq, xp, dtype=dt)
    pack = asarray(0.0 if case_pack is None else case_pack, xp, dtype=dt)
    cap = asarray(xp.inf if max_order is None else max_order, xp, dtype=dt)
    for name, a in (("position", pos), ("reorder_point", rop), ("order_up_to", out), ("moq", moq_a),
                    ("case_pack", pack)):
        check_finite(name, a, xp)
    if bool(xp.any(xp.isnan(cap))):
        raise ValueError("max_order has NaN entries (use None or inf for no cap)")
    if is_cupy(xp):
        from . import _cuda  # noqa: PLC0415  -- device-only module

        return _cuda.order_quantity(pos, rop, out, moq_a, pack, cap)
    return _order_quantity(xp, pos, rop, out, moq_a, pack, cap)


def _order_quantity(xp, pos, rop, out, moq, pack, cap):
    # Mirrors the device code in _cuda.ORDER_SNIPPET operation for operation so
    # that host and device agree to the last bit (up to the fused multiply-add).
    need = xp.where(pos <= rop, out - pos, 0)
    need = xp.maximum(need, 0)
    has_pack = pack > 0
    safe_pack = xp.where(has_pack, pack, 1)
    q = xp.where(need > 0, xp.maximum(need, moq), 0)
    q = xp.where(has_pack, xp.ceil(q / safe_pack) * safe_pack, q)
    top = xp.where(has_pack, xp.floor(cap / safe_pack) * safe_pack, cap)
    q = xp.minimum(q, top)
    return xp.where(q < moq, 0, q).astype(pos.dtype, copy=False)


def periods_until_order(position, reorder_point, demand_per_period):
    """Periods until the projected inventory position reaches the reorder point.

    Parameters
    ----------
    position : ndarray, shape (n,)
        Inventory position today, units.
    reorder_point : ndarray, shape (n,)
        Units of inventory position.
    demand_per_period : ndarray, shape (n, H)
        Point forecast used to draw the position down (median or mean), units
        per period; period 0 is today.

    Returns
    -------
    ndarray, shape (n,)
        First period ``t`` in ``0 .. H-1`` at whose start the position
        ``position - sum(demand[:t])`` is at or below the reorder point
        (0 = order today), as float; ``NaN`` when that does not happen within
        the horizon.  With periodic review the order goes out at the first
        review on or after ``t``.
    """
    xp = get_xp(position, reorder_point, demand_per_period)
    d = asarray(demand_per_period, xp)
    dt = d.dtype if d.dtype.kind == "f" else xp.float64
    d = d.astype(dt, copy=False)
    pos = asarray(position, xp, dtype=dt)
    rop = asarray(reorder_point, xp, dtype=dt)
    for name, a in (("position", pos), ("reorder_point", rop), ("demand_per_period", d)):
        check_finite(name, a, xp)
    horizon = d.shape[1]
    if xp is np and _cpu.enabled() and horizon:
        return _cpu.periods_until_order(pos, rop, d)
    # demand drawn before period t, as one product with a strictly-upper-triangular
    # matrix of ones (numpy's cumsum along rows is several times slower)
    before = xp.triu(xp.ones((horizon, horizon), dtype=dt), k=1)
    drawn = d @ before
    hit = (pos[:, None] - drawn) <= rop[:, None]
    first = xp.argmax(hit, axis=1).astype(dt)
    return xp.where(hit.any(axis=1), first, xp.nan).astype(dt, copy=False)

"""Inventory simulation: many items, day by day, under their (s, S) policies.

One call simulates every item at once over the same periods (days for daily data): the
only loop is over periods (NumPy or CuPy, vectorized over items), or, on the host with
Numba, one compiled loop per item run in parallel over items (:mod:`._sim_cpu`, the same
arithmetic). The policy may change at re-plan points (``segment_start``): a backtest
re-plans at each origin and the stock carries over.

Each period ``t`` of an item, in this order:

1. **Expiry** (``shelf_life`` m): units received in period ``t - m`` that are still on
   hand are written off (``expired``). Stock leaves first in, first out, so these are the
   oldest units. Stock on hand at the start counts as received in period 0.
2. **Receipts**: orders due in ``t`` arrive; they fill backorders first, the rest goes on
   hand.
3. **Review** (every ``review_period`` periods, when ``(t - review_offset) % R == 0``):
   inventory position = on hand + on order - backorders; at or below the reorder point
   ``s``, order up to ``S``, rounded up to the case pack, at least the MOQ, at most
   ``max_order`` (the rule of :func:`replenish.kernels.orders.order_quantity`). The order
   arrives at the start of period ``t + L``; with ``L = 0`` it arrives at once, before
   this period's demand (so the position protects demand of periods ``t .. t + R + L - 1``,
   the protection interval of :func:`replenish.kernels.plan_orders`).
4. **Demand** is met from stock on hand, oldest units first. What is not met is
   backordered (``lost_sales=False``) or lost.

Lead times are whole periods, drawn per order: fixed (a fractional mean is rounded up
or down at random, keeping its mean), random with the item's mean and standard deviation,
or from a discrete distribution over 0..Lmax periods. A random lead time is a lognormal
value rounded up or down at random (keeping its mean); rounding adds variance (a mean of
1 period with sd 0.25 would come out with sd 0.44 in whole periods), so the lognormal's
own sd is set smaller, such that the *whole-period* lead times have the declared mean and
standard deviation, the two moments the planning formulas use (:func:`rounded_lead_sd`).
A declared sd below what any whole-period lead time of that mean can have (``sqrt(f (1 -
f))``, ``f`` the mean's fractional part) gives that minimum: the mean's two neighbouring
whole periods. Draws are truncated at ``mean + 6 std``. With
``crossing=True`` (the default; each order's lead time is independent, which is what the
planning formulas assume) a later order may arrive before an earlier one; with
``crossing=False`` an order never arrives before the one placed before it (it waits for
it: later arrivals, same order of receipts). Random numbers come from a counter-based
hash of ``(seed, item id, period, stream)``: results do not depend on the batch, the
backend or how items are split into calls.

Measures, per item and segment (a period belongs to the segment it lies in; a
replenishment cycle to the segment of the receipt that ends it):

- a **replenishment cycle** runs from the arrival of one order to the period before the
  next order arrives (the first from period 0). A review at or below the reorder point
  whose order rule gives no units still counts as an order of zero units arriving after its
  lead time: under (R, S) every review starts a cycle, with or without demand to replace,
  as in the textbook definition the planning target uses. A cycle is a *stockout cycle*
  when in any of its periods demand went unmet or backorders were outstanding at the
  period's end. Cycle service level = 1 -
  stockout cycles / cycles; cycles still open at the end are not counted (the returned
  ``state`` carries them into the next call).
- fill rate = units sold from stock in the period they were demanded / units demanded.
- a **stockout period**: demand went unmet, or backorders were outstanding at its end.
- on hand and backorders are measured at the end of each period.

Costs (currency): holding ``unit_cost * holding_cost_rate / periods_per_year`` per unit on
hand per period; stockout ``stockout_cost`` per unit not met when demanded; ordering
``order_cost`` per order; waste ``unit_cost`` per unit expired.

State and sums are float64 on every backend (a year of daily float32 sums would lose
units); the demand may be float32.
"""
from __future__ import annotations

import math

import numpy as np

from ._backend import asarray, get_xp, is_cupy, to_numpy
from ._validate import check_finite, item_array, lead_time_pmf_array
from ._sim_common import ACC as _ACC
from ._sim_common import C_ITEM as _C_ITEM, C_SEED as _C_SEED, C_STREAM as _C_STREAM, C_T as _C_T
from ._sim_common import DAILY_KEYS, MASK as _MASK, SIM_KEYS
from .orders import _order_quantity

__all__ = ["simulate_inventory", "simulation_totals", "SIM_KEYS", "uniform_hash", "draw_lead_times",
           "rounded_lead_sd"]

_LEAD_SD_CAP = 6.0   # lognormal lead times are truncated at mean + 6 std


def _hash_base(seed: int, t: int, stream: int) -> int:
    return (seed * _C_SEED + t * _C_T + stream * _C_STREAM) & _MASK


def uniform_hash(xp, ids, seed: int, t: int, stream: int):
    """Uniforms in (0, 1) from a counter-based hash of (seed, item id, period, stream).

    ``ids`` are uint64 item ids (shape (n,)); the result has shape (n,), float64. The same
    mixing (SplitMix64's finaliser) runs in the Numba and CUDA code, so every backend
    draws the same numbers.
    """
    z = ids * xp.uint64(_C_ITEM) + xp.uint64(_hash_base(seed, t, stream))
    z = (z ^ (z >> xp.uint64(30))) * xp.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> xp.uint64(27))) * xp.uint64(0x94D049BB133111EB)
    z = z ^ (z >> xp.uint64(31))
    return ((z >> xp.uint64(11)).astype(xp.float64) + 0.5) * (1.0 / 9007199254740992.0)


def _rounded_moments(mean, sd, cap):
    """Mean and variance of whole-period lead times: a lognormal (mean, sd) value truncated
    at ``cap`` (whole periods) and rounded up or down at random. Closed form from the
    lognormal's partial moments; arrays of shape (m,), periods."""
    from scipy.special import ndtr  # noqa: PLC0415
    mean, sd, cap = (np.asarray(a, np.float64) for a in (mean, sd, cap))
    out_mean, out_var = mean.copy(), mean - np.floor(mean)
    out_var = out_var * (1 - out_var)   # sd 0: the two neighbouring whole periods
    live = (sd > 0) & (mean > 0)
    if not live.any():
        return out_mean, out_var
    m, s, c = mean[live], sd[live], cap[live]
    sig2 = np.log1p((s / m) ** 2)
    sig, mu = np.sqrt(sig2), np.log(m) - sig2 / 2
    k = np.arange(int(c.max()) + 1, dtype=np.float64)[None, :]   # bins [k, k + 1)
    with np.errstate(divide="ignore"):
        logk = np.log(k)

    def below(j, logx):   # E[X^j 1{X <= x}]
        return np.exp(j * mu + j * j * sig2 / 2)[:, None] * ndtr((logx - mu[:, None] - j * sig2[:, None])
                                                                  / sig[:, None])
    m0, m1, m2 = (below(j, logk) for j in range(3))   # at k = 0, 1, ..., cap_max
    inside = k[:, :-1] < c[:, None]                    # bins below the cap
    bins = [np.diff(a, axis=1) for a in (m0, m1, m2)]
    lo = k[:, :-1]
    frac_var = ((2 * lo + 1) * bins[1] - bins[2] - lo * (lo + 1) * bins[0]) * inside   # E[f (1 - f)]
    at = c.astype(np.int64)[:, None]
    tail = 1 - np.take_along_axis(m0, at, 1)[:, 0]
    ey = np.take_along_axis(m1, at, 1)[:, 0] + c * tail
    ey2 = np.take_along_axis(m2, at, 1)[:, 0] + c * c * tail
    out_mean[live] = ey
    out_var[live] = np.maximum(ey2 + frac_var.sum(axis=1) - ey * ey, 0.0)
    return out_mean, out_var


def rounded_lead_sd(mean, sd, *, chunk: int = 4096):
    """The lognormal sd whose randomly rounded draws have standard deviation ``sd``.

    ``mean`` and ``sd`` are the declared lead-time mean and standard deviation, periods,
    arrays of shape (n,). Returns the sd (periods) to give the lognormal before rounding:
    0 where the declared sd is at most the least a whole-period lead time of that mean can
    have. Solved by bisection on the distinct (mean, sd) pairs, in float64 on the host.
    """
    mean, sd = np.broadcast_arrays(np.asarray(mean, np.float64), np.asarray(sd, np.float64))
    if not sd.size or sd.max() <= 0:   # fixed lead times: nothing to solve
        return np.zeros(mean.shape)
    if mean.size > 1 and mean.min() == mean.max() and sd.min() == sd.max():   # one lead time for all
        return np.broadcast_to(rounded_lead_sd(mean.flat[:1], sd.flat[:1]), mean.shape).copy()
    # distinct (mean, sd) pairs through integer codes (sorting floats once each is cheaper)
    um, im = np.unique(mean.ravel(), return_inverse=True)
    us, isd = np.unique(sd.ravel(), return_inverse=True)
    codes, back = np.unique(im.reshape(-1) * len(us) + isd.reshape(-1), return_inverse=True)
    pm, ps = um[codes // len(us)], us[codes % len(us)]
    got = np.zeros(len(codes))
    for a in range(0, len(codes), chunk):
        m, s = pm[a:a + chunk], ps[a:a + chunk]
        cap = np.where((s > 0) & (m > 0), np.ceil(m + _LEAD_SD_CAP * s), m)
        want = s * s
        # rounding adds at most 1/4 period^2: the answer lies in [sqrt(sd^2 - 1/4), sd]
        lo, hi = np.sqrt(np.maximum(want - 0.25, 0.0)), s.copy()
        for _ in range(20):   # the rounded variance does not decrease with the lognormal's sd
            mid = (lo + hi) / 2
            high = _rounded_moments(m, mid, cap)[1] >= want
            hi, lo = np.where(high, mid, hi), np.where(high, lo, mid)
        frac = m - np.floor(m)
        got[a:a + chunk] = np.where(frac * (1 - frac) >= want, 0.0, hi)
    return got[np.asarray(back).reshape(-1)].reshape(mean.shape)


def draw_lead_times(xp, lead, ids, seed: int, t: int):
    """Whole-period lead times of orders placed in period ``t`` by items ``ids``.

    ``lead`` is the prepared lead-time model (see :func:`_lead_model`) restricted to those
    items. Returns int64 periods, shape (len(ids),).
    """
    u0 = uniform_hash(xp, ids, seed, t, 0)
    if lead["cdf"] is not None:
        cdf = lead["cdf"]
        lmax = cdf.shape[1] - 1
        got = (cdf <= u0[:, None]).sum(axis=1)
        return xp.minimum(got, lmax).astype(xp.int64)
    u2 = uniform_hash(xp, ids, seed, t, 2)
    value = lead["mean"]
    random = lead["sigma"] > 0
    if bool(random.any()):
        u1 = uniform_hash(xp, ids, seed, t, 1)
        z = xp.sqrt(-2.0 * xp.log(u0)) * xp.cos(2.0 * math.pi * u1)
        drawn = xp.minimum(xp.exp(lead["mu"] + lead["sigma"] * z), lead["cap"])
        value = xp.where(random, drawn, value)
    whole = xp.floor(value)
    return (whole + (u2 < value - whole)).astype(xp.int64)


def simulate_inventory(demand, *, reorder_point, order_up_to, segment_start=None, review_period=1,
                       review_offset=0, lead_time=None, lead_time_std=None, lead_time_pmf=None,
                       crossing=True, moq=None, case_pack=None, max_order=None, on_hand=0.0,
                       pipeline=None, backorders=0.0, lost_sales=False, shelf_life=None,
                       unit_cost=1.0, holding_cost_rate=0.25, stockout_cost=0.0, order_cost=0.0,
                       periods_per_year=365.0, seed=0, item_ids=None, state=None,
                       start_period=0, record=False, engine="auto") -> dict:
    """Simulate the inventory of many items under (s, S) policies on a demand path.

    Parameters
    ----------
    demand : array_like, shape (n, T)
        Demand per item and period, units (>= 0, finite). Its backend (NumPy or CuPy)
        decides where the simulation runs.
    reorder_point, order_up_to : array_like, shape (n,) or (n, S)
        ``s`` and ``S`` per item (and re-plan segment), units of inventory position.
    segment_start : array_like of int, shape (S,), optional
        First period of each segment; starts at 0, strictly increasing, below T
        (default: one segment).
    review_period : int or array_like, shape (n,) or (n, S)
        Periods between reviews, whole and >= 1 (0, continuous review, is read as 1:
        every period).
    review_offset : int or array_like, shape (n,) or (n, S)
        Reviews happen in the periods ``t`` with ``(start_period + t - review_offset) %
        review_period == 0``.
    lead_time : float or array_like, shape (n,)
        Mean lead time, periods (>= 0). ``None`` only with ``lead_time_pmf``.
    lead_time_std : float or array_like, shape (n,), optional
        Standard deviation of the lead time, periods (lognormal draws).
    lead_time_pmf : array_like, shape (Lmax+1,) or (n, Lmax+1), optional
        Lead-time distribution over 0..Lmax whole periods (replaces the two above).
    crossing : bool
        Orders may overtake each other (independent lead times) or not (see module notes).
    moq, case_pack, max_order : float or array_like, shape (n,), optional
        Order constraints, units (no MOQ, no rounding, no cap by default).
    on_hand, backorders : float or array_like, shape (n,)
        Starting stock on hand (fresh) and backorders, units; starting backorders are met
        from the starting stock first.
    pipeline : array_like, shape (n, P), optional
        Units already ordered, arriving at the start of periods 0..P-1.
    lost_sales : bool
        Unmet demand is lost (True) or backordered (False).
    shelf_life : int or array_like, shape (n,), optional
        Periods a unit can be sold after its receipt (>= 1); ``None``: no expiry.
    unit_cost : float or array_like, shape (n,)
        Currency per unit (holding and waste costs).
    holding_cost_rate : float or array_like, shape (n,)
        Holding cost per year as a fraction of unit cost.
    stockout_cost, order_cost : float or array_like, shape (n,)
        Currency per unit not met when demanded; currency per order.
    periods_per_year : float
        365 for days, 52 for weeks.
    seed : int
        Seed of the lead-time draws (deterministic).
    item_ids : array_like of int, shape (n,), optional
        Ids for the random streams (default ``0..n-1``); give stable ids to get the same
        draws for an item whatever else is in the batch.
    state : dict, optional
        The ``state`` returned by an earlier call: continue from it (``on_hand``,
        ``pipeline`` and ``backorders`` are then ignored). This call's period 0 is the
        period after the earlier call's last one.
    start_period : int
        Index of this call's period 0 in the whole run: the review calendar and the random
        streams count from the run's start, so a run continued with ``state`` and
        ``start_period`` equals one call over all periods.
    record : bool
        Also return per-period paths (see Returns).
    engine : {"auto", "numba", "xp"}
        On the host, the compiled per-item loop (Numba, the default when available) or
        the period loop vectorized over items (NumPy; the code CuPy runs).

    Returns
    -------
    dict
        Every key of :data:`SIM_KEYS`, shape (n, S), float64 (units, unit-periods, counts
        or currency as listed there); ``"state"``: a dict to continue from; with
        ``record``, ``"daily"``: a dict of (n, T) float64 paths ``on_hand``,
        ``backorders`` (end of period), ``received``, ``sold``, ``short``, ``expired``,
        ``ordered`` (units in the period). Use :func:`simulation_totals` for rates.
    """
    xp = get_xp(demand, reorder_point, order_up_to)
    d = asarray(demand, xp)
    if d.ndim != 2:
        raise ValueError(f"demand must have shape (n, T), got {d.shape}")
    n, horizon = d.shape
    if d.dtype.kind != "f":
        d = d.astype(xp.float64)
    check_finite("demand", d, xp)
    if bool(xp.any(d < 0)):
        raise ValueError(f"demand must be >= 0; {int(xp.count_nonzero(d < 0))} entries are not")
    seg = np.asarray([0] if segment_start is None else segment_start, np.int64).reshape(-1)
    if seg[0] != 0 or (np.diff(seg) <= 0).any() or (horizon and seg[-1] >= horizon):
        raise ValueError(f"segment_start must start at 0, increase strictly and stay below T={horizon}; "
                         f"got {seg.tolist()}")
    n_seg = len(seg)
    f64 = np.dtype(np.float64)

    def per_seg(name, value, low=None, integer=False):
        a = asarray(value, xp, dtype=xp.float64)
        if a.ndim <= 1:
            a = item_array(name, a, n, xp, f64, low=low)[:, None]
        elif a.shape != (n, n_seg):
            raise ValueError(f"{name} must have shape ({n},) or ({n}, {n_seg}), got {a.shape}")
        check_finite(name, a, xp)
        if low is not None and bool(xp.any(a < low)):
            raise ValueError(f"{name} must be >= {low}")
        if integer and bool(xp.any(a != xp.floor(a))):
            raise ValueError(f"{name} must be whole periods")
        return xp.ascontiguousarray(xp.broadcast_to(a, (n, n_seg)).T)   # (S, n)

    def per_item(name, value, low=0.0):
        return xp.ascontiguousarray(item_array(name, value, n, xp, f64, low=low))

    s_lvl = per_seg("reorder_point", reorder_point)
    big_s = per_seg("order_up_to", order_up_to)
    review = xp.maximum(per_seg("review_period", review_period, low=0.0, integer=True), 1).astype(xp.int64)
    offset = per_seg("review_offset", review_offset, integer=True).astype(xp.int64)
    moq_a = per_item("moq", 0.0 if moq is None else moq)
    pack = per_item("case_pack", 0.0 if case_pack is None else case_pack)
    if max_order is None:
        cap = xp.full((n,), xp.inf)
    else:
        cap = asarray(max_order, xp, dtype=xp.float64)
        if bool(xp.any(xp.isnan(cap))) or bool(xp.any(cap < 0)):
            raise ValueError("max_order must be >= 0 (inf or None: no cap)")
        cap = xp.ascontiguousarray(xp.broadcast_to(cap, (n,)))
    lead = _lead_model(xp, n, lead_time, lead_time_std, lead_time_pmf)
    if shelf_life is None:
        life = xp.zeros((n,), xp.int64)
    else:
        lf = per_item("shelf_life", shelf_life, low=1.0)
        if bool(xp.any(lf != xp.floor(lf))):
            raise ValueError("shelf_life must be whole periods")
        life = lf.astype(xp.int64)
    # ring of on-hand units by receipt period: slot p % (longest life + 1)
    ages = int(life.max()) + 1 if (n and shelf_life is not None) else 0
    ids = (xp.arange(n, dtype=xp.uint64) if item_ids is None
           else asarray(item_ids, xp).astype(xp.uint64).reshape(n))

    width = max(int(lead["width"]), 1)
    if state is None:
        pipe_in = None if pipeline is None else asarray(pipeline, xp, dtype=xp.float64)
        if pipe_in is not None:
            if pipe_in.ndim != 2 or pipe_in.shape[0] != n:
                raise ValueError(f"pipeline must have shape ({n}, P), got {pipe_in.shape}")
            check_finite("pipeline", pipe_in, xp)
            if bool(xp.any(pipe_in < 0)):
                raise ValueError("pipeline must be >= 0")
            width = max(width, pipe_in.shape[1])
        st = _fresh_state(xp, n, width, ages, per_item("on_hand", on_hand),
                          per_item("backorders", backorders), pipe_in)
    else:
        st = _adopt_state(xp, state, n, width, ages)
        width = st["pipe"].shape[0]
    costs = dict(hold=per_item("unit_cost", unit_cost) * per_item("holding_cost_rate", holding_cost_rate)
                 / float(periods_per_year),
                 unit=per_item("unit_cost", unit_cost), short=per_item("stockout_cost", stockout_cost),
                 order=per_item("order_cost", order_cost))
    args = dict(seg=seg, s=s_lvl, big_s=big_s, review=review, offset=offset, moq=moq_a, pack=pack,
                cap=cap, lead=lead, crossing=bool(crossing), lost=bool(lost_sales), life=life, ids=ids,
                seed=int(seed), t0=int(start_period), record=bool(record))
    use_numba = engine == "numba" or (engine == "auto" and xp is np and _numba_ok())
    if engine not in ("auto", "numba", "xp"):
        raise ValueError("engine must be 'auto', 'numba' or 'xp'")
    if use_numba and xp is not np:
        raise ValueError("engine='numba' runs on NumPy inputs only")
    if use_numba:
        from . import _sim_cpu  # noqa: PLC0415
        acc, daily = _sim_cpu.run(d, st, args)
    else:
        acc, daily = _run_xp(xp, d, st, args)
    out = {k: acc[j].T for j, k in enumerate(_ACC)}   # (n, S)
    lengths = np.diff(np.append(seg, horizon)).astype(np.float64)
    out["periods"] = xp.broadcast_to(asarray(lengths, xp)[None, :], (n, n_seg)).copy()
    out["holding_cost"] = out["on_hand_sum"] * costs["hold"][:, None]
    out["stockout_cost"] = out["short"] * costs["short"][:, None]
    out["ordering_cost"] = out["orders"] * costs["order"][:, None]
    out["waste_cost"] = out["expired"] * costs["unit"][:, None]
    out["state"] = _export_state(xp, st, horizon)
    if record:
        out["daily"] = {k: v.T for k, v in daily.items()}
    return out


def simulation_totals(result: dict, unit_cost=1.0, axis=None) -> dict:
    """Rates and averages from :func:`simulate_inventory`'s sums.

    Parameters
    ----------
    result : dict
        The simulation's output (or any dict with the :data:`SIM_KEYS` sums).
    unit_cost : float or array_like, shape (n,)
        Currency per unit, for the value of stock on hand.
    axis : None, int or tuple
        Axes summed over before the ratios: ``None`` pools everything (all items and
        segments), ``1`` gives per-item totals, ``0`` per-segment ones.

    Returns
    -------
    dict
        ``fill_rate`` (sold / demand), ``cycle_service_level`` (1 - stockout cycles /
        cycles; NaN without cycles), ``avg_on_hand_units`` and ``avg_on_hand_value`` (per
        item, per period: units and currency), ``stockout_periods``, ``orders``,
        ``ordered``, ``expired``, ``demand`` and the four costs (sums over the axes),
        ``total_cost`` (currency).
    """
    xp = get_xp(result["demand"])
    uc = asarray(unit_cost, xp, dtype=xp.float64)
    uc = uc[:, None] if uc.ndim == 1 else uc
    value = result["on_hand_sum"] * uc

    def total(a):
        return a.sum(axis=axis)

    # total item-periods in the denominator: the average is per item and period
    periods = total(result["periods"])
    with np.errstate(invalid="ignore", divide="ignore"):
        dem = total(result["demand"])
        cyc = total(result["cycles"])
        out = {
            "fill_rate": xp.where(dem > 0, total(result["sold"]) / xp.where(dem > 0, dem, 1), xp.nan),
            "cycle_service_level": xp.where(cyc > 0, 1 - total(result["stockout_cycles"]) /
                                            xp.where(cyc > 0, cyc, 1), xp.nan),
            "avg_on_hand_units": total(result["on_hand_sum"]) / periods,
            "avg_on_hand_value": total(value) / periods,
        }
    for k in ("demand", "stockout_periods", "orders", "ordered", "expired", "cycles",
              "holding_cost", "stockout_cost", "ordering_cost", "waste_cost"):
        out[k] = total(result[k])
    out["total_cost"] = (out["holding_cost"] + out["stockout_cost"] + out["ordering_cost"]
                         + out["waste_cost"])
    return out


# ---- preparation --------------------------------------------------------------------------

def _numba_ok() -> bool:
    from . import _cpu  # noqa: PLC0415
    return _cpu.enabled()


def _lead_model(xp, n, lead_time, lead_time_std, lead_time_pmf) -> dict:
    """Per-item lead-time parameters: a cdf (pmf), or mean with lognormal mu/sigma and cap."""
    f64 = np.dtype(np.float64)
    if lead_time_pmf is not None:
        pmf = lead_time_pmf_array(lead_time_pmf, n, np, f64) if not is_cupy(xp) else \
            lead_time_pmf_array(asarray(lead_time_pmf, np, dtype=f64), n, np, f64)
        cdf = np.cumsum(np.asarray(pmf), axis=1)   # sequential sums: every backend reads these values
        cdf = np.ascontiguousarray(np.broadcast_to(cdf, (n, cdf.shape[1])))
        zero = xp.zeros((n,))
        return {"cdf": asarray(cdf, xp), "mean": zero, "mu": zero, "sigma": zero, "cap": zero,
                "width": cdf.shape[1]}
    if lead_time is None:
        raise ValueError("lead_time is required unless lead_time_pmf is given")
    mean = xp.ascontiguousarray(item_array("lead_time", lead_time, n, xp, f64, low=0.0))
    sd = xp.ascontiguousarray(item_array("lead_time_std", 0.0 if lead_time_std is None else lead_time_std,
                                         n, xp, f64, low=0.0))
    # the lognormal's own sd, smaller, so that the rounded (whole-period) draws have sd ``sd``
    inner = asarray(rounded_lead_sd(to_numpy(mean), to_numpy(sd)), xp, dtype=f64)
    random = (inner > 0) & (mean > 0)
    cap = xp.where(random, xp.ceil(mean + _LEAD_SD_CAP * sd), mean)   # (two-point draws: the mean)
    safe = xp.where(mean > 0, mean, 1.0)
    sig2 = xp.where(random, xp.log1p((inner / safe) ** 2), 0.0)
    sigma = xp.sqrt(sig2)
    mu = xp.log(safe) - sig2 / 2
    width = int(xp.ceil(cap).max()) + 1 if n else 1
    return {"cdf": None, "mean": mean, "mu": mu, "sigma": sigma, "cap": cap, "width": width}


def _fresh_state(xp, n, width, ages, on_hand, backorders, pipeline):
    """State at period 0: rings indexed by period modulo their width, (width, n) and (ages, n)."""
    pipe = xp.zeros((width, n))
    if pipeline is not None:
        pipe[:pipeline.shape[1]] = pipeline.T
    met = xp.minimum(on_hand, backorders)   # customers waiting are served from the stock first
    on_hand, backorders = on_hand - met, backorders - met
    age = xp.zeros((max(ages, 1), n))
    if ages:
        age[0] = on_hand   # received "in period 0"
    return {"on_hand": on_hand, "backlog": backorders, "pipe": pipe, "events": (pipe > 0) * 1.0,
            "pipe_total": pipe.sum(axis=0), "age": age, "last_arrival": xp.full((n,), -1, xp.int64),
            "cycle_len": xp.zeros((n,), xp.int64), "cycle_flag": xp.zeros((n,), bool), "t0": 0}


def _export_state(xp, st, horizon):
    """The state after the last period, re-based so that the next call starts at period 0."""
    t_end = st["t0"] + horizon
    width = st["pipe"].shape[0]
    order = (t_end + np.arange(width)) % width     # pipeline[j]: arriving j periods after the end
    ages = st["age"].shape[0]
    return {"on_hand": st["on_hand"], "backorders": st["backlog"],
            "pipeline": xp.ascontiguousarray(st["pipe"][asarray(order, xp)].T),
            "due": xp.ascontiguousarray(st["events"][asarray(order, xp)].T),
            # age_slots[j]: units received j periods before the next period 0 ... as ring slots
            "age_ring": xp.ascontiguousarray(st["age"].T), "age_phase": int(t_end % ages),
            "last_arrival": st["last_arrival"] - t_end, "cycle_len": st["cycle_len"],
            "cycle_flag": st["cycle_flag"]}


def _adopt_state(xp, state, n, width, ages):
    pipe_in = asarray(state["pipeline"], xp, dtype=xp.float64)
    if pipe_in.shape[0] != n:
        raise ValueError(f"state is of {pipe_in.shape[0]} items, not {n}")
    w = max(width, pipe_in.shape[1])
    pipe = xp.zeros((w, n))
    pipe[:pipe_in.shape[1]] = pipe_in.T
    events = xp.zeros((w, n))
    events[:pipe_in.shape[1]] = asarray(state["due"], xp, dtype=xp.float64).T
    ring = asarray(state["age_ring"], xp, dtype=xp.float64).T   # (ages_old, n)
    old = ring.shape[0]
    age = xp.zeros((max(ages, 1), n))
    if ages:
        if old != max(ages, 1):
            raise ValueError("state: the shelf life changed between calls")
        # slot of period p was p % ages; re-base so that the next period 0 has slot 0
        phase = int(state["age_phase"])
        age = ring[asarray((np.arange(ages) + phase) % ages, xp)].copy()
    return {"on_hand": asarray(state["on_hand"], xp, dtype=xp.float64).copy(),
            "backlog": asarray(state["backorders"], xp, dtype=xp.float64).copy(), "pipe": pipe,
            "events": events,
            "pipe_total": pipe.sum(axis=0), "age": age,
            "last_arrival": asarray(state["last_arrival"], xp).astype(xp.int64),
            "cycle_len": asarray(state["cycle_len"], xp).astype(xp.int64).copy(),
            "cycle_flag": asarray(state["cycle_flag"], xp).astype(bool).copy(), "t0": 0}


# ---- the period loop, vectorized over items (NumPy or CuPy) --------------------------------

def _run_xp(xp, demand, st, a):
    n, horizon = demand.shape
    seg, n_seg = a["seg"], len(a["seg"])
    acc = xp.zeros((len(_ACC), n_seg, n))
    col = {k: j for j, k in enumerate(_ACC)}
    daily = {k: xp.zeros((horizon, n)) for k in DAILY_KEYS} if a["record"] else {}
    d_t = xp.ascontiguousarray(demand.T)
    on_hand, backlog, pipe, pipe_total, age = (st["on_hand"], st["backlog"], st["pipe"],
                                               st["pipe_total"], st["age"])
    events = st["events"]
    last, cyc_len, flag = st["last_arrival"], st["cycle_len"], st["cycle_flag"]
    width = pipe.shape[0]
    life = a["life"]
    ages = age.shape[0] if int(life.max() if n else 0) > 0 else 0
    rows = xp.arange(n)
    lead = a["lead"]
    k = 0
    for t in range(horizon):
        while k + 1 < n_seg and t >= seg[k + 1]:
            k += 1
        ak = acc[:, k]
        if ages:
            # units received in period t - shelf life are written off (each item its own life)
            slot = (t - life) % ages
            x = age[slot, rows]
            age[slot, rows] = 0.0
            on_hand -= x
            ak[col["expired"]] += x
            if a["record"]:
                daily["expired"][t] += x
        got = pipe[t % width].copy()
        pipe[t % width] = 0.0
        pipe_total -= got
        received = events[t % width] > 0   # orders due now, also those of zero units
        events[t % width] = 0.0
        _receive(xp, got, on_hand, backlog, age, t, ages)
        ak[col["received"]] += got
        if a["record"]:
            daily["received"][t] += got
        # review: at or below the reorder point an order is due (of zero units when the
        # order rule gives none: it still marks the next replenishment cycle's start)
        rev = ((t + a["t0"] - a["offset"][k]) % a["review"][k]) == 0
        pos = (on_hand + pipe_total) - backlog
        q = _order_quantity(xp, pos, a["s"][k], a["big_s"][k], a["moq"], a["pack"], a["cap"])
        due = rev & (pos <= a["s"][k])
        q = xp.where(due, q, 0.0)
        if bool(due.any()):
            idx = xp.nonzero(due)[0]
            sub = {kk: (v[idx] if v is not None and not isinstance(v, int) else v) for kk, v in lead.items()}
            lt = draw_lead_times(xp, sub, a["ids"][idx], a["seed"], t + a["t0"])
            arrival = t + lt
            if not a["crossing"]:
                arrival = xp.maximum(arrival, last[idx])
            last[idx] = arrival
            now = arrival == t
            qi = xp.zeros((n,))
            qi[idx] = xp.where(now, q[idx], 0.0)
            _receive(xp, qi, on_hand, backlog, age, t, ages)
            received[idx[now]] = True
            later = idx[~now]
            slots = arrival[~now] % width
            pipe[slots, later] += q[later]
            events[slots, later] += 1.0
            pipe_total[later] += q[later]
            ak[col["orders"]] += q > 0
            ak[col["ordered"]] += q
            ak[col["received"]] += qi
            if a["record"]:
                daily["ordered"][t] += q
                daily["received"][t] += qi
        # a receipt closes the cycle that ended with the previous period (counted in this
        # period's segment, so that a run split into calls counts the same)
        close = received & (cyc_len > 0)
        acc[col["cycles"], k] += close
        acc[col["stockout_cycles"], k] += close & flag
        flag &= ~close
        cyc_len[close] = 0
        # demand, oldest units first
        dem = d_t[t].astype(xp.float64)
        sold = xp.minimum(dem, xp.maximum(on_hand, 0.0))
        if ages:
            rest = sold.copy()
            for j in range(ages - 1, -1, -1):      # oldest first: received ages - 1 periods ago
                slot = (t - j) % ages
                take = xp.minimum(rest, age[slot])
                age[slot] -= take
                rest -= take
        on_hand -= sold
        short = dem - sold
        if a["lost"]:
            ak[col["lost"]] += short
        else:
            backlog += short
        out = (short > 0) | (backlog > 0)
        flag |= out
        ak[col["demand"]] += dem
        ak[col["sold"]] += sold
        ak[col["short"]] += short
        ak[col["stockout_periods"]] += out
        ak[col["on_hand_sum"]] += on_hand
        ak[col["backorder_sum"]] += backlog
        cyc_len += 1
        if a["record"]:
            daily["on_hand"][t] = on_hand
            daily["backorders"][t] = backlog
            daily["sold"][t] = sold
            daily["short"][t] = short
    st["pipe_total"] = pipe_total
    return acc, daily


def _receive(xp, qty, on_hand, backlog, age, t, ages):
    """Receipts fill backorders first; the rest goes on hand (into period t's age slot)."""
    fill = xp.minimum(qty, backlog)
    backlog -= fill
    rest = qty - fill
    on_hand += rest
    if ages:
        age[t % ages] += rest

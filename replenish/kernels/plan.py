"""The batch entry point: from quantile forecasts and stock positions to orders."""
from __future__ import annotations

import contextlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from . import _cpu
from ._backend import asarray, get_xp, is_cupy
from ._sampling import SamplingProblem
from ._validate import (SERVICE_LEVEL_MAX, SERVICE_LEVEL_MIN, item_array, lead_time_pmf_array,
                        service_level_array)
from .allocation import allocate_budget
from ._moments import period_summary
from .lead_time import _interval_moments, mixture_demand_moments
from .period_demand import basis_weights, check_quantile_values, prepare_quantiles
from .orders import order_quantity, periods_until_order
from .undershoot import trigger_demand
from .outcomes import _outcomes_samples, outcomes_normal
from .policies import (_empirical_fill_rate_level, _empirical_quantile, critical_fractile, economic_order_quantity,
                       fill_rate_level, normal_policy)

__all__ = ["plan_orders", "OUTPUT_KEYS"]

TARGETS = ("csl", "fill_rate", "cost")
METHODS = ("sample", "normal")
OUTPUT_KEYS = (
    "lead_time_demand_mean", "lead_time_demand_std", "protection_demand_mean", "protection_demand_std",
    "safety_stock", "reorder_point", "order_up_to", "order_quantity", "eoq", "periods_until_order",
    "service_level_used", "expected_fill_rate", "expected_cycle_service_level", "expected_on_hand",
    "expected_backorders", "expected_holding_cost", "expected_stockout_cost", "expected_ordering_cost",
)
# Items per chunk.  On the host, temporaries stay under glibc's 32 MB mmap threshold (reused,
# no page faults): NumPy's period pass holds (Q, c * H) arrays, the fused one only (c, H).
# On the device chunks are large.
_NORMAL_CHUNK = {"cpu": 16384, "fused": 32768, "gpu": 1 << 20}


@dataclass
class _Items:
    """Validated per-item inputs, each (n,)."""

    position: object
    lead_mean: object
    lead_var: object
    review: object
    level: object
    holding: object  # currency per unit per period
    stockout: object  # currency per unit backordered per period
    order_cost: object
    moq: object
    pack: object
    cap: object


def plan_orders(levels, quantiles, *, on_hand, on_order, backorders=None, lead_time, lead_time_std=None,
                review_period=None, service_level=0.95, target="csl", unit_cost=None, holding_cost_rate=0.25,
                stockout_cost=None, order_cost=0.0, moq=None, case_pack=None, max_order=None,
                periods_per_year=365.0, method="sample", n_samples=1000, seed=0,
                lead_time_pmf=None, drawdown="median", chunk_size=None, n_threads=None, group=None,
                budget=None, capacity=None) -> dict:
    """Reorder points, order-up-to levels, orders and expected outcomes for a batch of items.

    Parameters
    ----------
    levels : array_like, shape (Q,)
        Probability levels of the forecasts, strictly increasing in (0, 1).
    quantiles : array_like, shape (n, H, Q)
        Demand quantile forecasts per item and period, units per period; period
        0 is today.  Its backend (NumPy or CuPy) and float dtype are those of the
        outputs.  See :mod:`replenish.kernels.period_demand` for how they
        become distributions.
    on_hand, on_order : float or array_like, shape (n,)
        Units in stock / in the pipeline.
    backorders : float or array_like, shape (n,), optional
        Units owed to customers.  Inventory position is
        ``on_hand + on_order - backorders``.
    lead_time : float or array_like, shape (n,)
        (Mean) replenishment lead time L, periods, may be fractional.  ``None``
        only together with ``lead_time_pmf``.
    lead_time_std : float or array_like, shape (n,), optional
        Standard deviation of L, periods (sampling: lognormal L with this mean
        and standard deviation).
    review_period : float or array_like, shape (n,), optional
        Periods between reviews R.  Default 1 (the job runs every period); 0 is
        continuous review.
    service_level : float or array_like, shape (n,)
        Target cycle service level (``target="csl"``) or fill rate
        (``"fill_rate"``); clipped to ``[1e-6, 1 - 1e-6]``.
    target : {"csl", "fill_rate", "cost"}
        ``"cost"`` uses the critical fractile ``p / (p + h)``.
    unit_cost : float or array_like, shape (n,), optional
        Currency per unit; needed for holding costs, the EOQ and ``"cost"``.
    holding_cost_rate : float or array_like, shape (n,)
        Holding cost per year as a fraction of unit cost.
    stockout_cost : float or array_like, shape (n,), optional
        Currency per unit backordered per period (``p``); needed for ``"cost"``.
        Without it the expected stockout cost is reported as 0 (the shortage is
        still in ``expected_backorders``).
    order_cost : float or array_like, shape (n,)
        Fixed cost per order ``K``, currency.  When positive the policy is
        (s, S) with ``S >= s + EOQ``.
    moq, case_pack, max_order : float or array_like, shape (n,), optional
        Order constraints, units (see :func:`replenish.kernels.orders.order_quantity`).
    periods_per_year : float
        365 for days, 52 for weeks; converts the annual holding rate.
    method : {"sample", "normal"}
        Monte-Carlo lead-time demand or moment-matched normal approximation.
    n_samples, seed : int
        Monte-Carlo samples per item and seed (``method="sample"``).
    lead_time_pmf : array_like, shape (Lmax+1,) or (n, Lmax+1), optional
        Discrete lead-time distribution over 0..Lmax periods (replaces
        ``lead_time`` and ``lead_time_std``).
    drawdown : {"median", "mean"}
        Point forecast used to project the position for ``periods_until_order``.
    chunk_size : int, optional
        Items processed together; bounds memory.
    n_threads : int, optional
        Worker threads for NumPy inputs (default: CPU count, at most 8); set 1
        when an outer scheduler already runs one task per core.  BLAS runs
        single-threaded inside (via threadpoolctl when installed).
    group, budget, capacity : optional
        With integer ``group`` codes (n,) and a per-group ``budget`` (currency)
        or ``capacity`` (units), ``allocated_quantity`` is added (see
        :func:`replenish.kernels.allocation.allocate_budget`).

    Returns
    -------
    dict of ndarray, shape (n,)
        ``lead_time_demand_mean``/``_std`` (over L) and
        ``protection_demand_mean``/``_std`` (over R + L; for rounded orders on the
        sampling path with ``"csl"``, over L plus the undershoot, see Notes), units;
        ``safety_stock = reorder_point - protection_demand_mean``;
        ``reorder_point`` (quantile of that protection demand at the target);
        ``order_up_to`` (the same, at least ``reorder_point + eoq``);
        ``order_quantity`` (order now, units); ``eoq`` (units, 0 without fixed
        cost); ``periods_until_order`` (float periods, NaN beyond the horizon);
        ``service_level_used`` (the cycle service level or fill rate aimed at);
        ``expected_fill_rate``, ``expected_cycle_service_level``;
        ``expected_on_hand``, ``expected_backorders`` (units);
        ``expected_holding_cost``, ``expected_stockout_cost``,
        ``expected_ordering_cost`` (currency per period).  All are >= 0 except
        ``safety_stock`` for targets below 0.5, where the reorder point may sit
        below mean demand (it is never below 0).  For targets >= 0.5 the reorder
        point and order-up-to level are at least the mean demand, so safety
        stock is >= 0 even for skewed sampled demand.

    Notes
    -----
    * Protection interval: the reorder point ``s`` and the order-up-to level
      ``S`` protect the review period plus lead time R + L (periodic review,
      Silver, Pyke and Peterson 1998, ch. 7: the position is looked at every R
      periods, so it may fall below ``s`` unnoticed, and an order placed at the
      next review arrives R + L from now; R = 0 is continuous review, L alone).
      Without a fixed order cost ``s = S``: the (R, S) base-stock policy, order
      up to ``S`` at every review. ``s`` is the quantile of demand over R + L at level ``a``:
      ``a = service_level`` (``"csl"``), ``a = p / (p + h)`` with
      ``h = unit_cost * holding_cost_rate / periods_per_year`` (``"cost"``,
      the newsvendor fractile).  With ``"fill_rate"`` each is instead the level
      whose expected shortage per replenishment cycle equals
      ``(1 - beta) * Q``, ``Q = max(EOQ, d * R)`` units per cycle (Silver, Pyke
      and Peterson 1998, 7.7), via the normal loss function (``"normal"``) or
      the empirical loss of the samples (``"sample"``), solved for all items at
      once; with no cycle stock (R = 0 and no fixed cost) it is the
      ``beta``-quantile.
    * Rounded orders (``"csl"``): an MOQ, a case pack or an EOQ leave the position above
      ``s`` after ordering, so the next order goes out when it has fallen below ``s`` by
      less than a review period's demand; planned for R + L regardless such items are
      over-served (MOQ 12 and case pack 6 on Poisson demand of ~24 a day: an 80% target
      realised 89%). For those items ``s`` is the quantile of the lead-time demand plus
      that *undershoot*, drawn from the order-to-order chain of the order rule
      (:mod:`replenish.kernels.undershoot`), and ``protection_demand_mean``/``_std``
      report that demand. Items without constraints keep R + L exactly (the jobs'
      default case pack, 1 unit, makes every item one with a constraint). Only the
      sampling path does this (``method="normal"`` keeps R + L: it is the path for
      tens of millions of items, and the chain would cost more than the rest of it; it
      over-serves such items). The fill-rate and cost targets are unchanged.
    * Fixed order cost: (s, S) with ``s`` as above and
      ``S = max(S, s + EOQ)``, ``EOQ = sqrt(2 K d / h)``, ``d`` the mean
      demand per period over the forecast horizon.  (A cost-optimal (s, S) is
      :func:`replenish.kernels.policies.ss_power_approximation`.)
    * Order rule: if the inventory position is at or below ``s``, order up to
      ``S``, rounded up to the case pack, at least the MOQ, at most
      ``max_order`` (:func:`replenish.kernels.orders.order_quantity`).
    * Lead-time uncertainty: the normal path adds ``Var(L) d^2`` (exact
      mixture moments for ``lead_time_pmf``); the sampling path draws L per
      sample (lognormal, or from the pmf).
    * Expected outcomes: see :mod:`replenish.kernels.outcomes` (costs per
      period).
    * The sampling path is deterministic for given inputs, ``seed`` and
      ``chunk_size`` (see :mod:`replenish.kernels._sampling`).
    """
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if drawdown not in ("median", "mean"):
        raise ValueError("drawdown must be 'median' or 'mean'")
    # the fused host kernel reports NaN and inf forecasts itself: no separate pass over them
    fused = method == "normal" and get_xp(quantiles) is np and _cpu.enabled()
    p, q = prepare_quantiles(levels, quantiles, check_values=not fused)
    xp = get_xp(q)
    n = q.shape[0]
    items, pmf, lead_std = _items(xp, q.dtype, n, dict(
        on_hand=on_hand, on_order=on_order, backorders=backorders, lead_time=lead_time,
        lead_time_std=lead_time_std, lead_time_pmf=lead_time_pmf, review_period=review_period,
        service_level=service_level, target=target, unit_cost=unit_cost, holding_cost_rate=holding_cost_rate,
        stockout_cost=stockout_cost, order_cost=order_cost, moq=moq, case_pack=case_pack, max_order=max_order,
        periods_per_year=periods_per_year))

    out = {k: xp.zeros((n,), dtype=q.dtype) for k in OUTPUT_KEYS}
    median_w = asarray(basis_weights(p, np.array([0.5]))[0], xp, dtype=q.dtype)

    def store(sel, res):
        for k, v in res.items():
            out[k][sel] = v

    if method == "normal":
        size = chunk_size or _NORMAL_CHUNK["gpu" if is_cupy(xp) else "fused" if fused else "cpu"]

        def job(sel):
            mean_d, var_d, median_d = period_summary(p, q[sel])
            if not fused and not (_all_finite(xp, mean_d) and _all_finite(xp, var_d)):
                # finite forecasts whose moments overflow (the fused pass reports these itself)
                raise _cpu.NonFiniteForecasts("period moments overflowed")
            if pmf is not None:
                rows = pmf if pmf.shape[0] == 1 else pmf[sel]
                mu_l, sd_l = mixture_demand_moments(mean_d, var_d, rows, xp.zeros_like(mean_d[:, 0]))
                mu_p, sd_p = mixture_demand_moments(mean_d, var_d, rows, items.review[sel])
                rate = None
            elif fused:  # both intervals and the demand rate in one pass
                lm = items.lead_mean[sel]
                mu_l, sd_l, mu_p, sd_p, rate = _cpu.interval_moments(mean_d, var_d, lm, items.lead_var[sel],
                                                                     lm + items.review[sel])
            else:
                lm, lv = items.lead_mean[sel], items.lead_var[sel]
                mu_l, sd_l = _interval_moments(mean_d, var_d, lm, lv)
                mu_p, sd_p = _interval_moments(mean_d, var_d, lm + items.review[sel], lv)
                rate = None
            path = median_d if drawdown == "median" else mean_d
            store(sel, _finish(xp, items, sel, target, mean_d, path, normal=(mu_l, sd_l, mu_p, sd_p), rate=rate))

        jobs = [slice(start, min(start + size, n)) for start in range(0, n, size)]
    else:
        prob = SamplingProblem.from_arrays(p, q, None if pmf is not None else items.lead_mean, lead_std, pmf,
                                           items.review, n_samples=n_samples, seed=seed, chunk_size=chunk_size)
        cm = _mean_weights(p, xp, q.dtype)

        def job(chunk):
            j, idx = chunk
            d_l, d_pi, kn = prob.sample(j, idx)
            mean_d = kn @ cm
            path = kn @ median_w if drawdown == "median" else mean_d
            store(idx, _finish(xp, items, idx, target, mean_d, path, samples=(d_l, d_pi), seed=seed))

        jobs = prob.chunk_jobs()
    try:
        if is_cupy(xp):
            for chunk in jobs:
                job(chunk)
        else:
            threads = n_threads or min(os.cpu_count() or 1, 8)
            # NumPy releases the GIL in its loops, sorts and BLAS calls, so chunks
            # run in parallel on threads (each writes its own items).  BLAS itself is
            # held to one thread: its own threads fight the workers, and on small
            # products (K ~ 9) their wake-ups cost 10-100x the arithmetic.
            with _single_threaded_blas():
                if threads > 1 and len(jobs) > 1:
                    with ThreadPoolExecutor(threads) as pool:
                        list(pool.map(job, jobs))
                else:
                    for chunk in jobs:
                        job(chunk)
    except _cpu.NonFiniteForecasts:
        check_quantile_values(q)  # raises with the count over all items
        raise ValueError("quantile forecasts too large: the period moments overflowed the float range") from None
    if budget is not None or capacity is not None:
        if group is None:
            raise ValueError("budget or capacity needs group codes")
        out["allocated_quantity"] = allocate_budget(
            out["order_quantity"], group=group, demand_mean=out["protection_demand_mean"],
            demand_std=out["protection_demand_std"], position=items.position,
            unit_cost=unit_cost, stockout_cost=1.0 if stockout_cost is None else stockout_cost,
            budget=budget, capacity=capacity, case_pack=case_pack, moq=moq)
    return out


def _all_finite(xp, a):
    # a finite sum proves every entry finite; count only when it is not (the sum itself may overflow)
    return bool(xp.isfinite(a.sum())) or not bool(xp.count_nonzero(~xp.isfinite(a)))


def _single_threaded_blas():
    try:
        from threadpoolctl import threadpool_limits  # noqa: PLC0415  -- optional (ships with scikit-learn)
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _mean_weights(p, xp, dtype):
    # daily mean = knots @ cm: the exact mean is linear in the knots (see period_demand)
    pe = np.concatenate([[0.0], p])
    w = np.diff(pe)
    cm = np.zeros(p.shape[0] + 2)
    cm[:-2] += w / 2
    cm[1:-1] += w / 2
    cm[-2] += 1 - p[-1]
    cm[-1] = 1 - p[-1]
    return asarray(cm, xp, dtype=dtype)


def _items(xp, dt, n, a):
    def arr(name, value, **kw):
        return item_array(name, value, n, xp, dt, **kw)

    position = arr("on_hand", a["on_hand"]) + arr("on_order", a["on_order"], low=0.0)
    if a["backorders"] is not None:
        position = position - arr("backorders", a["backorders"], low=0.0)
    review = arr("review_period", 1.0 if a["review_period"] is None else a["review_period"], low=0.0)
    pmf = lead_std = None
    if a["lead_time_pmf"] is not None:
        pmf = lead_time_pmf_array(a["lead_time_pmf"], n, xp, dt)
        lags = xp.arange(pmf.shape[1], dtype=dt)
        lead_mean = xp.broadcast_to(pmf @ lags, (n,))
        lead_var = xp.broadcast_to(xp.maximum(pmf @ (lags * lags) - (pmf @ lags) ** 2, 0), (n,))
    else:
        if a["lead_time"] is None:
            raise ValueError("lead_time is required unless lead_time_pmf is given")
        lead_mean = arr("lead_time", a["lead_time"], low=0.0)
        lead_var = xp.zeros((n,), dtype=dt)
        if a["lead_time_std"] is not None:
            lead_std = arr("lead_time_std", a["lead_time_std"], low=0.0)
            lead_var = lead_std * lead_std
    ppy = float(a["periods_per_year"])
    if not np.isfinite(ppy) or ppy <= 0:
        raise ValueError("periods_per_year must be a positive finite number")
    rate = arr("holding_cost_rate", a["holding_cost_rate"], low=0.0)
    if a["unit_cost"] is None:
        holding = xp.zeros((n,), dtype=dt)
    else:
        holding = arr("unit_cost", a["unit_cost"], low=0.0) * rate / dt.type(ppy)
    stockout = (xp.zeros((n,), dtype=dt) if a["stockout_cost"] is None
                else arr("stockout_cost", a["stockout_cost"], low=0.0))
    k = arr("order_cost", a["order_cost"], low=0.0)
    if bool(xp.any((k > 0) & (holding <= 0))):
        raise ValueError("order_cost > 0 needs unit_cost > 0 and holding_cost_rate > 0 (the EOQ divides by the "
                         "holding cost)")
    if a["target"] == "cost":
        if a["stockout_cost"] is None or a["unit_cost"] is None:
            raise ValueError("target='cost' needs stockout_cost and unit_cost")
        level = xp.clip(critical_fractile(stockout, holding), SERVICE_LEVEL_MIN, SERVICE_LEVEL_MAX)
    else:
        level = service_level_array("service_level", a["service_level"], n, xp, dt)
    moq = arr("moq", 0.0 if a["moq"] is None else a["moq"], low=0.0)
    pack = xp.zeros((n,), dtype=dt) if a["case_pack"] is None else arr("case_pack", a["case_pack"], low=0.0)
    cap = (xp.full((n,), xp.inf, dtype=dt) if a["max_order"] is None
           else arr("max_order", a["max_order"], low=0.0))
    items = _Items(position, lead_mean, lead_var, review, level.astype(dt), holding, stockout, k, moq, pack, cap)
    return items, pmf, lead_std


def _sample_moments(xp, d):
    # Two single-pass reductions instead of numpy's three-pass std.  The raw
    # form E[x^2] - mean^2 loses ~eps / CV^2 relative accuracy: with float32
    # samples about 1e-5 at CV 0.1 and 1e-3 at CV 0.01 (a reported figure; the
    # policy uses the sample quantiles, not this std).
    n_s = d.shape[1]
    mean = d.sum(axis=1) / n_s
    sq = xp.einsum("ij,ij->i", d, d) / n_s
    return mean, xp.sqrt(xp.maximum(sq - mean * mean, 0))


def _finish(xp, it, sel, target, mean_d, path, normal=None, samples=None, rate=None, seed=0):
    """Policy, order, timing and outcomes for one chunk of items (``sel`` into the (n,) inputs)."""
    level, review, pos = it.level[sel], it.review[sel], it.position[sel]
    hold, short, k = it.holding[sel], it.stockout[sel], it.order_cost[sel]
    moq, pack, cap = it.moq[sel], it.pack[sel], it.cap[sel]
    if rate is None:
        rate = mean_d.mean(axis=1)  # demand per period over the horizon, for EOQ and cycle lengths
    eoq = economic_order_quantity(k, hold, rate).astype(rate.dtype)
    if samples is not None:
        d_l, d_pi = samples
        if target == "csl":
            d_pi = trigger_demand(xp, d_l, d_pi, gap=eoq, moq=moq, case_pack=pack, max_order=cap, seed=seed)
        mu_l, sd_l = _sample_moments(xp, d_l)
        mu_p, sd_p = _sample_moments(xp, d_pi)
    else:
        mu_l, sd_l, mu_p, sd_p = normal
    # Both s and S protect the review period plus the lead time: the position is looked at
    # every R periods, so it can fall below s unnoticed and an order placed at the next
    # review arrives R + L after this one (R = 0: continuous review, the lead time alone).
    # The lead-time moments (mu_l, sd_l) are reported only.

    qty = None
    if normal is not None and target != "fill_rate":
        if is_cupy(xp):
            from . import _cuda  # noqa: PLC0415  -- device-only module

            ss, rop, oul, qty = _cuda.normal_plan(mu_p, sd_p, mu_p, sd_p, level, eoq, pos, moq, pack, cap)
        else:
            pol = normal_policy(mu_p, sd_p, mu_p, sd_p, level, eoq)
            ss, rop, oul = pol["safety_stock"], pol["reorder_point"], pol["order_up_to"]
    else:
        if target == "fill_rate":
            # tolerated shortage per replenishment cycle: (1 - beta) * units per cycle
            cycle = xp.maximum(eoq, rate * review)
            allow = (1 - level) * cycle
            if normal is not None:
                rop = oul = fill_rate_level(mu_p, sd_p, allow)
            else:
                rop = oul = _empirical_fill_rate_level(d_pi, allow)
            one_for_one = cycle <= 0
            if bool(xp.any(one_for_one)):
                # no cycle stock (continuous review, no fixed cost): fill rate = P(D <= s)
                if normal is not None:
                    pol = normal_policy(mu_p, sd_p, mu_p, sd_p, level, 0.0)
                    at_rop, at_out = pol["reorder_point"], pol["order_up_to"]
                else:
                    at_rop = at_out = _empirical_quantile(d_pi, level)
                rop = xp.where(one_for_one, at_rop, rop)
                oul = xp.where(one_for_one, at_out, oul)
        else:
            # only order-free statistics of the samples are used after this
            rop = oul = _empirical_quantile(d_pi, level, overwrite=True)
        high = level >= 0.5
        rop = xp.maximum(rop, 0)
        rop = xp.where(high, xp.maximum(rop, mu_p), rop)
        oul = xp.maximum(xp.maximum(oul, 0), rop + eoq)
        oul = xp.where(high, xp.maximum(oul, mu_p), oul)
        ss = rop - mu_p
    if qty is None:
        qty = order_quantity(pos, rop, oul, moq=moq, case_pack=pack, max_order=cap)
    when = periods_until_order(pos, rop, path)
    common = dict(demand_rate=rate, review_period=review, holding_cost=hold, stockout_cost=short, order_cost=k)
    if samples is not None:
        res = _outcomes_samples(d_pi, rop, oul, **common)
    else:
        res = outcomes_normal(mu_p, sd_p, rop, oul, **common)
    res.update(lead_time_demand_mean=mu_l, lead_time_demand_std=sd_l, protection_demand_mean=mu_p,
               protection_demand_std=sd_p, safety_stock=ss, reorder_point=rop, order_up_to=oul,
               order_quantity=qty, eoq=eoq, periods_until_order=when, service_level_used=level)
    return res

"""Explained orders: the parts of the order-up-to level, the binding rule, days of supply,
the projected stockout and the projected inventory, against closed forms and loops."""
import math

import numpy as np
import pytest
from scipy import stats

from replenish.kernels import (BINDING_RULES, allocate_budget, binding_rule, daily_moments,
                               order_quantity, periods_of_supply, periods_until_stockout,
                               plan_orders, projected_inventory, stock_components)

LEVELS = np.array([0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99])


def _forecasts(rng, n, h, flat=False):
    """Normal per-period quantiles (units per period), level and spread per item and period."""
    mu = rng.uniform(2, 60, (n, 1 if flat else h)) * np.ones((1, h))
    sd = mu * rng.uniform(0.1, 0.6, (n, 1 if flat else h))
    q = mu[..., None] + sd[..., None] * stats.norm.ppf(LEVELS)
    return np.maximum(q, 0.0), mu, sd


def _inputs(rng, n):
    return dict(on_hand=rng.uniform(0, 200, n), on_order=rng.uniform(0, 50, n),
                lead_time=rng.uniform(1, 10, n), lead_time_std=rng.uniform(0, 2, n),
                review_period=rng.choice([0.0, 1.0, 3.0, 7.0], n),
                service_level=rng.uniform(0.55, 0.99, n), unit_cost=rng.uniform(1, 20, n),
                order_cost=np.where(rng.random(n) < 0.3, rng.uniform(5, 50, n), 0.0),
                moq=np.where(rng.random(n) < 0.3, 24.0, 0.0), case_pack=rng.choice([0.0, 1.0, 6.0], n))


def _parts(q, kw, res):
    mean_d, var_d = daily_moments(LEVELS, q)
    return stock_components(mean_d, var_d, lead_time=kw["lead_time"],
                            lead_time_std=kw["lead_time_std"], review_period=kw["review_period"],
                            lead_time_demand_mean=res["lead_time_demand_mean"],
                            protection_demand_mean=res["protection_demand_mean"],
                            safety_stock=res["safety_stock"], reorder_point=res["reorder_point"],
                            order_up_to=res["order_up_to"])


@pytest.mark.parametrize("method", ["normal", "sample"])
@pytest.mark.parametrize("target", ["csl", "fill_rate"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cycle_safety_and_pipeline_stock_add_up_to_the_order_up_to_level(method, target, seed):
    rng = np.random.default_rng(seed)
    n = 300
    q, _, _ = _forecasts(rng, n, 21)
    kw = _inputs(rng, n)
    res = plan_orders(LEVELS, q, method=method, target=target, n_samples=300, seed=seed, **kw)
    p = _parts(q, kw, res)
    total = p["pipeline_stock"] + p["cycle_stock"] + p["safety_stock_demand"] + p["safety_stock_lead_time"]
    np.testing.assert_allclose(total, res["order_up_to"], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(p["safety_stock_demand"] + p["safety_stock_lead_time"],
                               res["safety_stock"], rtol=1e-9, atol=1e-9)
    assert (p["pipeline_stock"] >= 0).all() and (p["cycle_stock"] >= -1e-6 * res["order_up_to"]).all()
    # both safety parts carry the safety stock's sign; no lead-time part without lead-time spread
    ss = res["safety_stock"]
    assert (p["safety_stock_demand"] * ss >= -1e-12).all()
    assert (p["safety_stock_lead_time"] * ss >= -1e-12).all()
    none = kw["lead_time_std"] == 0
    np.testing.assert_allclose(p["safety_stock_lead_time"][none], 0.0, atol=1e-9)


def test_demand_part_is_the_safety_stock_with_certain_lead_times():
    rng = np.random.default_rng(5)
    n = 400
    q, _, _ = _forecasts(rng, n, 28)
    kw = _inputs(rng, n)
    kw["order_cost"] = 0.0
    res = plan_orders(LEVELS, q, method="normal", target="csl", **kw)
    certain = plan_orders(LEVELS, q, method="normal", target="csl", **{**kw, "lead_time_std": None})
    p = _parts(q, kw, res)
    np.testing.assert_allclose(p["safety_stock_demand"], certain["safety_stock"], rtol=2e-5, atol=1e-4)


def test_pipeline_and_cycle_stock_closed_forms_for_flat_forecasts():
    # flat forecasts: pipeline = d L; cycle = d R + (S - s), S - s = EOQ = sqrt(2 K d / h)
    rng = np.random.default_rng(7)
    n = 200
    q, mu, _ = _forecasts(rng, n, 28, flat=True)
    kw = _inputs(rng, n)
    kw["lead_time_std"] = None
    kw["order_cost"] = rng.uniform(20, 200, n)
    res = plan_orders(LEVELS, q, method="normal", target="csl", **kw)
    mean_d, _ = daily_moments(LEVELS, q)
    d = mean_d[:, 0]                           # mean of the per-period law of the quantiles
    p = _parts(q, {**kw, "lead_time_std": 0.0}, res)
    np.testing.assert_allclose(p["pipeline_stock"], d * kw["lead_time"], rtol=1e-6)
    h = kw["unit_cost"] * 0.25 / 365
    eoq = np.sqrt(2 * kw["order_cost"] * d / h)
    lot = res["order_up_to"] - res["reorder_point"]
    np.testing.assert_allclose(lot, eoq, rtol=1e-5)
    np.testing.assert_allclose(p["cycle_stock"], d * kw["review_period"] + eoq, rtol=1e-5)


def _binding_by_steps(pos, s, big_s, moq, pack, cap):
    """The order rule step by step, per item: which step set the quantity."""
    need = big_s - pos if pos <= s else 0.0
    if need <= 0:
        return "none", 0.0
    q = max(need, moq)
    rounded = math.ceil(q / pack) * pack if pack > 0 else q
    top = math.floor(cap / pack) * pack if pack > 0 else cap
    if rounded > top:
        return "max_order", need
    if moq > need:
        return "moq", need
    if rounded > need:
        return "case_pack", need
    return "none", need


def test_binding_rule_equals_the_rule_applied_step_by_step():
    rng = np.random.default_rng(11)
    n = 4000
    pos = rng.integers(-20, 120, n).astype(float)
    s = rng.integers(10, 100, n).astype(float)
    big_s = s + rng.integers(0, 60, n)
    moq = rng.choice([0.0, 12.0, 40.0], n)
    pack = rng.choice([0.0, 1.0, 6.0, 10.0], n)
    cap = np.where(rng.random(n) < 0.3, rng.integers(5, 80, n).astype(float), 1e15)
    planned = order_quantity(pos, s, big_s, moq=moq, case_pack=pack, max_order=cap)
    code, need = binding_rule(pos, s, big_s, planned, moq=moq)
    got = np.asarray(BINDING_RULES, dtype=object)[code]
    for i in range(n):
        rule, nd = _binding_by_steps(pos[i], s[i], big_s[i], moq[i], pack[i], cap[i])
        assert got[i] == rule, (i, pos[i], s[i], big_s[i], moq[i], pack[i], cap[i], planned[i])
        assert need[i] == pytest.approx(nd)
    assert set(got) == set(BINDING_RULES) - {"budget"}
    # a budget that cuts orders: those become "budget", the others keep their rule
    mu, sd = big_s - s + 20.0, np.full(n, 5.0)
    group = rng.integers(0, 4, n)
    cost = rng.uniform(1, 5, n)
    full = np.bincount(group, planned * cost, minlength=4)
    alloc = allocate_budget(planned, group=group, demand_mean=mu, demand_std=sd, position=pos,
                            unit_cost=cost, budget=0.5 * full, case_pack=pack, moq=moq)
    code_b, _ = binding_rule(pos, s, big_s, alloc, planned_quantity=planned, moq=moq)
    cut = alloc < planned
    assert cut.any()
    assert (np.asarray(BINDING_RULES)[code_b[cut]] == "budget").all()
    np.testing.assert_array_equal(code_b[~cut], code[~cut])


def test_days_of_supply_and_projected_stockout_against_a_loop():
    rng = np.random.default_rng(3)
    n, h = 500, 20
    d = rng.uniform(0, 10, (n, h)) * (rng.random((n, 1)) < 0.9)
    stock = rng.uniform(-10, 150, n)
    rate = d.mean(axis=1)
    dos = periods_of_supply(stock, rate)
    for i in range(n):
        want = 0.0 if stock[i] <= 0 else (np.inf if rate[i] == 0 else stock[i] / rate[i])
        assert dos[i] == pytest.approx(want)
    t = periods_until_stockout(stock, d)
    for i in range(n):
        if stock[i] <= 0:
            assert t[i] == 0
            continue
        left, want = stock[i], np.nan
        for k in range(h):
            if d[i, k] >= left and d[i, k] > 0:
                want = k + left / d[i, k]
                break
            left -= d[i, k]
        if np.isnan(want):
            assert np.isnan(t[i]), i
        else:
            assert t[i] == pytest.approx(want, rel=1e-9, abs=1e-9), i


def test_projected_inventory_against_a_loop():
    rng = np.random.default_rng(9)
    n, h = 60, 21
    d = rng.uniform(0, 8, (n, h))
    oh, oo, bo = rng.uniform(0, 40, n), rng.uniform(0, 20, n), rng.uniform(0, 3, n)
    s = rng.uniform(10, 40, n)
    big_s = s + rng.uniform(0, 30, n)
    lead = rng.integers(0, 6, n).astype(float)
    review = rng.choice([1.0, 3.0, 7.0], n)
    moq, pack = rng.choice([0.0, 10.0], n), rng.choice([0.0, 4.0], n)
    first = order_quantity(oh + oo - bo, s, big_s, moq=moq, case_pack=pack)
    got = projected_inventory(oh, oo, bo, d, reorder_point=s, order_up_to=big_s, lead_time=lead,
                              review_period=review, first_order=first, moq=moq, case_pack=pack)
    for i in range(n):
        stock, pos = max(oh[i] - bo[i], 0.0), oh[i] + oo[i] - bo[i]
        incoming = {int(round(lead[i] / 2)): oo[i]}
        for t in range(h):
            if t == 0:
                q = first[i]
            elif t % int(review[i]) == 0 and pos <= s[i]:
                q = max(big_s[i] - pos, moq[i])
                q = math.ceil(q / pack[i]) * pack[i] if pack[i] else q
            else:
                q = 0.0
            assert got["orders"][i, t] == pytest.approx(q)
            pos += q
            incoming[t + int(lead[i])] = incoming.get(t + int(lead[i]), 0.0) + q
            stock += incoming.get(t, 0.0)
            assert got["on_hand"][i, t] == pytest.approx(stock)
            assert got["position"][i, t] == pytest.approx(pos)
            stock = max(stock - d[i, t], 0.0)
            pos -= d[i, t]
        assert got["on_hand"][i, h] == pytest.approx(stock)

"""The batch entry point plan_orders: contract, invariants, input checks."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from replenish.kernels import plan_orders
from replenish.kernels.plan import OUTPUT_KEYS

LEVELS = np.array([0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95])


def batch(n=200, horizon=28, seed=0, dtype=np.float64, skew=False):
    rng = np.random.default_rng(seed)
    mean = rng.uniform(0.5, 40, (n, 1, 1)) * (1 + 0.3 * np.sin(np.arange(horizon) / 7 * 2 * np.pi))[None, :, None]
    if skew:  # right-skewed daily demand (gamma with shape 0.7)
        q = stats.gamma.ppf(LEVELS, a=0.7, scale=mean / 0.7)
    else:
        q = np.maximum(stats.norm.ppf(LEVELS, mean, 0.4 * mean), 0)
    items = dict(on_hand=rng.uniform(0, 300, n), on_order=rng.uniform(0, 50, n),
                 lead_time=rng.integers(1, 15, n).astype(float))
    return q.astype(dtype), {k: v.astype(dtype) for k, v in items.items()}


@pytest.mark.parametrize("method", ["sample", "normal"])
@pytest.mark.parametrize("target", ["csl", "fill_rate", "cost"])
def test_contract_keys_shapes_signs(method, target):
    q, items = batch(n=150, dtype=np.float32)
    out = plan_orders(LEVELS, q, **items, method=method, target=target, unit_cost=5.0, stockout_cost=0.5,
                      order_cost=3.0, moq=6.0, case_pack=6.0, max_order=600.0, n_samples=400)
    assert set(OUTPUT_KEYS) <= set(out)
    for key, v in out.items():
        assert v.shape == (150,) and v.dtype == np.float32, key
        finite = v[np.isfinite(v)]
        if key != "periods_until_order":
            assert np.isfinite(v).all(), key
        assert np.all(finite >= 0), key
    assert np.all(out["order_up_to"] >= out["reorder_point"] + out["eoq"] - 1e-3)
    np.testing.assert_allclose(out["safety_stock"], out["reorder_point"] - out["protection_demand_mean"],
                               rtol=1e-5, atol=1e-4)
    q_ord = out["order_quantity"]
    assert np.all(np.mod(q_ord, 6.0) == 0) and np.all((q_ord == 0) | (q_ord >= 6)) and np.all(q_ord <= 600)


@pytest.mark.parametrize("method", ["sample", "normal"])
def test_zero_demand_gives_zero_safety_stock(method):
    q = np.zeros((5, 14, 7))
    out = plan_orders(LEVELS, q, on_hand=np.arange(5.0), on_order=0.0, lead_time=3.0, method=method,
                      service_level=0.99, unit_cost=2.0, order_cost=1.0, n_samples=100)
    for key in ("safety_stock", "reorder_point", "order_up_to", "order_quantity", "lead_time_demand_std",
                "expected_holding_cost", "expected_ordering_cost", "eoq"):
        np.testing.assert_array_equal(out[key], 0.0, err_msg=key)
    np.testing.assert_array_equal(out["expected_fill_rate"], 1.0)
    assert out["periods_until_order"][0] == 0 and np.isnan(out["periods_until_order"][1:]).all()


@settings(max_examples=12, deadline=None)
@given(st.floats(0.5, 0.995), st.floats(0.5, 0.995), st.sampled_from(["sample", "normal"]),
       st.sampled_from(["csl", "fill_rate"]), st.booleans())
def test_higher_service_level_never_lowers_safety_stock(a, b, method, target, skew):
    q, items = batch(n=60, seed=3, skew=skew)
    lo, hi = sorted((a, b))
    kw = dict(method=method, target=target, n_samples=300, seed=1, lead_time_std=1.0)
    low = plan_orders(LEVELS, q, **items, service_level=lo, **kw)
    high = plan_orders(LEVELS, q, **items, service_level=hi, **kw)
    assert np.all(high["safety_stock"] >= low["safety_stock"] - 1e-9)
    assert np.all(low["safety_stock"] >= 0)  # service levels >= 0.5 never hold negative safety stock
    assert np.all(high["order_up_to"] >= low["order_up_to"] - 1e-9)


def test_sample_and_normal_paths_agree_on_near_normal_demand():
    n, horizon = 40, 30
    q = np.broadcast_to(stats.norm.ppf(LEVELS, 50.0, 10.0), (n, horizon, 7)).copy()
    kw = dict(on_hand=500.0, on_order=0.0, lead_time=np.linspace(2, 20, n), review_period=3.0, unit_cost=4.0)
    s = plan_orders(LEVELS, q, **kw, method="sample", n_samples=4000)
    m = plan_orders(LEVELS, q, **kw, method="normal")
    for key in ("lead_time_demand_mean", "lead_time_demand_std", "reorder_point", "order_up_to"):
        np.testing.assert_allclose(s[key], m[key], rtol=0.03, err_msg=key)
    np.testing.assert_allclose(s["safety_stock"], m["safety_stock"], rtol=0.1, atol=2.0)


@pytest.mark.parametrize("method", ["sample", "normal"])
def test_targets_are_met(method):
    q, items = batch(n=100, seed=5)
    csl = plan_orders(LEVELS, q, **items, method=method, service_level=0.9, n_samples=1000)
    assert np.all(csl["expected_cycle_service_level"] >= 0.9 - 1e-6)
    fr = plan_orders(LEVELS, q, **items, method=method, target="fill_rate", service_level=0.97,
                     n_samples=1000, unit_cost=3.0, order_cost=10.0)
    assert np.all(fr["expected_fill_rate"] >= 0.97 - 1e-4)
    cost = plan_orders(LEVELS, q, **items, method=method, target="cost", unit_cost=3.0, stockout_cost=0.2,
                       holding_cost_rate=0.25, periods_per_year=365.0, n_samples=1000)
    h = 3.0 * 0.25 / 365.0
    np.testing.assert_allclose(cost["service_level_used"], 0.2 / (0.2 + h), rtol=1e-12)


def test_continuous_review_without_fixed_cost_is_base_stock():
    q, items = batch(n=50, seed=6)
    out = plan_orders(LEVELS, q, **items, review_period=0.0, method="normal")
    np.testing.assert_allclose(out["order_up_to"], out["reorder_point"])
    np.testing.assert_allclose(out["protection_demand_mean"], out["lead_time_demand_mean"])


def test_lead_time_pmf_and_random_lead_time_paths():
    q, items = batch(n=80, seed=7)
    pmf = np.array([0.0, 0.1, 0.2, 0.4, 0.2, 0.1])
    kw = {k: v for k, v in items.items() if k != "lead_time"}
    s = plan_orders(LEVELS, q, **kw, lead_time=None, lead_time_pmf=pmf, method="sample", n_samples=3000)
    m = plan_orders(LEVELS, q, **kw, lead_time=None, lead_time_pmf=pmf, method="normal")
    np.testing.assert_allclose(s["lead_time_demand_mean"], m["lead_time_demand_mean"], rtol=0.02)
    np.testing.assert_allclose(s["lead_time_demand_std"], m["lead_time_demand_std"], rtol=0.06)
    wide = plan_orders(LEVELS, q, **items, lead_time_std=3.0, method="normal")
    narrow = plan_orders(LEVELS, q, **items, method="normal")
    assert np.all(wide["lead_time_demand_std"] > narrow["lead_time_demand_std"])


def test_seed_determinism_and_threads():
    q, items = batch(n=300, seed=8)
    a = plan_orders(LEVELS, q, **items, seed=3, n_samples=300, chunk_size=64, n_threads=2)
    b = plan_orders(LEVELS, q, **items, seed=3, n_samples=300, chunk_size=64, n_threads=1)
    c = plan_orders(LEVELS, q, **items, seed=4, n_samples=300, chunk_size=64)
    for key in OUTPUT_KEYS:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert not np.array_equal(a["reorder_point"], c["reorder_point"])


def test_plan_does_not_add_daily_quantiles():
    n, horizon, lead = 20, 28, 10
    q = np.broadcast_to(stats.norm.ppf(LEVELS, 30.0, 9.0), (n, horizon, 7)).copy()
    out = plan_orders(LEVELS, q, on_hand=0.0, on_order=0.0, lead_time=float(lead), service_level=0.95,
                      review_period=0.0)
    summed = lead * q[0, 0, -1]
    assert np.all(out["reorder_point"] < summed - 0.5 * (summed - 300.0))
    np.testing.assert_allclose(out["reorder_point"], 300 + 1.645 * 9 * np.sqrt(lead), rtol=0.02)


@pytest.mark.parametrize("method", ["normal", "sample"])
@pytest.mark.parametrize("target", ["csl", "fill_rate"])
def test_reorder_point_protects_review_period_plus_lead_time(method, target):
    """Periodic review: the position is seen every R days, so s covers demand over R + L
    (i.i.d. normal days: mean 30 (R + L), std 9 sqrt(R + L)); without a fixed order cost
    s = S, the (R, S) base-stock policy."""
    n, horizon, lead, review = 20, 28, 4, 3
    q = np.broadcast_to(stats.norm.ppf(LEVELS, 30.0, 9.0), (n, horizon, 7)).copy()
    out = plan_orders(LEVELS, q, on_hand=0.0, on_order=0.0, lead_time=float(lead), service_level=0.9,
                      review_period=float(review), method=method, target=target, n_samples=4000)
    t = lead + review
    if target == "csl":
        np.testing.assert_allclose(out["reorder_point"], 30 * t + stats.norm.ppf(0.9) * 9 * np.sqrt(t),
                                   rtol=0.02)
    else:   # shortage per review cycle = (1 - beta) * demand per cycle (30 R)
        s = out["reorder_point"]
        z = (s - 30 * t) / (9 * np.sqrt(t))
        loss = 9 * np.sqrt(t) * (stats.norm.pdf(z) - z * stats.norm.sf(z))
        np.testing.assert_allclose(loss, 0.1 * 30 * review, rtol=0.1)
    np.testing.assert_allclose(out["order_up_to"], out["reorder_point"], rtol=1e-6)
    np.testing.assert_allclose(out["protection_demand_mean"], 30 * t, rtol=0.02)
    np.testing.assert_allclose(out["lead_time_demand_mean"], 30 * lead, rtol=0.02)


def test_budget_allocation_through_plan():
    q, items = batch(n=120, seed=9)
    group = np.arange(120) % 3
    out = plan_orders(LEVELS, q, **items, unit_cost=2.0, group=group, budget=np.array([50.0, 0.0, 1e9]),
                      method="normal", case_pack=1.0)
    spend = np.bincount(group, out["allocated_quantity"] * 2.0, minlength=3)
    assert spend[0] <= 50.0 and spend[1] == 0.0
    np.testing.assert_array_equal(out["allocated_quantity"][group == 2], out["order_quantity"][group == 2])


@pytest.mark.parametrize("field,value,message", [
    ("quantiles", np.nan, r"quantiles has 3 non-finite entries"),
    ("on_hand", np.inf, r"on_hand has 3 non-finite entries"),
    ("lead_time", np.nan, r"lead_time has 3 non-finite entries"),
    ("service_level", np.nan, r"service_level has 3 non-finite entries"),
    ("unit_cost", -np.inf, r"unit_cost has 3 non-finite entries"),
])
def test_non_finite_inputs_rejected(field, value, message):
    q, items = batch(n=10)
    kw = dict(items, service_level=np.full(10, 0.9), unit_cost=np.ones(10))
    if field == "quantiles":
        q = q.copy()
        q[[1, 4, 7], 3, 2] = value
    else:
        arr = np.array(kw[field], dtype=float)
        arr[[1, 4, 7]] = value
        kw[field] = arr
    with pytest.raises(ValueError, match=message):
        plan_orders(LEVELS, q, **kw)


def test_other_input_errors():
    q, items = batch(n=10)
    with pytest.raises(ValueError, match="target must be one of"):
        plan_orders(LEVELS, q, **items, target="profit")
    with pytest.raises(ValueError, match="method must be one of"):
        plan_orders(LEVELS, q, **items, method="exact")
    with pytest.raises(ValueError, match="target='cost' needs"):
        plan_orders(LEVELS, q, **items, target="cost")
    with pytest.raises(ValueError, match="order_cost > 0 needs unit_cost"):
        plan_orders(LEVELS, q, **items, order_cost=5.0)
    with pytest.raises(ValueError, match="service_level must be <= 1"):
        plan_orders(LEVELS, q, **items, service_level=1.5)
    with pytest.raises(ValueError, match="lead_time must be >= 0"):
        plan_orders(LEVELS, q, **dict(items, lead_time=-1.0))
    with pytest.raises(ValueError, match=r"shape \(10,\)"):
        plan_orders(LEVELS, q, **dict(items, on_hand=np.ones(3)))


def test_service_level_extremes_are_clipped_and_low_levels_documented():
    q, items = batch(n=30, seed=10)
    top = plan_orders(LEVELS, q, **items, service_level=1.0, method="normal")
    assert np.isfinite(top["reorder_point"]).all()
    low = plan_orders(LEVELS, q, **items, service_level=0.2, method="normal")
    assert np.all(low["safety_stock"] <= 0) and np.all(low["reorder_point"] >= 0)


def test_empty_batch():
    out = plan_orders(LEVELS, np.zeros((0, 7, 7)), on_hand=np.zeros(0), on_order=0.0, lead_time=2.0)
    assert all(v.shape == (0,) for v in out.values())


def test_sampling_results_do_not_depend_on_batch_or_chunking():
    """An item's decision is the same alone, in a batch, or in chunks of another size
    (what lets a sharded job equal the single-process one)."""
    from replenish.kernels import plan_orders
    rng = np.random.default_rng(7)
    n, h = 50, 14
    levels = np.array([0.05, 0.25, 0.5, 0.75, 0.95])
    base = rng.uniform(1, 20, (n, h, 1))
    q = (base * np.array([0.4, 0.7, 1.0, 1.3, 1.8])).astype(np.float32)
    kw = dict(on_hand=rng.uniform(0, 50, n), on_order=np.zeros(n), lead_time=rng.integers(1, 8, n),
              lead_time_std=rng.uniform(0, 1.5, n), service_level=rng.uniform(0.7, 0.99, n),
              method="sample", n_samples=256, seed=3)
    full = plan_orders(levels, q, **kw)
    chunked = plan_orders(levels, q, **kw, chunk_size=7)
    idx = np.array([5, 17, 31])
    part = plan_orders(levels, q[idx], **{k: (v[idx] if isinstance(v, np.ndarray) else v)
                                          for k, v in kw.items()})
    for key in ("reorder_point", "order_up_to", "safety_stock"):
        np.testing.assert_allclose(chunked[key], full[key], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(part[key], full[key][idx], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("review,order_cost", [(1.0, 0.0), (3.0, 0.0), (2.0, 40.0)])
def test_simulated_periodic_review_meets_the_cycle_service_target(review, order_cost):
    """Brute-force simulation of the policy: Poisson(20) daily demand, reviews every R days,
    order up to S when the position is at or below s, arriving L days later. At every
    review the position must cover demand until the next order can arrive (R + L days);
    the share of reviews where it did is the realised cycle service, to meet the target."""
    lam, lead, target, days = 20.0, 2, 0.9, 60_000
    q = np.broadcast_to(stats.poisson.ppf(LEVELS, lam), (1, 28, 7)).astype(float)
    out = plan_orders(LEVELS, q, on_hand=0.0, on_order=0.0, lead_time=float(lead), service_level=target,
                      review_period=review, method="normal", unit_cost=10.0, order_cost=order_cost)
    s, big_s = float(out["reorder_point"][0]), float(out["order_up_to"][0])
    assert (big_s > s + 1) == (order_cost > 0)       # (s, S) with a fixed cost, else s = S
    r = int(review)
    demand = np.random.default_rng(4).poisson(lam, days + 100)
    net, pipeline, covered, reviews = big_s, {}, 0, 0
    for t in range(days):
        net += pipeline.pop(t, 0.0)
        if t % r == 0:
            position = net + sum(pipeline.values())
            if position <= s:
                pipeline[t + lead] = pipeline.get(t + lead, 0.0) + big_s - position
                position = big_s
            covered += position - demand[t:t + r + lead].sum() >= 0
            reviews += 1
        net -= demand[t]
    realised = covered / reviews
    assert realised >= target - 0.015, (realised, s, big_s)

"""The reorder point under rounded orders: the undershoot model against a brute-force chain,
and the planned policy's realised cycle service in the simulator."""
import numpy as np
import pytest
from scipy import stats

from replenish.kernels import plan_orders, simulate_inventory, simulation_totals
from replenish.kernels.undershoot import trigger_undershoot


def _demand(rng, rate, size, continuous):
    """Poisson review demand, or a gamma one of the same mean and variance (continuous)."""
    return rng.gamma(rate, 1.0, size) if continuous else rng.poisson(rate, size).astype(np.float64)


def _chain_undershoots(rng, rate, gap, moq, pack, reviews, continuous=False):
    """One long (s, S) chain, review by review, in plain Python: the undershoot below s at
    every review that places an order (position measured relative to s)."""
    above, out = 0.0, []
    demand = _demand(rng, rate, reviews, continuous)
    for d in demand:
        above -= d
        if above <= 0:
            out.append(-above)
            need = gap - above
            q = max(need, moq) if need > 0 else 0.0
            q = np.ceil(q / pack) * pack if pack else q
            above += q
    return np.array(out)


# (a gap of 600 is 60 reviews' demand: past max_steps, so the far-start limit, which is the
# continuous one: gamma demand there)
@pytest.mark.parametrize("rate,gap,moq,pack,continuous", [
    (7.0, 0.0, 12.0, 6.0, False), (30.0, 0.0, 0.0, 6.0, False), (10.0, 40.0, 0.0, 0.0, False),
    (10.0, 600.0, 0.0, 0.0, True), (3.0, 0.0, 0.0, 0.0, False), (5.0, 0.0, 12.0, 1.0, True)])
def test_undershoot_matches_a_brute_force_chain(rate, gap, moq, pack, continuous):
    rng = np.random.default_rng(3)
    ref = _chain_undershoots(rng, rate, gap, moq, pack, 200_000, continuous)
    r = _demand(rng, rate, (64, 1000), continuous)   # 64 items' review-demand samples
    n = r.shape[0]
    got = trigger_undershoot(np, r, gap=np.full(n, gap), moq=np.full(n, moq), case_pack=np.full(n, pack),
                             max_order=np.full(n, np.inf), seed=1)
    assert got.shape == r.shape and got.min() >= 0
    flat = got.ravel()
    se = ref.std() * np.sqrt(1 / len(ref) + 1 / len(flat)) * 2   # walkers of one item share draws
    assert abs(flat.mean() - ref.mean()) < 4 * se + 0.02, (flat.mean(), ref.mean())
    for p in (0.5, 0.9):
        assert abs(np.quantile(flat, p) - np.quantile(ref, p)) <= 1.0 + 0.05 * rate
    if gap == moq == pack == 0:   # base stock: the undershoot is one review period's demand
        assert abs(flat.mean() - rate) < 4 * se + 0.02


@pytest.mark.parametrize("moq,pack,order_cost", [(12.0, 6.0, 0.0), (0.0, 0.0, 5.0)])
def test_rounded_orders_realise_the_cycle_service_target(moq, pack, order_cost):
    """Poisson demand, fixed lead time, the true quantiles: the planned (s, S) realises the
    target cycle service within 2 points when orders are rounded to an MOQ and a case pack
    or spaced by an EOQ (planned for R + L regardless, an 80% target realised about 89%).
    The sampling path only: the normal path keeps R + L (see plan_orders)."""
    n, days, lead = 300, 500, 2.0
    rng = np.random.default_rng(11)
    rate = rng.uniform(4, 30, n)
    levels = np.array([0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99])
    q = stats.poisson.ppf(levels[None, None, :], rate[:, None, None] * np.ones((1, 8, 1)))
    q = np.maximum.accumulate(q + levels * 1e-6, axis=-1)
    demand = rng.poisson(rate[:, None], (n, days)).astype(np.float64)
    target = 0.8
    plan = plan_orders(levels, q, on_hand=0.0, on_order=0.0, lead_time=lead, review_period=1.0,
                       service_level=target, method="sample", n_samples=2000, moq=moq, case_pack=pack,
                       order_cost=order_cost, unit_cost=2.0, holding_cost_rate=0.25)
    if order_cost:
        assert np.all(plan["order_up_to"] >= plan["reorder_point"] + plan["eoq"] - 1e-3)
    sim = simulate_inventory(demand, reorder_point=plan["reorder_point"], order_up_to=plan["order_up_to"],
                             lead_time=lead, on_hand=plan["order_up_to"], moq=moq, case_pack=pack)
    csl = float(simulation_totals(sim)["cycle_service_level"])
    assert abs(csl - target) < 0.02, csl


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_chain_loop_equals_the_vectorized_code(dtype, monkeypatch):
    """The Numba per-chain loop and the vectorized (NumPy/CuPy) code agree to the last bit:
    every rule (MOQ, case pack, maximum order, a gap) and the far-start limit (gap 300)."""
    from replenish.kernels import _cpu, undershoot
    if not _cpu.enabled():
        pytest.skip("the compiled loops are off (no numba, or REPLENISH_NUMBA=0)")
    rng = np.random.default_rng(0)
    n = 300
    r = rng.gamma(3, 2, (n, 500)).astype(dtype)
    kw = dict(gap=rng.choice([0, 0, 30, 300], n).astype(dtype), moq=rng.choice([0, 12], n).astype(dtype),
              case_pack=rng.choice([0, 1, 6], n).astype(dtype), max_order=rng.choice([np.inf, 20], n).astype(dtype))
    compiled = undershoot.trigger_undershoot(np, r, **kw, seed=3)
    monkeypatch.setattr(_cpu, "enabled", lambda: False)
    vectorized = undershoot.trigger_undershoot(np, r, **kw, seed=3)
    assert compiled.dtype == vectorized.dtype == dtype
    np.testing.assert_array_equal(compiled, vectorized)


def test_plan_reorder_point_is_the_quantile_of_the_sampled_trigger_demand():
    """What the report draws is what the plan used: with the same order rule and seed,
    sample_lead_time_demand's samples put the plan's reorder point at the target share
    (and the R + L samples below it less often: rounding lowered s)."""
    from replenish.kernels import sample_lead_time_demand
    rng = np.random.default_rng(2)
    n, h = 50, 28
    levels = np.array([0.05, 0.25, 0.5, 0.75, 0.95])
    base = rng.uniform(3, 30, n)
    q = (base[:, None, None] * np.ones((1, h, 1)) * np.array([0.5, 0.8, 1.0, 1.2, 1.6])).astype(np.float32)
    kw = dict(lead_time=3.0, review_period=1.0, n_samples=2000, seed=5)
    plan = plan_orders(levels, q, on_hand=0.0, on_order=0.0, service_level=0.9, method="sample",
                       moq=12.0, case_pack=6.0, **kw)
    rule = dict(order_gap=plan["order_up_to"] - plan["reorder_point"], moq=12.0, case_pack=6.0)
    trig = sample_lead_time_demand(levels, q, kw["lead_time"], review_period=1.0, n_samples=2000, seed=5, **rule)
    plain = sample_lead_time_demand(levels, q, kw["lead_time"], review_period=1.0, n_samples=2000, seed=5)
    share = (trig <= plan["reorder_point"][:, None] + 1e-4).mean(axis=1)
    assert np.all(np.abs(share - 0.9) <= 1.5 / 2000 + 1e-9), share
    assert np.all((plain <= plan["reorder_point"][:, None]).mean(axis=1) < 0.9)
    np.testing.assert_allclose(trig.mean(axis=1), plan["protection_demand_mean"], rtol=1e-5)

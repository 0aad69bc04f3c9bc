"""CuPy backend against the NumPy path, on CUDA (marked ``gpu``: skipped without CuPy and a GPU).

Every kernel in float32 and float64: the fused policy and order kernels, ``plan_orders`` on
the normal and sampling paths with the CSL, fill-rate and cost targets and fixed, lognormal
and discrete lead times, the budget allocation, the two-echelon placement and the inventory
simulator.
"""
import numpy as np
import pytest
from scipy import stats

pytestmark = pytest.mark.gpu
cp = pytest.importorskip("cupy")

from replenish.kernels import (allocate_budget, normal_policy, order_quantity, plan_orders,  # noqa: E402
                               two_echelon_placement)

LEVELS = np.array([0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95])
DTYPES = [np.float32, np.float64]


def _pack_edge(need, pack, rtol=1e-5):
    """Items whose need is within float rounding of a case-pack boundary (may round either way)."""
    ratio = need / np.where(pack > 0, pack, 1)
    return np.abs(ratio - np.round(ratio)) <= rtol * np.maximum(np.abs(ratio), 1)


@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_policy_and_orders_match_numpy(dtype):
    rng = np.random.default_rng(0)
    n = 200_000
    mu_l, sd_l = rng.uniform(0, 500, n).astype(dtype), rng.uniform(0, 80, n).astype(dtype)
    mu_p, sd_p = (mu_l * 1.3).astype(dtype), (sd_l * 1.2).astype(dtype)
    level, lot = rng.uniform(0.5, 0.999, n).astype(dtype), rng.uniform(0, 50, n).astype(dtype)
    pos = rng.uniform(-20, 700, n).astype(dtype)
    moq, pack = rng.uniform(0, 30, n).astype(dtype), rng.choice([0, 1, 6, 12], n).astype(dtype)
    cap = np.full(n, 400, dtype)
    host = normal_policy(mu_l, sd_l, mu_p, sd_p, level, lot)
    dev = normal_policy(*(cp.asarray(a) for a in (mu_l, sd_l, mu_p, sd_p, level, lot)))
    tol = dict(rtol=2e-6, atol=2e-4) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-9)
    for key in host:
        assert isinstance(dev[key], cp.ndarray) and dev[key].dtype == dtype
        np.testing.assert_allclose(cp.asnumpy(dev[key]), host[key], **tol, err_msg=key)
    q_host = order_quantity(pos, host["reorder_point"], host["order_up_to"], moq=moq, case_pack=pack,
                            max_order=cap)
    q_dev = order_quantity(*(cp.asarray(a) for a in (pos, host["reorder_point"], host["order_up_to"])),
                           moq=cp.asarray(moq), case_pack=cp.asarray(pack), max_order=cp.asarray(cap))
    np.testing.assert_array_equal(cp.asnumpy(q_dev), q_host)


LEADS = {"fixed": {}, "lognormal": {"lead_time_std": 1.5},
         "pmf": {"lead_time": None, "lead_time_pmf": np.array([0.1, 0.3, 0.4, 0.2])}}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lead", sorted(LEADS))
@pytest.mark.parametrize("method", ["normal", "sample"])
@pytest.mark.parametrize("target", ["csl", "fill_rate", "cost"])
def test_plan_orders_cupy_matches_numpy(method, target, lead, dtype):
    rng = np.random.default_rng(1)
    n, horizon = 3000, 28
    mean = rng.uniform(0.5, 40, (n, 1, 1)) * np.ones((1, horizon, 1))
    q = np.maximum(stats.norm.ppf(LEVELS, mean, 0.4 * mean), 0).astype(dtype)
    kw = dict(on_hand=rng.uniform(0, 300, n).astype(dtype), on_order=0.0,
              lead_time=rng.integers(1, 15, n).astype(dtype), review_period=7.0, unit_cost=5.0,
              stockout_cost=rng.uniform(1, 10, n).astype(dtype), order_cost=2.0, moq=6.0, case_pack=6.0,
              method=method, target=target, n_samples=500, chunk_size=1000)
    kw.update(LEADS[lead])
    host = plan_orders(LEVELS, q, **kw)
    dev = plan_orders(LEVELS, cp.asarray(q), **kw)
    need = host["order_up_to"] - kw["on_hand"]
    edge = _pack_edge(need, np.full(n, 6.0)) | np.isclose(kw["on_hand"], host["reorder_point"], rtol=1e-5)
    tol = dict(rtol=1e-3, atol=1e-3) if dtype == np.float32 else dict(rtol=1e-6, atol=1e-6)
    for key, v in host.items():
        got = cp.asnumpy(dev[key])
        assert got.dtype == dtype, key
        if key == "order_quantity":
            np.testing.assert_array_equal(got[~edge], v[~edge])
        elif key == "periods_until_order":
            # the crossing period can flip where the projection lands on the reorder point
            assert np.mean(np.isnan(got) != np.isnan(v)) < 1e-3
            both = ~np.isnan(got) & ~np.isnan(v)
            assert np.mean(np.abs(got[both] - v[both]) > 1) < 1e-3
        else:
            np.testing.assert_allclose(got, v, **tol, err_msg=key)


@pytest.mark.parametrize("dtype", DTYPES)
def test_allocation_matches_numpy(dtype):
    rng = np.random.default_rng(2)
    n, groups = 20_000, 40
    grp = rng.integers(0, groups, n)
    kw = dict(group=grp, demand_mean=rng.uniform(1, 100, n).astype(dtype),
              demand_std=rng.uniform(0.5, 30, n).astype(dtype), position=rng.uniform(-10, 50, n).astype(dtype),
              unit_cost=rng.uniform(1, 20, n).astype(dtype), stockout_cost=rng.uniform(1, 10, n).astype(dtype),
              case_pack=4.0)
    planned = np.round(rng.uniform(0, 80, n)).astype(dtype)
    budget = rng.uniform(500, 5000, groups)
    host = allocate_budget(planned, budget=budget, **kw)
    dev = allocate_budget(cp.asarray(planned), budget=cp.asarray(budget),
                          **{k: cp.asarray(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()})
    got = cp.asnumpy(dev)
    assert got.dtype == dtype
    assert np.mean(np.abs(got - host) > 1e-6 * (1 + host)) < 1e-3
    spend = np.bincount(grp, weights=got * kw["unit_cost"], minlength=groups)
    assert (spend <= budget * (1 + 1e-9)).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_echelon_matches_numpy(dtype):
    rng = np.random.default_rng(3)
    g, per = 5_000, 10
    net = np.repeat(np.arange(g), per)
    m = g * per
    kw = dict(store_mean=rng.uniform(1, 50, m), store_std=rng.uniform(0.5, 15, m),
              store_lead_time=rng.integers(0, 5, m).astype(float), store_holding_cost=rng.uniform(0.2, 3, m),
              store_service_level=rng.uniform(0.9, 0.99, m), store_service_time=(rng.random(m) < 0.25) * 1.0,
              dc_lead_time=rng.integers(1, 15, g).astype(float), dc_holding_cost=rng.uniform(0.05, 2, g))
    kw = {k: v.astype(dtype) for k, v in kw.items()}
    host = two_echelon_placement(net, dc_service_level=0.95, **kw)
    dev = two_echelon_placement(cp.asarray(net), dc_service_level=0.95, **{k: cp.asarray(v) for k, v in kw.items()})
    tol = dict(rtol=2e-5, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-9, atol=1e-9)
    for key, v in host.items():
        np.testing.assert_allclose(cp.asnumpy(dev[key]), v, **tol, err_msg=key)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lead", ["fixed", "lognormal", "pmf"])
def test_simulator_matches_numpy(dtype, lead):
    from replenish.kernels import simulate_inventory
    from replenish.kernels.simulate import SIM_KEYS

    rng = np.random.default_rng(4)
    n, horizon = 2000, 90
    demand = rng.poisson(rng.uniform(0.5, 8, (n, 1)), (n, horizon)).astype(dtype)
    s = rng.integers(0, 25, n).astype(float)
    kw = dict(reorder_point=s, order_up_to=s + rng.integers(0, 20, n), review_period=rng.integers(1, 8, n),
              moq=rng.choice([0.0, 4.0], n), case_pack=rng.choice([0.0, 6.0], n),
              on_hand=rng.integers(0, 30, n).astype(float), stockout_cost=1.0, order_cost=2.0, seed=3,
              lost_sales=lead == "lognormal", shelf_life=6 if lead == "pmf" else None)
    kw.update({"fixed": dict(lead_time=rng.integers(0, 6, n).astype(float)),
               "lognormal": dict(lead_time=rng.uniform(0.5, 6, n), lead_time_std=rng.uniform(0, 2, n)),
               "pmf": dict(lead_time_pmf=rng.dirichlet(np.ones(6), n))}[lead])
    host = simulate_inventory(demand, **kw, engine="xp")
    dev = simulate_inventory(cp.asarray(demand), **{k: cp.asarray(v) if isinstance(v, np.ndarray) else v
                                                    for k, v in kw.items()})
    for key in SIM_KEYS:
        np.testing.assert_allclose(cp.asnumpy(dev[key]), host[key], rtol=1e-12, atol=1e-9, err_msg=key)

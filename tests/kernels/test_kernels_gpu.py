"""CuPy backend against the NumPy path (skipped without CuPy and a GPU)."""
import numpy as np
import pytest
from scipy import stats

cp = pytest.importorskip("cupy")
try:
    if cp.cuda.runtime.getDeviceCount() < 1:
        pytest.skip("no CUDA device", allow_module_level=True)
except cp.cuda.runtime.CUDARuntimeError:
    pytest.skip("no CUDA device", allow_module_level=True)

from replenish.kernels import normal_policy, order_quantity, plan_orders  # noqa: E402

LEVELS = np.array([0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95])


def _pack_edge(need, pack, rtol=1e-5):
    """Items whose need is within float32 rounding of a case-pack boundary (may round either way)."""
    ratio = need / np.where(pack > 0, pack, 1)
    return np.abs(ratio - np.round(ratio)) <= rtol * np.maximum(np.abs(ratio), 1)


def test_fused_policy_and_orders_match_numpy():
    rng = np.random.default_rng(0)
    n = 200_000
    f = np.float32
    mu_l, sd_l = rng.uniform(0, 500, n).astype(f), rng.uniform(0, 80, n).astype(f)
    mu_p, sd_p = (mu_l * 1.3).astype(f), (sd_l * 1.2).astype(f)
    level, lot = rng.uniform(0.5, 0.999, n).astype(f), rng.uniform(0, 50, n).astype(f)
    pos = rng.uniform(-20, 700, n).astype(f)
    moq, pack, cap = rng.uniform(0, 30, n).astype(f), rng.choice([0, 1, 6, 12], n).astype(f), np.full(n, 400, f)
    host = normal_policy(mu_l, sd_l, mu_p, sd_p, level, lot)
    dev = normal_policy(*(cp.asarray(a) for a in (mu_l, sd_l, mu_p, sd_p, level, lot)))
    for key in host:
        assert isinstance(dev[key], cp.ndarray)
        np.testing.assert_allclose(cp.asnumpy(dev[key]), host[key], rtol=2e-6, atol=2e-4, err_msg=key)
    q_host = order_quantity(pos, host["reorder_point"], host["order_up_to"], moq=moq, case_pack=pack, max_order=cap)
    q_dev = order_quantity(*(cp.asarray(a) for a in (pos, host["reorder_point"], host["order_up_to"])),
                           moq=cp.asarray(moq), case_pack=cp.asarray(pack), max_order=cp.asarray(cap))
    np.testing.assert_array_equal(cp.asnumpy(q_dev), q_host)


@pytest.mark.parametrize("method", ["normal", "sample"])
@pytest.mark.parametrize("target", ["csl", "fill_rate"])
def test_plan_orders_cupy_matches_numpy(method, target):
    rng = np.random.default_rng(1)
    n, horizon = 3000, 28
    mean = rng.uniform(0.5, 40, (n, 1, 1)) * np.ones((1, horizon, 1))
    q = np.maximum(stats.norm.ppf(LEVELS, mean, 0.4 * mean), 0).astype(np.float32)
    kw = dict(on_hand=rng.uniform(0, 300, n).astype(np.float32), on_order=0.0,
              lead_time=rng.integers(1, 15, n).astype(np.float32), review_period=7.0, unit_cost=5.0,
              order_cost=2.0, moq=6.0, case_pack=6.0, method=method, target=target, n_samples=500,
              chunk_size=1000)
    host = plan_orders(LEVELS, q, **kw)
    dev = plan_orders(LEVELS, cp.asarray(q), **kw)
    need = host["order_up_to"] - (kw["on_hand"])
    edge = _pack_edge(need, np.full(n, 6.0)) | np.isclose(kw["on_hand"], host["reorder_point"], rtol=1e-5)
    for key, v in host.items():
        got = cp.asnumpy(dev[key])
        assert got.dtype == np.float32, key
        if key == "order_quantity":
            np.testing.assert_array_equal(got[~edge], v[~edge])
        elif key == "periods_until_order":
            # the crossing period can flip where the projection lands on the reorder point
            assert np.mean(np.isnan(got) != np.isnan(v)) < 1e-3
            both = ~np.isnan(got) & ~np.isnan(v)
            assert np.mean(np.abs(got[both] - v[both]) > 1) < 1e-3
        else:
            np.testing.assert_allclose(got, v, rtol=1e-3, atol=1e-3, err_msg=key)

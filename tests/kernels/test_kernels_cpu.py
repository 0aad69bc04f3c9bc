"""Fused host kernels (Numba) against the NumPy array code they replace on the host.

``REPLENISH_NUMBA=0`` switches the fused kernels off, so each test computes the
same public function both ways on fresh random inputs.  The NumPy code is itself
checked against closed forms, scipy and brute force elsewhere.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from replenish.kernels import interval_demand_moments, outcomes_normal, periods_until_order, plan_orders
from replenish.kernels import _cpu
from replenish.kernels._moments import period_summary

pytestmark = pytest.mark.skipif(_cpu._numba() is None, reason="numba not installed")

LEVELS = np.array([0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95])
FAST = settings(max_examples=20, deadline=None)


def both(monkeypatch, fn):
    """``fn()`` with the fused kernels, then with NumPy only."""
    monkeypatch.delenv("REPLENISH_NUMBA", raising=False)
    assert _cpu.enabled()
    fused = fn()
    monkeypatch.setenv("REPLENISH_NUMBA", "0")
    assert not _cpu.enabled()
    ref = fn()
    monkeypatch.delenv("REPLENISH_NUMBA")
    return fused, ref


def random_forecasts(rng, n, horizon, levels, dtype):
    """Sorted non-negative quantiles with constant, zero and clipped-tail rows mixed in."""
    q = np.sort(rng.gamma(rng.uniform(0.3, 3.0), rng.uniform(0.5, 50.0), (n, horizon, levels.size)), axis=-1)
    q[: n // 8] = rng.uniform(0, 20)  # constant demand: zero variance
    q[n // 8: n // 4] = 0.0  # no demand
    q[n // 4: n // 3, :, 0] = 0.0  # lowest quantile at zero: the extrapolated tail is clipped
    return q.astype(dtype)


@FAST
@given(st.integers(0, 2**31 - 1), st.sampled_from([np.float32, np.float64]), st.integers(2, 11))
def test_period_summary_matches_numpy(seed, dtype, n_q):
    rng = np.random.default_rng(seed)
    levels = np.sort(rng.choice(np.arange(1, 100), n_q, replace=False)) / 100.0
    q = random_forecasts(rng, 97, int(rng.integers(1, 40)), levels, dtype)
    with pytest.MonkeyPatch.context() as mp:
        (m1, v1, d1), (m2, v2, d2) = both(mp, lambda: period_summary(levels, q))
    assert m1.dtype == v1.dtype == d1.dtype == dtype and m1.shape == q.shape[:2]
    if dtype == np.float32:
        # two float32 computations can each be ~1e-4 of the spread off (close levels make the
        # tail extrapolation ill-conditioned; hypothesis found a NumPy float32 variance 1.3e-4
        # off): the fused result is held against the exact (float64) one instead
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("REPLENISH_NUMBA", "0")
            m2, v2, d2 = period_summary(levels, q.astype(np.float64))
        tol = dict(rtol=2e-5, atol=1e-4)
    else:
        # the fused variance (a sum of squares) and NumPy's (a difference) round differently
        tol = dict(rtol=1e-8, atol=1e-9)
    # variance and median errors are relative to the spread (the median of a clipped tail is
    # interpolated between quantiles far apart), not to their own size
    scale = q[..., -1].astype(np.float64) - q[..., 0] + 1
    np.testing.assert_allclose(m1, m2, **tol)
    np.testing.assert_allclose(d1 / scale, d2 / scale, **tol)
    np.testing.assert_allclose(v1 / scale**2, v2 / scale**2, **tol)
    assert np.all(v1 >= 0)
    assert np.all(v1[: 97 // 4] == 0)  # constant and zero demand: exactly no variance


def test_period_summary_crossed_forecasts_take_the_general_path(monkeypatch):
    rng = np.random.default_rng(3)
    q = random_forecasts(rng, 40, 7, LEVELS, np.float32)
    q[5, 2] = q[5, 2, ::-1]  # crossed
    q[9, 0, 0] = -1.0  # negative
    fused, ref = both(monkeypatch, lambda: period_summary(LEVELS, q))
    for a, b in zip(fused, ref):
        np.testing.assert_allclose(a, b, rtol=1e-6)


@pytest.mark.parametrize("numba_env", [None, "0"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_forecasts_are_rejected_with_a_count(monkeypatch, bad, numba_env):
    # the same error whether or not the fused kernels run (REPLENISH_NUMBA in the environment)
    if numba_env is None:
        monkeypatch.delenv("REPLENISH_NUMBA", raising=False)
    else:
        monkeypatch.setenv("REPLENISH_NUMBA", numba_env)
    rng = np.random.default_rng(4)
    q = random_forecasts(rng, 70_000, 5, LEVELS, np.float32)  # several chunks of the normal path
    q[3, 1, 2] = bad
    q[69_999, 4, 6] = bad
    if _cpu.enabled():  # the fused pass reports them itself
        with pytest.raises(_cpu.NonFiniteForecasts, match="non-finite"):
            period_summary(LEVELS, q[:10])
    with pytest.raises(ValueError, match="quantiles has 2 non-finite entries"):
        plan_orders(LEVELS, q, on_hand=10.0, on_order=0.0, lead_time=3.0, method="normal")


@FAST
@given(st.integers(0, 2**31 - 1), st.sampled_from([np.float32, np.float64]))
def test_interval_moments_match_numpy(seed, dtype):
    rng = np.random.default_rng(seed)
    n, horizon = 64, int(rng.integers(1, 30))
    mean = rng.uniform(0, 30, (n, horizon)).astype(dtype)
    var = rng.uniform(0, 100, (n, horizon)).astype(dtype)
    # whole, fractional, zero and beyond-the-horizon lengths
    length = np.concatenate([rng.integers(0, 2 * horizon + 3, n // 2), rng.uniform(0, 2 * horizon, n - n // 2)])
    length = length.astype(dtype)
    length_var = rng.uniform(0, 4, n).astype(dtype)
    with pytest.MonkeyPatch.context() as mp:
        for lv in (None, length_var):
            fused, ref = both(mp, lambda: interval_demand_moments(mean, var, length, lv))
            for a, b in zip(fused, ref):
                assert a.dtype == dtype
                np.testing.assert_allclose(a, b, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-4)
    # the second interval and the demand rate come from the same pass
    out = _cpu.interval_moments(mean, var, length, length_var, length + 7)
    ref_b = interval_demand_moments(mean, var, length + 7, length_var)
    np.testing.assert_allclose(out[2:4], np.stack(ref_b), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(out[4], mean.mean(axis=1), rtol=1e-5, atol=1e-5)


@FAST
@given(st.integers(0, 2**31 - 1), st.sampled_from([np.float32, np.float64]))
def test_outcomes_match_numpy(seed, dtype):
    rng = np.random.default_rng(seed)
    n = 300
    mu = rng.uniform(0, 200, n)
    sd = np.where(rng.random(n) < 0.2, 0.0, rng.uniform(0, 40, n))  # deterministic demand too
    rop = np.maximum(mu + rng.normal(0, 30, n), 0)
    out = rop + np.where(rng.random(n) < 0.3, 0.0, rng.uniform(0, 80, n))  # some with no lot
    kw = dict(demand_rate=rng.uniform(0, 20, n), review_period=rng.choice([0.0, 1.0, 7.0], n),
              holding_cost=rng.uniform(0, 1, n), stockout_cost=rng.uniform(0, 5, n), order_cost=rng.uniform(0, 9, n))
    args = [a.astype(dtype) for a in (mu, sd, rop, out)]
    kw = {k: v.astype(dtype) for k, v in kw.items()}
    with pytest.MonkeyPatch.context() as mp:
        fused, _ = both(mp, lambda: outcomes_normal(*args, **kw))
        # the fused kernel works in float64 whatever the inputs: compare with NumPy in float64
        # on the same (rounded) inputs, which the float32 NumPy code only matches to its own rounding
        _, ref = both(mp, lambda: outcomes_normal(*(a.astype(np.float64) for a in args),
                                                  **{k: v.astype(np.float64) for k, v in kw.items()}))
    assert fused.keys() == ref.keys()
    for key in ref:
        assert fused[key].dtype == dtype, key
        np.testing.assert_allclose(fused[key], ref[key], rtol=1e-6 if dtype == np.float32 else 1e-10,
                                   atol=1e-6 if dtype == np.float32 else 1e-10, err_msg=key)


def test_periods_until_order_matches_numpy(monkeypatch):
    rng = np.random.default_rng(5)
    n, horizon = 5000, 28
    demand = np.round(rng.gamma(1.0, 8.0, (n, horizon))).astype(np.float32)  # whole units: exact sums
    pos = rng.integers(-20, 400, n).astype(np.float32)
    rop = rng.integers(0, 100, n).astype(np.float32)
    fused, ref = both(monkeypatch, lambda: periods_until_order(pos, rop, demand))
    np.testing.assert_array_equal(fused, ref)
    assert np.isnan(fused).any() and (fused == 0).any() and (fused > 0).any()


@pytest.mark.parametrize("target", ["csl", "fill_rate", "cost"])
def test_plan_orders_normal_path_matches_numpy(monkeypatch, target):
    rng = np.random.default_rng(6)
    n, horizon = 3000, 28
    mean = rng.uniform(0.2, 40, (n, 1, 1)) * (1 + 0.3 * np.sin(np.arange(horizon) / 7 * 2 * np.pi))[None, :, None]
    q = np.maximum(stats.norm.ppf(LEVELS, mean, 0.5 * mean), 0).astype(np.float32)
    kw = dict(on_hand=rng.uniform(0, 300, n).astype(np.float32), on_order=5.0, lead_time=rng.uniform(0.5, 40, n),
              lead_time_std=rng.uniform(0, 3, n), review_period=7.0, unit_cost=rng.uniform(1, 20, n),
              stockout_cost=2.0, order_cost=4.0, target=target, method="normal", chunk_size=700)
    fused, ref = both(monkeypatch, lambda: plan_orders(LEVELS, q, **kw))
    for key in ref:
        a, b = fused[key], ref[key]
        if key in ("order_quantity", "periods_until_order"):  # thresholds: may flip on float32 near-ties
            same = np.isclose(a, b, rtol=1e-3, atol=1e-2) | (np.isnan(a) & np.isnan(b))
            assert same.mean() > 0.995, key
            continue
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3, err_msg=key)


@pytest.mark.parametrize("numba_env", [None, "0"])
def test_overflowing_forecasts_are_rejected(monkeypatch, numba_env):
    if numba_env is None:
        monkeypatch.delenv("REPLENISH_NUMBA", raising=False)
    else:
        monkeypatch.setenv("REPLENISH_NUMBA", numba_env)
    q = np.zeros((3, 4, 7), dtype=np.float32)
    q[1, 2, 5:] = [1e38, 3.4e38]  # finite, but the tail's mean excess overflows float32
    with pytest.raises(ValueError, match="too large"):
        plan_orders(LEVELS, q, on_hand=10.0, on_order=0.0, lead_time=3.0, method="normal")

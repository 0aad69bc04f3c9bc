"""Expected outcomes: costs against stockpyl's exact (r, Q) cost, sample vs normal, loss functions."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from stockpyl import rq as sp_rq

from replenish.kernels import normal_loss, normal_second_order_loss, outcomes_normal, outcomes_samples
from replenish.kernels._normal import loss as std_loss
from replenish.kernels._normal import loss_inverse
from replenish.kernels._normal import second_loss as std_second_loss


@settings(max_examples=20, deadline=None)
@given(st.floats(0.05, 2.0), st.floats(0.5, 20.0), st.floats(1.0, 100.0), st.floats(5.0, 200.0),
       st.floats(0.1, 1.0), st.floats(0.5, 10.0), st.floats(-2.0, 3.0), st.floats(1.0, 8.0))
def test_costs_equal_stockpyl_exact_rq_cost(h, p, k, rate, cv, lead, z, lots):
    tau = cv * rate
    mu, sigma = rate * lead, tau * np.sqrt(lead)
    r = mu + z * sigma
    q = lots * rate  # at least one period of demand per order: no cap on order frequency
    res = outcomes_normal(np.array([mu]), np.array([sigma]), np.array([r]), np.array([r + q]),
                          demand_rate=np.array([rate]), review_period=np.array([0.0]),
                          holding_cost=np.array([h]), stockout_cost=np.array([p]), order_cost=np.array([k]))
    ours = res["expected_holding_cost"] + res["expected_stockout_cost"] + res["expected_ordering_cost"]
    ref = sp_rq.r_q_cost(r, q, h, p, k, rate, tau, lead)
    np.testing.assert_allclose(ours, ref, rtol=1e-6)


def test_sample_outcomes_converge_to_normal_outcomes():
    rng = np.random.default_rng(0)
    n_s = 200000
    mu, sd = np.array([50.0, 80.0]), np.array([10.0, 5.0])
    d = mu[:, None] + sd[:, None] * stats.norm.ppf((rng.permuted(np.tile(np.arange(n_s), (2, 1)), axis=1)
                                                    + rng.random((2, n_s))) / n_s)
    s, big = np.array([60.0, 78.0]), np.array([120.0, 78.0])
    kw = dict(demand_rate=np.array([10.0, 8.0]), review_period=np.array([1.0, 0.0]),
              holding_cost=np.array([0.1, 0.2]), stockout_cost=np.array([2.0, 1.0]), order_cost=np.array([5.0, 0.0]))
    a = outcomes_normal(mu, sd, s, big, **kw)
    b = outcomes_samples(d, s, big, **kw)
    for key in a:
        np.testing.assert_allclose(b[key], a[key], rtol=2e-3, atol=2e-4, err_msg=key)
    np.testing.assert_allclose(a["expected_cycle_service_level"], stats.norm.cdf((s - mu) / sd))


def test_fill_rate_limits():
    # one-for-one replenishment: fill rate equals the cycle service level
    res = outcomes_normal(np.array([20.0]), np.array([4.0]), np.array([25.0]), np.array([25.0]),
                          demand_rate=np.array([2.0]), review_period=np.array([0.0]),
                          holding_cost=np.array([1.0]), stockout_cost=np.array([0.0]), order_cost=np.array([0.0]))
    np.testing.assert_allclose(res["expected_fill_rate"], res["expected_cycle_service_level"])
    assert res["expected_ordering_cost"] == 0 and res["expected_stockout_cost"] == 0
    # no demand: perfect service, nothing held beyond the reorder point
    res = outcomes_normal(np.zeros(1), np.zeros(1), np.zeros(1), np.zeros(1), demand_rate=np.zeros(1),
                          review_period=np.ones(1), holding_cost=np.ones(1), stockout_cost=np.ones(1),
                          order_cost=np.ones(1))
    assert res["expected_fill_rate"] == 1 and res["expected_cycle_service_level"] == 1
    assert res["expected_holding_cost"] == 0 and res["expected_ordering_cost"] == 0


@settings(max_examples=30, deadline=None)
@given(st.floats(-3, 3), st.floats(0, 100), st.floats(0.5, 30))
def test_loss_functions_match_scipy_integrals(zx, mu, sd):
    x = mu + zx * sd
    first = stats.norm(mu, sd).expect(lambda d: max(d - x, 0.0), lb=x)
    second = stats.norm(mu, sd).expect(lambda d: 0.5 * (d - x) ** 2, lb=x)
    np.testing.assert_allclose(normal_loss(x, mu, sd), first, rtol=1e-6, atol=1e-9 * sd)
    np.testing.assert_allclose(normal_second_order_loss(x, mu, sd), second, rtol=1e-6, atol=1e-9 * sd * sd)


def test_normal_loss_float32_is_enough():
    # G(z) = phi(z) - z (1 - Phi(z)) cancels by a factor ~z^2 only: float32 keeps ~1e-4 up to z = 8;
    # the second-order loss (~z^4) keeps ~5e-3 relative where it is below 1e-6, i.e. negligible
    z = np.linspace(-8, 8, 161)
    for fn, rtol in ((std_loss, 1e-4), (std_second_loss, 5e-3)):
        got = fn(z.astype(np.float32))
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, fn(z), rtol=rtol, atol=1e-30)
    big = std_second_loss(z) > 1e-6
    np.testing.assert_allclose(std_second_loss(z.astype(np.float32))[big], std_second_loss(z)[big], rtol=1e-4)
    t = np.logspace(-12, 2, 50)
    np.testing.assert_allclose(loss_inverse(t.astype(np.float32)), loss_inverse(t), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("review", [0.0, 7.0])
def test_outcomes_are_non_negative_and_bounded(review):
    rng = np.random.default_rng(3)
    n = 200
    mu, sd = rng.uniform(0, 100, n), rng.uniform(0, 30, n)
    s = np.maximum(mu + rng.normal(0, 2, n) * sd, 0)
    res = outcomes_normal(mu, sd, s, s + rng.uniform(0, 50, n), demand_rate=rng.uniform(0, 10, n),
                          review_period=np.full(n, review), holding_cost=np.full(n, 0.1),
                          stockout_cost=np.full(n, 1.0), order_cost=np.full(n, 3.0))
    for key, v in res.items():
        assert np.all(v >= 0), key
    assert np.all(res["expected_fill_rate"] <= 1) and np.all(res["expected_cycle_service_level"] <= 1)

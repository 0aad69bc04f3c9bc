"""Policies against closed forms (scipy) and the reference library (stockpyl)."""
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import stats
from stockpyl import eoq as sp_eoq
from stockpyl import newsvendor as sp_nv
from stockpyl import rq as sp_rq
from stockpyl import ss as sp_ss

from replenish.kernels import (critical_fractile, economic_order_quantity, empirical_fill_rate_level,
                               empirical_quantile, fill_rate_level, interval_demand_moments,
                               newsvendor_quantity, normal_policy, reorder_point, rq_policy, safety_stock,
                               ss_power_approximation)

FAST = settings(max_examples=30, deadline=None)
level = st.floats(0.5, 0.999)
pos = st.floats(0.1, 100.0)


@FAST
@given(st.lists(st.tuples(pos, pos, st.integers(1, 30), level), min_size=1, max_size=20))
def test_safety_stock_is_z_sigma_sqrt_lead_time(rows):
    mu, sigma, lead, alpha = (np.array(c, dtype=float) for c in zip(*rows))
    n = mu.size
    daily_mean = np.repeat(mu[:, None], 40, axis=1)
    daily_var = np.repeat((sigma ** 2)[:, None], 40, axis=1)
    m, s = interval_demand_moments(daily_mean, daily_var, lead)
    pol = normal_policy(m, s, m, s, alpha)
    expected = stats.norm.ppf(alpha) * sigma * np.sqrt(lead)
    np.testing.assert_allclose(pol["safety_stock"], expected, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(safety_stock(sigma * np.sqrt(lead), alpha), expected, rtol=1e-7)
    np.testing.assert_allclose(pol["reorder_point"], mu * lead + expected, rtol=1e-7)
    assert pol["order_up_to"].shape == (n,)


@FAST
@given(st.lists(st.tuples(pos, pos, level, level), min_size=1, max_size=20))
def test_higher_service_level_never_lowers_safety_stock(rows):
    mu, sigma, a, b = (np.array(c) for c in zip(*rows))
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    assert np.all(safety_stock(sigma, hi) >= safety_stock(sigma, lo))
    assert np.all(reorder_point(mu, sigma, hi) >= reorder_point(mu, sigma, lo))


@FAST
@given(st.floats(0.01, 10), st.floats(0.01, 10), st.floats(1, 500), st.floats(0.5, 50), st.integers(0, 10))
def test_newsvendor_normal_matches_stockpyl(h, p, mu, sigma, lead):
    ref, _ = sp_nv.newsvendor_normal(h, p, mu, sigma, lead_time=lead)
    # stockpyl's newsvendor with lead time L protects L + 1 periods
    ours = newsvendor_quantity(mu * (lead + 1), sigma * np.sqrt(lead + 1), p, h)
    assume(ref > 0)  # ours clips at zero demand
    np.testing.assert_allclose(ours, ref, rtol=1e-7)


@settings(max_examples=15, deadline=None)
@given(st.floats(0.01, 10), st.floats(0.01, 10), st.floats(0.5, 80))
def test_newsvendor_poisson_matches_stockpyl(h, p, mu):
    alpha = p / (p + h)
    n_s = 20000
    # exact Poisson draws on a stratified grid; the empirical critical-fractile
    # quantile is the Poisson quantile unless a CDF jump sits within a stratum
    samples = stats.poisson.ppf((np.arange(n_s) + 0.5) / n_s, mu)[None, :]
    assume(abs(stats.poisson.cdf(stats.poisson.ppf(alpha, mu), mu) - alpha) > 2.0 / n_s)
    ref, _ = sp_nv.newsvendor_poisson(h, p, mu)
    ours = empirical_quantile(samples, critical_fractile(p, h))
    assert ours[0] == ref


@FAST
@given(st.floats(0.1, 1000), st.floats(0.01, 50), st.floats(0.1, 1e4))
def test_eoq_matches_stockpyl(k, h, d):
    ref, _ = sp_eoq.economic_order_quantity(k, h, d)
    np.testing.assert_allclose(economic_order_quantity(k, h, d), ref, rtol=1e-10)
    assert economic_order_quantity(0.0, h, d) == 0.0


@settings(max_examples=15, deadline=None)
@given(st.floats(0.05, 1.0), st.floats(2.0, 50.0), st.floats(1.0, 50.0), st.floats(50, 3000),
       st.floats(0.05, 0.5), st.floats(0.02, 0.5))
def test_rq_policy_matches_stockpyl_eil(h, p, k, d, cv, lead):
    tau = cv * d
    q0 = np.sqrt(2 * k * d / h)
    assume(q0 * h / (p * d) < 0.5)  # the stockout-probability target stays feasible
    try:
        r_ref, q_ref, _ = sp_rq.r_q_eil_approximation(h, p, k, d, tau, lead)
    except (ValueError, OverflowError):
        assume(False)
    assume(np.isfinite(r_ref) and q_ref * h / (p * d) < 0.99)
    r, q = rq_policy(d, tau, lead, k, h, p)
    np.testing.assert_allclose(q, q_ref, rtol=1e-4)
    np.testing.assert_allclose(r, r_ref, rtol=1e-4, atol=1e-4 * tau)


@FAST
@given(st.floats(0.05, 2.0), st.floats(1.0, 20.0), st.floats(5.0, 200.0), st.floats(2.0, 80.0),
       st.floats(0.2, 2.0))
def test_power_approximation_matches_stockpyl(h, p, k, mu, cv):
    sd = cv * np.sqrt(mu)
    ref_s, ref_big = sp_ss.s_s_power_approximation(h, p, k, mu, sd)
    s, big = ss_power_approximation(mu, sd, 0.0, k, h, p)
    q_p = ref_big - ref_s
    assume(q_p / sd > 1.5)  # stockpyl omits the small-lot branch of the revision
    np.testing.assert_allclose([s, big], [ref_s, ref_big], rtol=1e-9)


@settings(max_examples=6, deadline=None)
@given(st.floats(0.2, 1.0), st.floats(2.0, 20.0), st.floats(20.0, 80.0), st.floats(3.0, 10.0))
def test_power_approximation_near_optimal_on_poisson(h, p, k, mu):
    # the approximation's regime: lots of at least two periods of demand
    assume(np.sqrt(2 * k * mu / h) >= 2 * mu)
    # exact (Zheng-Federgruen) optimum vs our heuristic, both costed exactly by stockpyl
    _, _, g_opt = sp_ss.s_s_discrete_exact(h, p, k, True, mu)
    s, big = ss_power_approximation(mu, np.sqrt(mu), 0.0, k, h, p)
    s_i = int(np.round(s))
    big_i = max(int(np.round(big)), s_i + 1)
    g = sp_ss.s_s_cost_discrete(s_i, big_i, h, p, k, True, mu)
    assert g <= 1.03 * g_opt


@FAST
@given(st.floats(0.0, 500), st.floats(0.1, 100), st.floats(1e-4, 200))
def test_fill_rate_level_solves_normal_loss(mu, sigma, allowance):
    x = fill_rate_level(np.array([mu]), np.array([sigma]), np.array([allowance]))
    z = (x - mu) / sigma
    loss = sigma * (stats.norm.pdf(z) - z * stats.norm.sf(z))
    if z < 8:
        np.testing.assert_allclose(loss, allowance, rtol=1e-6)
    else:
        assert loss <= allowance


@FAST
@given(st.integers(0, 2**31 - 1), st.floats(0.0, 1.0))
def test_empirical_fill_rate_level_is_exact_on_samples(seed, frac):
    rng = np.random.default_rng(seed)
    d = rng.gamma(2.0, 5.0, (6, 400))
    allowance = frac * d.mean(axis=1)
    x = empirical_fill_rate_level(d, allowance)
    short = np.maximum(d - x[:, None], 0).mean(axis=1)
    np.testing.assert_allclose(short, allowance, rtol=1e-9, atol=1e-9)


@FAST
@given(st.integers(0, 2**31 - 1), level, level)
def test_empirical_quantile_monotone_and_covering(seed, a, b):
    rng = np.random.default_rng(seed)
    d = rng.gamma(1.5, 3.0, (5, 257))
    lo, hi = min(a, b), max(a, b)
    x_lo, x_hi = empirical_quantile(d, lo), empirical_quantile(d, hi)
    assert np.all(x_hi >= x_lo)
    assert np.all((d <= x_hi[:, None]).mean(axis=1) >= hi)
    per_item = empirical_quantile(d, np.array([lo, hi, lo, hi, lo]))
    np.testing.assert_array_equal(per_item[[0, 2, 4]], x_lo[[0, 2, 4]])


def test_critical_fractile():
    np.testing.assert_allclose(critical_fractile(np.array([3.0, 1.0]), np.array([1.0, 3.0])), [0.75, 0.25])


def test_service_levels_are_clipped():
    top, bottom = reorder_point(10.0, 2.0, 1.0), reorder_point(10.0, 2.0, 0.0)
    np.testing.assert_allclose([top, bottom], 10.0 + 2.0 * stats.norm.ppf([1 - 1e-6, 1e-6]), rtol=1e-6)


@pytest.mark.parametrize("lead", [0.0, 3.0])
def test_power_approximation_small_lot_branch(lead):
    # lots small relative to the spread: capped by the newsvendor level
    s, big = ss_power_approximation(100.0, 40.0, lead, 1.0, 1.0, 9.0)
    s0 = 100 * (lead + 1) + 40 * np.sqrt(lead + 1) * stats.norm.ppf(0.9)
    assert big <= s0 + 1e-9 and s <= big


def test_building_blocks_reject_non_finite_inputs():
    import pytest as _pytest

    from replenish.kernels import order_quantity, periods_until_order

    bad = np.array([1.0, np.nan, np.inf])
    with _pytest.raises(ValueError, match="demand_std has 2 non-finite entries"):
        safety_stock(bad, 0.9)
    with _pytest.raises(ValueError, match="service_level has 1 non-finite entry"):
        reorder_point(1.0, 1.0, np.array([0.9, np.nan]))
    with _pytest.raises(ValueError, match="samples has 2 non-finite"):
        empirical_quantile(bad[None, :].repeat(2, 0)[:, :2], 0.5)
    with _pytest.raises(ValueError, match="position has 2 non-finite"):
        order_quantity(bad, 1.0, 2.0)
    with _pytest.raises(ValueError, match="demand_per_period has 1 non-finite"):
        periods_until_order(np.ones(1), np.ones(1), np.array([[1.0, np.inf]]))
    assert order_quantity(0.0, 1.0, 10.0, max_order=np.inf) == 10.0

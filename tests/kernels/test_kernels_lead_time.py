"""Lead-time demand: per-period distributions, moments, Monte-Carlo sums against brute force."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats

from replenish.kernels import (daily_moments, lead_time_demand_moments, quantile_function,
                               sample_lead_time_demand)
from replenish.kernels._moments import period_summary
from replenish.kernels.period_demand import _moments_from_knots, knots

LEVELS = np.array([0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95])
FAST = settings(max_examples=25, deadline=None)


def normal_quantiles(mean, sd, n_days, levels=LEVELS):
    """(1, n_days, Q) quantiles of i.i.d. normal daily demand."""
    return np.broadcast_to(stats.norm.ppf(levels, mean, sd), (1, n_days, levels.size)).copy()


def day_cdf(levels, q, x):
    """CDF of one period's demand, written independently from the package's formulas."""
    p1, p2 = levels[0], levels[1]
    x0 = max(0.0, q[0] - (q[1] - q[0]) / (p2 - p1) * p1)
    beta = (q[-1] - q[-2]) / (levels[-1] - levels[-2]) * (1 - levels[-1])
    xs = np.concatenate([[x0], q])
    ps = np.concatenate([[0.0], levels])
    inner = np.interp(x, xs, ps, left=0.0)
    tail = 1 - (1 - levels[-1]) * np.exp(-(x - q[-1]) / beta)
    return np.where(x > q[-1], tail, inner)


def convolved_quantiles(levels, q_days, shares, probs, step):
    """Brute force: discretise each period on a grid, convolve period by period (numpy loop)."""
    pmf = np.array([1.0])
    for q, share in zip(q_days, shares):
        top = q[-1] + 40 * (q[-1] - q[-2] + 1e-9)
        edges = np.arange(0.0, top + step, step)
        # demand share * X: CDF of X at edges / share
        cdf = day_cdf(levels, q, edges / share)
        pmf = np.convolve(pmf, np.diff(cdf))
    cum = np.cumsum(pmf)
    idx = np.searchsorted(cum, probs)
    return (idx + 0.5 * len(q_days)) * step  # mass of each day sits mid-cell


def test_moments_match_dense_normal_grid():
    levels = np.linspace(0.001, 0.999, 999)
    mean, var = daily_moments(levels, normal_quantiles(100.0, 10.0, 3, levels))
    np.testing.assert_allclose(mean, 100.0, rtol=1e-4)
    np.testing.assert_allclose(var, 100.0, rtol=0.02)


@FAST
@given(st.lists(st.floats(0.0, 50.0), min_size=7, max_size=7))
def test_moments_equal_integral_of_quantile_function(values):
    q = np.sort(np.asarray(values))[None, None, :]
    mean, var = daily_moments(LEVELS, q)

    def qf(u):
        return float(quantile_function(LEVELS, q, u)[0, 0])

    pts = list(LEVELS)
    m1 = integrate.quad(qf, 0, 1, points=pts, limit=200)[0]
    m2 = integrate.quad(lambda u: qf(u) ** 2, 0, 1, points=pts, limit=200)[0]
    np.testing.assert_allclose(mean[0, 0], m1, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(var[0, 0], m2 - m1 ** 2, rtol=1e-5, atol=1e-6)


@FAST
@given(st.integers(0, 2**31 - 1), st.booleans())
def test_fast_moments_match_knot_path(seed, messy):
    rng = np.random.default_rng(seed)
    q = np.sort(rng.gamma(1.0, 5.0, (20, 4, 7)), axis=-1)
    q[:5] = 3.0  # constant demand
    q[5:8] = 0.0  # no demand
    if messy:  # crossed and negative forecasts take the general path
        q[10:] = rng.normal(2.0, 3.0, (10, 4, 7))
    mean, var, med = period_summary(LEVELS, q)
    kn = knots(LEVELS, q)
    mean2, var2 = _moments_from_knots(LEVELS, kn)
    np.testing.assert_allclose(mean, mean2, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(var, var2, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(med, quantile_function(LEVELS, q, 0.5), rtol=1e-9, atol=1e-9)
    assert np.all(var[:8] == 0)


def test_float32_fast_moments_keep_low_variation_digits():
    rng = np.random.default_rng(0)
    q = 1000 + np.sort(rng.normal(0, 1, (50, 3, 7)), axis=-1)
    _, var32, _ = period_summary(LEVELS, q.astype(np.float32))
    _, var64, _ = period_summary(LEVELS, q)
    np.testing.assert_allclose(var32, var64, rtol=1e-3)


@pytest.mark.parametrize("lead_time", [5.0, 4.5])
def test_sampling_matches_bruteforce_convolution(lead_time):
    rng = np.random.default_rng(1)
    n_days = 6
    # three items, each day a different skewed distribution (gamma quantiles)
    q = np.stack([stats.gamma.ppf(LEVELS[None, :], a=rng.uniform(1, 4, (n_days, 1)),
                                  scale=rng.uniform(1, 6, (n_days, 1))) for _ in range(3)])
    samples = sample_lead_time_demand(LEVELS, q, lead_time, n_samples=20000, seed=4)
    probs = np.array([0.05, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99])
    full = int(np.floor(lead_time))
    shares = [1.0] * full + ([lead_time - full] if lead_time > full else [])
    for i in range(3):
        ref = convolved_quantiles(LEVELS, q[i, : len(shares)], shares, probs, step=0.02)
        got = np.quantile(samples[i], probs)
        sd = samples[i].std()
        # the 99% quantile's Monte-Carlo error is about twice the central ones'
        tol = np.where(probs >= 0.99, 0.08, 0.04) * sd + 0.05
        assert np.all(np.abs(got - ref) <= tol), (got, ref, tol)


def test_summing_daily_quantiles_overstates_lead_time_quantile():
    lead_time = 9
    q = normal_quantiles(20.0, 6.0, 12)
    samples = sample_lead_time_demand(LEVELS, q, lead_time, n_samples=4000, seed=0)
    ours = np.quantile(samples[0], 0.95)
    summed = lead_time * q[0, 0, -1]  # adding the 95% quantile of each day
    mean, sd = lead_time_demand_moments(LEVELS, q, lead_time)
    independent = mean[0] + stats.norm.ppf(0.95) * sd[0]  # sqrt(L) * z * sigma
    assert ours < summed - 0.5 * (summed - mean[0]) * (1 - 1 / np.sqrt(lead_time))
    assert abs(ours - independent) < 0.05 * (summed - mean[0])


def test_random_lead_time_adds_lead_time_variance():
    q = normal_quantiles(10.0, 3.0, 40)
    mu_d, var_d = daily_moments(LEVELS, q)
    mean, sd = lead_time_demand_moments(LEVELS, q, 6.0, lead_time_std=2.0)
    expected = 6.0 * var_d[0, 0] + 4.0 * mu_d[0, 0] ** 2  # E[L] Var(D) + Var(L) E[D]^2
    np.testing.assert_allclose(sd[0] ** 2, expected, rtol=1e-6)
    samples = sample_lead_time_demand(LEVELS, q, 6.0, lead_time_std=2.0, n_samples=20000, seed=1)
    np.testing.assert_allclose(samples.mean(), mean[0], rtol=0.01)
    np.testing.assert_allclose(samples.std(), sd[0], rtol=0.03)


def test_discrete_lead_time_is_a_mixture():
    rng = np.random.default_rng(2)
    q = np.sort(rng.uniform(0, 10, (2, 8, 7)), axis=-1)
    pmf = np.array([0.1, 0.0, 0.5, 0.3, 0.1])
    samples = sample_lead_time_demand(LEVELS, q, None, lead_time_pmf=pmf, n_samples=20000, seed=3)
    probs = np.array([0.1, 0.5, 0.9])
    for i in range(2):
        # mixture CDF at the sample quantiles should equal the probabilities
        xs = np.quantile(samples[i], probs)
        grid = np.arange(0, 200, 0.02)
        mix = np.zeros_like(xs)
        for lag, w in enumerate(pmf):
            if w == 0:
                continue
            if lag == 0:
                mix += w * (xs >= 0)
                continue
            pm = np.array([1.0])
            for h in range(lag):
                pm = np.convolve(pm, np.diff(day_cdf(LEVELS, q[i, h], np.concatenate([[0], grid]))))
            cdf = np.cumsum(pm)
            mix += w * np.interp(xs, (np.arange(cdf.size) + 0.5 * lag) * 0.02, cdf)
        np.testing.assert_allclose(mix, probs, atol=0.015)
    mean, _ = lead_time_demand_moments(LEVELS, q, None, lead_time_pmf=pmf)
    np.testing.assert_allclose(samples.mean(axis=1), mean, rtol=0.01)


def test_seed_determinism():
    rng = np.random.default_rng(5)
    q = np.sort(rng.uniform(0, 10, (30, 10, 7)), axis=-1)
    kw = dict(lead_time=rng.uniform(0, 9, 30), review_period=2.0, n_samples=300)
    a = sample_lead_time_demand(LEVELS, q, seed=7, **kw)
    b = sample_lead_time_demand(LEVELS, q, seed=7, **kw)
    c = sample_lead_time_demand(LEVELS, q, seed=8, **kw)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    r1 = sample_lead_time_demand(LEVELS, q, seed=7, lead_time_std=1.0, **kw)
    r2 = sample_lead_time_demand(LEVELS, q, seed=7, lead_time_std=1.0, **kw)
    np.testing.assert_array_equal(r1, r2)


def test_lead_time_beyond_horizon_repeats_last_period():
    q = normal_quantiles(5.0, 1.0, 3)
    mean, _ = lead_time_demand_moments(LEVELS, q, 7.5)
    mu_d, _ = daily_moments(LEVELS, q)
    np.testing.assert_allclose(mean[0], 7.5 * mu_d[0, 0], rtol=1e-9)
    samples = sample_lead_time_demand(LEVELS, q, 7.5, n_samples=5000)
    np.testing.assert_allclose(samples.mean(), mean[0], rtol=0.01)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_quantiles_rejected(bad):
    q = normal_quantiles(5.0, 1.0, 4).repeat(3, axis=0)
    q[1, 2, 3] = bad
    q[2, 0, 0] = bad
    with pytest.raises(ValueError, match=r"quantiles has 2 non-finite entries"):
        lead_time_demand_moments(LEVELS, q, 2.0)


def test_bad_levels_and_shapes_rejected():
    q = normal_quantiles(5.0, 1.0, 4)
    with pytest.raises(ValueError, match="strictly increasing"):
        daily_moments(LEVELS[::-1], q)
    with pytest.raises(ValueError, match="inside"):
        daily_moments(np.array([0.0, 0.5, 0.9, 0.95, 0.96, 0.97, 1.0]), q)
    with pytest.raises(ValueError, match="shape"):
        daily_moments(LEVELS, q[0])
    with pytest.raises(ValueError, match="lead_time has 1 non-finite"):
        lead_time_demand_moments(LEVELS, q, np.nan)
    with pytest.raises(ValueError, match="lead_time must be >= 0"):
        lead_time_demand_moments(LEVELS, q, -1.0)


@pytest.mark.parametrize("random_lead", [False, True])
def test_sampling_builds_its_random_tables_once_and_waits_for_the_host_once_per_chunk(monkeypatch,
                                                                                       random_lead):
    """The weight table, the lead-time strata and the chunk order are built once per problem,
    not per chunk (on a GPU each would be a host computation and a copy to the device), and
    a chunk reads at most one small array back (the range of its lead-time draws)."""
    from replenish.kernels import _sampling, plan_orders

    built, reads = [], []
    uniforms, to_numpy = _sampling.SamplingProblem._uniforms, _sampling.to_numpy
    monkeypatch.setattr(_sampling.SamplingProblem, "_uniforms",
                        lambda self, rng, n: built.append(n) or uniforms(self, rng, n))
    monkeypatch.setattr(_sampling, "to_numpy", lambda a: reads.append(np.shape(a)) or to_numpy(a))
    rng = np.random.default_rng(7)
    n, chunk = 4000, 400     # 10 chunks
    q = np.sort(rng.gamma(2.0, 5.0, (n, 14, LEVELS.size)), axis=-1).astype(np.float32)
    lead = rng.uniform(0.5, 20, n)
    extra = dict(lead_time_std=rng.uniform(0.5, 3, n)) if random_lead else {}
    res = plan_orders(LEVELS, q, on_hand=50.0, on_order=0.0, lead_time=lead, review_period=7.0,
                      n_samples=256, chunk_size=chunk, n_threads=1, **extra)
    assert np.isfinite(res["reorder_point"]).all()
    # one table for the longest interval (random lead times may grow it once more)
    assert len(built) <= (2 if random_lead else 1), built
    per_chunk = [r for r in reads if r != (n,)]      # chunk_jobs' one-off copies are (n,)
    assert len(per_chunk) <= (n // chunk if random_lead else 0), reads

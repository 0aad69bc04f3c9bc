"""Quantile recalibration: against closed forms (normal forecasts) and simulated actuals."""
import numpy as np
import pytest
from scipy import stats

from replenish.engine._calibration import fit_levels, pit, quantiles_at

LEVELS = np.array([0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99])


def _normal_forecasts(mu, sd, levels=LEVELS):
    return (mu[:, None] + sd[:, None] * stats.norm.ppf(levels)[None, :]).astype(np.float64)


def test_reading_at_the_model_levels_is_the_identity_and_tails_follow_normal_scores():
    rng = np.random.default_rng(0)
    mu, sd = rng.uniform(50, 100, 200), rng.uniform(1, 10, 200)
    q = _normal_forecasts(mu, sd)
    np.testing.assert_allclose(quantiles_at(LEVELS, q, LEVELS), q, rtol=1e-12)
    # beyond the outer levels the normal-score extension of a normal forecast is exact
    far = np.array([0.001, 0.995, 0.9999])
    np.testing.assert_allclose(quantiles_at(LEVELS, q, far), _normal_forecasts(mu, sd, far), rtol=1e-9)
    # between knots: linear in the level
    mid = quantiles_at(LEVELS, q, np.array([0.3]))[:, 0]
    np.testing.assert_allclose(mid, q[:, 3] + (0.3 - 0.25) / 0.25 * (q[:, 4] - q[:, 3]))
    assert (np.diff(quantiles_at(LEVELS, q, np.linspace(0.001, 0.999, 50)), axis=1) >= 0).all()


def test_pit_of_normal_forecasts_is_the_normal_cdf():
    rng = np.random.default_rng(1)
    mu, sd = rng.uniform(50, 100, 500), rng.uniform(1, 10, 500)
    levels = np.linspace(0.005, 0.995, 199)                         # dense knots
    y = mu + sd * rng.normal(size=500)
    u = pit(levels, _normal_forecasts(mu, sd, levels), y, rng)
    np.testing.assert_allclose(u, stats.norm.cdf((y - mu) / sd), atol=2e-3)


def test_calibrated_forecasts_keep_their_levels():
    rng = np.random.default_rng(2)
    n = 40_000
    mu, sd = rng.uniform(50, 100, n), rng.uniform(1, 10, n)
    y = mu + sd * rng.normal(size=n)
    new = fit_levels(LEVELS, _normal_forecasts(mu, sd), y, seed=0)
    np.testing.assert_allclose(new, LEVELS, atol=0.01)


def test_overconfident_forecasts_are_widened_to_nominal_coverage():
    rng = np.random.default_rng(3)
    n = 40_000
    mu, sd = rng.uniform(50, 100, n), rng.uniform(1, 10, n)
    q = _normal_forecasts(mu, sd)                                    # forecasts say sd ...
    y = mu + 2 * sd * rng.normal(size=n)                             # ... the truth is 2 sd
    new = fit_levels(LEVELS, q, y, seed=0)
    expect = stats.norm.cdf(2 * stats.norm.ppf(LEVELS))              # closed form of tau'
    np.testing.assert_allclose(new, np.clip(expect, 1e-4, 1 - 1e-4), atol=0.01)
    # on fresh actuals the recalibrated 90% interval covers about 90%
    y2 = mu + 2 * sd * rng.normal(size=n)
    qc = quantiles_at(LEVELS, q, new)
    inside = (y2 >= qc[:, 1]) & (y2 <= qc[:, 7])
    assert inside.mean() == pytest.approx(0.90, abs=0.01)
    assert ((y2 >= q[:, 1]) & (y2 <= q[:, 7])).mean() < 0.65         # before: far below


def test_zero_demand_point_mass_is_randomised_not_biased():
    # items that sell nothing, forecast to sell nothing: every level is right, nothing moves
    rng = np.random.default_rng(4)
    n = 20_000
    q = np.zeros((n, len(LEVELS)))
    y = np.zeros(n)
    u = pit(LEVELS, q, y, rng)
    assert u.min() >= 0 and u.max() <= 1
    assert np.mean(u <= 0.3) == pytest.approx(0.3, abs=0.02)          # uniform over the mass
    np.testing.assert_allclose(fit_levels(LEVELS, q, y, seed=0), LEVELS, atol=0.02)
    # with zero forecasts, any level reads zero demand
    assert (quantiles_at(LEVELS, q, fit_levels(LEVELS, q, y)) == 0).all()

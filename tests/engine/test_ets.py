"""AutoETS forecasts for the backtest's classical policy (statsforecast, optional)."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("statsforecast")

from replenish.engine.ets import ets_forecasts  # noqa: E402


def test_a_weekly_pattern_is_forecast_in_phase_and_sigma_is_its_noise():
    rng = np.random.default_rng(0)
    pattern = np.array([10.0, 12, 14, 16, 20, 30, 8])
    t = np.arange(210)
    noise = rng.normal(0, 1.0, (2, len(t)))
    hist = pattern[t % 7][None, :] + noise
    hist[1, :40] = np.nan                      # a later start: the NaN head is skipped
    f, sigma, failed = ets_forecasts(hist, 10, season=7, errors=56)
    assert not failed.any() and f.shape == (2, 10)
    expect = pattern[np.arange(210, 220) % 7]  # the periods after the last column
    np.testing.assert_allclose(f, np.broadcast_to(expect, f.shape), atol=1.0)
    # one-period errors of a fitted model are about the noise (sd 1), far below the pattern's
    assert np.all((sigma > 0.6) & (sigma < 1.5)), sigma


def test_degenerate_series_are_flagged_or_exact():
    hist = np.full((4, 30), np.nan)
    hist[0, -2:] = [3.0, 4.0]                  # 2 known periods: cannot be fitted
    hist[1] = 5.0                              # constant: forecast 5, no error
    hist[2] = np.where(np.arange(30) % 2 == 0, 0.0, 2.0)
    hist[2, -1] = 0.0
    hist[3] = np.linspace(10, 0, 30)           # a falling trend may forecast below zero
    f, sigma, failed = ets_forecasts(hist, 20, season=7, errors=14)
    assert failed.tolist() == [True, False, False, False]
    assert np.isnan(f[0]).all() and np.isnan(sigma[0])
    np.testing.assert_allclose(f[1], 5.0)
    assert sigma[1] == 0.0
    assert np.all(f[1:] >= 0) and np.all(np.isfinite(f[1:])) and np.all(sigma[1:] >= 0)

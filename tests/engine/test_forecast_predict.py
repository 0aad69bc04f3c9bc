"""Forecasts: shape, monotone non-negative quantiles, short/new series, weekly panels."""
import numpy as np
import pytest

from forecast_helpers import toy_panel
from replenish.engine.forecast import ForecastConfig, TFTForecaster

TINY = dict(horizon=7, encoder_length=14, hidden_size=8, hidden_continuous_size=4,
            attention_heads=2, batch_size=32, max_steps=20, val_every=10, seed=0, device="cpu")


@pytest.fixture(scope="module")
def fitted():
    panel = toy_panel(8, 100, with_future=7)
    return panel, TFTForecaster(ForecastConfig(**TINY)).fit(panel)


def _check(q, n, h, levels):
    assert q.shape == (n, h, len(levels)) and q.dtype == np.float32
    assert np.isfinite(q).all() and (q >= 0).all()
    assert (np.diff(q, axis=-1) >= 0).all()


def test_quantiles_monotone_and_non_negative(fitted):
    panel, f = fitted
    _check(f.predict(panel), 8, 7, f.levels)
    assert f.levels[0] == 0.01 and f.levels[-1] == 0.99
    assert f.history["samples_per_s"] > 0 and f.history["val_loss"]


def test_short_series_get_forecasts(fitted):
    _, f = fitted
    panel = toy_panel(lengths=[1, 2, 3, 10, 100], with_future=7, seed=5)
    _check(f.predict(panel), 5, 7, f.levels)


def test_unseen_series_keys(fitted):
    _, f = fitted
    panel = toy_panel(4, 50, with_future=7, seed=7)
    panel.sku = panel.sku + 10_000
    panel.location = np.array(["new-store"] * 4)
    panel.static["category"] = np.array(["zzz"] * 4)
    _check(f.predict(panel), 4, 7, f.levels)


def test_missing_future_known_is_a_clear_error(fitted):
    panel, f = fitted
    no_future = toy_panel(8, 100)
    with pytest.raises(ValueError, match="future_known"):
        f.predict(no_future)
    wrong = toy_panel(8, 100, observed=False, with_future=7)
    with pytest.raises(ValueError, match="observed covariates"):
        f.predict(wrong)


def test_weekly_panel_with_short_series():
    panel = toy_panel(lengths=[60, 60, 45, 3, 60], freq="W", with_future=4, static=False)
    cfg = ForecastConfig(**{**TINY, "horizon": 4, "encoder_length": 8,
                            "quantiles": (0.1, 0.5, 0.9)})
    f = TFTForecaster(cfg).fit(panel)
    assert f.spec.freq == "W" and "cal_week_of_year" in f.spec.x_categoricals
    _check(f.predict(panel), 5, 4, f.levels)


def test_training_needs_long_enough_series():
    panel = toy_panel(lengths=[5, 8], with_future=7)
    with pytest.raises(ValueError, match="periods"):
        TFTForecaster(ForecastConfig(**TINY)).fit(panel)


def test_series_too_short_for_validation_train_without_it():
    panel = toy_panel(lengths=[12, 14], with_future=7)
    f = TFTForecaster(ForecastConfig(**{**TINY, "max_steps": 5})).fit(panel)
    assert f.history["val_loss"] == [] and f.history["steps"] == 5
    _check(f.predict(panel), 2, 7, f.levels)

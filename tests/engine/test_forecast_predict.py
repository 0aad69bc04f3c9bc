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


def test_missing_weeks_read_as_unknown_do_not_pull_the_forecast_down():
    """Steady weekly demand (about 40 a week); series 0 lacks 12 of its last 30 weeks. Read
    as zeros they drag its forecast down; read as unknown they are neither targets nor in
    the window's scale, and its forecast stays at its level."""
    import pyarrow as pa
    from replenish.engine.contract import ColumnMap
    from replenish.engine.validate import build_panel
    rng = np.random.default_rng(0)
    weeks = [np.datetime64("2023-01-02") + np.timedelta64(7 * k, "D") for k in range(80)]
    rows = [(s, "L", w, float(rng.poisson(40))) for s in range(6) for w in weeks]
    gone = {(0, weeks[k]) for k in rng.choice(np.arange(50, 80), 12, replace=False)}
    rows = [r for r in rows if (r[0], r[2]) not in gone]
    table = pa.table({"sku": [r[0] for r in rows], "location": [r[1] for r in rows],
                      "date": pa.array(np.array([r[2] for r in rows], "datetime64[D]")),
                      "demand": [r[3] for r in rows]})
    cfg = ForecastConfig(**{**TINY, "horizon": 6, "encoder_length": 26, "max_steps": 30})
    median = {}
    for gaps in ("zero", "missing"):
        panel = build_panel(table, ColumnMap(), gaps=gaps)
        assert panel.report[f"gaps_{'filled' if gaps == 'zero' else 'missing'}"] == 12
        q = TFTForecaster(cfg).fit(panel).predict(panel)
        _check(q, 6, 6, cfg.quantiles)                     # every series, every period
        median[gaps] = float(q[0, :, 4].mean())
    level = np.mean([r[3] for r in rows if r[0] == 0])
    assert abs(median["missing"] - level) < 0.15 * level
    assert median["zero"] < median["missing"] - 0.1 * level

"""The forecaster's settings a plan job trains with when its config leaves them out."""
from __future__ import annotations

from replenish.engine._config import ForecastConfig
from replenish.jobs._tasks import model_settings


def test_daily_data_train_twice_the_steps_of_weekly_data():
    daily = ForecastConfig(**model_settings("D", {}))
    weekly = ForecastConfig(**model_settings("W", {}))
    assert (daily.horizon, daily.encoder_length, daily.max_steps) == (28, 112, 1400)
    assert (weekly.horizon, weekly.encoder_length) == (12, 52)
    assert weekly.max_steps == ForecastConfig().max_steps == 700


def test_the_config_wins_over_the_frequency_defaults():
    s = ForecastConfig(**model_settings("D", {"max_steps": 50, "horizon": 7}))
    assert (s.max_steps, s.horizon, s.encoder_length) == (50, 7, 112)
    assert ForecastConfig(**model_settings("W", {"max_steps": 900})).max_steps == 900

"""The LightGBM ensemble member: its rows, its quantiles, its round trip, the blend, its
progress lines."""
import io
import re

import numpy as np
import pytest

from forecast_helpers import toy_panel
from replenish.engine.forecast import ForecastConfig, TFTForecaster
from replenish.engine.gbm import GBMConfig, GBMForecaster, _rolling_max, _rolling_mean

LEVELS = (0.05, 0.25, 0.5, 0.75, 0.95)
SMALL = GBMConfig(max_rounds=20, min_data_in_leaf=5, num_leaves=7, threads=1)


def _weekly(seed=0):
    panel = toy_panel(lengths=[70, 70, 40, 70, 9], freq="W", seed=seed, with_future=6)
    unknown = panel.indptr[1] + np.array([10, 11, 30, 61, 68])
    panel.demand[unknown] = np.nan
    return panel


def test_rolling_statistics_match_a_loop():
    rng = np.random.default_rng(0)
    y = rng.poisson(5, (3, 40)).astype(float)
    y[rng.random(y.shape) < 0.2] = np.nan
    for w in (1, 4, 13):
        mean, _ = _rolling_mean(y, w)
        mx = _rolling_max(y, w)
        for i in range(3):
            for j in range(40):
                block = y[i, max(0, j - w + 1):j + 1]
                block = block[np.isfinite(block)]
                assert (np.isnan(mean[i, j]) if len(block) == 0
                        else mean[i, j] == pytest.approx(block.mean()))
                assert (np.isnan(mx[i, j]) if len(block) == 0 else mx[i, j] == block.max())


def _expected_rows(panel, holdout, h=6):
    """Brute force: every (series, origin, step) whose target is known, before the holdout,
    with some known demand in the origin's last season (the level)."""
    t = int(panel.lengths.max())
    expected = 0
    for s in range(panel.n_series):
        y = np.full(t, np.nan)
        y[t - panel.lengths[s]:] = panel.demand[panel.indptr[s]:panel.indptr[s + 1]]
        for o in range(t - 1):
            if not np.isfinite(y[max(0, o - 51):o + 1]).any():
                continue
            expected += sum(1 for k in range(1, h + 1) if o + k < t - holdout and np.isfinite(y[o + k]))
    return expected


def test_unknown_periods_are_never_targets_and_quantiles_are_sorted(tmp_path):
    panel = _weekly()
    m = GBMForecaster(LEVELS, 6, SMALL).fit(panel, holdout=6)
    assert m.history["rows"] == _expected_rows(panel, 6)
    q = m.predict(panel)
    assert q.shape == (5, 6, 5) and q.dtype == np.float32
    assert np.isfinite(q).all() and (q >= 0).all() and (np.diff(q, axis=-1) >= 0).all()
    m.save(tmp_path / "gbm")
    np.testing.assert_array_equal(GBMForecaster.load(tmp_path / "gbm").predict(panel), q)
    other = toy_panel(lengths=[70, 3], freq="W", seed=4, with_future=6, static=False)
    with pytest.raises(ValueError):
        m.predict(toy_panel(lengths=[70], freq="W", observed=False, with_future=6))
    assert other.n_series == 2


def test_refit_trains_on_the_whole_history_with_the_rounds_found():
    panel = _weekly()
    m = GBMForecaster(LEVELS, 6, SMALL).fit(panel, holdout=6)
    full = GBMForecaster(LEVELS, 6, SMALL).fit(panel, rounds=m.history["rounds"])
    assert full.history["rounds"] == m.history["rounds"] and full.history["validation_rows"] == 0
    assert full.history["rows"] == _expected_rows(panel, 0) > m.history["rows"]


def test_ensemble_refit_keeps_the_weight_and_learns_the_held_out_periods(tmp_path):
    panel = _weekly(1)
    cfg = ForecastConfig(horizon=6, encoder_length=12, hidden_size=8, hidden_continuous_size=4,
                         attention_heads=1, batch_size=32, max_steps=20, val_every=10,
                         quantiles=LEVELS, ensemble_options={"num_leaves": 7, "max_rounds": 40, "refit": True})
    f = TFTForecaster(cfg).fit(panel)
    assert f.member.config.refit and f.member.history["validation_rows"] == 0
    assert f.member.history["rows"] == _expected_rows(panel, 0)
    w = f.tft_weight
    blend = np.sort(np.clip(w * f._predict_tft(panel) + (1 - w) * f.member.predict(panel), 0, None), -1)
    np.testing.assert_allclose(f.predict(panel), blend, rtol=1e-6, atol=1e-5)
    f.save(tmp_path / "model")
    g = TFTForecaster.load(tmp_path / "model", device="cpu")
    assert g.member.config.refit
    np.testing.assert_array_equal(g.predict(panel), f.predict(panel))


def test_ensemble_blends_the_members_with_the_fitted_weight(tmp_path):
    panel = _weekly(1)
    cfg = ForecastConfig(horizon=6, encoder_length=12, hidden_size=8, hidden_continuous_size=4,
                         attention_heads=1, batch_size=32, max_steps=20, val_every=10,
                         quantiles=LEVELS)
    cfg.ensemble_options = {"num_leaves": 7, "max_rounds": 40}
    f = TFTForecaster(cfg).fit(panel)
    assert f.member.config.num_leaves == 7 and f.member.config.max_rounds == 40
    assert max(f.member.history["rounds"]) <= 40
    info = f.history["ensemble"]
    assert f.member is not None and 0.0 <= f.tft_weight <= 1.0
    assert info["spl_blend"] <= min(info["spl_tft"], info["spl_lightgbm"]) + 1e-12
    w = f.tft_weight
    blend = np.sort(np.clip(w * f._predict_tft(panel) + (1 - w) * f.member.predict(panel),
                            0, None), -1)
    q = f.predict(panel)
    np.testing.assert_allclose(q, blend, rtol=1e-6, atol=1e-5)
    assert (np.diff(q, axis=-1) >= 0).all() and (q >= 0).all()
    f.save(tmp_path / "model")
    g = TFTForecaster.load(tmp_path / "model", device="cpu")
    assert g.tft_weight == f.tft_weight
    np.testing.assert_array_equal(g.predict(panel), q)
    alone = TFTForecaster(ForecastConfig(**{**cfg.to_dict(), "ensemble": None})).fit(panel)
    assert alone.member is None and "ensemble" not in alone.history


def test_member_options_are_the_member_settings():
    from dataclasses import fields

    from replenish.engine._config import MEMBER_OPTIONS
    from replenish.engine.gbm import GBMConfig
    assert set(MEMBER_OPTIONS) == {f.name for f in fields(GBMConfig)} - {"seed", "threads"}
    with pytest.raises(ValueError, match=r"ensemble_options: unknown key\(s\) \['leaves'\]"):
        ForecastConfig(ensemble_options={"leaves": 3})


@pytest.mark.parametrize("freq,length", [("D", 300), ("W", 120)])
def test_forecasts_read_only_the_periods_their_features_need(freq, length):
    """Forecasts from the last 113 days (53 weeks) of the grid equal those from the whole
    history, unknown periods and a short series included."""
    panel = toy_panel(lengths=[length, length, 60, length], freq=freq, seed=5, with_future=6)
    panel.demand[panel.indptr[1] + np.array([3, 40, length - 20, length - 2])] = np.nan
    m = GBMForecaster(LEVELS, 6, SMALL).fit(panel, holdout=6)
    q = m.predict(panel)
    whole = m._arrays
    m._arrays = lambda p, last_only=False: whole(p)
    np.testing.assert_allclose(q, m.predict(panel), rtol=1e-5, atol=1e-5)
    a, b = whole(panel), whole(panel, last_only=True)
    assert b["y"].shape[1] == (113 if freq == "D" else 53) < a["y"].shape[1]
    np.testing.assert_allclose(b["unknown_share"][:, -1], a["unknown_share"][:, -1])


def test_the_ensemble_member_shows_each_quantile_model():
    """The member's training (early-stopped fit, then the refit) reports every level's model
    with the time left: no silent minutes after the TFT's last step."""
    from replenish.jobs import _progress
    panel = toy_panel(lengths=[70, 70, 40, 70], freq="W", seed=1, with_future=6)
    levels = (0.1, 0.5, 0.9)
    cfg = ForecastConfig(horizon=6, encoder_length=12, hidden_size=8, hidden_continuous_size=4,
                         attention_heads=1, batch_size=32, max_steps=20, val_every=10,
                         quantiles=levels, ensemble_options={"num_leaves": 7, "max_rounds": 30})
    stream = io.StringIO()
    _progress.set_mode("quiet", stream=stream)
    try:
        TFTForecaster(cfg).fit(panel, progress=_progress.training_reporter(every_s=3600))
    finally:
        _progress.set_mode(None)
    lines = [x for x in stream.getvalue().splitlines() if "LightGBM member" in x]
    assert len(lines) == 2 * len(levels) + 1, lines
    assert re.fullmatch(r"\[replenish\] LightGBM member: 0/6 quantile models \(building up to "
                        r"600,000 training rows\)", lines[0]), lines[0]
    lines = lines[1:]
    for i, line in enumerate(lines):
        lv = levels[i % len(levels)]
        what = "early stopping on the held-out periods" if i < len(levels) else \
            "refit on the whole history"
        assert re.fullmatch(rf"\[replenish\] LightGBM member: {i + 1}/6 quantile models \(level "
                            rf"{lv:g}, \d+ rounds, {what}\), \d+:\d\d elapsed, time left "
                            rf"\d+:\d\d", line), line
    assert lines[-1].endswith("time left 0:00")

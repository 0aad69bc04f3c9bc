"""The window sampler gives exactly TimeSeriesDataSet's batches for the same windows."""
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from forecast_helpers import toy_panel
from replenish.engine import _features
from replenish.engine._features import calendar, fit_dataset, make_spec, panel_frame
from replenish.engine._sampler import WindowPlan, WindowSampler


def _reference_batch(panel, spec, dataset, n_items, seed=0):
    """A TimeSeriesDataSet over the whole panel (same encoders), random items, collated."""
    from pytorch_forecasting import TimeSeriesDataSet
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = TimeSeriesDataSet.from_dataset(dataset, panel_frame(panel, spec))
        items = np.random.default_rng(seed).choice(len(ref), min(n_items, len(ref)),
                                                   replace=False)
        x, (y, _) = ref._collate_fn([ref[i] for i in items])
    return ref, items, x, y


@pytest.mark.parametrize("freq,transform,categorical", [
    ("D", None, False), ("D", "log1p", False), ("W", "softplus", False), ("D", None, True)])
def test_sampler_equals_timeseriesdataset(freq, transform, categorical):
    lengths = [90, 90, 40, 13, 90, 60]
    panel = toy_panel(lengths=lengths, freq=freq, categorical=categorical)
    panel.demand += 1.0   # softplus needs positive demand
    spec, horizon = make_spec(panel, 24, 7, transform), 7
    dataset, spec = fit_dataset(panel, spec)
    ref, items, x, y = _reference_batch(panel, spec, dataset, 96)
    assert (x["encoder_lengths"] < 24).any() and (x["encoder_lengths"] == 24).any()
    if categorical:   # event (known) and weather (observed) are categories, not reals
        assert {"known__event", "observed__weather"} <= set(spec.x_categoricals)
        assert not {"known__event", "observed__weather"} & set(spec.x_reals)

    sampler = WindowSampler(spec, panel)
    codes = sampler.static_codes[:, :2].numpy()
    series = np.array([np.flatnonzero((codes == g.numpy()).all(1))[0] for g in x["groups"]])
    enc = x["encoder_lengths"].numpy()
    first_time = ref.index.time.to_numpy()[items]
    start_time = panel.start.astype("datetime64[D]").astype(np.int64) // spec.step
    dec = first_time + enc - start_time[series]
    out = sampler.windows(torch.as_tensor(series), torch.as_tensor(dec), torch.as_tensor(enc),
                          int(enc.max()))
    assert set(out) == set(x) | {"decoder_target_known"}
    assert out["decoder_target_known"].all()      # no unknown periods in this panel
    for key in x:
        assert out[key].shape == x[key].shape and out[key].dtype == x[key].dtype, key
        torch.testing.assert_close(out[key], x[key], rtol=1e-5, atol=1e-5, msg=key)
    torch.testing.assert_close(out["decoder_target"], y)
    assert out["decoder_lengths"].eq(horizon).all()


def test_calendar_matches_pandas():
    days = np.arange(np.datetime64("1999-12-01"), np.datetime64("2031-03-01")).astype(np.int64)
    cal = calendar(days)
    idx = pd.DatetimeIndex(days.astype("datetime64[D]"))
    np.testing.assert_array_equal(cal["cal_day_of_week"], idx.dayofweek)
    np.testing.assert_array_equal(cal["cal_month"], idx.month)
    np.testing.assert_array_equal(cal["cal_day_of_month"], idx.day)
    np.testing.assert_array_equal(cal["cal_day_of_year"], idx.dayofyear)
    torch_cal = calendar(torch.as_tensor(days))
    for k, v in cal.items():
        np.testing.assert_array_equal(torch_cal[k].numpy(), v)


def test_window_plan_respects_holdout_and_lengths():
    lengths = np.array([200, 40, 12, 3])
    plan = WindowPlan(lengths, encoder_length=30, horizon=7, holdout=7)
    rng = np.random.default_rng(1)
    for short in (False, True):
        s, d, e, w = plan.draw(rng, 2000, short)
        assert (d + 7 <= lengths[s] - 7).all()          # decoder ends before the holdout
        assert (d - e >= 0).all() and (e >= 2).all() and (e <= 30).all() and w == e.max()
        if not short:
            assert (e == 30).all()
    vs, vd, ve = plan.validation(rng, 10)
    np.testing.assert_array_equal(vd, lengths[vs] - 7)
    dec, enc = plan.prediction()
    np.testing.assert_array_equal(dec, lengths)
    np.testing.assert_array_equal(enc, [30, 30, 12, 3])


def test_one_period_series_gets_a_zero_demand_period_before_it():
    panel = toy_panel(lengths=[30, 1], with_future=5, observed=False, static=False)
    spec = make_spec(panel, 8, 5, None)
    _, spec = fit_dataset(panel, spec)
    sampler = WindowSampler(spec, panel)
    raw = sampler.gather(torch.tensor([1]), torch.tensor([1]), torch.tensor([2]), 2)
    assert raw["demand"][0, 0] == 0 and raw["demand"][0, 1] == panel.demand[30]
    torch.testing.assert_close(raw["covs"][0, 0], raw["covs"][0, 1])
    # decoder covariates come from future_known
    torch.testing.assert_close(raw["covs"][0, 2:], torch.as_tensor(panel.future_known[1]))


def test_unseen_keys_map_to_unknown_code():
    panel = toy_panel(4, 60)
    spec = make_spec(panel, 10, 5, None)
    _, spec = fit_dataset(panel, spec)
    other = toy_panel(4, 60, seed=3)
    other.sku = other.sku + 1000
    sampler = WindowSampler(spec, other)
    assert sampler.n_unknown_keys == 4
    assert (sampler.static_codes[:, 0] == 0).all()
    assert _features.TARGET in spec.x_reals


def test_unknown_periods_are_not_targets_nor_in_the_window_scale():
    panel = toy_panel(lengths=[60, 60, 60], freq="W", observed=False, static=False)
    unknown = panel.indptr[1] + np.array([20, 21, 30, 45, 50])   # series 1: encoder and decoder
    panel.demand[unknown] = np.nan
    spec = make_spec(panel, 24, 6, None)
    assert spec.missing_indicator
    dataset, spec = fit_dataset(panel, spec)
    assert _features.MISSING_INPUT in spec.x_reals
    sampler = WindowSampler(spec, panel)
    dec = np.array([44, 44, 40])
    x = sampler.windows(torch.tensor([1, 0, 1]), torch.as_tensor(dec), torch.tensor([24, 24, 10]), 24)
    for b, (s, d, e) in enumerate(zip([1, 0, 1], dec, [24, 24, 10])):
        y = panel.demand[panel.indptr[s]:panel.indptr[s + 1]]
        enc = y[d - e:d]
        center, scale = np.nanmean(enc), np.nanstd(enc, ddof=1)   # the known periods only
        np.testing.assert_allclose(x["target_scale"][b].numpy(), [center, scale], rtol=1e-5)
        np.testing.assert_array_equal(x["decoder_target_known"][b].numpy(), np.isfinite(y[d:d + 6]))
        np.testing.assert_array_equal(x["decoder_target"][b].numpy(), np.nan_to_num(y[d:d + 6]))
        flag = x["encoder_cont"][b, :e, spec.x_reals.index(_features.MISSING_INPUT)].numpy()
        m, sd = spec.scalers[_features.MISSING_INPUT]
        np.testing.assert_allclose(flag * sd + m, np.isnan(enc), atol=1e-6)
        assert np.isfinite(x["encoder_cont"][b].numpy()).all()
    # the loss is the pinball loss over the known periods
    from replenish.engine._tft import pinball
    levels = torch.tensor([0.1, 0.5, 0.9])
    pred = torch.rand(3, 6, 3) * 50
    known = x["decoder_target_known"]
    e = (x["decoder_target"][..., None] - pred)[known]
    ref = torch.maximum(levels * e, (levels - 1) * e).mean()
    torch.testing.assert_close(pinball(pred, x["decoder_target"], levels, known=known), ref)

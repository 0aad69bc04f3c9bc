"""The TFT forecaster's model: fast forward == stock forward, checkpoints, reproducibility."""
import numpy as np
import pytest
import torch

from forecast_helpers import toy_panel
from replenish.engine import _tft
from replenish.engine._features import category_luts
from replenish.engine._sampler import WindowSampler
from replenish.engine.forecast import ForecastConfig, TFTForecaster

TINY = dict(horizon=7, encoder_length=14, hidden_size=8, hidden_continuous_size=4,
            attention_heads=2, batch_size=32, max_steps=30, val_every=10, seed=3, calibrate=True,
            device="cpu")   # pinned: the windows below are built on the CPU


@pytest.fixture(scope="module")
def fitted():
    panel = toy_panel(8, 100, with_future=7)
    return panel, TFTForecaster(ForecastConfig(**TINY)).fit(panel)


@pytest.mark.parametrize("unique", [False, True])
@pytest.mark.parametrize("variable", [False, True])
def test_fast_forward_equals_stock_forward(fitted, unique, variable):
    panel, f = fitted
    f.model.eval()
    sampler = WindowSampler(f.spec, panel)
    b = 16
    enc = torch.full((b,), 14)
    if variable:
        enc = torch.tensor([2, 3, 5, 8, 13, 12, 7, 2] * 2)
    x = sampler.windows(torch.arange(b) % 8, torch.full((b,), 40) + torch.arange(b),
                        enc, int(enc.max()), luts=category_luts(f.spec, "cpu"))
    with torch.no_grad():
        stock = f.model(x)["prediction"]
        fast = _tft.forward_fixed(f.model, x, f.spec.target_transform, unique=unique,
                                  variable=variable)
    torch.testing.assert_close(fast, stock, rtol=1e-4, atol=1e-4)


def test_checkpoint_round_trip_gives_identical_forecasts(fitted, tmp_path):
    panel, f = fitted
    path = tmp_path / "model"
    f.save(path)
    assert sorted(p.name for p in path.iterdir()) == ["gbm", "model.json", "weights.pt"]
    state = torch.load(path / "weights.pt", weights_only=True)    # tensors only: safe
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    g = TFTForecaster.load(path, device="cpu")
    np.testing.assert_array_equal(g.predict(panel), f.predict(panel))
    # the recalibrated levels travel with the model
    assert f.calibrated_levels is not None
    np.testing.assert_array_equal(g.calibrated_levels, f.calibrated_levels)
    np.testing.assert_array_equal(g.predict(panel, calibrated=False),
                                  f.predict(panel, calibrated=False))
    assert g.config.to_dict() == f.config.to_dict() | {"device": "cpu"}
    assert g.history["steps"] == f.history["steps"]
    f.save(path)                                                    # overwrite in place
    with pytest.raises(ValueError, match="not a replenish forecaster"):
        TFTForecaster.load(tmp_path)


def test_same_seed_same_forecasts(fitted):
    panel, f = fitted
    again = TFTForecaster(ForecastConfig(**TINY)).fit(panel)
    np.testing.assert_array_equal(again.predict(panel), f.predict(panel))
    other = TFTForecaster(ForecastConfig(**{**TINY, "seed": 4, "max_steps": 10})).fit(panel)
    assert not np.array_equal(other.predict(panel), f.predict(panel))


def test_fine_tune_from_checkpoint(fitted, tmp_path):
    panel, f = fitted
    path = tmp_path / "model"
    f.save(path)
    newer = toy_panel(8, 110, with_future=7, seed=1)
    cfg = ForecastConfig(**{**TINY, "max_steps": 10, "hidden_size": 16, "learning_rate": 1e-3})
    g = TFTForecaster(cfg).fit(newer, init_from=path)
    assert g.config.hidden_size == 8                     # architecture from the checkpoint
    assert g.history["init_from"] == str(path) and g.history["steps"] == 10
    assert g.predict(newer).shape == (8, 7, 9)


@pytest.fixture(scope="module")
def fitted_cat():
    """A model with a known categorical covariate (event; a "fair" doubles demand) and an
    observed one (weather)."""
    panel = toy_panel(8, 160, with_future=7, categorical=True)
    cfg = ForecastConfig(**{**TINY, "max_steps": 300, "val_every": 50, "calibrate": False,
                            "hidden_size": 16, "learning_rate": 1e-2})
    return panel, TFTForecaster(cfg).fit(panel)


def test_categorical_covariates_fast_forward_and_checkpoint(fitted_cat, tmp_path):
    panel, f = fitted_cat
    assert f.spec.categorical == ["event", "weather"]
    sampler = WindowSampler(f.spec, panel)
    enc = torch.tensor([2, 3, 5, 8, 14, 12, 7, 14])
    x = sampler.windows(torch.arange(8), torch.full((8,), 60), enc, 14,
                        luts=category_luts(f.spec, "cpu"))
    with torch.no_grad():
        stock = f.model(x)["prediction"]
        fast = _tft.forward_fixed(f.model, x, f.spec.target_transform, unique=True, variable=True)
    torch.testing.assert_close(fast, stock, rtol=1e-4, atol=1e-4)
    f.save(tmp_path / "m")
    np.testing.assert_array_equal(TFTForecaster.load(tmp_path / "m", device="cpu").predict(panel),
                                  f.predict(panel))


def test_categorical_covariate_effect_is_learned(fitted_cat):
    panel, f = fitted_cat
    med = f.predict(panel)[..., list(f.levels).index(0.5)]
    fair = panel.future_known[:, :7, 2] == 1
    ratio = med[fair].mean() / med[~fair].mean()
    assert fair.any() and (~fair).any() and ratio > 1.4, ratio   # true effect: 2x


def test_category_numbering_and_unseen_labels(fitted_cat):
    """Forecasts depend on the labels, not on how a panel numbers them; a label the model
    never saw is its unknown category."""
    panel, f = fitted_cat
    base = f.predict(panel)
    cats = {"event": np.array(["", "Grand opening", "fair", "sale"], object),
            "weather": np.array(["", "fog", "rain", "sun"], object)}
    renumbered = panel.recode(cats)
    assert not np.array_equal(renumbered.known, panel.known)
    np.testing.assert_array_equal(f.predict(renumbered), base)
    new = renumbered.take(np.arange(panel.n_series))
    new.future_known = renumbered.future_known.copy()
    new.future_known[:, 0, 2] = 1.0         # 'Grand opening', unseen in training
    sampler = WindowSampler(f.spec, new)
    lut = dict(sampler.cov_luts)[2]
    assert lut[1] == 0 and (lut[[0, 2, 3]] > 0).all()
    q = f.predict(new)
    assert np.isfinite(q).all() and (np.diff(q, axis=-1) >= 0).all()

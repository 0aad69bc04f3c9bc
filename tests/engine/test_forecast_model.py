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
            attention_heads=2, batch_size=32, max_steps=30, val_every=10, seed=3, calibrate=True)


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
    assert sorted(p.name for p in path.iterdir()) == ["model.json", "weights.pt"]
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

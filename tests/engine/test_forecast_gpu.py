"""The forecaster on CUDA against the CPU, same weights (marked ``gpu``: skipped without CUDA).

Each test pins its devices explicitly: the reference on "cpu", the checked path on "cuda".
"""
import numpy as np
import pytest
import torch

from forecast_helpers import toy_panel
from replenish.engine import _tft
from replenish.engine._features import category_luts
from replenish.engine._sampler import WindowSampler
from replenish.engine.forecast import ForecastConfig, TFTForecaster

pytestmark = pytest.mark.gpu

CFG = dict(horizon=7, encoder_length=28, hidden_size=16, hidden_continuous_size=8,
           attention_heads=2, batch_size=64, max_steps=100, val_every=50, learning_rate=1e-2,
           seed=0, device="cpu")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    panel = toy_panel(16, 160, with_future=7)
    path = tmp_path_factory.mktemp("gpu_model") / "model"
    TFTForecaster(ForecastConfig(**CFG)).fit(panel).save(path)
    return panel, path


def test_cuda_fp32_forecasts_equal_cpu_forecasts(saved):
    panel, path = saved
    cpu = TFTForecaster.load(path, device="cpu").predict(panel)
    gpu = TFTForecaster.load(path, device="cuda")
    gpu.config.precision, gpu.config.compile = "32", False
    got = gpu.predict(panel)
    spread = (cpu[..., -1] - cpu[..., 0])[..., None] + 1
    assert np.max(np.abs(got - cpu) / spread) < 2e-3


def test_cuda_default_bf16_compiled_within_the_stated_tolerance(saved):
    panel, path = saved
    cpu = TFTForecaster.load(path, device="cpu").predict(panel)
    f = TFTForecaster.load(path, device="cuda")        # bf16 autocast + compiled regions
    t = f.predict(panel, as_tensor=True)
    assert t.device.type == "cuda" and t.dtype == torch.float32
    got = t.cpu().numpy()
    err = np.abs(got - cpu)
    assert np.quantile(err / (np.abs(cpu) + 1e-3), 0.99) < 0.015
    assert np.max(err / ((cpu[..., -1] - cpu[..., 0])[..., None] + 1)) < 0.02


def test_cuda_autocast_runs_the_lstm_and_output_in_fp32_never_fp16(saved, monkeypatch):
    panel, path = saved
    f = TFTForecaster.load(path, device="cuda")
    dev = torch.device("cuda")
    seen, lstm = set(), set()
    run_lstms = _tft.run_lstms

    def recorded(*a, **k):
        out = run_lstms(*a, **k)
        lstm.update(o.dtype for o in out)
        return out

    monkeypatch.setattr(_tft, "run_lstms", recorded)
    hooks = [m.register_forward_hook(lambda _m, _a, out: seen.update(
        o.dtype for o in (out if isinstance(out, tuple) else (out,)) if isinstance(o, torch.Tensor)))
        for m in f.model.modules()]
    try:
        sampler = WindowSampler(f.spec, panel, dev)
        x = sampler.windows(torch.arange(32, device=dev) % panel.n_series,
                            torch.full((32,), 60, device=dev), torch.full((32,), 28, device=dev), 28,
                            luts=category_luts(f.spec, dev))
        runner = _tft.Runner(f.model, None, dev, torch.bfloat16)
        with torch.no_grad():
            out = runner.forward(x, True)
        f.model.train()
        runner.forward(x, True).mean().backward()     # training too
    finally:
        for h in hooks:
            h.remove()
    assert torch.bfloat16 in seen and torch.float16 not in seen
    assert lstm == {torch.float32} and out.dtype == torch.float32

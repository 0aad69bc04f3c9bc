"""The device-resident shard pipeline on CUDA (marked ``gpu``: skipped without CUDA and CuPy).

Forecasts go from the model's output tensor to the CuPy kernels by DLPack; the manifest's
backend record says so; the orders agree with the CPU pipeline's on the same weights.
"""
import numpy as np
import pytest

from replenish.engine.contract import ColumnMap, InventoryDefaults
from replenish.engine.forecast import ForecastConfig, TFTForecaster
from replenish.engine.synth import synth_tables
from replenish.engine.validate import build_panel, validate_inventory
from replenish.jobs import _tasks

pytestmark = pytest.mark.gpu


def test_compute_shard_on_cuda_uses_cupy_and_matches_the_cpu(tmp_path):
    hist, inv_tab = synth_tables(200, 120, seed=0)
    cols = ColumnMap(observed=("price", "promo", "holiday", "temperature"), static=("category",))
    panel = build_panel(hist, cols)
    cfg = ForecastConfig(horizon=14, encoder_length=28, hidden_size=8, hidden_continuous_size=4,
                         attention_heads=1, max_steps=20, batch_size=64, validation=False,
                         device="cpu")
    TFTForecaster(cfg).fit(panel).save(tmp_path / "model")
    prep = {"panel": panel, "inv": validate_inventory(inv_tab, panel, cols, InventoryDefaults()),
            "inv_tab": inv_tab, "dc_days": None, "accuracy": None}
    res = {}
    for device in ("cpu", "cuda"):
        spec = {"target": "csl", "method": "normal", "n_samples": 200, "seed": 0,
                "forecast": {"device": device, "precision": "32", "compile": False}}
        _tasks._MODEL_CACHE.clear()
        res[device] = _tasks.compute_shard(prep, spec, str(tmp_path / "model"), ("forecast", "optimize"))
    assert res["cuda"]["backend"] == {"forecast": "torch:cuda", "optimize": "cupy"}
    assert res["cpu"]["backend"] == {"forecast": "torch:cpu", "optimize": "numpy"}
    a, b = res["cuda"]["tables"]["orders"], res["cpu"]["tables"]["orders"]
    for c in ("protection_demand_mean", "protection_demand_std", "reorder_point"):
        np.testing.assert_allclose(a.column(c).to_numpy(), b.column(c).to_numpy(), rtol=2e-3, atol=1e-2,
                                   err_msg=c)

"""Shared fixtures: small real-shaped tables built in memory."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest


def make_history(n_series: int = 4, n_days: int = 30, seed: int = 0, freq_days: int = 1,
                 start: str = "2024-01-01", str_keys: bool = True) -> pa.Table:
    """A long demand table with two known covariates and a static category."""
    rng = np.random.default_rng(seed)
    sku = np.repeat([f"S{i // 2}" if str_keys else i // 2 for i in range(n_series)], n_days)
    loc = np.repeat([f"L{i % 2}" if str_keys else i % 2 for i in range(n_series)], n_days)
    dates = np.tile(np.datetime64(start) + np.arange(n_days) * freq_days, n_series)
    level = np.repeat(rng.uniform(2, 20, n_series), n_days)
    promo = rng.integers(0, 2, n_series * n_days)
    demand = rng.poisson(level * (1 + 0.5 * promo)).astype(float)
    return pa.table({
        "sku": sku, "location": loc, "date": dates.astype("datetime64[D]"), "demand": demand,
        "price": rng.uniform(1, 2, n_series * n_days), "promo": promo.astype(np.int8),
        "category": np.repeat([f"C{i % 3}" for i in range(n_series)], n_days),
    })


@pytest.fixture
def history() -> pa.Table:
    return make_history()

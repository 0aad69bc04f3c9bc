"""Shared fixtures: small real-shaped tables built in memory; the ``gpu`` marker.

Every test pins its device: the CPU, or (marked ``gpu``) CUDA, where those tests run when a
CUDA device with CuPy is present and are skipped, with the reason, otherwise.
"""
from __future__ import annotations

import functools

import numpy as np
import pyarrow as pa
import pytest


@functools.lru_cache(maxsize=1)
def cuda_missing() -> str | None:
    """Why the ``gpu`` tests cannot run here (None: they can)."""
    try:
        import cupy
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return "CuPy sees no CUDA device"
    except Exception as exc:  # noqa: BLE001  -- no cupy, no driver: no GPU tests
        return f"no CuPy GPU ({type(exc).__name__}: {exc})"
    import torch
    if not torch.cuda.is_available():
        return "torch sees no CUDA device"
    return None


def pytest_collection_modifyitems(config, items):
    why = None
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            why = why or cuda_missing() or ""
            if why:
                item.add_marker(pytest.mark.skip(reason=f"gpu test: {why}"))


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

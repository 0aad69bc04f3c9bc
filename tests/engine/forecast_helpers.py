"""Small panels for the forecasting tests (imported by test_sampler / test_forecast_*)."""
from __future__ import annotations

import numpy as np
import torch

from replenish.engine.panel import Panel

# Tiny models run fastest single-threaded; on a loaded 2-vCPU machine, 2 OpenMP threads
# spin-waiting for each other make them up to 50x slower.
torch.set_num_threads(1)


def toy_panel(n_series: int = 6, length: int = 120, freq: str = "D", seed: int = 0,
              lengths: list[int] | None = None, with_future: int = 0,
              observed: bool = True, static: bool = True, categorical: bool = False) -> Panel:
    """Seasonal demand with a promotion effect; optional observed covariate and statics.

    ``categorical``: a known categorical covariate ``event`` (labels "", "fair", "sale"; a
    fair doubles demand) and an observed one ``weather`` ("", "sun", "rain").
    """
    rng = np.random.default_rng(seed)
    lengths = np.asarray(lengths if lengths is not None else [length] * n_series, np.int64)
    n = len(lengths)
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    step = 7 if freq == "W" else 1
    start = np.datetime64("2021-01-04") + (rng.integers(0, 30, n) * step).astype("timedelta64[D]")
    total = int(indptr[-1])
    pos = np.arange(total) - np.repeat(indptr[:-1], lengths)
    level = np.repeat(rng.uniform(5, 50, n), lengths)
    promo = (rng.random(total) < 0.15).astype(np.float32)
    price = rng.uniform(0.8, 1.2, total).astype(np.float32)
    season = 1 + 0.3 * np.sin(2 * np.pi * pos / (52 if freq == "W" else 7))
    demand = rng.poisson(level * season * (1 + promo) / price).astype(np.float32)
    known = np.stack([promo, price], 1)
    obs = rng.normal(20, 5, (total, 1)).astype(np.float32)
    cats = {}
    if categorical:
        event = rng.choice(3, total, p=[0.8, 0.1, 0.1]).astype(np.float32)
        demand = np.where(event == 1, 2 * demand, demand).astype(np.float32)
        known = np.column_stack([known, event])
        obs = np.column_stack([obs, rng.choice(3, total).astype(np.float32)])
        cats = {"event": np.array(["", "fair", "sale"], object),
                "weather": np.array(["", "rain", "sun"], object)}
    fut = None
    if with_future:
        fut = np.stack([(rng.random((n, with_future)) < 0.15).astype(np.float32),
                        rng.uniform(0.8, 1.2, (n, with_future)).astype(np.float32)]
                       + ([rng.choice(3, (n, with_future)).astype(np.float32)]
                          if categorical else []), -1)
    st = {"category": np.array(["a", "b", "c"])[np.arange(n) % 3],
          "size": rng.uniform(1, 3, n)} if static else {}
    return Panel(sku=np.arange(n) // 2 + 100, location=np.array(["s1", "s2"])[np.arange(n) % 2],
                 start=start, indptr=indptr, demand=demand, freq=freq, known=known,
                 known_names=("promo", "price") + (("event",) if categorical else ()),
                 observed=obs if observed else np.zeros((total, 0), np.float32),
                 observed_names=(("footfall",) + (("weather",) if categorical else ()))
                 if observed else (), static=st, future_known=fut, categories=cats)

"""Forecast accuracy on the bakery data: our engine vs pytorch-forecasting vs statsforecast.

    python benchmarks/accuracy.py [--quick] [--window test|validation] [--threads T]

The last 28 days of every series are held out (``--window validation``: the 28 days before
them, with those last 28 days dropped: the window the defaults were chosen on). Scored as in
ANCHORS.md: RMSSE of the median, SPL over the 11 levels 0.005 ... 0.995 (both scaled by the
series' in-sample history, averaged over the 105 series). Contenders, in one run:

* ours: ``TFTForecaster`` with its default ``ForecastConfig`` (levels 0.01 ... 0.99; the 11
  SPL levels are interpolated linearly between them and extrapolated to 0.005 / 0.995);
* pytorch-forecasting's standard pipeline: TimeSeriesDataSet (its default target
  normalizer, target scales, relative time index, encoder length) ->
  TemporalFusionTransformer.from_dataset (hidden 32, 4 heads, hidden_continuous 16, encoder
  112, the 11 levels as QuantileLoss, its default learning rate 1e-3) -> Lightning Trainer
  (gradient clip 0.1), 8 epochs x 150 batches x 128 with the last 28 training days as its
  validation -> ``predict(mode="quantiles")``;
* statsforecast SeasonalNaive(7), AutoETS(7), AutoARIMA(7) (no covariates; quantiles from
  their prediction intervals, clipped at 0).

``--quick`` (under 2 minutes): our model with 60 steps, the pipeline with 1 epoch of 20
batches, SeasonalNaive only. The last line is one JSON object with all figures.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from forecast_throughput import (machine, pipeline_dataset, pipeline_frames,  # noqa: E402
                                 pipeline_model, pipeline_trainer)

LEVELS = np.array([0.005, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.975, 0.995])
HORIZON = 28
KNOWN = ("is_holiday", "is_holiday_next2days", "is_schoolholiday", "promotion_currentweek",
         "promotion_lastweek", "rain", "temperature")


def bakery(window: str):
    """(history panel with future_known, actual demand (105, 28)) for the chosen window."""
    import pyarrow.parquet as pq
    from replenish.engine.contract import ColumnMap
    from replenish.engine.validate import build_panel
    root = Path(__file__).resolve().parents[1]
    table = pq.read_table(root / "replenish" / "data" / "bakery.parquet")
    panel = build_panel(table, ColumnMap(sku="product", location="store", known=KNOWN))
    history, actual = panel.split_last(HORIZON)
    if window == "validation":
        history, actual = history.split_last(HORIZON)
    return history, actual


def score(name, history, actual, q, levels, seconds) -> dict:
    from replenish.engine.metrics import interpolate_quantiles, rmsse, spl
    levels = np.asarray(levels)
    median = q[..., int(np.argmin(np.abs(levels - 0.5)))]
    q11 = q if np.array_equal(levels, LEVELS) else interpolate_quantiles(q, levels, LEVELS)
    r = rmsse(actual, median, history.demand, history.indptr)
    s = spl(actual, q11, LEVELS, history.demand, history.indptr)
    lo, hi = q11[..., list(LEVELS).index(0.05)], q11[..., list(LEVELS).index(0.95)]
    cover = float(((actual >= lo) & (actual <= hi)).mean())
    print(f"{name:34s} RMSSE {r:.3f}   SPL {s:.3f}   90% interval covers {cover:.1%}   "
          f"{seconds:7.1f} s", flush=True)
    return {"rmsse": round(r, 4), "spl": round(s, 4), "coverage_90": round(cover, 4),
            "seconds": round(seconds, 1)}


def run_ours(history, quick: bool, seed: int = 0) -> tuple[np.ndarray, np.ndarray, float, dict]:
    from replenish.engine.forecast import ForecastConfig, TFTForecaster
    # The default config, plus the recalibrated levels (computed after training, so the
    # model and its default forecasts are the default config's).
    cfg = ForecastConfig(max_steps=60, val_every=30) if quick else ForecastConfig()
    cfg.seed = seed
    cfg.calibrate = True
    t = time.perf_counter()
    f = TFTForecaster(cfg).fit(history)
    fit = time.perf_counter() - t
    f.history["recalibrated"] = f.predict(history, calibrated=True)
    return f.predict(history, calibrated=False), f.levels, fit, f.history


def run_pipeline(history, quick: bool, seed: int = 0) -> tuple[np.ndarray, float]:
    import torch
    hist, fut, spec = pipeline_frames(history, 112, HORIZON)
    cutoff = int(hist.time_idx.max()) - HORIZON
    training = pipeline_dataset(hist, spec, 112, HORIZON, cutoff=cutoff)
    validation = type(training).from_dataset(training, hist, predict=True,
                                             stop_randomization=True)
    torch.manual_seed(seed)   # initial weights and the order of the training batches
    model = pipeline_model(training, LEVELS, {"hidden_size": 32, "attention_heads": 4,
                                              "hidden_continuous_size": 16, "dropout": 0.1},
                           learning_rate=1e-3)
    epochs, batches = (1, 20) if quick else (8, 150)
    trainer, _ = pipeline_trainer(epochs, batches, validate=True)
    t = time.perf_counter()
    trainer.fit(model, train_dataloaders=training.to_dataloader(train=True, batch_size=128),
                val_dataloaders=validation.to_dataloader(train=False, batch_size=128))
    fit = time.perf_counter() - t
    test = type(training).from_dataset(training, fut, predict=True, stop_randomization=True)
    q = model.predict(test.to_dataloader(train=False, batch_size=256), mode="quantiles",
                      return_index=True, trainer_kwargs={"logger": False,
                                                         "enable_progress_bar": False})
    # rows come back in the dataset's (string-sorted) group order: align to the panel's
    idx = q.index
    key = {(str(s), str(l)): i for i, (s, l) in enumerate(zip(history.sku, history.location))}
    order = np.array([key[(str(s), str(l))] for s, l in zip(idx["sku"], idx["location"])])
    out = np.empty((history.n_series, HORIZON, len(LEVELS)), np.float32)
    out[order] = q.output.numpy()
    return np.sort(np.clip(out, 0, None), axis=-1), fit


def run_statsforecast(history, models: list[str]) -> dict[str, tuple[np.ndarray, float]]:
    import pandas as pd
    from statsforecast import StatsForecast
    from statsforecast.models import AutoARIMA, AutoETS, SeasonalNaive
    s = history.series_of_row
    df = pd.DataFrame({"unique_id": s, "ds": history.row_dates(), "y": history.demand})
    make = {"SeasonalNaive": lambda: SeasonalNaive(season_length=7),
            "AutoETS": lambda: AutoETS(season_length=7),
            "AutoARIMA": lambda: AutoARIMA(season_length=7)}
    pct = sorted({int(round(100 * abs(1 - 2 * lv))) for lv in LEVELS if lv != 0.5})
    out = {}
    for name in models:
        t = time.perf_counter()
        sf = StatsForecast(models=[make[name]()], freq="D", n_jobs=1)
        fc = sf.forecast(df=df, h=HORIZON, level=pct).sort_values(["unique_id", "ds"])
        cols = []
        for lv in LEVELS:
            p = int(round(100 * abs(1 - 2 * lv)))
            cols.append(name if lv == 0.5 else f"{name}-{'lo' if lv < 0.5 else 'hi'}-{p}")
        q = fc[cols].to_numpy(np.float64).reshape(history.n_series, HORIZON, len(LEVELS))
        out[name] = (np.sort(np.clip(q, 0, None), axis=-1), time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--window", choices=["test", "validation"], default="test")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1: faster on the 2-vCPU dev machine)")
    ap.add_argument("--seed", type=int, default=0,
                    help="seed of our model and of the pipeline's weights and batches")
    ap.add_argument("--skip", default="", help="comma list of: ours,pipeline,stats")
    a = ap.parse_args()
    import torch
    torch.set_num_threads(a.threads)
    warnings.filterwarnings("ignore")
    import logging
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    skip = set(filter(None, a.skip.split(",")))
    info = machine()
    info["torch_threads"] = a.threads
    print(f"machine: {json.dumps(info)}")
    history, actual = bakery(a.window)
    print(f"bakery: {history.n_series} series, {a.window} window: the {HORIZON} days after "
          f"{str(history.end.max())}")
    res: dict = {}
    if "ours" not in skip:
        q, lv, fit, hist = run_ours(history, a.quick, a.seed)
        res["ours"] = score("ours (default config)", history, actual, q, lv, fit)
        res["ours_recalibrated"] = score("ours, same model, recalibrated", history, actual,
                                         hist.pop("recalibrated"), lv, fit)
        res["ours"].update(steps=hist["steps"], stopped=hist["stopped"],
                           samples_per_s=round(hist["samples_per_s"], 1))
    if "pipeline" not in skip:
        q, fit = run_pipeline(history, a.quick, a.seed)
        res["pipeline"] = score("pytorch-forecasting pipeline", history, actual, q, LEVELS, fit)
    if "stats" not in skip:
        models = ["SeasonalNaive"] if a.quick else ["SeasonalNaive", "AutoETS", "AutoARIMA"]
        for name, (q, sec) in run_statsforecast(history, models).items():
            res[name] = score(f"statsforecast {name}(7)", history, actual, q, LEVELS, sec)
    if "ours" in res and "pipeline" in res:
        res["fit_time_ratio_pipeline_over_ours"] = round(
            res["pipeline"]["seconds"] / res["ours"]["seconds"], 2)
    print(json.dumps({"benchmark": "accuracy", "quick": a.quick, "window": a.window,
                      "seed": a.seed, "machine": info, "date": time.strftime("%Y-%m-%d"), **res}))


if __name__ == "__main__":
    main()

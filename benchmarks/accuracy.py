"""Forecast accuracy on real data: ours vs a global LightGBM peer vs statsforecast (vs the
pytorch-forecasting pipeline on the bakery).

    python benchmarks/accuracy.py [--data bakery|oj] [--window test|validation|v2|v3...]
                                  [--seeds 0,1,2] [--quick] [--threads T] [--skip ...]

Data sets (real):

* ``bakery`` (shipped): 105 daily series; the last 28 days held out; known covariates
  holidays, school holidays, promotions, weather.
* ``oj`` (``../shared/data/oj`` beside the repository, not shipped; read its README):
  Dominick's orange juice, 913 weekly store x brand series with 3,619 missing weeks (unknown,
  not zero: read with ``gaps="missing"``); the last 12 weeks held out; known covariates
  price, deal, feat (planned promotions); the store demographics as static attributes.

``--window validation`` moves the held-out window one horizon earlier (the periods after it
dropped), ``vK`` K horizons earlier: the windows settings are chosen on, never the test one.

Scored on the model's 9 levels 0.01 ... 0.99 (``--levels anchors``: the bakery's 11 levels
0.005 ... 0.995 of ANCHORS.md, interpolated): RMSSE of the median and SPL, both scaled by
each series' in-sample history (M5); unknown periods are neither in the scales nor scored.
Contenders, in one run, each for every seed:

* ours: what ``replenish plan`` trains with its defaults (``ForecastConfig`` with the
  period's horizon, encoder length and, for daily data, training steps, ``FREQ_DEFAULTS``):
  the TFT and its LightGBM ensemble member, blended with the weight fitted on the held-out
  last horizon of the training history; its two members alone are reported too (same run);
* the peer: a global LightGBM quantile model, M5-winner style (``lgbm_peer.py``: lags,
  rolling statistics, calendar, covariates with leads, lags and relative values, store
  attributes; one model per level; its own fixed settings);
* statsforecast Naive, SeasonalNaive (7 days / 52 weeks), AutoETS(7) on the bakery (no
  covariates; quantiles from prediction intervals, clipped at 0; unknown weeks filled with
  the previous known value for them);
* bakery only, unless skipped: pytorch-forecasting's standard pipeline (ANCHORS settings).

``--quick`` (a few minutes): 60 TFT steps, a small peer, Naive and SeasonalNaive only. The
last line is one JSON object with every figure.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from forecast_throughput import (machine, pipeline_dataset, pipeline_frames,  # noqa: E402
                                 pipeline_model, pipeline_trainer)
from lgbm_peer import LGBMPeer, PeerConfig  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LEVELS = np.array([0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99])
ANCHOR_LEVELS = np.array([0.005, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.975, 0.995])
BAKERY_KNOWN = ("is_holiday", "is_holiday_next2days", "is_schoolholiday",
                "promotion_currentweek", "promotion_lastweek", "rain", "temperature")
OJ_STATIC = ("AGE60", "EDUC", "ETHNIC", "INCOME", "HHLARGE", "WORKWOM", "HVAL150",
             "SSTRDIST", "SSTRVOL", "CPDIST5", "CPWVOL5")
OJ_PATH = ROOT.parent / "shared" / "data" / "oj" / "oj.parquet"
DATA = {"bakery": {"horizon": 28, "season": 7}, "oj": {"horizon": 12, "season": 52}}


def load(data: str, window: str):
    """(history panel with future_known, actual demand (n, H), NaN where unknown)."""
    import pyarrow.parquet as pq
    from replenish.engine.contract import ColumnMap
    from replenish.engine.validate import build_panel
    if data == "bakery":
        table = pq.read_table(ROOT / "replenish" / "data" / "bakery.parquet")
        panel = build_panel(table, ColumnMap(sku="product", location="store", known=BAKERY_KNOWN))
    else:
        if not OJ_PATH.exists():
            sys.exit(f"[replenish] the orange-juice data is not at {OJ_PATH} (it is not "
                     f"shipped: see ../shared/data/oj/README.md)")
        table = pq.read_table(OJ_PATH)
        cols = ColumnMap(sku="brand", location="store", date="week_start", demand="units",
                         known=("price", "deal", "feat"), static=OJ_STATIC)
        # as the plan job reads it: --gaps missing, every series to the history's last week
        panel = build_panel(table, cols, gaps="missing",
                            end=table.column("week_start").to_numpy().max())
    h = DATA[data]["horizon"]
    back = {"test": 0, "validation": 1}.get(window)
    back = int(window[1:]) if back is None else back
    history, actual = panel.split_last(h)
    for _ in range(back):
        history, actual = history.split_last(h)
    return history, actual


def score(name, history, actual, q, levels, seconds, spl_levels) -> dict:
    from replenish.engine.metrics import interpolate_quantiles, rmsse, spl
    levels = np.asarray(levels)
    median = q[..., int(np.argmin(np.abs(levels - 0.5)))]
    qs = q if np.array_equal(levels, spl_levels) else interpolate_quantiles(q, levels, spl_levels)
    r = rmsse(actual, median, history.demand, history.indptr)
    s = spl(actual, qs, spl_levels, history.demand, history.indptr)
    lo = qs[..., int(np.argmin(np.abs(spl_levels - 0.05)))]
    hi = qs[..., int(np.argmin(np.abs(spl_levels - 0.95)))]
    known = np.isfinite(actual)
    cover = float(((actual >= lo) & (actual <= hi))[known].mean())
    print(f"{name:44s} RMSSE {r:.3f}   SPL {s:.3f}   90% interval covers {cover:.1%}   "
          f"{seconds:7.1f} s", flush=True)
    return {"rmsse": round(r, 4), "spl": round(s, 4), "coverage_90": round(cover, 4),
            "seconds": round(seconds, 1)}


def run_ours(history, quick: bool, seed: int, overrides: dict | None = None):
    """The plan job's model with its defaults: (blend, TFT alone, member alone, fit s, info)."""
    from replenish.engine.forecast import ForecastConfig, TFTForecaster
    from replenish.jobs._tasks import model_settings
    settings = {**model_settings(history.freq, overrides or {}), "seed": seed}  # as the plan job
    if quick:
        settings.update(max_steps=60, val_every=30)
    t, c = time.perf_counter(), time.process_time()
    f = TFTForecaster(ForecastConfig(**settings)).fit(history)
    fit, cpu = time.perf_counter() - t, time.process_time() - c
    tft = f._predict_tft(history)
    member = f.member.predict(history) if f.member is not None else None
    info = {"steps": f.history["steps"], "best_step": f.history["best_step"],
            "stopped": f.history["stopped"], "ensemble": f.history.get("ensemble"),
            "train_seconds": round(f.history["train_seconds"], 1),
            # CPU seconds of the fit: with one thread, about its wall time on a quiet machine
            "fit_cpu_seconds": round(cpu, 1)}
    return f.predict(history), tft, member, fit, info


def run_peer(history, quick: bool, seed: int, threads: int):
    cfg = PeerConfig(seed=seed, threads=threads)
    if quick:
        cfg.max_rows, cfg.max_rounds = 50_000, 100
    t, c = time.perf_counter(), time.process_time()
    peer = LGBMPeer(LEVELS, DATA_H[history.freq], cfg).fit(history)
    q = peer.predict(history)
    return q, time.perf_counter() - t, {**peer.history, "cpu_seconds": time.process_time() - c}


DATA_H = {"D": 28, "W": 12}


def run_pipeline(history, quick: bool, seed: int):
    import torch
    horizon = DATA_H[history.freq]
    hist, fut, spec = pipeline_frames(history, 112, horizon)
    cutoff = int(hist.time_idx.max()) - horizon
    training = pipeline_dataset(hist, spec, 112, horizon, cutoff=cutoff)
    validation = type(training).from_dataset(training, hist, predict=True,
                                             stop_randomization=True)
    torch.manual_seed(seed)   # initial weights and the order of the training batches
    model = pipeline_model(training, ANCHOR_LEVELS, {"hidden_size": 32, "attention_heads": 4,
                                                     "hidden_continuous_size": 16,
                                                     "dropout": 0.1}, learning_rate=1e-3)
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
    out = np.empty((history.n_series, horizon, len(ANCHOR_LEVELS)), np.float32)
    out[order] = q.output.numpy()
    return np.sort(np.clip(out, 0, None), axis=-1), fit


def run_statsforecast(history, models: list[str], season: int):
    import pandas as pd
    from statsforecast import StatsForecast
    from statsforecast.models import AutoARIMA, AutoETS, Naive, SeasonalNaive
    horizon = DATA_H[history.freq]
    s = history.series_of_row
    y = pd.Series(history.demand.astype(np.float64))
    y = y.groupby(s).transform(lambda v: v.ffill().bfill())   # no unknowns for these models
    df = pd.DataFrame({"unique_id": s, "ds": history.row_dates(), "y": y.to_numpy()})
    make = {"Naive": Naive, "SeasonalNaive": lambda: SeasonalNaive(season_length=season),
            "AutoETS": lambda: AutoETS(season_length=season),
            "AutoARIMA": lambda: AutoARIMA(season_length=season)}
    pct = sorted({int(round(100 * abs(1 - 2 * lv))) for lv in LEVELS if lv != 0.5})
    out = {}
    for name in models:
        t = time.perf_counter()
        sf = StatsForecast(models=[make[name]()], freq="D" if history.freq == "D" else
                           f"W-{pd.Timestamp(history.end[0]).day_name()[:3].upper()}", n_jobs=1)
        fc = sf.forecast(df=df, h=horizon, level=pct).sort_values(["unique_id", "ds"])
        cols = [name if lv == 0.5 else
                f"{name}-{'lo' if lv < 0.5 else 'hi'}-{int(round(100 * abs(1 - 2 * lv)))}"
                for lv in LEVELS]
        q = fc[cols].to_numpy(np.float64).reshape(history.n_series, horizon, len(LEVELS))
        out[name] = (np.sort(np.clip(q, 0, None), axis=-1), time.perf_counter() - t)
    return out


def _mean(rows: list[dict]) -> dict:
    return {k: round(float(np.mean([r[k] for r in rows])), 4)
            for k in ("rmsse", "spl", "coverage_90", "seconds")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", choices=sorted(DATA), default="bakery")
    ap.add_argument("--window", default="test", help="test, validation, or vK (K horizons earlier)")
    ap.add_argument("--seeds", default="0", help="comma list of seeds (ours and the peer)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--levels", choices=["model", "anchors"], default="model",
                    help="score on the 9 model levels, or on ANCHORS.md's 11 bakery levels")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch and LightGBM threads (default 1: faster on the shared 2-vCPU "
                         "dev machine)")
    ap.add_argument("--skip", default="", help="comma list of: ours,peer,pipeline,stats")
    ap.add_argument("--forecast", default="{}",
                    help="JSON of ForecastConfig settings over the defaults (experiments on "
                         "validation windows; the reported 'ours' runs without)")
    ap.add_argument("--stats", default=None,
                    help="statsforecast models (default bakery: SeasonalNaive,AutoETS; oj: "
                         "Naive,SeasonalNaive)")
    a = ap.parse_args()
    import torch
    torch.set_num_threads(a.threads)
    warnings.filterwarnings("ignore")
    import logging
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    skip = set(filter(None, a.skip.split(",")))
    if a.data == "oj":
        skip.add("pipeline")
    seeds = [int(s) for s in a.seeds.split(",")]
    spl_levels = LEVELS if a.levels == "model" else ANCHOR_LEVELS
    info = machine()
    info["torch_threads"] = a.threads
    print(f"machine: {json.dumps(info)}")
    history, actual = load(a.data, a.window)
    print(f"{a.data}: {history.n_series} series, {a.window} window: the "
          f"{actual.shape[1]} periods after {str(history.end.max())}; "
          f"{int(np.isnan(actual).sum())} held-out periods unknown (not scored), "
          f"{int(history.missing.sum())} unknown in the history")
    res: dict = {}
    per_seed: dict[str, list] = {}

    def add(name, label, q, lv, sec):
        per_seed.setdefault(name, []).append(score(label, history, actual, q, lv, sec, spl_levels))

    for seed in seeds:
        if "ours" not in skip:
            q, tft, member, fit, hist = run_ours(history, a.quick, seed, json.loads(a.forecast))
            add("ours", f"ours, plan defaults (seed {seed})", q, LEVELS, fit)
            per_seed["ours"][-1].update(hist)
            add("ours_tft_alone", "  its TFT alone", tft, LEVELS, fit)
            if member is not None:
                add("ours_lightgbm_member_alone", "  its LightGBM member alone", member, LEVELS,
                    fit)
        if "peer" not in skip:
            q, sec, hist = run_peer(history, a.quick, seed, a.threads)
            add("lightgbm_peer", f"LightGBM peer, M5 style (seed {seed})", q, LEVELS, sec)
            per_seed["lightgbm_peer"][-1].update(rounds=hist["rounds"], rows=hist["rows"],
                                                 cpu_seconds=round(hist["cpu_seconds"], 1))
        if "pipeline" not in skip:
            q, fit = run_pipeline(history, a.quick, seed)
            add("pipeline", f"pytorch-forecasting pipeline (seed {seed})", q, ANCHOR_LEVELS, fit)
    if "stats" not in skip:
        models = a.stats.split(",") if a.stats else (
            ["Naive", "SeasonalNaive"] if a.quick or a.data == "oj" else
            ["SeasonalNaive", "AutoETS"])
        season = DATA[a.data]["season"]
        for name, (q, sec) in run_statsforecast(history, models, season).items():
            add(name, f"statsforecast {name}" + (f"({season})" if name != "Naive" else ""),
                q, LEVELS, sec)
    for name, rows in per_seed.items():
        res[name] = {"mean": _mean(rows), "per_seed": rows}
    if len(seeds) > 1:
        print(f"means over seeds {seeds}:")
        for name, r in res.items():
            m = r["mean"]
            print(f"  {name:42s} RMSSE {m['rmsse']:.3f}   SPL {m['spl']:.3f}")
    if "ours" in res and "lightgbm_peer" in res:
        o, p = res["ours"]["mean"], res["lightgbm_peer"]["mean"]
        res["ratio_ours_over_peer"] = {"rmsse": round(o["rmsse"] / p["rmsse"], 4),
                                       "spl": round(o["spl"] / p["spl"], 4)}
        print(f"ours / LightGBM peer: RMSSE x{o['rmsse'] / p['rmsse']:.3f}, "
              f"SPL x{o['spl'] / p['spl']:.3f} (below 1: ours more accurate)")
    print(json.dumps({"benchmark": "accuracy", "data": a.data, "quick": a.quick,
                      "forecast": json.loads(a.forecast),
                      "window": a.window, "seeds": seeds, "levels": a.levels, "machine": info,
                      "date": time.strftime("%Y-%m-%d"), **res}))


if __name__ == "__main__":
    main()

"""Training and prediction throughput: pytorch-forecasting's standard TFT pipeline vs ours.

    python benchmarks/forecast_throughput.py [--quick] [--series N] [--days D] [--threads T]

Same synthetic daily demand (``replenish.engine.synth``), same TFT size (hidden 32, 4 heads,
hidden_continuous 16, dropout 0.1, encoder 56 days, horizon 28, 7 quantiles, batch 256),
measured in one run on this machine, each contender in its own subprocess (so peak memory
and thread settings are its own):

* pipeline: TimeSeriesDataSet -> TemporalFusionTransformer.from_dataset -> Lightning Trainer
  (dataloader, default logging metrics) -> ``predict(mode="quantiles")``;
* ours: ``TFTForecaster.fit`` (window sampler + lean loop) -> ``TFTForecaster.predict``.

Reported: training samples/s (steady state: training batches after the first two, data
preparation excluded for both; the pipeline's includes its dataloader), prediction
series/s (the predict call; the pipeline's prediction dataset build is reported apart),
data preparation seconds, peak resident memory above the process's memory after the data
was generated (MB), and the ratios ours / pipeline. The last line is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
import warnings

import numpy as np

ARCH = dict(hidden_size=32, attention_heads=4, hidden_continuous_size=16, dropout=0.1)
QUANTILES = (0.02, 0.1, 0.25, 0.5, 0.75, 0.9, 0.98)
ENCODER, HORIZON, BATCH = 56, 28, 256


def machine() -> dict:
    import torch
    info = {"processor": platform.machine(), "cpu_count": os.cpu_count(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    try:
        with open("/proc/cpuinfo") as fh:
            names = [ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")]
        info["cpu_model"] = names[0] if names else None
    except OSError:
        pass
    return info


class PeakRSS:
    """Peak resident memory of this process while the block runs, above its start (MB)."""

    def __enter__(self):
        import psutil
        self._p = psutil.Process()
        self.start = self.peak = self._p.memory_info().rss
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._poll, daemon=True)
        self._t.start()
        return self

    def _poll(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self._p.memory_info().rss)

    def __exit__(self, *a):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self._p.memory_info().rss)
        self.mb = (self.peak - self.start) / 2**20
        return False


# ---- data ---------------------------------------------------------------------------------
def synthetic_panel(n_series: int, n_days: int, horizon: int):
    """History panel (``future_known`` set) and the horizon's actual demand (n, horizon)."""
    import pyarrow.compute as pc
    from replenish.engine.contract import ColumnMap
    from replenish.engine.synth import synth_tables
    from replenish.engine.validate import build_panel
    hist, _ = synth_tables(n_series, n_days + horizon, seed=0)
    import datetime as dt
    import pyarrow as pa
    dates = hist.column("date").to_numpy().astype("datetime64[D]")
    end = pa.scalar(dt.date.fromisoformat(str(dates.min() + np.timedelta64(n_days - 1, "D"))),
                    pa.date32())
    past = hist.filter(pc.less_equal(hist.column("date"), end))
    future = hist.filter(pc.greater(hist.column("date"), end))
    cols = ColumnMap(known=("price", "promo", "holiday", "temperature"), static=("category",))
    panel = build_panel(past, cols, future=future, horizon=horizon)
    full = build_panel(hist, cols)
    actual = full.demand.reshape(full.n_series, -1)[:, -horizon:]
    return panel, actual


# ---- pytorch-forecasting's standard pipeline ----------------------------------------------
def pipeline_frames(panel, encoder: int, horizon: int):
    """Long DataFrames for the pipeline: history, and history + horizon rows (for predict)."""
    from replenish.engine._features import make_spec, panel_frame
    spec = make_spec(panel, encoder, horizon, None)
    hist = panel_frame(panel, spec)
    fut = panel_frame(_with_future_rows(panel, horizon), spec)
    rename = {c: c.split("__", 1)[1] for c in hist.columns if "__" in c}
    return hist.rename(columns=rename), fut.rename(columns=rename), spec


def _with_future_rows(panel, horizon: int):
    """The panel extended by the horizon (known covariates from future_known, demand 0)."""
    from dataclasses import replace
    n, L = panel.n_series, panel.lengths
    new_len = L + horizon
    indptr = np.concatenate([[0], np.cumsum(new_len)]).astype(np.int64)
    rows = np.repeat(indptr[:-1], L) + (np.arange(panel.n_rows) - np.repeat(panel.indptr[:-1], L))
    fut_rows = (indptr[1:, None] - horizon + np.arange(horizon)).ravel()
    demand = np.zeros(indptr[-1], np.float32)
    demand[rows] = panel.demand
    known = np.zeros((indptr[-1], panel.known.shape[1]), np.float32)
    known[rows] = panel.known
    known[fut_rows] = panel.future_known[:, :horizon].reshape(n * horizon, -1)
    observed = np.zeros((indptr[-1], panel.observed.shape[1]), np.float32)
    observed[rows] = panel.observed
    return replace(panel, indptr=indptr, demand=demand, known=known, observed=observed,
                   future_known=None)


def pipeline_dataset(frame, spec, encoder: int, horizon: int, cutoff: int | None = None):
    """The tutorial-style TimeSeriesDataSet: pytorch-forecasting's default ("auto") target
    normalizer, relative time index, target scales and encoder length as inputs."""
    from pytorch_forecasting import TimeSeriesDataSet
    from pytorch_forecasting.data.encoders import NaNLabelEncoder
    data = frame if cutoff is None else frame[frame.time_idx <= cutoff]
    cats = ["sku", "location"] + spec.static_cats
    return TimeSeriesDataSet(
        data, time_idx="time_idx", target="demand", group_ids=["sku", "location"],
        max_encoder_length=encoder, min_encoder_length=encoder // 2,
        max_prediction_length=horizon, static_categoricals=cats,
        static_reals=spec.static_reals,
        time_varying_known_categoricals=list(spec.cal_cats),
        time_varying_known_reals=["time_idx"] + list(spec.cal_reals) + spec.known,
        time_varying_unknown_reals=spec.observed + ["demand"],
        categorical_encoders={c: NaNLabelEncoder(add_nan=True) for c in cats + list(spec.cal_cats)},
        add_relative_time_idx=True, add_target_scales=True, add_encoder_length=True)


def pipeline_model(dataset, quantiles, arch, learning_rate: float):
    from pytorch_forecasting import TemporalFusionTransformer
    from pytorch_forecasting.metrics import QuantileLoss
    return TemporalFusionTransformer.from_dataset(
        dataset, hidden_size=arch["hidden_size"], attention_head_size=arch["attention_heads"],
        dropout=arch["dropout"], hidden_continuous_size=arch["hidden_continuous_size"],
        loss=QuantileLoss(list(quantiles)), learning_rate=learning_rate,
        reduce_on_plateau_patience=4)


def pipeline_trainer(max_epochs: int, batches: int, validate: bool):
    import torch
    import lightning.pytorch as pl

    class Clock(pl.Callback):
        """Steady training speed: the time of all batches after the first two."""

        def on_train_start(self, trainer, module):
            self.batches = 0

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            self.batches += 1
            if self.batches == 2:
                self.t0 = time.perf_counter()

        def on_train_end(self, trainer, module):
            self.seconds = time.perf_counter() - self.t0
            self.timed = self.batches - 2

    clock = Clock()
    trainer = pl.Trainer(max_epochs=max_epochs, limit_train_batches=batches,
                         limit_val_batches=1.0 if validate else 0,
                         accelerator="gpu" if torch.cuda.is_available() else "cpu", devices=1,
                         gradient_clip_val=0.1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[clock])
    return trainer, clock


# ---- workers (one subprocess each) --------------------------------------------------------
def worker_pipeline(a) -> dict:
    import torch
    panel, _ = synthetic_panel(a.series, a.days, HORIZON)
    with PeakRSS() as mem:
        t = time.perf_counter()
        hist, fut, spec = pipeline_frames(panel, ENCODER, HORIZON)
        ds = pipeline_dataset(hist, spec, ENCODER, HORIZON)
        build = time.perf_counter() - t
        torch.manual_seed(0)
        model = pipeline_model(ds, QUANTILES, ARCH, 1e-3)
        trainer, clock = pipeline_trainer(1, a.steps, validate=False)
        dl = ds.to_dataloader(train=True, batch_size=BATCH, num_workers=0)
        trainer.fit(model, train_dataloaders=dl)
        t = time.perf_counter()
        pds = type(ds).from_dataset(ds, fut, predict=True, stop_randomization=True)
        pdl = pds.to_dataloader(train=False, batch_size=BATCH, num_workers=0)
        pbuild = time.perf_counter() - t
        t = time.perf_counter()
        q = model.predict(pdl, mode="quantiles", trainer_kwargs={
            "logger": False, "enable_progress_bar": False, "devices": 1,
            "accelerator": "gpu" if torch.cuda.is_available() else "cpu"})
        pred = time.perf_counter() - t
    assert q.shape[0] == panel.n_series, q.shape
    return {"prepare_s": build, "train_samples_per_s": clock.timed * BATCH / clock.seconds,
            "predict_dataset_s": pbuild, "predict_s": pred,
            "predict_series_per_s": panel.n_series / pred, "peak_mb": mem.mb}


def worker_ours(a) -> dict:
    from replenish.engine.forecast import ForecastConfig, TFTForecaster
    panel, _ = synthetic_panel(a.series, a.days, HORIZON)
    cfg = ForecastConfig(encoder_length=ENCODER, horizon=HORIZON, quantiles=QUANTILES,
                         batch_size=a.batch_ours or BATCH, max_steps=a.steps, validation=False,
                         predict_batch_size=a.predict_batch, **ARCH)
    with PeakRSS() as mem:
        f = TFTForecaster(cfg).fit(panel)
        t = time.perf_counter()
        f.predict(panel.take(np.arange(min(64, panel.n_series))))   # warm-up (compile on GPU)
        warm = time.perf_counter() - t
        t = time.perf_counter()
        q = f.predict(panel)
        pred = time.perf_counter() - t
    assert q.shape == (panel.n_series, HORIZON, len(QUANTILES))
    h = f.history
    out = {"prepare_s": h["prepare_seconds"], "train_samples_per_s": h["steady_samples_per_s"],
           "predict_s": pred, "predict_series_per_s": panel.n_series / pred,
           "predict_warmup_s": warm, "train_seconds_incl_warmup": h["train_seconds"],
           "peak_mb": mem.mb, "device": h["device"]}
    if a.predict_scale:
        big = tiled_panel(panel, a.predict_scale, ENCODER)
        with PeakRSS() as mem:
            t = time.perf_counter()
            f.predict(big)
            pred = time.perf_counter() - t
        out["scale"] = {"series": big.n_series, "periods": ENCODER, "predict_s": pred,
                        "predict_series_per_s": big.n_series / pred, "peak_mb": mem.mb}
    return out


def tiled_panel(panel, n_series: int, periods: int):
    """``n_series`` series made of the last ``periods`` of the panel's series, repeated (new
    SKU keys, so the model sees them as unknown). What prediction reads of a longer history."""
    from replenish.engine.panel import Panel
    take = np.arange(n_series) % panel.n_series
    last = panel.indptr[1:][take, None] - periods + np.arange(periods)
    n_rows = n_series * periods
    return Panel(
        sku=np.char.add("T", np.arange(n_series).astype(str)), location=panel.location[take],
        start=panel.end[take] - (periods - 1) * panel.step,
        indptr=np.arange(0, n_rows + 1, periods, dtype=np.int64),
        demand=panel.demand[last].reshape(-1), freq=panel.freq,
        known=panel.known[last].reshape(n_rows, -1), known_names=panel.known_names,
        static={k: v[take] for k, v in panel.static.items()},
        future_known=panel.future_known[take])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="1,000 series x 365 days, 20 steps")
    ap.add_argument("--series", type=int)
    ap.add_argument("--days", type=int)
    ap.add_argument("--steps", type=int, help="training batches measured per contender")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads for both contenders (default 1: on the 2-vCPU dev "
                         "machine 2 threads are slower for both)")
    ap.add_argument("--batch-ours", type=int, default=0,
                    help="our training batch (default: the pipeline's 256; GPUs: try 1024)")
    ap.add_argument("--predict-batch", type=int, default=0,
                    help="our prediction batch (default 256 on CPU, 8192 on GPU)")
    ap.add_argument("--predict-scale", type=int, default=0,
                    help="also time our prediction of this many series (e.g. 1000000)")
    ap.add_argument("--worker", choices=["pipeline", "ours"], help=argparse.SUPPRESS)
    a = ap.parse_args()
    a.series = a.series or (1000 if a.quick else 10_000)
    a.days = a.days or (365 if a.quick else 730)
    a.steps = a.steps or (20 if a.quick else 100)
    if a.worker:
        import torch
        torch.set_num_threads(a.threads)
        warnings.filterwarnings("ignore")
        import logging
        logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
        out = (worker_pipeline if a.worker == "pipeline" else worker_ours)(a)
        print(json.dumps(out))
        return

    info = machine()
    info["torch_threads"] = a.threads
    print(f"machine: {json.dumps(info)}")
    print(f"data: {a.series} series x {a.days} days, encoder {ENCODER}, horizon {HORIZON}, "
          f"batch {BATCH}, {a.steps} training batches each, {json.dumps(ARCH)}")
    res = {}
    for who in ("pipeline", "ours"):
        cmd = [sys.executable, __file__, "--worker", who, "--series", str(a.series),
               "--days", str(a.days), "--steps", str(a.steps), "--threads", str(a.threads),
               "--batch-ours", str(a.batch_ours), "--predict-batch", str(a.predict_batch),
               "--predict-scale", str(a.predict_scale)]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode:
            sys.stderr.write(p.stderr[-4000:])
            raise SystemExit(f"{who} worker failed")
        res[who] = json.loads(p.stdout.strip().splitlines()[-1])
        r = res[who]
        print(f"{who:9s} prepare {r['prepare_s']:7.1f} s   train {r['train_samples_per_s']:8.0f} "
              f"samples/s   predict {r['predict_series_per_s']:8.0f} series/s   peak "
              f"{r['peak_mb']:7.0f} MB", flush=True)
    ratio = {"train": res["ours"]["train_samples_per_s"] / res["pipeline"]["train_samples_per_s"],
             "predict": res["ours"]["predict_series_per_s"]
             / res["pipeline"]["predict_series_per_s"],
             "peak_memory": res["ours"]["peak_mb"] / max(res["pipeline"]["peak_mb"], 1e-9)}
    print(f"ratios ours/pipeline: training {ratio['train']:.1f}x, prediction "
          f"{ratio['predict']:.1f}x, peak memory {ratio['peak_memory']:.2f}x")
    if "scale" in res["ours"]:
        sc = res["ours"]["scale"]
        print(f"ours at scale: {sc['series']} series predicted in {sc['predict_s']:.1f} s "
              f"({sc['predict_series_per_s']:.0f} series/s), peak {sc['peak_mb']:.0f} MB")
    print(json.dumps({"benchmark": "forecast_throughput", "quick": a.quick, "machine": info,
                      "series": a.series, "days": a.days, "steps": a.steps, **res,
                      "ratio": ratio, "date": time.strftime("%Y-%m-%d")}))


if __name__ == "__main__":
    main()

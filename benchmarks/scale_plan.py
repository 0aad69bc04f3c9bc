"""Scale: synthesize N SKU-locations x D days, then plan end to end on the job's own cluster.

Reports wall time per stage (synth, stage, train, forecast+optimize) and peak memory per
worker, at the full size and at a tenth of it (to show how cost grows; ``--single``: the full
size only), and, as the peer ratio, end-to-end series/s against pytorch-forecasting's standard
predict pipeline measured in the same run on a sample of the same data (TimeSeriesDataSet ->
predict, on the GPU when there is one).

The cluster is the one ``replenish plan`` embeds (``replenish.jobs.cluster.connect``): on a GPU
machine one GPU worker per GPU plus CPU workers, the forecasts on the GPU and the kernels in
CuPy (the JSON's ``backend`` says which ran); otherwise single-threaded CPU workers.

    python benchmarks/scale_plan.py --quick            # 20,000 and 2,000 series x 365 days
    python benchmarks/scale_plan.py                    # 1,000,000 and 100,000 series x 730 days

The last line printed is one JSON object with all figures.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

#: A small model: the point here is the pipeline's cost, not accuracy.
SMALL_MODEL = {"horizon": 28, "encoder_length": 56, "hidden_size": 16, "attention_heads": 2,
               "max_steps": 60, "batch_size": 256}


def machine() -> str:
    gpu = ""
    try:
        import torch
        if torch.cuda.is_available():
            gpu = ", GPU " + torch.cuda.get_device_name(0)
    except Exception:
        pass
    return f"{platform.machine()} {os.cpu_count()} cores{gpu}"


def _worker_peak_rss_mb(client) -> dict[str, float]:
    import resource

    def peak():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return {w: round(v, 1) for w, v in client.run(peak).items()}


def run_size(n_series: int, n_days: int, work: Path, n_workers: int | None, train_series: int,
             n_samples: int, train_steps: int | None = None) -> dict:
    from replenish.engine.synth import write_synth
    from replenish.jobs.cluster import connect
    from replenish.jobs.config import PlanConfig
    from replenish.jobs.plan import run_plan

    data = work / f"data_{n_series}"
    t0 = time.perf_counter()
    info = write_synth(data, n_series, n_days, seed=0)
    synth_s = time.perf_counter() - t0
    cfg = PlanConfig(history=str(data / "history"), inventory=str(data / "inventory.parquet"),
                     out=str(work / f"plan_{n_series}"),
                     forecast=dict(SMALL_MODEL, **({"max_steps": train_steps} if train_steps else {})),
                     train_series=train_series, n_samples=n_samples)
    from replenish.engine.contract import ColumnMap
    cfg.columns = ColumnMap(known=("price", "promo", "holiday", "temperature"), static=("category",))
    # No future table here: known covariates act as observed ones (see README).
    with connect(n_workers=n_workers) as client:
        workers = client.scheduler_info()["workers"].values()
        cluster = {"workers": len(workers),
                   "gpu_workers": sum(1 for w in workers if w.get("resources", {}).get("GPU"))}
        t0 = time.perf_counter()
        summary = run_plan(cfg, client=client, overwrite=True)
        total = time.perf_counter() - t0
        rss = _worker_peak_rss_mb(client)
    t = summary["timings"]
    out = Path(cfg.out)
    files = {name: sum(1 for _ in (out / name).rglob("*.parquet")) for name in ("forecasts", "orders")}
    locations = sum(1 for _ in (out / "orders").glob("location=*"))
    shutil.rmtree(data, ignore_errors=True)
    return {"series": n_series, "days": n_days, "rows": info["rows"], "synth_s": round(synth_s, 1),
            "stage_s": round(t.get("stage_s", 0), 1), "train_s": round(t.get("train_s", 0), 1),
            "forecast_optimize_s": round(t.get("shards_s", 0), 1), "plan_s": round(total, 1),
            "series_per_s": round(n_series / total, 1),
            "peak_worker_rss_mb": max(rss.values()), "workers": len(rss),
            "shards": summary.get("shards", None), "locations": locations, "output_files": files,
            "cluster": cluster, "backend": summary.get("backend")}


def pf_predict_series_per_s(n_series: int, n_days: int) -> float:
    """pytorch-forecasting's own pipeline: TimeSeriesDataSet build + predict, series/s."""
    import pandas as pd
    import torch
    from pytorch_forecasting import TemporalFusionTransformer, TimeSeriesDataSet
    from pytorch_forecasting.metrics import QuantileLoss

    from replenish.engine.synth import synth_tables
    hist, _ = synth_tables(n_series, n_days, seed=1)
    df = hist.to_pandas()
    dates = pd.to_datetime(df["date"])
    df["time_idx"] = (dates - dates.min()).dt.days.astype(int)
    enc, hor = SMALL_MODEL["encoder_length"], SMALL_MODEL["horizon"]
    t0 = time.perf_counter()
    tsd = TimeSeriesDataSet(df, time_idx="time_idx", target="demand", group_ids=["sku", "location"],
                            max_encoder_length=enc, max_prediction_length=hor,
                            static_categoricals=["sku", "location", "category"],
                            time_varying_unknown_reals=["demand", "price", "promo", "holiday",
                                                        "temperature"],
                            predict_mode=True)
    model = TemporalFusionTransformer.from_dataset(
        tsd, hidden_size=SMALL_MODEL["hidden_size"], attention_head_size=SMALL_MODEL["attention_heads"],
        loss=QuantileLoss(quantiles=[0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99]))
    dl = tsd.to_dataloader(train=False, batch_size=256, num_workers=0)
    with torch.no_grad():
        model.predict(dl, trainer_kwargs={"accelerator": "gpu" if torch.cuda.is_available() else "cpu",
                                          "devices": 1, "logger": False,
                                          "enable_progress_bar": False})
    return n_series / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--series", type=int)
    ap.add_argument("--days", type=int)
    ap.add_argument("--workers", type=int, default=None,
                    help="worker processes (default: the job's own choice, see README)")
    ap.add_argument("--single", action="store_true", help="the full size only (no tenth)")
    ap.add_argument("--skip-peer", action="store_true", help="no pytorch-forecasting peer run")
    ap.add_argument("--train-steps", type=int, default=None,
                    help=f"training steps (default {SMALL_MODEL['max_steps']})")
    ap.add_argument("--work", default=None, help="scratch folder (default: a temporary one)")
    a = ap.parse_args()
    n = a.series or (20_000 if a.quick else 1_000_000)
    days = a.days or (365 if a.quick else 730)
    work = Path(a.work or tempfile.mkdtemp(prefix="replenish-scale-"))
    results = []
    for size in ((n,) if a.single else (n // 10, n)):
        r = run_size(size, days, work, a.workers, train_series=min(20_000, size),
                     n_samples=200 if a.quick else 500, train_steps=a.train_steps)
        results.append(r)
        print(f"{size:>9,d} series: synth {r['synth_s']} s, stage {r['stage_s']} s, "
              f"train {r['train_s']} s, forecast+optimize {r['forecast_optimize_s']} s, "
              f"plan total {r['plan_s']} s, peak worker RSS {r['peak_worker_rss_mb']:.0f} MB, "
              f"{r['locations']} locations -> output files {r['output_files']}", flush=True)
    ours = results[-1]["series_per_s"]
    out = {"benchmark": "scale_plan", "machine": machine(), "date": time.strftime("%Y-%m-%d"),
           "sizes": results, "ours_end_to_end_series_per_s": ours}
    if len(results) > 1:
        out["growth_time_ratio"] = round(results[1]["plan_s"] / results[0]["plan_s"], 2)
    print(f"machine: {out['machine']}")
    if not a.skip_peer:
        pf_n = 1000 if a.quick else 2000
        pf = pf_predict_series_per_s(pf_n, days)
        out.update(pf_predict_series_per_s_sample=round(pf, 1), pf_sample_series=pf_n,
                   ratio_vs_pf_predict_only=round(ours / pf, 2))
        print(f"end to end (train+forecast+optimize) {ours:.0f} series/s vs pytorch-forecasting "
              f"predict alone {pf:.0f} series/s (measured on {pf_n} series, same run): ratio "
              f"{out['ratio_vs_pf_predict_only']}")
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()

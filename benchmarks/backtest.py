"""Do the decisions hold less stock at the same service? The rolling backtest, measured.

    python benchmarks/backtest.py [--data bakery|synthetic|oracle|all] [--quick] [--origins N]

* ``bakery``: the bundled bakery data (105 store-product series, daily) with its generated
  inventory (``replenish.data.bakery_inventory``: lead times 1-2 days, std 0.25 day, daily
  review, MOQ 12, case pack 6), 26 weekly origins over the last 182 days, the five targets
  0.8 ... 0.99: ``replenish backtest`` with its defaults against the classical policy (moving
  average of 28 days, safety stock z sigma sqrt(L + R)). The key figure: at the realised
  cycle service of our 95% target, how much less average stock value ours holds than the
  classical policy (its curve interpolated at that service).
* ``synthetic``: demand with a known distribution (Poisson; rate = level x weekday factor x
  promotion lift, the promotion a known covariate), 120 series: (a) the decision kernels fed
  the TRUE quantiles, simulated over 365 days (is the chain quantiles -> policy -> realised
  service calibrated?), and (b) the backtest with the model's forecasts (are the forecasts
  calibrated too?): realised cycle service against each target 0.8 ... 0.99.
* ``oracle``: (a) under rounded orders (MOQ 12 and case pack 6 at three demand scales, an
  EOQ), where planning for the whole review period would over-serve.

``--quick``: 2 origins, a tiny model, 24 synthetic series (a smoke run for CI). The last line
is one JSON object with every figure.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kernels_throughput import machine  # noqa: E402

TARGETS = (0.8, 0.9, 0.95, 0.98, 0.99)
TINY = {"horizon": 14, "encoder_length": 28, "hidden_size": 8, "attention_heads": 1,
        "max_steps": 20, "val_every": 10}


def _write_once(table: pa.Table, path: Path) -> None:
    """Write ``table`` unless ``path`` already holds the same rows: a rewritten file has a new
    modification time, which makes the backtest a new job and loses its finished origins."""
    if path.exists() and pq.read_table(path).equals(table):
        return
    pq.write_table(table, path)


def _run(history, inventory, out, columns, origins, forecast, n_workers):
    from replenish.jobs.backtest import BacktestSettings, print_backtest, run_backtest
    from replenish.jobs.config import PlanConfig
    cfg = PlanConfig(history=history, inventory=inventory, out=str(out), columns=columns,
                     n_workers=n_workers, forecast=forecast)
    t0 = time.perf_counter()
    s = run_backtest(cfg, BacktestSettings(origins=origins, targets=TARGETS), overwrite=True)  # same inputs: resumes
    print_backtest(s)
    s["wall_s"] = time.perf_counter() - t0
    return s


def bakery(args, work: Path) -> dict:
    from replenish.data import BAKERY_COLUMNS, bakery_inventory, bakery_path, load_bakery
    inv = bakery_inventory(load_bakery())
    _write_once(inv, work / "bakery_inventory.parquet")
    s = _run(str(bakery_path()), str(work / "bakery_inventory.parquet"), work / "bakery_bt",
             BAKERY_COLUMNS, 2 if args.quick else args.origins, TINY if args.quick else {},
             args.n_workers)
    t = s.pop("table")
    return {"summary": t.to_dict(orient="records"), **{k: s[k] for k in (
        "inventory_reduction_at_equal_service", "equal_service", "equal_service_by_target",
        "curves", "series", "origins", "wall_s")}}


def synthetic_tables(n: int, days: int, seed: int = 0):
    """Poisson demand with known rates (returned), a known promotion flag, and an inventory."""
    rng = np.random.default_rng(seed)
    level = rng.uniform(8, 40, n)
    weekday = np.array([0.8, 0.9, 0.9, 1.0, 1.2, 1.5, 0.7])
    dates = np.datetime64("2023-01-02") + np.arange(days)
    dow = (dates.astype("datetime64[D]").astype(np.int64) + 3) % 7   # 0 = Monday
    promo = (rng.random((n, days)) < 0.1).astype(np.int8)
    rate = level[:, None] * weekday[dow][None, :] * (1 + 0.6 * promo)
    demand = rng.poisson(rate).astype(np.float64)
    hist = pa.table({"sku": np.repeat([f"P{i:03d}" for i in range(n)], days),
                     "location": np.repeat(["S1"], n * days),
                     "date": np.tile(dates, n).astype("datetime64[D]"),
                     "demand": demand.reshape(-1), "promo": promo.reshape(-1)})
    inv = pa.table({"sku": [f"P{i:03d}" for i in range(n)], "location": ["S1"] * n,
                    "on_hand": np.zeros(n), "on_order": np.zeros(n),
                    "lead_time_days": rng.integers(1, 4, n).astype(float),
                    "unit_cost": rng.uniform(1, 5, n)})
    return hist, inv, rate, demand


def oracle(n: int, days: int, seed: int = 5, *, moq: float = 0.0, case_pack: float = 0.0,
           order_cost: float = 0.0, scale: float = 1.0) -> dict:
    """Kernels fed the true distribution: realised cycle service against the target.

    ``moq``, ``case_pack`` and ``order_cost`` (units, units, currency per order; unit cost
    2, holding 25% a year) round the orders; ``scale`` multiplies the Poisson rates (the
    demand is then drawn anew from the scaled rates)."""
    from scipy import stats

    from replenish.kernels import plan_orders, simulate_inventory, simulation_totals
    _, inv, rate, demand = synthetic_tables(n, days + 30, seed)
    if scale != 1.0:
        rate = rate * scale
        demand = np.random.default_rng(seed + 1).poisson(rate).astype(np.float64)
    levels = np.array([0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99])
    lead = inv.column("lead_time_days").to_numpy()
    rules = dict(moq=moq, case_pack=case_pack)
    label = f"moq {moq:g}, case pack {case_pack:g}, order cost {order_cost:g}, demand x{scale:g}"
    out = {}
    horizon = 8
    for target in TARGETS:
        s, big_s = np.zeros((n, days)), np.zeros((n, days))
        for t in range(days):   # each day's policy from that day's true distribution
            q = stats.poisson.ppf(levels[None, None, :], rate[:, t:t + horizon, None]).astype(np.float64)
            q = np.maximum.accumulate(q + levels * 1e-6, axis=-1)   # strictly increasing knots
            r = plan_orders(levels, q, on_hand=0.0, on_order=0.0, lead_time=lead, review_period=1.0,
                            service_level=target, method="sample", n_samples=2000, seed=t,
                            order_cost=order_cost, unit_cost=2.0, holding_cost_rate=0.25, **rules)
            s[:, t], big_s[:, t] = r["reorder_point"], r["order_up_to"]
        sim = simulate_inventory(demand[:, :days], reorder_point=s, order_up_to=big_s,
                                 segment_start=np.arange(days), lead_time=lead, on_hand=big_s[:, 0], **rules)
        tot = simulation_totals(sim)
        out[f"{target:g}"] = {"cycle_service_level": float(tot["cycle_service_level"]),
                              "fill_rate": float(tot["fill_rate"])}
        print(f"oracle quantiles ({label}), target {target:.2f}: realised cycle service "
              f"{tot['cycle_service_level']:.4f} ({100 * (tot['cycle_service_level'] - target):+.2f} points), "
              f"fill rate {tot['fill_rate']:.4f}", flush=True)
    return out


#: the rounded-order cases of ``--data oracle``: (moq, case pack, order cost, demand scale)
ORACLE_RULES = ((12, 6, 0, 1), (12, 6, 0, 4), (12, 6, 0, 0.3), (0, 0, 5, 1), (12, 6, 20, 1))


def oracle_rules(args) -> dict:
    """The kernels fed the true distribution under rounded orders (MOQ, case pack, EOQ)."""
    n, days = (24, 60) if args.quick else (120, 365)
    return {f"moq{m:g}_pack{p:g}_k{k:g}_x{x:g}": oracle(n, days, moq=m, case_pack=p, order_cost=k, scale=x)
            for m, p, k, x in ORACLE_RULES}


def synthetic(args, work: Path) -> dict:
    from replenish.engine.contract import ColumnMap
    n = 24 if args.quick else 120
    res = {"oracle": oracle(n, 60 if args.quick else 365)}
    hist, inv, _, _ = synthetic_tables(n, 400)
    _write_once(hist, work / "synth_history.parquet")
    _write_once(inv, work / "synth_inventory.parquet")
    s = _run(str(work / "synth_history.parquet"), str(work / "synth_inventory.parquet"),
             work / "synth_bt", ColumnMap(known=("promo",)), 2 if args.quick else args.origins,
             TINY if args.quick else {}, args.n_workers)
    t = s.pop("table")
    ours = t[t.policy == "replenish"]
    res["model"] = {f"{r.target:g}": {"cycle_service_level": float(r.cycle_service_level),
                                      "fill_rate": float(r.fill_rate)} for _, r in ours.iterrows()}
    for _, r in ours.iterrows():
        print(f"model forecasts, target {r.target:.2f}: realised cycle service "
              f"{r.cycle_service_level:.4f} ({100 * (r.cycle_service_level - r.target):+.2f} points)")
    res["max_gap_points"] = float(100 * np.max(np.abs(ours.cycle_service_level - ours.target)))
    res["reduction"] = s["inventory_reduction_at_equal_service"]
    res["wall_s"] = s["wall_s"]
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", choices=["bakery", "synthetic", "oracle", "all"], default="all",
                    help="oracle: only the kernels fed the true distribution, under rounded orders")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--origins", type=int, default=26)
    ap.add_argument("--n-workers", type=int, default=2)
    ap.add_argument("--work", help="folder for the inputs and outputs (default: a temporary one)")
    args = ap.parse_args(argv)
    info = machine()
    print(f"machine: {info.get('cpu_model', info['processor'])}, {info['cpu_count']} CPUs")
    res = {"machine": info, "mode": "quick" if args.quick else "full", "load_start": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        if args.data in ("bakery", "all"):
            res["bakery"] = bakery(args, work)
        if args.data in ("synthetic", "all"):
            res["synthetic"] = synthetic(args, work)
        if args.data in ("oracle", "all"):
            res["oracle_rules"] = oracle_rules(args)
    res["load_end"] = os.getloadavg()[0]
    print(json.dumps(res, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

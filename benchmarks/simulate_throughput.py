"""Throughput of the inventory simulator against stockpyl's simulator, one item at a time.

    python benchmarks/simulate_throughput.py [--quick] [--repeat N]

Measures, on this machine, in one run:

* ``simulate_inventory`` on n items x 365 days of Poisson demand (float32), (s, S) policies,
  fixed whole-day lead times of 1-7 days, daily review, backorders: the base case; then the
  same items with every option on (lognormal lead times, orders not crossing, MOQ and case
  pack, lost sales, a 5-day shelf life); item-days per second, on the compiled host loop
  (Numba) and on the period loop vectorized over items (plain NumPy, the code CuPy runs);
  on CuPy too when a GPU and CuPy are present (labelled with the card);
* stockpyl 1.0.2 ``sim.simulation``: one single-stage base-stock network per item, 365
  periods, timed on a sample of items and EXTRAPOLATED linearly to n items.

The last line printed is one JSON object with every figure.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from kernels_throughput import machine  # noqa: E402

from replenish.kernels import simulate_inventory  # noqa: E402

DAYS = 365


def _inputs(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    rate = rng.uniform(0.5, 20, n)
    demand = rng.poisson(rate[:, None], (n, DAYS)).astype(np.float32)
    lead = rng.integers(1, 8, n).astype(np.float64)
    s = np.round(rate * (lead + 1) + 2 * np.sqrt(rate * (lead + 1)))
    return demand, dict(reorder_point=s, order_up_to=s + np.round(rate), lead_time=lead, on_hand=s + 1)


def _timed(fn, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def _stockpyl_seconds_per_item(sample: int) -> float:
    from stockpyl.sim import simulation
    from stockpyl.supply_chain_network import single_stage_system

    demand, kw = _inputs(sample, seed=1)
    t0 = time.perf_counter()
    for i in range(sample):
        net = single_stage_system(holding_cost=1.0, stockout_cost=2.0, demand_type="D",
                                  demand_list=list(demand[i].astype(float)), policy_type="BS",
                                  base_stock_level=float(kw["order_up_to"][i]),
                                  shipment_lead_time=int(kw["lead_time"][i]) + 1)
        simulation(net, DAYS, rand_seed=0, progress_bar=False, consistency_checks="N")
    return (time.perf_counter() - t0) / sample


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (CI smoke run)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    info = machine()
    print(f"machine: {info.get('cpu_model', info['processor'])}, {info['cpu_count']} CPUs, "
          f"GPU: {info['gpu'] or 'none'}")
    n = 20_000 if args.quick else 1_000_000
    n_numpy = 20_000 if args.quick else 100_000
    sample = 5 if args.quick else 40
    res = {"machine": info, "mode": "quick" if args.quick else "full", "days": DAYS,
           "load_start": os.getloadavg()[0]}
    demand, kw = _inputs(n)
    every = dict(lead_time_std=1.0, crossing=False, moq=5.0, case_pack=5.0, lost_sales=True,
                 shelf_life=5)
    simulate_inventory(demand[:100], **{k: v[:100] if np.ndim(v) else v for k, v in kw.items()})
    simulate_inventory(demand[:100], **{k: v[:100] if np.ndim(v) else v for k, v in kw.items()},
                       **every)   # compile (or load the cache) outside the timing
    runs = {}
    for name, extra, size, engine in (("numba_base", {}, n, "auto"), ("numba_every_option", every, n, "auto"),
                                      ("numpy_base", {}, n_numpy, "xp"),
                                      ("numpy_every_option", every, n_numpy, "xp")):
        sub = {k: v[:size] if np.ndim(v) else v for k, v in kw.items()}
        times = _timed(lambda: simulate_inventory(demand[:size], **sub, **extra, engine=engine),
                       1 if engine == "xp" and not args.quick else args.repeat)
        med = statistics.median(times)
        runs[name] = {"items": size, "seconds": times, "median_s": med,
                      "item_days_per_s": size * DAYS / med}
        print(f"{name:22s} {size:>9,} items x {DAYS} days: median {med:6.2f} s "
              f"(runs {', '.join(f'{t:.2f}' for t in times)}), "
              f"{size * DAYS / med:,.0f} item-days/s")
    if info["gpu"]:
        from replenish.kernels._backend import cupy_module
        cp = cupy_module()
        d_dev = cp.asarray(demand)
        dev_kw = {k: cp.asarray(v) if np.ndim(v) else v for k, v in kw.items()}
        simulate_inventory(d_dev[:100], **{k: v[:100] if np.ndim(v) else v for k, v in dev_kw.items()})

        def on_device():
            simulate_inventory(d_dev, **dev_kw)
            cp.cuda.Device().synchronize()
        times = _timed(on_device, args.repeat)
        med = statistics.median(times)
        runs["cupy_base"] = {"items": n, "seconds": times, "median_s": med, "item_days_per_s": n * DAYS / med,
                             "gpu": info["gpu"]}
        print(f"cupy_base ({info['gpu']}): {med:.2f} s, {n * DAYS / med:,.0f} item-days/s")
    per_item = _stockpyl_seconds_per_item(sample)
    peer = 1.0 / (per_item / DAYS)
    res["stockpyl"] = {"sample_items": sample, "seconds_per_item": per_item, "item_days_per_s": peer,
                       "extrapolated_seconds_for_n": per_item * n}
    print(f"stockpyl sim.simulation: {per_item * 1e3:.0f} ms per item x {DAYS} days "
          f"({peer:,.0f} item-days/s), timed on {sample} items; {n:,} items EXTRAPOLATED: "
          f"{per_item * n / 3600:.1f} h")
    for name, r in runs.items():
        r["vs_stockpyl"] = r["item_days_per_s"] / peer
        print(f"  {name:22s} x{r['vs_stockpyl']:,.0f} vs stockpyl")
    res["runs"] = runs
    res["load_end"] = os.getloadavg()[0]
    print(f"load average: {res['load_start']:.1f} at the start, {res['load_end']:.1f} at the end")
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Throughput of the inventory kernels against stockpyl called once per item.

    python benchmarks/kernels_throughput.py [--quick]

Measures, on this machine, in one run:

* the normal-approximation path ``plan_orders(method="normal")`` from quantile
  forecasts (n items x 28 days x 7 quantiles, float32), items/s, with the fused
  host kernels (Numba) and, for the smaller size, in plain NumPy;
* the fused policy step alone (z, safety stock, reorder point, order-up-to,
  order quantity) from lead-time-demand moments, items/s;
* the sampling path ``plan_orders(method="sample")``: n items x 1000 samples x
  28-day horizon (lead times 1-21 days plus a 7-day review period, so 8-28 days
  are summed per sample), and a variant with lognormal lead-time uncertainty;
* stockpyl 1.0.2 ``newsvendor_normal`` (its base-stock level: the closest
  one-call equivalent, and its fastest policy call) timed on a sample of items
  and EXTRAPOLATED linearly to the batch sizes above.

The last line printed is one JSON object with every figure.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time

import numpy as np
from scipy import stats

from replenish.kernels import normal_policy, order_quantity, plan_orders

LEVELS = np.array([0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95])
HORIZON = 28


def machine():
    info = {"processor": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "python": platform.python_version(), "numpy": np.__version__, "gpu": None}
    try:
        with open("/proc/cpuinfo") as fh:
            names = [ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")]
        if names:
            info["cpu_model"] = names[0]
    except OSError:
        pass
    try:
        from replenish.kernels._backend import cupy_module

        cp = cupy_module()
        info["gpu"] = cp.cuda.runtime.getDeviceProperties(0)["name"].decode()
    except Exception:  # noqa: BLE001  -- no CuPy or no device: CPU only
        pass
    return info


def make_batch(n, seed=0):
    """Synthetic daily retail forecasts: (n, 28, 7) float32 quantiles plus stock state."""
    rng = np.random.default_rng(seed)
    base = rng.lognormal(1.5, 1.0, n).astype(np.float32)
    cv = rng.uniform(0.2, 0.8, n).astype(np.float32)
    week = (1 + 0.3 * np.sin(np.arange(HORIZON) * 2 * np.pi / 7)).astype(np.float32)
    z = stats.norm.ppf(LEVELS).astype(np.float32)
    q = np.empty((n, HORIZON, LEVELS.size), dtype=np.float32)
    step = 1 << 20
    for s in range(0, n, step):
        e = min(s + step, n)
        shape = np.maximum(1 + cv[s:e, None] * z[None, :], 0)  # (c, Q)
        np.multiply((base[s:e, None] * week[None, :])[:, :, None], shape[:, None, :], out=q[s:e])
    lead = rng.integers(1, 22, n).astype(np.float32)
    items = dict(on_hand=(base * rng.uniform(0, 30, n)).astype(np.float32), on_order=np.float32(0.0),
                 lead_time=lead, review_period=7.0, unit_cost=rng.uniform(1, 50, n).astype(np.float32),
                 order_cost=5.0, case_pack=6.0, moq=12.0)
    return q, items, base, cv


def timed(fn, repeat=1):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench_normal(n, repeat):
    q, items, _, _ = make_batch(n)
    plan_orders(LEVELS, q[:1000], **{k: (v[:1000] if isinstance(v, np.ndarray) else v) for k, v in items.items()},
                method="normal")  # warm-up
    t = timed(lambda: plan_orders(LEVELS, q, **items, method="normal"), repeat)
    return t


def bench_policy(n, repeat):
    rng = np.random.default_rng(1)
    mu_l = rng.uniform(0, 500, n).astype(np.float32)
    sd_l = rng.uniform(0, 80, n).astype(np.float32)
    mu_p, sd_p = mu_l * np.float32(1.4), sd_l * np.float32(1.2)
    pos = rng.uniform(0, 800, n).astype(np.float32)

    def run():
        pol = normal_policy(mu_l, sd_l, mu_p, sd_p, np.float32(0.95), np.float32(0.0))
        order_quantity(pos, pol["reorder_point"], pol["order_up_to"], moq=np.float32(12), case_pack=np.float32(6))

    run()
    return timed(run, repeat)


def bench_sample(n, n_samples, lead_std=False):
    q, items, _, _ = make_batch(n, seed=2)
    if lead_std:
        items["lead_time_std"] = 0.3 * items["lead_time"]
    t = time.perf_counter()
    plan_orders(LEVELS, q, **items, method="sample", n_samples=n_samples)
    return time.perf_counter() - t


def bench_stockpyl(n_items):
    from stockpyl.newsvendor import newsvendor_normal

    rng = np.random.default_rng(3)
    mu = rng.lognormal(1.5, 1.0, n_items)
    sd = mu * rng.uniform(0.2, 0.8, n_items)
    lead = rng.integers(1, 22, n_items)
    h = rng.uniform(1, 50, n_items) * 0.25 / 365
    t = time.perf_counter()
    for i in range(n_items):
        newsvendor_normal(h[i], 0.5, mu[i], sd[i], lead_time=int(lead[i]))
    return (time.perf_counter() - t) / n_items


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (< 2 min on 2 cores)")
    args = ap.parse_args(argv)
    info = machine()
    print(f"machine: {info.get('cpu_model', info['processor'])}, {info['cpu_count']} CPUs, "
          f"GPU: {info['gpu'] or 'none'}, python {info['python']}, numpy {info['numpy']}")
    normal_sizes = [100_000, 1_000_000] if args.quick else [1_000_000, 10_000_000]
    sample_n = 50_000 if args.quick else 1_000_000
    random_lead_n = 20_000 if args.quick else 200_000
    policy_n = 10_000_000
    n_samples = 1000
    res = {"machine": info, "mode": "quick" if args.quick else "full", "horizon_days": HORIZON,
           "quantile_levels": LEVELS.size, "dtype": "float32", "loadavg_start": os.getloadavg()[0]}
    # shared machines are noisy: the 1-minute load average says how much else was running
    print(f"load average at start: {res['loadavg_start']:.1f} on {info['cpu_count']} CPUs")

    sp_per_item = bench_stockpyl(2000)
    res["stockpyl_newsvendor_normal_s_per_item"] = sp_per_item
    res["stockpyl_items_timed"] = 2000
    print(f"stockpyl newsvendor_normal: {sp_per_item * 1e6:.0f} us per item, timed on 2000 items "
          "(figures below EXTRAPOLATE this linearly to the batch size)")

    t = bench_sample(sample_n, n_samples)
    res[f"sample_path_{sample_n}x{n_samples}_s"] = t
    res[f"sample_path_{sample_n}x{n_samples}_items_per_s"] = sample_n / t
    res[f"sample_path_{sample_n}x{n_samples}_speedup_vs_stockpyl_extrapolated"] = sp_per_item * sample_n / t
    print(f"plan_orders sampling path, {sample_n:,} items x {n_samples} samples x {HORIZON}-day horizon "
          f"(lead 1-21 d + review 7 d): {t:6.2f} s = {sample_n / t:10,.0f} items/s; "
          f"stockpyl extrapolated x{sp_per_item * sample_n / t:,.1f}")

    t = bench_sample(random_lead_n, n_samples, lead_std=True)
    res[f"sample_path_random_lead_{random_lead_n}x{n_samples}_s"] = t
    res[f"sample_path_random_lead_{random_lead_n}x{n_samples}_items_per_s"] = random_lead_n / t
    print(f"  same with lognormal lead times (cv 0.3), {random_lead_n:,} items: {t:6.2f} s "
          f"= {random_lead_n / t:10,.0f} items/s")

    res["peak_rss_gb_after_sampling"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"peak resident memory so far (sampling, incl. its {sample_n:,} x {HORIZON} x {LEVELS.size} input): "
          f"{res['peak_rss_gb_after_sampling']:.2f} GB")

    from replenish.kernels import _cpu

    res["fused_host_kernels"] = _cpu.enabled()
    print(f"fused host kernels (Numba) for the normal path: {'on' if res['fused_host_kernels'] else 'OFF'}")
    n = normal_sizes[0]
    os.environ["REPLENISH_NUMBA"] = "0"  # the same path in plain NumPy array code, for comparison
    t = bench_normal(n, repeat=3)
    del os.environ["REPLENISH_NUMBA"]
    res[f"normal_path_numpy_only_{n}_s"] = t
    print(f"plan_orders normal path, plain NumPy (REPLENISH_NUMBA=0), {n:>10,} items: {t:7.2f} s "
          f"= {n / t:12,.0f} items/s")
    for n in normal_sizes:
        t = bench_normal(n, repeat=3)
        ratio = sp_per_item * n / t
        res[f"normal_path_{n}_s"] = t
        res[f"normal_path_{n}_items_per_s"] = n / t
        res[f"normal_path_{n}_speedup_vs_stockpyl_extrapolated"] = ratio
        print(f"plan_orders normal path, {n:>10,} items x {HORIZON} days x {LEVELS.size} quantiles: {t:7.2f} s "
              f"= {n / t:12,.0f} items/s; stockpyl extrapolated {sp_per_item * n:9,.0f} s -> x{ratio:,.0f}")

    t = bench_policy(policy_n, repeat=3)
    res[f"policy_kernel_{policy_n}_s"] = t
    res[f"policy_kernel_{policy_n}_items_per_s"] = policy_n / t
    res[f"policy_kernel_{policy_n}_speedup_vs_stockpyl_extrapolated"] = sp_per_item * policy_n / t
    print(f"policy step only (z, SS, ROP, OUT, order qty), {policy_n:,} items from moments: {t:6.2f} s "
          f"= {policy_n / t:12,.0f} items/s")

    res["loadavg_end"] = os.getloadavg()[0]
    print(f"load average at end: {res['loadavg_end']:.1f}")
    res["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"peak resident memory overall: {res['peak_rss_gb']:.1f} GB (includes the input arrays)")
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())

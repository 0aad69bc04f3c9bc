"""GPU check: CuPy results against the NumPy path, then the fused policy kernel's bandwidth.

    python benchmarks/gpu_check.py [--items 100000000]

1. Correctness on fresh random inputs (exit status 1 on any mismatch):
   the fused policy + order kernel, and ``plan_orders`` (normal and sampling
   paths, CSL and fill-rate targets) on CuPy against NumPy, float32.
2. Timing on ``--items`` items (default 100M, float32): the fused kernel
   (z, safety stock, reorder point, order-up-to, order quantity with MOQ and
   case pack in one pass) against the same arithmetic as separate CuPy
   operations, and against a device-to-device copy of the same number of bytes
   (reads + writes).  CUDA events, warm-up, medians.  Effective GB/s counts each
   input read once and each output written once.
3. End-to-end ``plan_orders`` timings on the device (normal path from quantiles,
   sampling path), if memory allows.

Without CuPy or a GPU it says so, skips the GPU part and exits 0.  The last
lines printed are a short table.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats

LEVELS = np.array([0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95])


def _cupy():
    try:
        from replenish.kernels._backend import cupy_module

        cp = cupy_module()
        if cp.cuda.runtime.getDeviceCount() < 1:
            return None, "no CUDA device"
        return cp, cp.cuda.runtime.getDeviceProperties(0)["name"].decode()
    except Exception as exc:  # noqa: BLE001  -- any import or driver failure means: no GPU here
        return None, f"{type(exc).__name__}: {exc}"


def _near_pack_edge(need, pack, rtol=1e-5):
    ratio = need / np.where(pack > 0, pack, 1)
    return (pack > 0) & (np.abs(ratio - np.round(ratio)) <= rtol * np.maximum(np.abs(ratio), 1))


def check_correctness(cp, rows):
    """Compare device and host results; return the number of failed checks."""
    from replenish.kernels import normal_policy, order_quantity, plan_orders

    failures = 0
    rng = np.random.default_rng(int(time.time()))
    n = 1_000_000
    f = np.float32
    mu_l, sd_l = rng.uniform(0, 500, n).astype(f), rng.uniform(0, 80, n).astype(f)
    mu_p, sd_p = (mu_l * rng.uniform(1, 2, n)).astype(f), (sd_l * rng.uniform(1, 1.5, n)).astype(f)
    level, lot = rng.uniform(0.5, 0.9999, n).astype(f), rng.uniform(0, 50, n).astype(f)
    pos = rng.uniform(-20, 900, n).astype(f)
    moq, pack = rng.uniform(0, 30, n).astype(f), rng.choice([0, 1, 6, 12], n).astype(f)
    cap = np.where(rng.random(n) < 0.2, 100.0, np.inf).astype(f)
    host = normal_policy(mu_l, sd_l, mu_p, sd_p, level, lot)
    dev = normal_policy(*(cp.asarray(a) for a in (mu_l, sd_l, mu_p, sd_p, level, lot)))
    for key in host:
        err = np.abs(cp.asnumpy(dev[key]) - host[key]) / (1 + np.abs(host[key]))
        ok = err.max() <= 1e-5
        failures += not ok
        rows.append((f"fused policy: {key}", "max rel err", f"{err.max():.2e}", "ok" if ok else "MISMATCH"))
    q_host = order_quantity(pos, host["reorder_point"], host["order_up_to"], moq=moq, case_pack=pack, max_order=cap)
    q_dev = cp.asnumpy(order_quantity(*(cp.asarray(a) for a in (pos, host["reorder_point"], host["order_up_to"])),
                                      moq=cp.asarray(moq), case_pack=cp.asarray(pack), max_order=cp.asarray(cap)))
    bad = int(np.count_nonzero(q_dev != q_host))
    failures += bad > 0
    rows.append(("fused order quantity", "mismatches", str(bad), "ok" if bad == 0 else "MISMATCH"))

    n_items = 20_000
    mean = rng.lognormal(1.5, 1.0, (n_items, 1, 1)) * np.ones((1, 28, 1))
    q = np.maximum(stats.norm.ppf(LEVELS, mean, rng.uniform(0.2, 0.8, (n_items, 1, 1)) * mean), 0).astype(f)
    kw = dict(on_hand=(mean[:, 0, 0] * rng.uniform(0, 30, n_items)).astype(f), on_order=0.0,
              lead_time=rng.integers(1, 22, n_items).astype(f), review_period=7.0,
              unit_cost=rng.uniform(1, 50, n_items).astype(f), order_cost=5.0, moq=12.0, case_pack=6.0,
              n_samples=1000)
    for method in ("normal", "sample"):
        for target in ("csl", "fill_rate"):
            h = plan_orders(LEVELS, q, **kw, method=method, target=target)
            d = plan_orders(LEVELS, cp.asarray(q), **kw, method=method, target=target)
            worst = 0.0
            for key, v in h.items():
                got = cp.asnumpy(d[key])
                if key in ("order_quantity", "periods_until_order"):
                    continue
                worst = max(worst, float(np.max(np.abs(got - v) / (1 + np.abs(v)))))
            edge = (_near_pack_edge(h["order_up_to"] - kw["on_hand"], np.full(n_items, 6.0))
                    | np.isclose(kw["on_hand"], h["reorder_point"], rtol=1e-4))
            qty_bad = int(np.count_nonzero((cp.asnumpy(d["order_quantity"]) != h["order_quantity"]) & ~edge))
            ok = worst <= 2e-3 and qty_bad <= n_items * 1e-3
            failures += not ok
            rows.append((f"plan_orders {method}/{target}", "max rel err / qty diffs", f"{worst:.1e} / {qty_bad}",
                         "ok" if ok else "MISMATCH"))

    from replenish.kernels import two_echelon_placement
    g, per = 50_000, 20
    net = np.repeat(np.arange(g), per)
    m = g * per
    ekw = dict(store_mean=rng.uniform(1, 50, m), store_std=rng.uniform(0.5, 15, m),
               store_lead_time=rng.integers(0, 5, m).astype(float), store_holding_cost=rng.uniform(0.2, 3, m),
               store_service_level=rng.uniform(0.9, 0.99, m), store_service_time=(rng.random(m) < 0.25) * 1.0,
               dc_lead_time=rng.integers(1, 15, g).astype(float), dc_holding_cost=rng.uniform(0.05, 2, g),
               dc_service_level=0.95)
    eh = two_echelon_placement(net, **ekw)
    ed = two_echelon_placement(cp.asarray(net), **{k: cp.asarray(v) for k, v in ekw.items()})
    worst = max(float(np.max(np.abs(cp.asnumpy(ed[k]) - v) / (1 + np.abs(v)))) for k, v in eh.items())
    ok = worst <= 1e-9
    failures += not ok
    rows.append(("two_echelon_placement (float64)", "max rel err", f"{worst:.1e}", "ok" if ok else "MISMATCH"))

    # trees: 1 RDC, 5 DCs, 100 stores; the network simulation of a few of them
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from echelon import TREE, tree_networks  # noqa: PLC0415

    from replenish.kernels import simulate_network, tree_placement
    tkw = tree_networks(2_000, seed=4)
    th = tree_placement(TREE, **tkw)
    td = tree_placement(TREE, **{k: cp.asarray(v) for k, v in tkw.items()})
    worst = max(float(np.max(np.abs(cp.asnumpy(td[k]) - v) / (1 + np.abs(v)))) for k, v in th.items())
    ok = worst <= 1e-9
    failures += not ok
    rows.append(("tree_placement (float64)", "max rel err", f"{worst:.1e}", "ok" if ok else "MISMATCH"))
    g = 20
    forest = np.concatenate([np.where(TREE >= 0, TREE + k * len(TREE), -1) for k in range(g)])
    base = th["base_stock"][:g].reshape(-1).round()
    leaf = np.ones(len(forest), bool)
    leaf[forest[forest >= 0]] = False
    dem = np.where(leaf[:, None], rng.poisson(np.maximum(tkw["demand_mean"][:g].reshape(-1), 0)[:, None],
                                              (len(forest), 120)), 0).astype(float)
    skw = dict(reorder_point=base, order_up_to=base, lead_time=tkw["lead_time"][:g].reshape(-1) - 1,
               on_hand=base)
    sh = simulate_network(dem, forest, **skw)
    sd = simulate_network(cp.asarray(dem), forest, **{k: cp.asarray(v) for k, v in skw.items()})
    worst = max(float(np.max(np.abs(cp.asnumpy(sd[k]) - sh[k]) / (1 + np.abs(sh[k])))) for k in sh)
    ok = worst <= 1e-9
    failures += not ok
    rows.append(("simulate_network (float64)", "max rel err", f"{worst:.1e}", "ok" if ok else "MISMATCH"))
    return failures


def _events_median(cp, fn, reps):
    start, stop = cp.cuda.Event(), cp.cuda.Event()
    times = []
    for _ in range(reps):
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(cp.cuda.get_elapsed_time(start, stop))
    return statistics.median(times)


def time_kernels(cp, n, rows, reps=20):
    from replenish.kernels import _cuda

    f = cp.float32
    cp.random.seed(0)
    mu_l = cp.random.random_sample(n, dtype=f) * f(500)
    sd_l = cp.random.random_sample(n, dtype=f) * f(80)
    mu_p = mu_l * f(1.4)
    sd_p = sd_l * f(1.2)
    pos = cp.random.random_sample(n, dtype=f) * f(800)
    scalars = dict(level=f(0.95), lot=f(0.0), moq=f(12.0), pack=f(6.0), cap=f(np.inf))
    outs = [cp.empty(n, dtype=f) for _ in range(4)]
    n_in, n_out = 5, 4
    nbytes = n * 4 * (n_in + n_out)

    kern = _cuda._kernels()[2]

    def fused():
        kern(mu_l, sd_l, mu_p, sd_p, scalars["level"], scalars["lot"], pos, scalars["moq"], scalars["pack"],
             scalars["cap"], *outs)

    def naive():  # the same arithmetic as separate CuPy operations (what xp code does without fusion)
        from cupyx.scipy.special import ndtri

        z = ndtri(cp.full(n, scalars["level"], dtype=f))
        rop = cp.maximum(mu_l + z * sd_l, 0)
        out = cp.maximum(cp.maximum(mu_p + z * sd_p, 0), rop + scalars["lot"])
        ss = rop - mu_l
        need = cp.maximum(cp.where(pos <= rop, out - pos, 0), 0)
        q = cp.where(need > 0, cp.maximum(need, scalars["moq"]), 0)
        q = cp.ceil(q / scalars["pack"]) * scalars["pack"]
        q = cp.where(q < scalars["moq"], 0, q)
        return ss, q

    half = nbytes // 2  # copying `half` bytes reads and writes `nbytes` in total
    src = cp.empty(half, dtype=cp.uint8)
    dst = cp.empty_like(src)

    def copy():
        dst.data.copy_from_device(src.data, half)

    results = {}
    for name, fn in (("device-to-device copy", copy), ("fused policy+order kernel", fused),
                     ("separate CuPy ops", naive)):
        for _ in range(3):
            fn()
        cp.cuda.Device().synchronize()
        ms = _events_median(cp, fn, reps)
        results[name] = ms
    copy_gbs = nbytes / results["device-to-device copy"] / 1e6
    for name, ms in results.items():
        gbs = nbytes / ms / 1e6
        rows.append((f"{name} ({n / 1e6:.0f}M items)", "median ms", f"{ms:.3f}",
                     f"{gbs:,.0f} GB/s = {100 * gbs / copy_gbs:.0f}% of copy"))
    del src, dst, outs, mu_l, sd_l, mu_p, sd_p, pos
    cp.get_default_memory_pool().free_all_blocks()
    return results


def time_plans(cp, rows):
    from replenish.kernels import plan_orders

    free, _ = cp.cuda.runtime.memGetInfo()
    for n, method in ((10_000_000, "normal"), (1_000_000, "sample")):
        need = n * 28 * 7 * 4 * (2 if method == "normal" else 3)
        if need > 0.6 * free:
            rows.append((f"plan_orders {method} {n:,}", "skipped", "-", "not enough device memory"))
            continue
        host = np.random.default_rng(1)
        base = cp.asarray(host.lognormal(1.5, 1.0, n).astype(np.float32))
        shape = cp.asarray(np.maximum(1 + 0.5 * stats.norm.ppf(LEVELS), 0), dtype=cp.float32)
        week = cp.asarray(1 + 0.3 * np.sin(np.arange(28) * 2 * np.pi / 7), dtype=cp.float32)
        q = base[:, None, None] * week[None, :, None] * shape[None, None, :]
        kw = dict(on_hand=base * 10, on_order=0.0, lead_time=cp.asarray(host.integers(1, 22, n).astype(np.float32)),
                  review_period=7.0, unit_cost=5.0, order_cost=5.0, case_pack=6.0)
        plan_orders(LEVELS, q[:10000], **{k: (v[:10000] if hasattr(v, "shape") else v) for k, v in kw.items()},
                    method=method, n_samples=1000)
        cp.cuda.Device().synchronize()
        t = time.perf_counter()
        plan_orders(LEVELS, q, **kw, method=method, n_samples=1000)
        cp.cuda.Device().synchronize()
        dt = time.perf_counter() - t
        label = "x 28 d x 7 q" if method == "normal" else "x 1000 samples x 28 d"
        rows.append((f"plan_orders {method}, {n:,} items {label}", "seconds", f"{dt:.2f}", f"{n / dt:,.0f} items/s"))
        del q, base, kw
        cp.get_default_memory_pool().free_all_blocks()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", type=int, default=100_000_000, help="items for the kernel timing")
    ap.add_argument("--skip-plans", action="store_true", help="skip the end-to-end plan_orders timings")
    args = ap.parse_args(argv)
    cp, device = _cupy()
    rows = []
    status = 0
    if cp is None:
        print(f"CuPy/GPU not available ({device}): skipping the GPU checks; nothing to compare.")
        rows.append(("GPU checks", "skipped", "-", device[:60]))
    else:
        print(f"device: {device}")
        failures = check_correctness(cp, rows)
        if failures:
            status = 1
            print(f"{failures} correctness check(s) FAILED")
        time_kernels(cp, args.items, rows)
        if not args.skip_plans:
            try:
                time_plans(cp, rows)
            except cp.cuda.memory.OutOfMemoryError as exc:
                rows.append(("plan_orders timings", "skipped", "-", f"out of memory: {exc}"[:60]))
    width = max(len(r[0]) for r in rows)
    print()
    print(f"{'check':<{width}}  {'measure':<24}  {'value':>18}  result")
    for name, measure, value, result in rows:
        print(f"{name:<{width}}  {measure:<24}  {value:>18}  {result}")
    return status


if __name__ == "__main__":
    sys.exit(main())

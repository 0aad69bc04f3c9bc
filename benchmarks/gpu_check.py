"""GPU check: the CuPy and CUDA paths against the host paths, then the GPU timings.

    python benchmarks/gpu_check.py [--small] [--seed S] [--items N] [--allow-cpu]

1. Correctness, on fresh random inputs drawn from a printed seed (``--seed`` reruns one):
   every CuPy kernel against NumPy in float32 and float64 (the fused policy and order
   kernels; ``plan_orders`` on the normal and sampling paths, CSL, fill-rate and cost
   targets, fixed, lognormal and discrete lead times; the budget allocation; the two-echelon
   placement; period moments and lead-time demand samples; the inventory simulator and the
   classical policy; the tree placement and the network simulation), then the forecaster: CUDA
   forecasts against CPU forecasts of the same weights (float32, and the default bf16 +
   compiled path within the tolerance the CPU test states), the LSTM and output layer in
   float32 under autocast, and the device-resident shard pipeline (forecast tensor -> DLPack
   -> CuPy kernels), whose orders must equal the CPU pipeline's.
2. Timings: the fused policy kernel against a device-to-device copy on ``--items`` items
   (default 100M, float32; CUDA events, medians), and ``plan_orders`` end to end on the
   device (10M items normal path, 1M sampling path).

Any mismatch exits with status 1, any exception with status 2 (after printing it); the last
line printed is one JSON object with every figure. Without CuPy or a GPU the script fails,
unless ``--allow-cpu`` (implied by ``--small``): the same comparisons then run the fused host
kernels (Numba) against plain NumPy (``REPLENISH_NUMBA=0``), which checks the script itself
on a CPU machine, and the GPU timings are skipped.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import secrets
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LEVELS = np.array([0.02, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.98])


# ---- backends --------------------------------------------------------------------------------
class Device:
    """Where the checked path runs: CuPy on a GPU, or (``--allow-cpu``) the fused host kernels."""

    def __init__(self, cp):
        self.cp = cp
        self.name = "cupy" if cp is not None else "numpy+numba"
        self.reference = "numpy" + ("" if cp is not None else " (REPLENISH_NUMBA=0)")

    def put(self, a):
        if self.cp is None:
            return a if np.isscalar(a) or a is None else np.array(a)
        return a if np.isscalar(a) or a is None else self.cp.asarray(a)

    def get(self, a):
        if self.cp is not None and type(a).__module__.split(".")[0] == "cupy":
            return self.cp.asnumpy(a)
        return np.asarray(a)

    def is_device_array(self, a) -> bool:
        if self.cp is None:
            return isinstance(a, np.ndarray)
        return isinstance(a, self.cp.ndarray)

    @contextlib.contextmanager
    def host_reference(self):
        """The reference runs with the fused host kernels off on a CPU-only check."""
        if self.cp is not None:
            yield
            return
        old = os.environ.get("REPLENISH_NUMBA")
        os.environ["REPLENISH_NUMBA"] = "0"
        try:
            yield
        finally:
            if old is None:
                os.environ.pop("REPLENISH_NUMBA", None)
            else:
                os.environ["REPLENISH_NUMBA"] = old

    def sync(self):
        if self.cp is not None:
            self.cp.cuda.Device().synchronize()


def find_cupy():
    try:
        from replenish.kernels._backend import cupy_module

        cp = cupy_module()
        if cp.cuda.runtime.getDeviceCount() < 1:
            return None, "CuPy sees no CUDA device"
        return cp, cp.cuda.runtime.getDeviceProperties(0)["name"].decode()
    except Exception as exc:  # noqa: BLE001  -- reported: an import or driver failure
        return None, f"{type(exc).__name__}: {exc}"


class Report:
    def __init__(self):
        self.rows: list[dict] = []

    def add(self, name: str, err: float, tol: float, extra: str = "", ok: bool | None = None):
        ok = bool(err <= tol) if ok is None else bool(ok)
        self.rows.append({"check": name, "max_err": float(err), "tol": tol, "ok": ok,
                          "note": extra})
        print(f"  {'ok      ' if ok else 'MISMATCH'} {name:<58} err {err:.2e} (tol {tol:.0e})"
              f"{'  ' + extra if extra else ''}", flush=True)

    @property
    def failures(self) -> int:
        return sum(not r["ok"] for r in self.rows)


def rel_err(got, want) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    both_nan = np.isnan(got) & np.isnan(want)
    if np.any(np.isnan(got) != np.isnan(want)):
        return float("inf")
    d = np.abs(got - want) / (1 + np.abs(want))
    return float(np.max(np.where(both_nan, 0, d), initial=0.0))


# ---- kernels --------------------------------------------------------------------------------
def forecasts(rng, n, horizon, dtype):
    mean = rng.lognormal(1.5, 1.0, (n, 1, 1)) * (1 + 0.3 * np.sin(np.arange(horizon) * 2 * np.pi / 7))[None, :, None]
    sd = rng.uniform(0.2, 0.8, (n, 1, 1)) * mean
    return np.maximum(stats.norm.ppf(LEVELS, mean, sd), 0).astype(dtype)


def near_pack_edge(need, pack, rtol):
    ratio = need / np.where(pack > 0, pack, 1)
    return (pack > 0) & (np.abs(ratio - np.round(ratio)) <= rtol * np.maximum(np.abs(ratio), 1))


def check_kernels(dev: Device, rng, rep: Report, small: bool):
    from replenish.kernels import (allocate_budget, daily_moments, lead_time_demand_moments, normal_policy,
                                   order_quantity, plan_orders, sample_lead_time_demand, two_echelon_placement)

    for dtype in (np.float32, np.float64):
        tag = "f32" if dtype == np.float32 else "f64"
        tight = 2e-5 if dtype == np.float32 else 1e-9
        # fused policy and order kernels
        n = 20_000 if small else 1_000_000
        mu_l, sd_l = rng.uniform(0, 500, n), rng.uniform(0, 80, n)
        mu_p, sd_p = mu_l * rng.uniform(1, 2, n), sd_l * rng.uniform(1, 1.5, n)
        level, lot = rng.uniform(0.5, 0.9999, n), rng.uniform(0, 50, n)
        args = [a.astype(dtype) for a in (mu_l, sd_l, mu_p, sd_p, level, lot)]
        with dev.host_reference():
            host = normal_policy(*args)
        got = normal_policy(*(dev.put(a) for a in args))
        for key in host:
            rep.add(f"normal_policy {tag}: {key}", rel_err(dev.get(got[key]), host[key]), tight)
        pos = rng.uniform(-20, 900, n).astype(dtype)
        moq, pack = rng.uniform(0, 30, n).astype(dtype), rng.choice([0, 1, 6, 12], n).astype(dtype)
        cap = np.where(rng.random(n) < 0.2, 100.0, np.inf).astype(dtype)
        with dev.host_reference():
            qh = order_quantity(pos, host["reorder_point"], host["order_up_to"], moq=moq, case_pack=pack,
                                max_order=cap)
        qd = dev.get(order_quantity(*(dev.put(a) for a in (pos, host["reorder_point"], host["order_up_to"])),
                                    moq=dev.put(moq), case_pack=dev.put(pack), max_order=dev.put(cap)))
        bad = int(np.count_nonzero(qd != qh))
        rep.add(f"order_quantity {tag}: exact", bad, 0, f"{bad} of {n} differ")

        # plan_orders: every path
        n_items = 2_000 if small else 20_000
        horizon = 28
        q = forecasts(rng, n_items, horizon, dtype)
        base = dict(on_hand=rng.uniform(0, 30, n_items) * q[:, 0, 4], on_order=rng.uniform(0, 20, n_items),
                    backorders=rng.uniform(0, 3, n_items), review_period=rng.choice([0.0, 1.0, 7.0], n_items),
                    service_level=rng.uniform(0.8, 0.995, n_items), unit_cost=rng.uniform(1, 50, n_items),
                    holding_cost_rate=0.25, stockout_cost=rng.uniform(1, 20, n_items),
                    order_cost=rng.choice([0.0, 5.0], n_items), moq=6.0, case_pack=rng.choice([0.0, 6.0], n_items),
                    max_order=np.where(rng.random(n_items) < 0.1, 60.0, 1e15))
        leads = {"fixed L": dict(lead_time=rng.uniform(0.5, 21, n_items)),
                 "lognormal L": dict(lead_time=rng.uniform(1, 21, n_items),
                                     lead_time_std=rng.uniform(0, 4, n_items)),
                 "pmf L": dict(lead_time=None, lead_time_pmf=np.array([0.05, 0.2, 0.4, 0.2, 0.1, 0.05]))}
        for method in ("normal", "sample"):
            for target in ("csl", "fill_rate", "cost"):
                for lname, lkw in leads.items():
                    kw = {**base, **lkw, "method": method, "target": target, "n_samples": 500,
                          "seed": int(rng.integers(1 << 30))}
                    kw = {k: (v.astype(dtype) if isinstance(v, np.ndarray) and k != "lead_time_pmf" else v)
                          for k, v in kw.items()}
                    with dev.host_reference():
                        h = plan_orders(LEVELS, q, **kw)
                    d = plan_orders(LEVELS, dev.put(q), **{k: dev.put(v) if isinstance(v, np.ndarray) else v
                                                          for k, v in kw.items()})
                    assert all(dev.is_device_array(v) for v in d.values()), "outputs left the device"
                    tol = (2e-3 if dtype == np.float32 else (1e-6 if method == "normal" else 1e-4))
                    worst, flips = 0.0, 0
                    for key, v in h.items():
                        g = dev.get(d[key])
                        if g.dtype != dtype:
                            raise AssertionError(f"plan_orders {key}: dtype {g.dtype}, expected {dtype}")
                        if key == "order_quantity":
                            # thresholds (order or not, case-pack rounding, the MOQ) may flip where
                            # the inputs sit within rounding of them; elsewhere the quantities agree
                            pos_i = kw["on_hand"] + kw["on_order"] - kw["backorders"]
                            need = h["order_up_to"] - pos_i
                            pack_i = np.broadcast_to(kw["case_pack"], (n_items,))
                            edge = (near_pack_edge(need, pack_i, 1e-4)
                                    | np.isclose(pos_i, h["reorder_point"], rtol=1e-4, atol=1e-3)
                                    | np.isclose(need, kw["moq"], rtol=1e-4, atol=1e-3))
                            far = np.abs(g - v) > tol * (1 + np.abs(v))
                            flips += int(np.count_nonzero(far & ~edge))
                        elif key == "periods_until_order":
                            nan_g, nan_v = np.isnan(g), np.isnan(v)
                            flips += int(np.count_nonzero((nan_g != nan_v)
                                                          | (~nan_g & ~nan_v & (np.abs(g - v) > 0.5))))
                        else:
                            worst = max(worst, rel_err(g, v))
                    rep.add(f"plan_orders {tag} {method}/{target}/{lname}", worst, tol,
                            f"{flips} order/timing flips", ok=worst <= tol and flips <= max(2, n_items // 500))
        # allocation
        n_a = 5_000 if small else 200_000
        grp = rng.integers(0, 50, n_a)
        akw = dict(group=grp, demand_mean=rng.uniform(1, 100, n_a), demand_std=rng.uniform(0.5, 30, n_a),
                   position=rng.uniform(-10, 50, n_a), unit_cost=rng.uniform(1, 20, n_a),
                   stockout_cost=rng.uniform(1, 10, n_a), case_pack=rng.choice([0.0, 4.0], n_a),
                   moq=rng.choice([0.0, 8.0], n_a))
        planned = np.round(rng.uniform(0, 80, n_a)).astype(dtype)
        akw = {k: (v.astype(dtype) if k != "group" else v) for k, v in akw.items()}
        budget = rng.uniform(500, 5000, 50)
        with dev.host_reference():
            ah = allocate_budget(planned, budget=budget, **akw)
        ad = dev.get(allocate_budget(dev.put(planned), budget=dev.put(budget),
                                     **{k: dev.put(v) for k, v in akw.items()}))
        spend = np.bincount(grp, weights=ad * akw["unit_cost"], minlength=50)
        differ = int(np.count_nonzero(np.abs(ad - ah) > 1e-6 * (1 + np.abs(ah))))
        rep.add(f"allocate_budget {tag}", differ, max(2, n_a // 1000),
                f"{differ} items differ; budget holds: {bool((spend <= budget * (1 + 1e-9)).all())}",
                ok=differ <= max(2, n_a // 1000) and bool((spend <= budget * (1 + 1e-9)).all()))
        # two-echelon placement
        g, per = (500, 10) if small else (50_000, 20)
        net = np.repeat(np.arange(g), per)
        m = g * per
        ekw = dict(store_mean=rng.uniform(1, 50, m), store_std=rng.uniform(0.5, 15, m),
                   store_lead_time=rng.integers(0, 5, m).astype(float), store_holding_cost=rng.uniform(0.2, 3, m),
                   store_service_level=rng.uniform(0.9, 0.99, m), store_service_time=(rng.random(m) < 0.25) * 1.0,
                   dc_lead_time=rng.integers(1, 15, g).astype(float), dc_holding_cost=rng.uniform(0.05, 2, g),
                   dc_service_level=0.95)
        ekw = {k: (v.astype(dtype) if isinstance(v, np.ndarray) else v) for k, v in ekw.items()}
        with dev.host_reference():
            eh = two_echelon_placement(net, **ekw)
        ed = two_echelon_placement(dev.put(net), **{k: dev.put(v) for k, v in ekw.items()})
        worst = max(rel_err(dev.get(ed[k]), v) for k, v in eh.items())
        rep.add(f"two_echelon_placement {tag}", worst, 2e-5 if dtype == np.float32 else 1e-9)
        # period moments, lead-time moments, materialised samples
        qm = forecasts(rng, 3_000, 28, dtype)
        lt = rng.uniform(1, 20, 3_000).astype(dtype)
        with dev.host_reference():
            mh = daily_moments(LEVELS, qm)
            lh = lead_time_demand_moments(LEVELS, qm, lt, review_period=7.0)
            sh = sample_lead_time_demand(LEVELS, qm[:500], np.full(500, 5.5, dtype), lead_time_std=1.0,
                                         n_samples=300, seed=3)
        md = daily_moments(LEVELS, dev.put(qm))
        ld = lead_time_demand_moments(LEVELS, dev.put(qm), dev.put(lt), review_period=7.0)
        sd_ = sample_lead_time_demand(LEVELS, dev.put(qm[:500]), dev.put(np.full(500, 5.5, dtype)),
                                      lead_time_std=1.0, n_samples=300, seed=3)
        rep.add(f"daily_moments {tag}", max(rel_err(dev.get(a), b) for a, b in zip(md, mh)), tight * 10)
        rep.add(f"lead_time_demand_moments {tag}", max(rel_err(dev.get(a), b) for a, b in zip(ld, lh)),
                tight * 10)
        rep.add(f"sample_lead_time_demand {tag} (same draws)", rel_err(dev.get(sd_), sh),
                1e-4 if dtype == np.float32 else 1e-9)
        check_simulator(dev, rng, rep, small, dtype)
        check_classical(dev, rng, rep, small, dtype)
    check_network(dev, rng, rep, small)


def check_network(dev: Device, rng, rep: Report, small: bool):
    """Tree placement (RDC -> 5 DCs -> 100 stores) and the coupled network simulation, float64."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from echelon import TREE, tree_networks  # noqa: PLC0415

    from replenish.kernels import simulate_network, tree_placement

    tkw = tree_networks(200 if small else 2_000, seed=int(rng.integers(1 << 30)))
    with dev.host_reference():
        th = tree_placement(TREE, **tkw)
    td = tree_placement(TREE, **{k: dev.put(v) for k, v in tkw.items()})
    rep.add("tree_placement f64", max(rel_err(dev.get(td[k]), v) for k, v in th.items()), 1e-9)
    g = 20
    forest = np.concatenate([np.where(TREE >= 0, TREE + k * len(TREE), -1) for k in range(g)])
    base = th["base_stock"][:g].reshape(-1).round()
    leaf = np.ones(len(forest), bool)
    leaf[forest[forest >= 0]] = False
    dem = np.where(leaf[:, None], rng.poisson(np.maximum(tkw["demand_mean"][:g].reshape(-1), 0)[:, None],
                                              (len(forest), 120)), 0).astype(float)
    skw = dict(reorder_point=base, order_up_to=base, lead_time=tkw["lead_time"][:g].reshape(-1) - 1,
               on_hand=base)
    with dev.host_reference():
        sh = simulate_network(dem, forest, **skw)
    sd = simulate_network(dev.put(dem), forest, **{k: dev.put(v) for k, v in skw.items()})
    rep.add("simulate_network f64", max(rel_err(dev.get(sd[k]), v) for k, v in sh.items()
                                        if isinstance(v, np.ndarray)), 1e-9)


def check_simulator(dev: Device, rng, rep: Report, small: bool, dtype):
    """simulate_inventory on the device against its NumPy period loop (the code CuPy runs) and
    the compiled host loop: the state is float64 and the draws a counter hash, so they agree
    to float64 rounding."""
    from replenish.kernels import simulate_inventory
    from replenish.kernels.simulate import SIM_KEYS

    tag = "f32" if dtype == np.float32 else "f64"
    n, horizon = (300, 60) if small else (20_000, 365)
    demand = rng.poisson(rng.uniform(0.5, 8, (n, 1)), (n, horizon)).astype(dtype)
    seg = np.array([0, horizon // 3, 2 * horizon // 3])
    s = rng.integers(0, 25, (n, 3)).astype(float)
    kw = dict(reorder_point=s, order_up_to=s + rng.integers(0, 20, (n, 3)), segment_start=seg,
              review_period=rng.integers(1, 8, (n, 3)), review_offset=rng.integers(0, 3, (n, 3)),
              moq=rng.choice([0.0, 4.0, 10.0], n), case_pack=rng.choice([0.0, 1.0, 6.0], n),
              max_order=rng.choice([np.inf, 40.0], n), on_hand=rng.integers(0, 30, n).astype(float),
              backorders=rng.integers(0, 2, n) * 3.0, unit_cost=rng.uniform(1, 20, n),
              stockout_cost=rng.uniform(0, 5, n), order_cost=rng.choice([0.0, 3.0], n), seed=7)
    leads = {"fixed L": dict(lead_time=rng.integers(0, 6, n).astype(float)),
             "lognormal L": dict(lead_time=rng.uniform(0.5, 6, n), lead_time_std=rng.uniform(0, 2, n)),
             "pmf L": dict(lead_time_pmf=rng.dirichlet(np.ones(6), n))}
    for (lname, lkw), lost, life in zip(leads.items(), (False, True, False), (None, None, 5)):
        args = {**kw, **lkw, "lost_sales": lost, "shelf_life": life}
        with dev.host_reference():
            ref = simulate_inventory(demand, **args, engine="xp")
        got = simulate_inventory(dev.put(demand), **{k: dev.put(v) if isinstance(v, np.ndarray) else v
                                                      for k, v in args.items()})
        worst = max(rel_err(dev.get(got[k]), ref[k]) for k in SIM_KEYS)
        rep.add(f"simulate_inventory {tag} {lname}{' lost sales' if lost else ''}"
                f"{' shelf life' if life else ''}", worst, 1e-9)


def check_classical(dev: Device, rng, rep: Report, small: bool, dtype):
    from replenish.kernels.classical import classical_policy, forecast_error_std, moving_average_forecast

    tag = "f32" if dtype == np.float32 else "f64"
    n, t = (500, 120) if small else (50_000, 365)
    hist = rng.poisson(rng.uniform(0.5, 20, (n, 1)), (n, t)).astype(dtype)
    hist[rng.random((n, t)) < 0.02] = np.nan      # missing days
    worst = 0.0
    with dev.host_reference():
        fh = moving_average_forecast(hist, 28, window=28, season=7)
        eh = forecast_error_std(hist, window=28, season=7)
    fd = moving_average_forecast(dev.put(hist), 28, window=28, season=7)
    ed = forecast_error_std(dev.put(hist), window=28, season=7)
    worst = max(rel_err(dev.get(fd), fh), rel_err(dev.get(ed), eh))
    prot = rng.uniform(1, 20, n)
    pkw = dict(protection=prot, service_level=rng.uniform(0.8, 0.99, n), review_period=rng.choice([1.0, 7.0], n),
               order_cost=rng.choice([0.0, 5.0], n), holding_cost=rng.uniform(0.01, 0.1, n))
    fh_, eh_ = np.nan_to_num(fh), np.nan_to_num(eh)
    with dev.host_reference():
        ph = classical_policy(fh_, eh_, **pkw)
    pd_ = classical_policy(dev.put(fh_), dev.put(eh_), **{k: dev.put(v) for k, v in pkw.items()})
    worst = max(worst, max(rel_err(dev.get(pd_[k]), v) for k, v in ph.items()))
    rep.add(f"classical forecast, error std, policy {tag}", worst, 1e-9 if dtype == np.float64 else 1e-5)


# ---- forecaster -----------------------------------------------------------------------------
def check_forecaster(dev: Device, rng, rep: Report, small: bool, work: Path):
    """CUDA forecasts vs CPU forecasts of the same weights, precision, device-resident pipeline."""
    import torch

    from replenish.engine import _tft
    from replenish.engine._features import category_luts
    from replenish.engine._sampler import WindowSampler
    from replenish.engine.contract import ColumnMap, InventoryDefaults
    from replenish.engine.forecast import ForecastConfig, TFTForecaster
    from replenish.engine.synth import synth_tables
    from replenish.engine.validate import build_panel, validate_inventory
    from replenish.jobs import _tasks

    cuda = torch.cuda.is_available() and dev.cp is not None
    n_series = 100 if small else 2_000
    hist, inv_tab = synth_tables(n_series, 120 if small else 200, seed=int(rng.integers(1 << 30)))
    cols = ColumnMap(observed=("price", "promo", "holiday", "temperature"), static=("category",))
    panel = build_panel(hist, cols)
    cfg = ForecastConfig(horizon=14, encoder_length=28, hidden_size=16, hidden_continuous_size=8,
                         attention_heads=2, max_steps=10 if small else 120, batch_size=128,
                         val_every=1000, validation=False, device="cpu", seed=int(rng.integers(1000)))
    model = TFTForecaster(cfg).fit(panel)
    path = work / "model"
    model.save(path)
    cpu = TFTForecaster.load(path, device="cpu")
    q_cpu = cpu.predict(panel)
    spread = (q_cpu[..., -1] - q_cpu[..., 0])[..., None] + 1.0
    target = "cuda" if cuda else "cpu"
    fp32 = TFTForecaster.load(path, device=target)
    fp32.config.precision, fp32.config.compile = "32", False
    q32 = fp32.predict(panel)
    rep.add(f"forecasts {target} fp32 eager vs cpu (rel. to spread + 1)", float(np.max(np.abs(q32 - q_cpu) / spread)),
            2e-3)
    default = TFTForecaster.load(path, device=target)   # CUDA: bf16 autocast + compiled regions
    t0 = time.perf_counter()
    qd = default.predict(panel)
    first = time.perf_counter() - t0
    err = np.abs(qd - q_cpu)
    rel99 = float(np.quantile(err / (np.abs(q_cpu) + 1e-3), 0.99))
    rep.add(f"forecasts {target} default ({'bf16+compile' if cuda else 'fp32'}) vs cpu: p99 rel", rel99, 0.015,
            f"first predict {first:.1f} s (compile included)")
    rep.add(f"forecasts {target} default vs cpu: max rel. to spread + 1", float(np.max(err / spread)), 0.02)
    # the precision policy on this device: LSTMs and output layer float32 under autocast, no float16
    m = default.model
    seen: set = set()
    hooks = [mod.register_forward_hook(lambda _m, _a, out: seen.update(
        o.dtype for o in (out if isinstance(out, tuple) else (out,)) if isinstance(o, torch.Tensor)))
        for mod in m.modules()]
    lstm_dtypes: set = set()
    run_lstms = _tft.run_lstms

    def recorded(*a, **k):
        out = run_lstms(*a, **k)
        lstm_dtypes.update(o.dtype for o in out)
        return out

    _tft.run_lstms = recorded
    try:
        eager = _tft.Runner(m, default.spec.target_transform, torch.device(target),
                            torch.bfloat16 if cuda else None)
        sampler = WindowSampler(default.spec, panel, torch.device(target))
        x = sampler.windows(torch.arange(64, device=target) % panel.n_series,
                            torch.full((64,), 100, device=target), torch.full((64,), 28, device=target), 28,
                            luts=category_luts(default.spec, target))
        with torch.no_grad():
            out_dtype = eager.forward(x, True).dtype
    finally:
        _tft.run_lstms = run_lstms
        for h in hooks:
            h.remove()
    ok = lstm_dtypes == {torch.float32} and torch.float16 not in seen and out_dtype == torch.float32
    rep.add("precision: LSTM fp32, no fp16 anywhere, fp32 output", 0.0 if ok else 1.0, 0.0,
            f"LSTM {sorted(map(str, lstm_dtypes))}, seen {sorted(map(str, seen))}", ok=ok)
    # the device-resident shard pipeline: forecast tensor -> DLPack -> kernels, on both devices
    inv = validate_inventory(inv_tab, panel, cols, InventoryDefaults())
    spec = {"target": "csl", "method": "sample", "n_samples": 100 if small else 400, "seed": 1, "forecast": {}}
    prep = {"panel": panel, "inv": inv, "inv_tab": inv_tab, "dc_days": None, "accuracy": None}
    results = {}
    for device in ("cpu", target):
        spec["forecast"] = {"device": device}
        _tasks._MODEL_CACHE.clear()
        results[device] = _tasks.compute_shard(prep, spec, str(path), ("forecast", "optimize"))
    want = {"forecast": f"torch:{target}", "optimize": "cupy" if cuda else "numpy"}
    got = results[target]["backend"]
    rep.add("shard pipeline backend record", 0.0 if got == want else 1.0, 0.0, json.dumps(got), ok=got == want)
    a, b = results[target]["tables"]["orders"], results["cpu"]["tables"]["orders"]
    worst = max(rel_err(a.column(c).to_numpy(), b.column(c).to_numpy())
                for c in ("protection_demand_mean", "protection_demand_std"))
    # the default device path forecasts in bf16: orders agree to the forecasts' tolerance
    rep.add(f"shard pipeline {target} vs cpu: demand moments", worst, 0.05 if cuda else 1e-6)


# ---- timings --------------------------------------------------------------------------------
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


def time_policy_kernel(cp, n, reps=20) -> dict:
    """The fused policy + order kernel, separate CuPy operations and a device copy on n items."""
    from replenish.kernels import _cuda

    f = cp.float32
    cp.random.seed(0)
    mu_l = cp.random.random_sample(n, dtype=f) * f(500)
    sd_l = cp.random.random_sample(n, dtype=f) * f(80)
    mu_p = mu_l * f(1.4)
    sd_p = sd_l * f(1.2)
    pos = cp.random.random_sample(n, dtype=f) * f(800)
    level, lot, moq, pack, cap = (cp.asarray(v, dtype=f) for v in (0.95, 0.0, 12.0, 6.0, np.inf))
    outs = [cp.empty(n, dtype=f) for _ in range(4)]
    nbytes = n * 4 * (5 + 4)        # each (n,) input read once, each output written once
    kern = _cuda._kernels()[2]

    def fused():
        kern(mu_l, sd_l, mu_p, sd_p, level, lot, pos, moq, pack, cap, *outs)

    def separate():
        from cupyx.scipy.special import ndtri
        z = ndtri(cp.full(n, 0.95, dtype=f))
        rop = cp.maximum(mu_l + z * sd_l, 0)
        out = cp.maximum(cp.maximum(mu_p + z * sd_p, 0), rop)
        need = cp.maximum(cp.where(pos <= rop, out - pos, 0), 0)
        q = cp.where(need > 0, cp.maximum(need, 12.0), 0)
        return rop - mu_l, cp.ceil(q / 6.0) * 6.0

    half = nbytes // 2
    src, dst = cp.empty(half, dtype=cp.uint8), cp.empty(half, dtype=cp.uint8)

    def copy():
        dst.data.copy_from_device(src.data, half)

    res = {}
    for name, fn in (("copy", copy), ("fused", fused), ("separate", separate)):
        for _ in range(3):
            fn()
        cp.cuda.Device().synchronize()
        ms = _events_median(cp, fn, reps)
        res[name] = {"ms": round(ms, 3), "GB_per_s": round(nbytes / ms / 1e6, 1)}
    res["fused_share_of_copy_bandwidth"] = round(res["fused"]["GB_per_s"] / res["copy"]["GB_per_s"], 3)
    res["items"] = n
    del src, dst, outs, mu_l, sd_l, mu_p, sd_p, pos
    cp.get_default_memory_pool().free_all_blocks()
    return res


def time_plans(dev: Device, sizes) -> dict:
    from replenish.kernels import plan_orders

    out = {}
    host = np.random.default_rng(1)
    for n, method in sizes:
        base = host.lognormal(1.5, 1.0, n).astype(np.float32)
        shape = np.maximum(1 + 0.5 * stats.norm.ppf(LEVELS), 0).astype(np.float32)
        week = (1 + 0.3 * np.sin(np.arange(28) * 2 * np.pi / 7)).astype(np.float32)
        q = dev.put(base[:, None, None] * week[None, :, None] * shape[None, None, :])
        kw = dict(on_hand=dev.put(base * 10), on_order=0.0,
                  lead_time=dev.put(host.integers(1, 22, n).astype(np.float32)), review_period=7.0,
                  unit_cost=5.0, order_cost=5.0, case_pack=6.0, method=method, n_samples=1000)
        plan_orders(LEVELS, q[:1000], **{k: (v[:1000] if hasattr(v, "shape") else v) for k, v in kw.items()})
        dev.sync()
        t = time.perf_counter()
        plan_orders(LEVELS, q, **kw)
        dev.sync()
        s = time.perf_counter() - t
        out[f"{method}_{n}"] = {"seconds": round(s, 3), "items_per_s": round(n / s)}
        print(f"  plan_orders {method} {n:,} items: {s:.2f} s ({n / s:,.0f} items/s)", flush=True)
        del q, kw
        if dev.cp is not None:
            dev.cp.get_default_memory_pool().free_all_blocks()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", action="store_true", help="tiny sizes (checks the script on a CPU)")
    ap.add_argument("--seed", type=int, default=None, help="seed of the random inputs (default: fresh)")
    ap.add_argument("--items", type=int, default=None, help="items for the kernel timing (default 100M)")
    ap.add_argument("--allow-cpu", action="store_true", help="run without CuPy/GPU (host vs host)")
    ap.add_argument("--skip-timings", action="store_true")
    ap.add_argument("--skip-forecaster", action="store_true", help="kernels only")
    a = ap.parse_args(argv)
    seed = a.seed if a.seed is not None else secrets.randbits(31)
    print(f"seed: {seed} (rerun the same inputs with --seed {seed})", flush=True)
    out = {"check": "gpu_check", "seed": seed, "small": a.small, "date": time.strftime("%Y-%m-%d"),
           "machine": f"{platform.machine()} {os.cpu_count()} cores", "status": "error"}
    rep = Report()
    t_start = time.perf_counter()
    try:
        cp, device = find_cupy()
        if cp is None and not (a.allow_cpu or a.small):
            raise RuntimeError(f"no CuPy GPU ({device}); --allow-cpu runs the host-vs-host check")
        dev = Device(cp)
        out.update(device=device if cp is not None else "cpu", checked=dev.name, reference=dev.reference)
        print(f"checked path: {dev.name} on {out['device']}; reference: {dev.reference}", flush=True)
        rng = np.random.default_rng(seed)
        t = time.perf_counter()
        print("kernels:", flush=True)
        check_kernels(dev, rng, rep, a.small)
        out["kernels_s"] = round(time.perf_counter() - t, 1)
        if not a.skip_forecaster:
            t = time.perf_counter()
            print("forecaster:", flush=True)
            with tempfile.TemporaryDirectory(prefix="replenish-gpu-check-") as work:
                check_forecaster(dev, rng, rep, a.small, Path(work))
            out["forecaster_s"] = round(time.perf_counter() - t, 1)
        out["checks"], out["failures"] = rep.rows, rep.failures
        if not a.skip_timings:
            print("timings:", flush=True)
            timings = {}
            if cp is not None:
                timings["policy_kernel"] = time_policy_kernel(cp, a.items or (2_000_000 if a.small else 100_000_000))
                pk = timings["policy_kernel"]
                print(f"  fused policy kernel {pk['items']:,} items: {pk['fused']['ms']} ms, "
                      f"{pk['fused']['GB_per_s']} GB/s = {100 * pk['fused_share_of_copy_bandwidth']:.0f}% of the "
                      f"device copy ({pk['copy']['GB_per_s']} GB/s); separate CuPy ops {pk['separate']['ms']} ms",
                      flush=True)
            sizes = ((20_000, "normal"), (5_000, "sample")) if a.small else \
                ((10_000_000, "normal"), (1_000_000, "sample"))
            timings["plan_orders"] = time_plans(dev, sizes)
            out["timings"] = timings
        out["status"] = "ok" if rep.failures == 0 else "mismatch"
        code = 0 if rep.failures == 0 else 1
    except Exception as exc:  # noqa: BLE001  -- reported, then a non-zero exit
        traceback.print_exc()
        out.update(error=f"{type(exc).__name__}: {exc}", checks=rep.rows, failures=rep.failures)
        code = 2
    out["seconds"] = round(time.perf_counter() - t_start, 1)
    print(f"{rep.failures} mismatch(es) in {len(rep.rows)} checks; status {out['status']}; seed {seed}", flush=True)
    print(json.dumps(out, default=str))
    return code


if __name__ == "__main__":
    sys.exit(main())

"""Multi-echelon placement in simulation: store service and stock value, optimized vs levels alone.

    python benchmarks/network_service.py [--quick]

Two networks on synthetic demand, each for G SKUs (one network per SKU):

* two levels: supplier -> 1 DC (7 days) -> 10 stores (2 days);
* three levels: supplier -> 1 RDC (10 days) -> 3 DCs (3 days) -> 4 stores each (2 days).

Store demand per day is gamma-Poisson (negative binomial), mean 2-15 units, variance twice
the mean, independent across days and stores. Unit values grow down the chain (RDC 6, DC 8,
store 10; holding 25% a year). Every node reviews daily, so its replenishment time in the
guaranteed-service model is its lead time + 1 day, and runs a base-stock policy (order up to
its base stock on its installation position). Each node's base stock is the quantile of its
demand over its net lead time at its service level (stores 0.95, DCs 0.99), from that
demand's exact distribution (negative binomial); the net lead times come two ways:

* **optimized**: ``replenish.kernels.tree_placement`` (Graves-Willems on the tree, on the
  demand's moments);
* **levels alone**: every node quotes 0 days and covers its own replenishment time (each
  store as if its DC always delivered in time, each DC as if it served at once).

SKUs differ as in an assortment: each is carried by a random share of the stores, with its
own lead times and values (see ``instance``).

Both are simulated coupled (``replenish.kernels.simulate_network``: store orders are the
DC's demand, a DC out of stock delays its stores) over the same demand paths. Printed: the
stores' realised cycle service level and fill rate at the nominal input (0.95 everywhere),
then, for each way, the input that brings the stores' realised cycle service level to the
target (bisection) and the safety-stock value (currency) and average stock on hand value
there: the comparison "at the same store service". The last line is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy.special import ndtr
from scipy.stats import nbinom

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kernels_throughput import machine  # noqa: E402

from replenish.kernels import simulate_network, simulation_totals, tree_placement  # noqa: E402

TARGET = 0.95      # stores' cycle service level
INNER = 0.99       # service level of the DCs' own stock (both ways)
RATE = 0.25 / 365


def instance(levels: int, g: int, days: int, seed: int):
    """G SKU networks of one shape, SKUs differing as in a real assortment.

    Returns parent (N,), lead time days (G, N), unit cost (G, N), store demand mean and std
    per day (G, N), demand paths (G, N, days) and the leaf mask (N,).
    """
    rng = np.random.default_rng(seed)
    if levels == 2:
        parent = np.array([-1] + [0] * 10)
        lead = np.concatenate([rng.integers(1, 11, (g, 1)), rng.integers(1, 4, (g, 10))], axis=1)
        value = np.concatenate([rng.uniform(0.75, 1.0, (g, 1)), np.ones((g, 10))], axis=1)
    else:
        parent = np.array([-1, 0, 0, 0] + [1 + i // 4 for i in range(12)])
        lead = np.concatenate([rng.integers(7, 22, (g, 1)), rng.integers(1, 5, (g, 3)),
                               rng.integers(1, 4, (g, 12))], axis=1)
        value = np.concatenate([rng.uniform(0.6, 0.9, (g, 1)), rng.uniform(0.8, 1.0, (g, 3)),
                                np.ones((g, 12))], axis=1)
    n = len(parent)
    leaf = np.ones(n, bool)
    leaf[parent[parent >= 0]] = False
    cost = 10.0 * value                                   # store value 10, less upstream
    carried = rng.random((g, n)) < rng.uniform(0.1, 1.0, (g, 1))   # stores carrying the SKU
    mean = np.where(leaf & carried, rng.uniform(2, 15, (g, n)), 0.0)
    # gamma-Poisson with variance 2 * mean: gamma shape = mean, scale 1
    lam = rng.gamma(np.maximum(mean, 1e-9)[..., None], 1.0, (g, n, days))
    path = np.where((mean > 0)[..., None], rng.poisson(lam), 0).astype(float)
    return parent, lead.astype(float), cost, mean, np.sqrt(2 * mean), path, leaf


def base_stocks(parent, lead, cost, mean, std, leaf, store_level, optimized: bool):
    """Base stock, safety stock and service time of every node, (G, N) each.

    Where to hold stock comes from the placement (moments); how much, from the demand's own
    distribution over each node's net lead time: the sum of independent gamma-Poisson days
    and stores is negative binomial (r = net lead time x mean, p = 1/2), whose quantile at
    the node's service level is its base stock (the job does the same with sample paths).
    """
    T = lead + 1.0      # daily review adds a day to every replenishment time
    level = np.broadcast_to(np.where(leaf, store_level, INNER), mean.shape)
    res = tree_placement(parent, demand_mean=mean, demand_std=std, lead_time=T,
                         holding_cost=cost * RATE, service_level=level)
    nlt = res["net_lead_time"] if optimized else T
    expected = res["demand_mean"] * nlt
    base = np.where(expected > 0, nbinom.ppf(level, np.maximum(expected, 1e-12), 0.5), 0.0)
    s_out = res["service_time"] if optimized else np.zeros_like(T)
    return base, base - expected, s_out


def simulate(parent, lead, cost, path, base):
    g, n, days = path.shape
    forest = np.concatenate([np.where(parent >= 0, parent + k * n, -1) for k in range(g)])
    b = base.reshape(-1)
    return simulate_network(path.reshape(g * n, days), forest, reorder_point=b, order_up_to=b,
                            lead_time=lead.reshape(-1), on_hand=b, unit_cost=cost.reshape(-1),
                            holding_cost_rate=0.25)


def measure(parent, lead, cost, path, mean, base):
    res = simulate(parent, lead, cost, path, base)
    stores = (mean > 0).reshape(-1)
    tot = simulation_totals({k: v[stores] for k, v in res.items()})
    value = float((res["on_hand_sum"][:, 0] * cost.reshape(-1)).sum() / path.shape[2])
    return {"store_cycle_service_level": float(tot["cycle_service_level"]),
            "store_fill_rate": float(tot["fill_rate"]), "avg_on_hand_value": value}


def calibrate(inst, optimized: bool, iters: int):
    """The stores' service-level input whose stores realise the target, by bisection on z."""
    parent, lead, cost, mean, std, path, leaf = inst
    lo, hi = 0.5, 4.5
    best = None
    for _ in range(iters):
        z = (lo + hi) / 2
        base, ss, s_out = base_stocks(parent, lead, cost, mean, std, leaf, float(ndtr(z)), optimized)
        m = measure(parent, lead, cost, path, mean, base)
        if m["store_cycle_service_level"] >= TARGET:
            hi = z
            best = (z, base, ss, s_out, m)
        else:
            lo = z
    if best is None:
        raise RuntimeError("target not reached at z = 4.5")
    z, base, ss, s_out, m = best
    return {"store_service_level_input": round(float(ndtr(z)), 5),
            "safety_stock_value": float((ss * cost).sum()), **m}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--skus", type=int, default=None)
    ap.add_argument("--days", type=int, default=None)
    a = ap.parse_args()
    g = a.skus or (40 if a.quick else 300)
    days = a.days or (200 if a.quick else 730)
    iters = 6 if a.quick else 12
    info = machine()
    print(f"machine: {info}")
    out = {"benchmark": "network_service", "quick": a.quick, "machine": info, "skus": g, "days": days,
           "target_store_cycle_service_level": TARGET, "networks": {}}
    for levels in (2, 3):
        t0 = time.perf_counter()
        inst = instance(levels, g, days, seed=levels)
        parent, lead, cost, mean, std, path, leaf = inst
        row = {}
        for name, opt in (("optimized", True), ("levels_alone", False)):
            base, ss, s_out = base_stocks(parent, lead, cost, mean, std, leaf, TARGET, opt)
            nominal = measure(parent, lead, cost, path, mean, base)
            held = ((s_out == 0) & (ss > 0))[:, ~leaf]
            row[name] = {"nominal": {"safety_stock_value": float((ss * cost).sum()),
                                     "share_of_dcs_holding_stock": round(float(held.mean()), 4),
                                     **nominal},
                         "at_target": calibrate(inst, opt, iters)}
        ratio = (row["optimized"]["at_target"]["safety_stock_value"]
                 / row["levels_alone"]["at_target"]["safety_stock_value"])
        row["safety_stock_value_ratio_optimized_vs_alone"] = round(ratio, 4)
        row["seconds"] = round(time.perf_counter() - t0, 1)
        out["networks"][f"{levels}_levels"] = row
        for name in ("optimized", "levels_alone"):
            nm, at = row[name]["nominal"], row[name]["at_target"]
            print(f"{levels} levels, {name:12s}: stores 0.95, DCs {INNER} -> store CSL "
                  f"{nm['store_cycle_service_level']:.4f} fill {nm['store_fill_rate']:.4f}, SS value "
                  f"{nm['safety_stock_value']:,.0f} (DCs holding stock {nm['share_of_dcs_holding_stock']:.0%}); "
                  f"at store CSL >= {TARGET}: stores' input {at['store_service_level_input']:.4f}, CSL "
                  f"{at['store_cycle_service_level']:.4f}, SS value {at['safety_stock_value']:,.0f}, "
                  f"on hand value {at['avg_on_hand_value']:,.0f}")
        print(f"{levels} levels: safety-stock value optimized / levels alone at the same store "
              f"service = {ratio:.3f} ({row['seconds']} s)")
    print(json.dumps(out))


if __name__ == "__main__":
    main()

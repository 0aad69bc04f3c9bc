"""Multi-echelon safety-stock placement: our batch kernels against stockpyl's Graves-Willems DP.

    python benchmarks/echelon.py [--quick]

Two parts, each against stockpyl measured in the same run: two echelons (a DC and its
stores) and trees (a regional DC, 5 DCs and 100 stores per SKU network).

Networks of one SKU at one DC with 20 stores each (integer lead times: DC 1-14 days, stores
0-4 days; stores serve off the shelf, a quarter of them may take 1 day). Measures, in one run:

* ``replenish.kernels.two_echelon_placement`` on G networks in one call (NumPy; CuPy when
  given device arrays), networks/s, median of 3;
* stockpyl 1.0.2 ``gsm_tree.optimize_committed_service_times``, one call per network (it
  has no batch mode), timed on a sample of networks and EXTRAPOLATED linearly to G;
* that both give the same optimal cost on the sampled networks.

Trees: ``replenish.kernels.tree_placement`` on G SKU networks of one shape (1 RDC -> 5 DCs
-> 20 stores each, 106 nodes; lead times RDC 7-21 days, DCs 1-5, stores 1-3, all + 1 day of
review; holding costs rising down the chain) in one call, median of 3 (1 with G = 100,000),
against ``stockpyl.gsm_tree.optimize_committed_service_times`` per network, timed on a
sample of networks and EXTRAPOLATED linearly to G, the optimal costs compared on the sample.

The last line printed is one JSON object with every figure.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import norm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kernels_throughput import machine  # noqa: E402

from replenish.kernels import tree_placement, two_echelon_placement  # noqa: E402

STORES = 20
TREE = np.array([-1] + [0] * 5 + [1 + i // 20 for i in range(100)])   # RDC, 5 DCs, 100 stores


def tree_networks(g: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    n = len(TREE)
    leaf = np.ones(n, bool)
    leaf[TREE[TREE >= 0]] = False
    root = TREE < 0
    lead = np.where(root, rng.integers(7, 22, (g, n)),
                    np.where(leaf, rng.integers(1, 4, (g, n)), rng.integers(1, 6, (g, n)))) + 1.0
    return dict(demand_mean=np.where(leaf, rng.uniform(1, 30, (g, n)), 0.0),
                demand_std=np.where(leaf, rng.uniform(0.5, 10, (g, n)), 0.0), lead_time=lead,
                holding_cost=np.where(leaf, rng.uniform(0.02, 0.05, (g, n)),
                                      np.where(root, rng.uniform(0.01, 0.03, (g, n)),
                                               rng.uniform(0.015, 0.04, (g, n)))),
                service_level=np.where(leaf, rng.uniform(0.9, 0.99, (g, n)), 0.99))


def stockpyl_tree(kw: dict, j: int) -> float:
    from stockpyl.demand_source import DemandSource
    from stockpyl.gsm_tree import optimize_committed_service_times
    from stockpyl.supply_chain_network import SupplyChainNetwork
    from stockpyl.supply_chain_node import SupplyChainNode
    tree = SupplyChainNetwork()
    for i in range(len(TREE)):
        nd = SupplyChainNode(index=i + 1)
        nd.processing_time, nd.local_holding_cost = int(kw["lead_time"][j, i]), kw["holding_cost"][j, i]
        nd.demand_bound_constant = norm.ppf(kw["service_level"][j, i])
        nd.external_inbound_cst = 0 if TREE[i] < 0 else None
        sd = kw["demand_std"][j, i]
        nd.external_outbound_cst = 0 if sd > 0 else None
        nd.demand_source = DemandSource(type="N", mean=kw["demand_mean"][j, i], standard_deviation=sd) \
            if sd > 0 else DemandSource(type=None)
        tree.add_node(nd)
    for i in np.flatnonzero(TREE >= 0):
        tree.add_edge(int(TREE[i]) + 1, int(i) + 1)
    return optimize_committed_service_times(tree)[1]


def trees(quick: bool, n_ref: int) -> dict:
    kw = tree_networks(n_ref, seed=1)
    t = time.perf_counter()
    ref = np.array([stockpyl_tree(kw, j) for j in range(n_ref)])
    per_call = (time.perf_counter() - t) / n_ref
    ours = tree_placement(TREE, **kw)["holding_cost"]
    gap = float(np.max(np.abs(ours - ref) / ref))
    print(f"trees: stockpyl GSM DP {per_call:.2f} s per network of {len(TREE)} nodes ({n_ref} timed); "
          f"largest relative cost difference to ours {gap:.2e}")
    rows = []
    for g in ([10_000] if quick else [10_000, 100_000]):
        kw = tree_networks(g)
        tree_placement(TREE, **{k: v[:10] for k, v in kw.items()})    # warm-up
        times = []
        for _ in range(1 if g >= 100_000 else 3):
            t = time.perf_counter()
            tree_placement(TREE, **kw)
            times.append(time.perf_counter() - t)
        sec = statistics.median(times)
        ratio = per_call * g / sec
        rows.append({"networks": g, "nodes": g * len(TREE), "seconds": round(sec, 3),
                     "networks_per_s": round(g / sec), "stockpyl_seconds_extrapolated": round(per_call * g),
                     "ratio_vs_stockpyl": round(ratio)})
        print(f"trees: {g:>9,} networks ({g * len(TREE):>11,} nodes): ours {sec:8.2f} s, "
              f"stockpyl {per_call * g:12,.0f} s (extrapolated from {n_ref}) -> x{ratio:,.0f}")
        del kw
    return {"stockpyl_s_per_network": round(per_call, 3), "sample": n_ref,
            "max_relative_cost_difference": gap, "rows": rows}


def networks(g: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    n = g * STORES
    net = np.repeat(np.arange(g), STORES)
    kw = dict(store_mean=rng.uniform(1, 50, n), store_std=rng.uniform(0.5, 15, n),
              store_lead_time=rng.integers(0, 5, n).astype(float),
              store_holding_cost=rng.uniform(0.2, 3, n),
              store_service_level=rng.uniform(0.9, 0.99, n),
              store_service_time=(rng.random(n) < 0.25).astype(float),
              dc_lead_time=rng.integers(1, 15, g).astype(float),
              dc_holding_cost=rng.uniform(0.05, 2, g), dc_service_level=np.full(g, 0.95))
    return net, kw


def stockpyl_one(net, kw, j):
    from stockpyl.demand_source import DemandSource
    from stockpyl.gsm_tree import optimize_committed_service_times
    from stockpyl.supply_chain_network import SupplyChainNetwork
    from stockpyl.supply_chain_node import SupplyChainNode
    tree = SupplyChainNetwork()
    dc = SupplyChainNode(index=0)
    dc.processing_time, dc.local_holding_cost = int(kw["dc_lead_time"][j]), kw["dc_holding_cost"][j]
    dc.external_inbound_cst, dc.demand_bound_constant = 0, norm.ppf(kw["dc_service_level"][j])
    dc.demand_source = DemandSource(type=None)
    tree.add_node(dc)
    for k, i in enumerate(np.flatnonzero(net == j)):
        st = SupplyChainNode(index=k + 1)
        st.processing_time, st.local_holding_cost = int(kw["store_lead_time"][i]), kw["store_holding_cost"][i]
        st.external_outbound_cst = int(kw["store_service_time"][i])
        st.demand_bound_constant = norm.ppf(kw["store_service_level"][i])
        st.demand_source = DemandSource(type="N", mean=kw["store_mean"][i],
                                        standard_deviation=kw["store_std"][i])
        tree.add_node(st)
        tree.add_edge(0, k + 1)
    return optimize_committed_service_times(tree)[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--sample", type=int, default=None, help="networks timed with stockpyl")
    ap.add_argument("--tree-sample", type=int, default=None, help="tree networks timed with stockpyl")
    a = ap.parse_args()
    sizes = [10_000] if a.quick else [10_000, 100_000, 1_000_000]
    n_ref = a.sample or (5 if a.quick else 20)
    info = machine()
    print(f"machine: {info}")
    net, kw = networks(n_ref, seed=1)
    t = time.perf_counter()
    ref = [stockpyl_one(net, kw, j) for j in range(n_ref)]
    per_call = (time.perf_counter() - t) / n_ref
    ours = two_echelon_placement(net, **kw)["holding_cost"]
    gap = float(np.max(np.abs(ours - np.array(ref)) / np.array(ref)))
    print(f"stockpyl GSM DP: {per_call * 1e3:.1f} ms per network of {STORES} stores "
          f"({n_ref} timed); largest relative cost difference to ours {gap:.2e}")
    rows = []
    for g in sizes:
        net, kw = networks(g)
        two_echelon_placement(net[:STORES], **{k: v[:STORES] if len(v) == len(net) else v[:1]
                                                for k, v in kw.items()})     # warm-up
        times = []
        for _ in range(3):
            t = time.perf_counter()
            two_echelon_placement(net, n_networks=g, **kw)
            times.append(time.perf_counter() - t)
        sec = statistics.median(times)
        ratio = per_call * g / sec
        rows.append({"networks": g, "stores": g * STORES, "seconds": round(sec, 4),
                     "networks_per_s": round(g / sec), "stockpyl_seconds_extrapolated": round(per_call * g, 1),
                     "ratio_vs_stockpyl": round(ratio)})
        print(f"{g:>9,} networks ({g * STORES:>10,} stores): ours {sec:8.3f} s, "
              f"stockpyl {per_call * g:10.1f} s (extrapolated) -> x{ratio:,.0f}")
    tree_res = trees(a.quick, a.tree_sample or (2 if a.quick else 5))
    print(json.dumps({"benchmark": "echelon", "quick": a.quick, "machine": info,
                      "stockpyl_ms_per_network": round(per_call * 1e3, 2),
                      "max_relative_cost_difference": gap, "rows": rows, "trees": tree_res}))


if __name__ == "__main__":
    main()

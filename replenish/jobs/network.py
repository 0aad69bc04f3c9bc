"""The whole chain in one job: ``replenish plan --network N [--dc-inventory D]``.

The plan job then runs in four steps (the first and third on the cluster, shard by shard):

1. **forecast** every store (SKU-location) of the history, as without ``--network``;
2. **place** safety stock over each SKU's network (:func:`replenish.kernels.tree_placement`,
   all SKUs of one network shape in one call), from the stores' forecasts (daily demand mean
   and standard deviation, stores independent) and the replenishment times, holding costs
   and service levels of the network table, the store inventory and the DC inventory; the
   placement is written to ``OUT/network.parquet``;
3. **optimize** the stores: each store's lead time grows by the service time its DC commits
   to (as ``--echelon`` does); ``OUT/orders``;
4. **order for the DCs**: every node with a DC inventory row orders up to its echelon base
   stock (its own base stock plus those of every node below it, the stores' order-up-to
   levels) from its echelon inventory position (its own position plus those of every node
   below it); ``OUT/dc_orders``, the store orders' columns plus the node's ``level``,
   ``parent`` and placement.

A DC's own base stock covers its net lead time: the demand of all the stores below it over
the first ``net lead time`` days of their forecasts, from aggregated sample paths (every
store and day drawn on its own, :func:`replenish.kernels.node_demand_samples`; ``--method
sample``) or from its moments (stores and days independent, normal;
``--method normal``), at the node's service level.

Times in days, stock in units, holding costs in currency per unit per day.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ..engine.contract import DataError
from ..engine.io import write_parquet_atomic
from ..engine.panel import FREQ_STEP_DAYS
from ..engine.validate import key_text
from ..kernels import (node_demand_moments, node_demand_samples, order_quantity, subtree_sums,
                       tree_placement)
from ..kernels._tree import tree_structure
from ._network_tables import _examples, load_dc_inventory, load_network

__all__ = ["check_network_inputs", "check_store_locations", "run_network_job", "place_network",
           "dc_order_table"]

log = logging.getLogger("replenish")


def _say(msg: str) -> None:
    import sys
    print(f"[replenish] {msg}", file=sys.stderr, flush=True)


def check_network_inputs(cfg) -> tuple[Any, Any]:
    """Read and check ``cfg.network`` and ``cfg.dc_inventory`` (before any work)."""
    net = load_network(cfg.network, cfg.columns.sku)
    dc = load_dc_inventory(cfg.dc_inventory, cfg.columns.sku, cfg.columns.location) \
        if cfg.dc_inventory is not None else None
    return net, dc


def check_store_locations(net, locations) -> None:
    """The planned locations (text ids) against a network table without a sku column: each is
    a node, has a parent (its DC) and supplies no other node. Checked after staging, before
    training; per-SKU networks are checked per SKU in :func:`place_network`."""
    if net.per_sku:
        return
    f = net.frame
    locs = np.asarray(sorted(set(locations)), object)
    known = set(f["node_key"])
    lost = [x for x in locs if x not in known]
    if lost:
        raise DataError(f"network: rule 'every planned location is a node of the network' broken "
                        f"by {len(lost)} locations{_examples(lost)}")
    roots = set(f.loc[f["parent_key"].isna(), "node_key"])
    bad = [x for x in locs if x in roots]
    if bad:
        raise DataError(f"network: rule 'every store has a DC (a parent)' broken by {len(bad)} "
                        f"locations{_examples(bad)}")
    parents = set(f["parent_key"].dropna())
    bad = [x for x in locs if x in parents]
    if bad:
        raise DataError(f"network: rule 'a store supplies no other node' broken by {len(bad)} "
                        f"locations{_examples(bad)}")


# ---- the placement ---------------------------------------------------------------------

def _gather_stores(parts: list[dict[str, Any]]) -> dict[str, Any]:
    parts = [p for p in parts if p is not None]
    if not parts:
        raise DataError("network: no planned SKU-locations")
    out = {"levels": parts[0]["levels"], "freq": parts[0]["freq"]}
    for k in parts[0]:
        if k in ("levels", "freq"):
            continue
        out[k] = np.concatenate([np.asarray(p[k]) for p in parts])
    out["sku_key"] = key_text(out["sku"])
    out["loc_key"] = key_text(out["location"])
    return out


class _Forest:
    """Every SKU's network as one forest of (sku, node) rows, grouped by network shape."""

    def __init__(self, net, skus_key: np.ndarray, sku_values: np.ndarray):
        rows_sku, rows_node, rows_net, parent, shapes = [], [], [], [], []
        if not net.per_sku:
            groups = [(None, net.frame, skus_key)]
        else:
            by = dict(net.groups())
            lacking = [s for s in skus_key if s not in by]
            if lacking:
                raise DataError(f"network: rule 'every planned SKU has its network (rows with "
                                f"its sku)' broken by {len(lacking)} SKUs{_examples(lacking)}")
            groups = [(s, by[s], np.array([s], object)) for s in skus_key]
        # SKUs whose networks have one shape share one call of the kernel
        sig: dict[tuple, int] = {}
        start = 0
        for _, g, skus in groups:
            g = g.sort_values("node_key")
            keys = g["node_key"].to_numpy(object)
            at = {k: i for i, k in enumerate(keys)}
            par = np.array([-1 if p is None else at[p] for p in g["parent_key"]], np.int64)
            key = (tuple(keys), tuple(par.tolist()))
            n = len(keys)
            for s in skus:
                if key not in sig:
                    sig[key] = len(shapes)
                    shapes.append({"parent": par, "rows": []})
                k = sig[key]
                shapes[k]["rows"].append(np.arange(start, start + n))
                rows_sku.append(np.full(n, s, object))
                rows_node.append(keys)
                rows_net.append(g["row"].to_numpy())
                parent.append(np.where(par >= 0, par + start, -1))
                start += n
        self.sku_key = np.concatenate(rows_sku)
        self.node_key = np.concatenate(rows_node)
        self.net_row = np.concatenate(rows_net)
        self.parent = np.concatenate(parent)
        self.shapes = [{"parent": sh["parent"], "rows": np.stack(sh["rows"])} for sh in shapes]
        self.structure = tree_structure(self.parent)
        import pandas as pd
        self.index = pd.MultiIndex.from_arrays([self.sku_key, self.node_key])
        first = {}
        for s, v in zip(skus_key, sku_values):
            first.setdefault(s, v)
        self.sku_value = np.array([first[s] for s in self.sku_key], object)

    @property
    def n(self) -> int:
        return len(self.parent)

    def find(self, sku_key, node_key) -> np.ndarray:
        import pandas as pd
        return self.index.get_indexer(pd.MultiIndex.from_arrays([sku_key, node_key]))


def place_network(net, dc, stores: dict[str, Any], *, method: str = "sample", n_samples: int = 1000,
                  seed: int = 0) -> dict[str, Any]:
    """Placement over every SKU's network, and the DCs' base stocks.

    ``stores``: the gathered :func:`replenish.jobs._tasks.network_store_task` results.
    Returns the forest, per-row arrays (see the code) and the tables to write.
    """
    step = FREQ_STEP_DAYS[stores["freq"]]
    skus = np.unique(stores["sku_key"])
    first_val = {}
    for k, v in zip(stores["sku_key"], stores["sku"]):
        first_val.setdefault(k, v)
    forest = _Forest(net, skus, np.array([first_val[s] for s in skus], object))
    n = forest.n
    st = forest.structure
    at = forest.find(stores["sku_key"], stores["loc_key"])
    if (at < 0).any():
        bad = sorted(set(zip(stores["sku_key"][at < 0], stores["loc_key"][at < 0])))
        raise DataError(f"network: rule 'every planned location is a node of the network' broken "
                        f"by {len(bad)} SKU-locations{_examples(bad)}")
    roots = at[st.parent[at] < 0]
    if roots.size:
        locs = sorted(set(forest.node_key[roots]))
        raise DataError(f"network: rule 'every store has a DC (a parent)' broken by {len(locs)} "
                        f"locations{_examples(locs)}")
    inner = at[~st.leaf[at]]
    if inner.size:
        locs = sorted(set(forest.node_key[inner]))
        raise DataError(f"network: rule 'a store supplies no other node' broken by {len(locs)} "
                        f"locations{_examples(locs)}")
    is_store = np.zeros(n, bool)
    is_store[at] = True
    nf = net.frame.set_index("row")

    def net_col(c):
        return nf[c].to_numpy(np.float64)[forest.net_row]

    inv_row = np.full(n, -1, np.int64)
    if dc is not None:
        dfi, _, (sc, lc) = dc
        pos = forest.find(dfi["sku_key"].to_numpy(object), dfi["node_key"].to_numpy(object))
        bad = pos < 0
        if bad.any():
            pairs = list(zip(dfi["sku_key"][bad], dfi["node_key"][bad]))
            raise DataError(f"dc-inventory: rule 'every row is a node of the network of a planned "
                            f"SKU' broken by {int(bad.sum())} rows{_examples(pairs)}")
        store_rows = is_store[pos]
        if store_rows.any():
            pairs = list(zip(dfi["sku_key"][store_rows], dfi["node_key"][store_rows]))
            raise DataError(f"dc-inventory: rule 'no row for a store (their state is in "
                            f"--inventory)' broken by {int(store_rows.sum())} rows{_examples(pairs)}")
        inv_row[pos] = np.arange(len(dfi))

    def dc_col(c, default=np.nan):
        out = np.full(n, default, np.float64)
        if dc is not None:
            has = inv_row >= 0
            out[has] = dc[0][c].to_numpy(np.float64)[inv_row[has]]
        return out

    def at_stores(values, fill=0.0):
        out = np.full(n, fill, np.float64)
        out[at] = values
        return out

    # demand per day of each store (forecast horizon averaged), independent stores
    mean_day = stores["mean"].mean(1) / step
    std_day = np.sqrt(stores["var"].mean(1) / step)
    demand_below = subtree_sums(forest.parent, at_stores(mean_day + std_day), st) > 0
    lead = np.where(is_store, at_stores(stores["lead_time_days"]),
                    np.where(np.isnan(dc_col("lead_time_days")), net_col("lead_time_days"),
                             dc_col("lead_time_days")))
    review = np.where(is_store, at_stores(stores["review_period_days"]), dc_col("review_period_days", 1.0))
    review = np.where(np.isnan(review), 1.0, review)
    need = ~is_store & demand_below
    lacking = need & np.isnan(lead)
    if lacking.any():
        nodes = sorted(set(forest.node_key[lacking]))
        raise DataError(f"network: rule 'every DC has a lead time (network lead_time_days or its "
                        f"--dc-inventory row)' broken by {len(nodes)} nodes{_examples(nodes)}")
    lead = np.where(np.isnan(lead), 0.0, lead)
    repl = lead + review
    whole = np.ceil(repl - 1e-9)
    rounded = int(((whole != repl) & (is_store | need)).sum())
    if rounded:
        log.info("network: %d replenishment times (lead time + review period) rounded up to "
                 "whole days for the placement", rounded)
    unit_cost = np.where(is_store, at_stores(stores["unit_cost"]), dc_col("unit_cost"))
    rate = np.where(is_store, at_stores(stores["holding_cost_rate"]), dc_col("holding_cost_rate"))
    hold = net_col("holding_cost_per_day")
    hold = np.where(np.isnan(hold), unit_cost * rate / 365.0, hold)
    lacking = need & np.isnan(hold)
    if lacking.any():
        nodes = sorted(set(forest.node_key[lacking]))
        raise DataError(f"network: rule 'every DC has a holding cost (network "
                        f"holding_cost_per_day, or unit_cost and holding_cost_rate in its "
                        f"--dc-inventory row)' broken by {len(nodes)} nodes{_examples(nodes)}")
    hold = np.where(np.isnan(hold), 0.0, hold)
    counts = subtree_sums(forest.parent, is_store.astype(np.float64), st)
    mean_sl = subtree_sums(forest.parent, at_stores(stores["service_level"]), st) / np.maximum(counts, 1)
    sl = np.where(is_store, at_stores(stores["service_level"]), dc_col("service_level"))
    sl = np.where(np.isnan(sl), net_col("service_level"), sl)
    sl = np.where(np.isnan(sl), np.where(counts > 0, mean_sl, 0.5), sl)
    smax = np.where(st.leaf, np.floor(net_col("service_days") + 1e-9), np.inf)
    inbound = np.ceil(net_col("inbound_service_days") - 1e-9)

    out = {k: np.zeros(n) for k in ("service_time", "inbound_service_time", "net_lead_time",
                                     "demand_mean", "demand_std", "safety_stock", "base_stock")}
    for sh in forest.shapes:
        rows = sh["rows"]                       # (G, N) forest rows

        def take(a):
            return a[rows]
        res = tree_placement(sh["parent"], demand_mean=take(at_stores(mean_day)),
                             demand_std=take(at_stores(std_day)), lead_time=take(whole),
                             holding_cost=take(hold), service_level=take(np.clip(sl, 1e-6, 1 - 1e-6)),
                             max_service_time=take(smax), inbound_service_time=take(inbound))
        for k in out:
            out[k][rows] = res[k]
    cost_placed = float((hold * out["safety_stock"]).sum())

    # the DCs' base stocks over their net lead times, from the stores' forecasts
    dcs = np.flatnonzero(~is_store & demand_below)
    periods = out["net_lead_time"] / step
    m_nlt, s_nlt = node_demand_moments(stores["mean"], stores["var"], at, forest.parent, periods, nodes=dcs)
    m_lt, s_lt = node_demand_moments(stores["mean"], stores["var"], at, forest.parent, lead / step,
                                     nodes=dcs)
    from scipy.special import ndtri
    if method == "sample":
        paths = node_demand_samples(stores["levels"], stores["q"], at, forest.parent, periods,
                                    n_samples=n_samples, seed=seed, item_ids=stores["ids"], nodes=dcs)
        base = np.array([np.quantile(paths[i], sl[j]) for i, j in enumerate(dcs)]) if dcs.size else np.zeros(0)
        base = np.maximum(base, m_nlt)
    else:
        base = m_nlt + np.maximum(ndtri(np.clip(sl[dcs], 1e-6, 1 - 1e-6)), 0) * s_nlt
    node_base = np.zeros(n)
    node_base[dcs] = base
    extra = {"is_store": is_store, "store_row": at, "inv_row": inv_row, "lead": lead,
             "review": review, "replenishment": whole, "hold": hold, "sl": sl, "unit_cost": unit_cost,
             "rate": rate, "dcs": dcs, "dc_base": base, "dc_mean_nlt": m_nlt, "dc_std_nlt": s_nlt,
             "dc_mean_lt": m_lt, "dc_std_lt": s_lt, "node_base": node_base, "step": step,
             "mean_day_store": mean_day}
    summary = {"networks": int(len(np.unique(forest.sku_key))), "nodes": int(n),
               "stores": int(is_store.sum()), "network_shapes": len(forest.shapes),
               "dcs_with_demand": int(dcs.size),
               "dcs_holding_stock": int((out["net_lead_time"][dcs] > 0).sum()),
               "holding_cost_per_day": cost_placed,
               "replenishment_times_rounded_up": rounded}
    return {"forest": forest, **out, **extra, "summary": summary}


def network_table(p: dict[str, Any], net) -> pa.Table:
    """``OUT/network.parquet``: the placement, one row per SKU and node."""
    f = p["forest"]
    st = f.structure
    node_vals = net.table.column("node").take(pa.array(f.net_row))
    par = np.where(f.parent >= 0, f.parent, 0)
    parent_vals = node_vals.take(pa.array(par))
    parent_vals = pa.array([None if f.parent[i] < 0 else v for i, v in enumerate(parent_vals.to_pylist())],
                           type=node_vals.type)
    return pa.table({
        "sku": pa.array(list(f.sku_value)), "node": node_vals, "parent": parent_vals,
        "level": st.height, "is_store": p["is_store"],
        "lead_time_days": p["lead"], "review_period_days": p["review"],
        "replenishment_days": p["replenishment"],
        "inbound_service_days": p["inbound_service_time"], "service_days": p["service_time"],
        "net_lead_time_days": p["net_lead_time"], "demand_mean_per_day": p["demand_mean"],
        "demand_std_per_day": p["demand_std"], "service_level": p["sl"],
        "holding_cost_per_day": p["hold"], "safety_stock": p["safety_stock"],
        "base_stock": p["base_stock"]})


def store_service_table(p: dict[str, Any], stores: dict[str, Any]) -> pa.Table:
    """What the store orders read (as an ``--echelon`` placement's stores table): their net
    lead time = lead time + the DC's service time - the store's own promise to shoppers."""
    at = p["store_row"]
    wait = p["inbound_service_time"][at] - p["service_time"][at]
    lt = np.asarray(stores["lead_time_days"], np.float64)
    return pa.table({"sku": pa.array(list(stores["sku"])), "location": pa.array(list(stores["location"])),
                     "lead_time_days": lt, "net_lead_time_days": lt + wait})


def dc_order_table(p: dict[str, Any], net, dc, orders: pa.Table, as_of,
                   store_schema: pa.Schema | None = None) -> pa.Table:
    """``OUT/dc_orders``: an order for every node with a DC inventory row.

    Echelon base stock = the node's base stock + those of every node below it (stores: their
    order-up-to level); echelon inventory position = the node's on hand + on order -
    backorders + the same of every node below it (nodes without a row count 0; stores:
    their inventory position). Order up to the echelon base stock, with the node's MOQ,
    case pack and cap.
    """
    f = p["forest"]
    n = f.n
    st = f.structure
    o = orders
    pos = f.find(key_text(o.column("sku")), key_text(o.column("location")))
    if (pos < 0).any():
        raise DataError(f"network: {int((pos < 0).sum())} store orders of SKU-locations outside "
                        f"the network")
    target = p["node_base"].copy()
    position = np.zeros(n)
    target[pos] = o.column("order_up_to").to_numpy()
    position[pos] = o.column("inventory_position").to_numpy()
    dfi = dc[0]
    has = p["inv_row"] >= 0
    rows = p["inv_row"][has]

    def col(c):
        return dfi[c].to_numpy(np.float64)[rows]
    own = col("on_hand") + col("on_order") - col("backorders")
    position[has] = own
    echelon_base = subtree_sums(f.parent, target, st)
    echelon_pos = subtree_sums(f.parent, position, st)
    nodes = np.flatnonzero(has)
    e_base, e_pos = echelon_base[nodes], echelon_pos[nodes]
    cap = col("max_order")
    qty = np.asarray(order_quantity(e_pos, e_base, e_base, moq=col("moq"), case_pack=col("case_pack"),
                                    max_order=np.where(np.isinf(cap), 1e15, cap)))
    rate_day = subtree_sums(f.parent, np.where(p["is_store"], _store_rate(p, n), 0.0), st)[nodes]
    above = e_pos - e_base
    with np.errstate(divide="ignore", invalid="ignore"):
        wait = np.where(above <= 0, 0.0, np.ceil(above / rate_day))
    wait = np.where(np.isfinite(wait), wait, np.nan)
    as_of = np.datetime64(as_of, "D")
    order_date = np.where(np.isfinite(wait), as_of + np.nan_to_num(wait).astype("timedelta64[D]"),
                          np.datetime64("NaT"))
    dcs_at = {int(j): i for i, j in enumerate(p["dcs"])}
    k = np.array([dcs_at.get(int(j), -1) for j in nodes], np.int64)

    def per_dc(a, fill=0.0):
        a = np.asarray(a, np.float64)
        return np.where(k >= 0, a[np.maximum(k, 0)] if a.size else fill, fill)
    safety = per_dc(p["dc_base"]) - per_dc(p["dc_mean_nlt"])
    unit_cost = col("unit_cost")
    hold = p["hold"][nodes]
    node_vals = net.table.column("node").take(pa.array(f.net_row[nodes]))
    parent_vals = [None if f.parent[j] < 0 else v for j, v in zip(
        nodes, net.table.column("node").take(pa.array(f.net_row[np.maximum(f.parent[nodes], 0)])).to_pylist())]
    cols = {
        "sku": pa.array(list(f.sku_value[nodes])), "location": node_vals,
        "as_of": pa.array(np.full(len(nodes), as_of)),
        "on_hand": col("on_hand"), "on_order": col("on_order"), "backorders": col("backorders"),
        "inventory_position": e_pos, "lead_time_days": p["lead"][nodes],
        "dc_service_days": p["inbound_service_time"][nodes],
        "review_period_days": p["review"][nodes], "service_level": p["sl"][nodes],
        "unit_cost": unit_cost, "holding_cost_rate": np.where(unit_cost > 0, hold * 365.0 / np.where(
            unit_cost > 0, unit_cost, 1.0), np.nan),
        "lead_time_demand_mean": per_dc(p["dc_mean_lt"]), "lead_time_demand_std": per_dc(p["dc_std_lt"]),
        "protection_demand_mean": per_dc(p["dc_mean_nlt"]),
        "protection_demand_std": per_dc(p["dc_std_nlt"]),
        "safety_stock": safety, "reorder_point": e_base, "order_up_to": e_base,
        "order_quantity": qty, "order_date": pa.array(order_date.astype("datetime64[D]")),
        "order_value": qty * unit_cost, "expected_fill_rate": np.full(len(nodes), np.nan),
        "expected_cycle_service_level": p["sl"][nodes],
        "expected_holding_cost": hold * safety, "expected_stockout_cost": np.zeros(len(nodes)),
        "expected_ordering_cost": np.zeros(len(nodes)),
        "level": st.height[nodes], "parent": pa.array(parent_vals, type=node_vals.type),
        "service_days": p["service_time"][nodes], "net_lead_time_days": p["net_lead_time"][nodes],
        "base_stock": per_dc(p["dc_base"]), "installation_inventory_position": own,
    }
    cols["lead_time_std_days"] = np.zeros(len(nodes))     # the placement's times are fixed
    table = pa.table({c: (v if isinstance(v, (pa.Array, pa.ChunkedArray)) else pa.array(np.asarray(v)))
                      for c, v in cols.items()})
    if store_schema is None:
        return table
    # the store orders' schema first (their explanation and exception columns empty for a DC)
    names = [f.name for f in store_schema]
    for f in store_schema:
        if f.name not in table.column_names:
            table = table.append_column(f.name, pa.nulls(table.num_rows, type=f.type))
        elif f.name != "location" and table.schema.field(f.name).type != f.type:
            table = table.set_column(table.column_names.index(f.name), f.name,
                                     table.column(f.name).cast(f.type))
    return table.select(names + [c for c in table.column_names if c not in names])


def _store_rate(p, n):
    out = np.zeros(n)
    out[p["store_row"]] = p["mean_day_store"]
    return out


# ---- the job ---------------------------------------------------------------------------

def run_network_job(cl, cfg, out: Path, manifest: dict, stage: Path, spec: dict, model_dir: str,
                    stages: tuple[str, ...], timings: dict, inputs) -> None:
    """Steps 1-4 of the module docstring inside :func:`replenish.jobs.plan.run_plan`."""
    from . import _sharding
    from ._tasks import network_store_task, optimize_shard_task, plan_shard_task, write_output
    from ._outputs import write_manifest as _write_manifest
    from ._shard_runs import remove_unrecorded as _remove_unrecorded
    from ._shard_runs import run_shards as _run_shards, shard_files_ok as _shard_files_ok

    net, dc = inputs
    n_shards = manifest["n_shards"]
    spec = dict(spec)
    if "forecast" in stages:
        if not spec.get("freq"):
            import json
            spec["freq"] = json.loads((Path(model_dir) / "model.json").read_text())["spec"]["freq"]
        todo = [s for s in range(n_shards) if str(s) not in manifest["shards"]
                or not _shard_files_ok(out, manifest["shards"][str(s)])]
        t0 = time.perf_counter()
        _say(f"forecast: {len(todo)} shards to do, {n_shards - len(todo)} already done")
        _remove_unrecorded(out, manifest, todo, subs=("forecasts",))
        _run_shards(cl, out, manifest, todo, plan_shard_task, (str(stage),),
                    ({**spec, "stage_forecasts": True}, model_dir, str(out), ("forecast",)),
                    label="forecast")
        timings["forecast_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    parts = cl.gather([cl.submit(network_store_task, str(stage), s, spec, pure=False)
                       for s in range(n_shards)])
    stores = _gather_stores(parts)
    spec["freq"] = stores["freq"]
    placed = place_network(net, dc, stores, method=cfg.method, n_samples=cfg.n_samples, seed=cfg.seed)
    write_parquet_atomic(network_table(placed, net), out / "network.parquet")
    shutil_rm(stage / "echelon")
    plan = _sharding.ShardPlan.from_json(manifest["shard_plan"])
    _sharding.stage_table(store_service_table(placed, stores), ["sku", "location", "lead_time_days",
                                                                "net_lead_time_days"],
                          ("sku", "location"), plan, str(stage), "echelon")
    timings["network_s"] = time.perf_counter() - t0
    _say(f"network: {placed['summary']['networks']} SKU networks, {placed['summary']['stores']} "
         f"stores, {placed['summary']['dcs_holding_stock']} of {placed['summary']['dcs_with_demand']} "
         f"DC nodes hold safety stock")
    manifest.setdefault("optimize_shards", {})
    todo = [s for s in range(n_shards) if str(s) not in manifest["optimize_shards"]
            or not _shard_files_ok(out, manifest["optimize_shards"][str(s)])]
    t0 = time.perf_counter()
    _say(f"optimize: {len(todo)} shards to do, {n_shards - len(todo)} already done")
    _remove_unrecorded(out, manifest, todo, subs=("orders", "exceptions", "highlights"))
    _run_shards(cl, out, manifest, todo, optimize_shard_task, (str(stage),),
                ({**spec, "has_echelon": True}, str(out)), label="optimize",
                record="optimize_shards")
    timings["optimize_s"] = time.perf_counter() - t0
    files: dict[str, Any] = {}
    shutil_rm(out / "dc_orders")
    if dc is not None:
        from ._outputs import read_output
        orders = read_output(out, "orders", columns=["sku", "location", "inventory_position",
                                                     "order_up_to"])
        import pyarrow.dataset as pds
        schema = pds.dataset(out / "orders", format="parquet", partitioning="hive").schema
        table = dc_order_table(placed, net, dc, orders, stores["as_of"].max(), schema)
        files = write_output(table, str(out), "dc_orders", 0)
        placed["summary"]["dc_orders_today"] = int((table.column("order_quantity").to_numpy() > 0).sum())
        placed["summary"]["dc_order_rows"] = table.num_rows
    manifest["network"] = {"files": files, "summary": placed["summary"]}
    manifest["key_types"]["node"] = str(net.table.schema.field("node").type)
    _write_manifest(out, manifest)


def shutil_rm(path: Path) -> None:
    import shutil
    shutil.rmtree(path, ignore_errors=True)


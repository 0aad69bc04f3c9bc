"""Safety stock across the DCs and the stores they supply, from a finished plan.

``replenish echelon --run OUT --network NETWORK --out DIR`` reads the forecasts and orders a
plan job wrote to ``OUT`` (the stores' SKU-locations) and a network table saying which DC
supplies each location, and places safety stock with the guaranteed-service model
(:func:`replenish.kernels.two_echelon_placement`): one network per SKU and DC, its stores'
daily demand moments from their forecasts (mean and variance of each forecast period,
averaged over the horizon, per day), their lead times from the DC (the plan's
``lead_time_days``), service levels and holding costs (``unit_cost * holding_cost_rate /
365`` per unit per day) from the plan's inputs.

Network table, one row per location (extra locations are ignored, a planned location without
a row is an error):

============================  ========================================================
``location``                  the store (as in the plan)
``dc``                        the DC that supplies it
``dc_lead_time_days``         days from ordering at the supplier to receiving at the DC
``dc_inbound_service_days``   optional, days the supplier may take beyond that (0)
``dc_service_level``          optional, the DC's own target (the mean of its stores')
``dc_holding_cost_rate``      optional, per year, of the unit cost (the stores' rate)
============================  ========================================================

DC values must agree between the rows of one DC. Writes ``DIR/dc.parquet`` (one row per SKU
and DC) and ``DIR/stores.parquet`` (one row per SKU-location) atomically; one process,
vectorized over all networks. Units: demand in units per day, times in days, stock in
units, costs in currency per day.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ..engine.contract import DataError
from ..engine.io import read_table, write_parquet_atomic
from ..engine.panel import FREQ_STEP_DAYS
from ..engine.validate import key_text
from ..kernels import daily_moments, two_echelon_placement
from .evaluate import forecast_blocks

__all__ = ["place_safety_stock"]

log = logging.getLogger("replenish")

_DC_COLUMNS = {"dc_lead_time_days": None, "dc_inbound_service_days": 0.0,
               "dc_service_level": np.nan, "dc_holding_cost_rate": np.nan}


def place_safety_stock(run: str | Path, network: Any, out: str | Path | None = None
                       ) -> dict[str, Any]:
    """Two-echelon safety-stock placement for the SKU-locations planned in ``run``.

    Parameters
    ----------
    run : path
        Output folder of a finished ``replenish plan`` job.
    network : path, URL or pyarrow.Table
        The network table (see the module docstring).
    out : path, optional
        Folder for ``dc.parquet`` and ``stores.parquet``.

    Returns
    -------
    dict
        Summary (networks, stores, DCs holding stock, holding cost per day of the placement
        and of the two extremes), plus ``"dc_table"`` and ``"stores_table"`` (pyarrow).
    """
    import pandas as pd

    from ._sources import as_source as _as_source
    from ._outputs import read_output, run_forecasts, run_freq

    t0 = time.perf_counter()
    run = Path(run)
    if not (run / "_SUCCESS").exists() or not (run / "orders").exists():
        raise DataError(f"echelon: {run} holds no finished plan (no _SUCCESS marker or orders)")
    orders = read_output(run, "orders")
    net = _as_source(network, name="network")
    net = net if isinstance(net, pa.Table) else read_table(net)
    missing = [c for c in ("location", "dc", "dc_lead_time_days") if c not in net.column_names]
    if missing:
        raise DataError(f"network: required column(s) {missing} missing; it has {net.column_names}")
    nt = net.to_pandas()
    nt["location"] = key_text(net.column("location"))
    nulls = int(nt["dc"].isna().sum())
    if nulls:
        raise DataError(f"network: column 'dc': rule 'must not be missing' broken by {nulls} rows")
    dups = int(nt["location"].duplicated().sum())
    if dups:
        raise DataError(f"network: column 'location': rule 'one row per location' broken by "
                        f"{dups} rows")
    for c, default in _DC_COLUMNS.items():
        if c not in nt:
            nt[c] = default
        v = pd.to_numeric(nt[c], errors="coerce")
        bad = int(((v.isna() & nt[c].notna()) | (v < 0) | (v.isna() & (default is None))).sum())
        if bad:
            raise DataError(f"network: column '{c}': rule 'a number >= 0' broken by {bad} rows")
        nt[c] = v
        varies = int((nt.groupby("dc")[c].nunique(dropna=False) > 1).sum())
        if varies:
            raise DataError(f"network: column '{c}': rule 'one value per DC' broken by {varies} DCs")

    fc = run_forecasts(run)
    step = FREQ_STEP_DAYS[run_freq(run, fc)]     # 1: daily, 7: weekly
    levels, q, keys, _, _ = forecast_blocks(fc, step)
    if np.isnan(q).any():
        raise DataError(f"echelon: {int(np.isnan(q[..., 0]).sum())} forecast periods missing in "
                        f"{run}/forecasts")
    mean, var = daily_moments(levels, q)
    # per day: a weekly period's mean and variance spread over its 7 days (independent days)
    store_mean = np.asarray(mean).mean(1) / step
    store_std = np.sqrt(np.asarray(var).mean(1) / step)

    o = orders.to_pandas()
    okeys = pd.MultiIndex.from_arrays([key_text(orders.column("sku")),
                                       key_text(orders.column("location"))])
    at = okeys.get_indexer(keys)
    if (at < 0).any():
        raise DataError(f"echelon: {int((at < 0).sum())} forecast SKU-locations have no order row "
                        f"in {run}/orders")
    o = o.iloc[at].reset_index(drop=True)
    loc = key_text(orders.column("location"))[at]
    row = pd.Index(nt["location"]).get_indexer(loc)
    if (row < 0).any():
        lost = sorted(set(loc[row < 0]))
        raise DataError(f"network: rule 'every planned location has a DC' broken by {len(lost)} "
                        f"locations (e.g. {lost[0]!r})")
    ignored = len(nt) - len(np.unique(row))
    if ignored:
        log.info("network: %d locations not in the plan ignored", ignored)
    dc = nt["dc"].to_numpy()[row]
    gid, gkeys = pd.factorize(pd.MultiIndex.from_arrays([o["sku"].astype(str), pd.Index(dc).astype(str)]))
    g = len(gkeys)
    first = np.zeros(g, np.int64)
    first[gid[::-1]] = np.arange(len(gid))[::-1]       # a store row of each network

    def per_net(col: str) -> np.ndarray:
        return nt[col].to_numpy(np.float64)[row][first]

    unit_cost = o["unit_cost"].to_numpy(np.float64)
    rate = o["holding_cost_rate"].to_numpy(np.float64)
    sl = o["service_level"].to_numpy(np.float64)
    counts = np.bincount(gid, minlength=g)
    dc_sl = per_net("dc_service_level")
    dc_sl = np.where(np.isnan(dc_sl), np.bincount(gid, sl, g) / counts, dc_sl)
    dc_rate = per_net("dc_holding_cost_rate")
    dc_rate = np.where(np.isnan(dc_rate), np.bincount(gid, rate, g) / counts, dc_rate)
    dc_unit = np.bincount(gid, unit_cost, g) / counts
    res = two_echelon_placement(
        gid, n_networks=g, store_mean=store_mean, store_std=store_std,
        store_lead_time=o["lead_time_days"].to_numpy(np.float64),
        store_holding_cost=unit_cost * rate / 365.0, store_service_level=sl,
        dc_lead_time=per_net("dc_lead_time_days"), dc_holding_cost=dc_unit * dc_rate / 365.0,
        dc_service_level=dc_sl, dc_inbound_service=per_net("dc_inbound_service_days"))

    # keys in the types of their sources: the plan's sku, the network's dc
    store_row = pa.array(at[first])
    dc_table = pa.table({
        "sku": orders.column("sku").take(store_row),
        "dc": net.column("dc").take(pa.array(row[first])),
        "stores": counts, "dc_lead_time_days": per_net("dc_lead_time_days"),
        "dc_service_level": dc_sl, "dc_service_time_days": res["dc_service_time"],
        "dc_net_lead_time_days": res["dc_net_lead_time"], "demand_mean_per_day": res["dc_demand_mean"],
        "demand_std_per_day": res["dc_demand_std"], "dc_safety_stock": res["dc_safety_stock"],
        "dc_base_stock": res["dc_base_stock"], "holding_cost_per_day": res["holding_cost"],
        "holding_cost_per_day_if_dc_holds": res["holding_cost_if_dc_holds"],
        "holding_cost_per_day_if_stores_only": res["holding_cost_if_stores_only"]})
    stores_table = pa.table({
        "sku": orders.column("sku").take(pa.array(at)), "location": orders.column("location").take(pa.array(at)),
        "dc": dc_table.column("dc").take(pa.array(gid)), "demand_mean_per_day": store_mean,
        "demand_std_per_day": store_std, "lead_time_days": o["lead_time_days"].to_numpy(np.float64),
        "net_lead_time_days": res["store_net_lead_time"], "safety_stock": res["store_safety_stock"],
        "base_stock": res["store_base_stock"]})
    summary = {
        "run": str(run), "networks": int(g), "stores": int(len(gid)),
        "networks_where_dc_holds_stock": int((res["dc_net_lead_time"] > 0).sum()),
        "holding_cost_per_day": float(res["holding_cost"].sum()),
        "holding_cost_per_day_if_every_dc_holds": float(res["holding_cost_if_dc_holds"].sum()),
        "holding_cost_per_day_if_stores_only": float(res["holding_cost_if_stores_only"].sum()),
        "seconds": round(time.perf_counter() - t0, 2)}
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        write_parquet_atomic(dc_table, out / "dc.parquet")
        write_parquet_atomic(stores_table, out / "stores.parquet")
    return {**summary, "dc_table": dc_table, "stores_table": stores_table}


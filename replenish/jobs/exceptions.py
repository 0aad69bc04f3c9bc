"""Explained orders, exceptions ranked by money, and the items the report shows (job side).

The arithmetic is in :mod:`replenish.kernels.explain` and
:mod:`replenish.kernels.exceptions`; this module turns a shard's arrays into table columns
and tables:

- :func:`explain_columns`: the explanation columns of ``orders`` (README, "orders");
- :func:`with_exception_columns` / :func:`exception_rows`: the ``exception`` and
  ``exception_value`` columns of ``orders`` (each item's most valuable reason) and the long
  ``OUT/exceptions/`` table (one row per item and reason, with its money at stake);
- :func:`ledger_accuracy`: per SKU-location forecast bias and RMSSE over the recent runs of
  an ``evaluate`` ledger (for the ``forecast_bias`` reason and the report's least accurate
  items);
- :func:`highlights_table`: recent actuals of the items the report draws.

Thresholds come from the ``[exceptions]`` TOML section (:class:`ExceptionSettings`); time
thresholds are in days, whatever the data's period.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..engine.contract import DataError

__all__ = ["ExceptionSettings", "explain_columns", "with_exception_columns", "exception_rows",
           "ledger_accuracy", "accuracy_arrays", "highlights_table", "recent_table",
           "read_exceptions", "summarize_exceptions", "ACCURACY_COLUMNS"]

log = logging.getLogger("replenish")

#: Columns of the staged per-item accuracy table (from an evaluate ledger).
ACCURACY_COLUMNS = ("sku", "location", "forecast_bias", "forecast_rmsse")


@dataclass(frozen=True)
class ExceptionSettings:
    """Thresholds of the exception reasons (TOML ``[exceptions]``; README, "Exceptions").

    Attributes
    ----------
    excess_days_of_supply : float
        ``excess`` when days of supply on hand exceed this (days) ...
    excess_over_order_up_to : float
        ... or the inventory position exceeds the order-up-to level by this fraction.
    no_demand_days : float
        ``no_demand`` after this many days without demand while stock is on hand.
    inflation_ratio : float
        ``moq_inflated`` / ``case_pack_inflated`` when the MOQ or case pack raise the order
        above the need by more than this fraction of the need.
    bias_threshold : float
        ``forecast_bias`` when the recent forecasts' bias exceeds this fraction of demand.
    bias_runs : int
        Recent evaluations of the ledger the bias is measured over.
    new_item_days : float
        ``new_item`` when the history is shorter than this (days).
    min_value : float
        Exceptions worth less than this (currency) are not raised.
    """

    excess_days_of_supply: float = 90.0
    excess_over_order_up_to: float = 0.5
    no_demand_days: float = 56.0
    inflation_ratio: float = 0.5
    bias_threshold: float = 0.25
    bias_runs: int = 4
    new_item_days: float = 56.0
    min_value: float = 0.0

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any] | None) -> "ExceptionSettings":
        m = dict(m or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(m) - known)
        if unknown:
            raise ValueError(f"exceptions settings: unknown key(s) {unknown}; known: {sorted(known)}")
        for k, v in m.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v) or v < 0:
                raise ValueError(f"exceptions settings: {k} must be a number >= 0, got {v!r}")
        if "bias_runs" in m:
            if int(m["bias_runs"]) != m["bias_runs"] or m["bias_runs"] < 1:
                raise ValueError(f"exceptions settings: bias_runs must be a whole number >= 1, "
                                 f"got {m['bias_runs']!r}")
            m["bias_runs"] = int(m["bias_runs"])
        return cls(**m)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _period_dates(as_of: np.ndarray, periods: np.ndarray, step: int) -> np.ndarray:
    """The date of the period in which ``periods`` (fractional, from ``as_of``) falls."""
    ok = np.isfinite(periods)
    days = np.floor(np.where(ok, periods, 0)).astype(np.int64) * step
    return np.where(ok, as_of.astype("datetime64[D]") + days.astype("timedelta64[D]"),
                    np.datetime64("NaT"))


def explain_columns(levels: np.ndarray, q: np.ndarray, inv: dict[str, np.ndarray],
                    res: dict[str, np.ndarray], *, step: int, as_of: np.ndarray,
                    dc_days: np.ndarray, panel=None,
                    accuracy: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """The explanation columns of one shard's orders (README, "orders").

    Parameters
    ----------
    levels, q : ndarray, shapes (Q,) and (n, H, Q)
        Quantile levels and forecasts (units per period); ``q`` NumPy or CuPy.
    inv : dict of ndarray (n,)
        Validated inventory columns (days, units, currency).
    res : dict of ndarray (n,)
        Output of :func:`replenish.kernels.plan_orders` (units).
    step : int
        Days per period.
    as_of : ndarray of datetime64[D], shape (n,)
        First day of the plan.
    dc_days : ndarray, shape (n,)
        Days the DC's service time adds to the lead time.
    panel : Panel, optional
        The shard's history (None for an optimize job: the history columns are NaN).
    accuracy : dict, optional
        ``forecast_bias`` and ``forecast_rmsse`` per item (:func:`accuracy_arrays`).
    """
    from ..kernels import (BINDING_RULES, binding_rule, daily_moments, periods_of_supply,
                           periods_since_demand, periods_until_stockout, stock_components)
    from ..kernels._backend import to_numpy

    n = q.shape[0]
    f64 = {k: np.asarray(to_numpy(v), np.float64) for k, v in res.items()}
    # on a GPU the moments are computed there and only they come to the host
    mean_d, var_d = (np.asarray(to_numpy(a), np.float64) for a in daily_moments(levels, q))
    position = inv["on_hand"] + inv["on_order"] - inv["backorders"]
    parts = stock_components(
        mean_d, var_d, lead_time=(inv["lead_time_days"] + dc_days) / step,
        lead_time_std=inv["lead_time_std_days"] / step,
        review_period=inv["review_period_days"] / step,
        lead_time_demand_mean=f64["lead_time_demand_mean"],
        protection_demand_mean=f64["protection_demand_mean"], safety_stock=f64["safety_stock"],
        reorder_point=f64["reorder_point"], order_up_to=f64["order_up_to"])
    qty = f64["order_quantity"]
    code, need = binding_rule(position, f64["reorder_point"], f64["order_up_to"], qty,
                              moq=inv["moq"])
    per_day = mean_d.mean(axis=1) / step if mean_d.shape[1] else np.zeros(n)
    out_periods = periods_until_stockout(position, mean_d) if mean_d.shape[1] \
        else np.full(n, np.nan)
    cols: dict[str, np.ndarray] = {
        "demand_per_day": per_day,
        **parts,
        "order_need": need,
        "planned_quantity": qty,
        "binding_rule": np.asarray(BINDING_RULES, dtype=object)[code],
        "days_of_supply_on_hand": periods_of_supply(inv["on_hand"], per_day),
        "days_of_supply_after_order": periods_of_supply(position + qty, per_day),
        "stockout_date": _period_dates(as_of, out_periods, step),
        "moq": inv["moq"], "case_pack": inv["case_pack"], "max_order": inv["max_order"],
        "stockout_cost": inv["stockout_cost"],
    }
    if panel is not None:
        cols["history_days"] = panel.lengths.astype(np.float64) * step
        cols["days_since_demand"] = periods_since_demand(panel.demand, panel.indptr) * step
    else:
        cols["history_days"] = cols["days_since_demand"] = np.full(n, np.nan)
    acc = accuracy or {}
    for k in ("forecast_bias", "forecast_rmsse"):
        cols[k] = np.asarray(acc.get(k, np.full(n, np.nan)), np.float64)
    return cols


def _num(t: pa.Table, name: str) -> np.ndarray:
    col = t.column(name)
    return col.to_numpy(zero_copy_only=False).astype(np.float64) if col.null_count == 0 else \
        pc.fill_null(col.cast(pa.float64()), np.nan).to_numpy(zero_copy_only=False)


def _values(orders: pa.Table, settings: ExceptionSettings) -> np.ndarray:
    """The (n, K) money matrix of the kernel for an orders table."""
    from ..kernels import BINDING_RULES, exception_values
    binding = orders.column("binding_rule").to_numpy(zero_copy_only=False)
    code = np.zeros(len(binding), np.int8)
    for i, name in enumerate(BINDING_RULES):
        code[binding == name] = i
    s = settings
    return exception_values(
        on_hand=_num(orders, "on_hand"), position=_num(orders, "inventory_position"),
        order_quantity=_num(orders, "order_quantity"), need=_num(orders, "order_need"),
        binding=code, lead_time_demand_mean=_num(orders, "lead_time_demand_mean"),
        lead_time_demand_std=_num(orders, "lead_time_demand_std"),
        protection_demand_mean=_num(orders, "protection_demand_mean"),
        protection_demand_std=_num(orders, "protection_demand_std"),
        order_up_to=_num(orders, "order_up_to"), demand_rate=_num(orders, "demand_per_day"),
        unit_cost=_num(orders, "unit_cost"), stockout_cost=_num(orders, "stockout_cost"),
        periods_since_demand=_num(orders, "days_since_demand"),
        history_periods=_num(orders, "history_days"),
        forecast_bias=_num(orders, "forecast_bias"),
        excess_periods=s.excess_days_of_supply, excess_ratio=s.excess_over_order_up_to,
        no_demand_periods=s.no_demand_days, inflation_ratio=s.inflation_ratio,
        bias_threshold=s.bias_threshold, new_item_periods=s.new_item_days,
        min_value=s.min_value)


def with_exception_columns(orders: pa.Table, settings: ExceptionSettings) -> pa.Table:
    """``orders`` with ``exception`` (the item's most valuable reason code, null when none)
    and ``exception_value`` (its money at stake, currency) set."""
    from ..kernels import EXCEPTION_CODES, top_exception
    code, value = top_exception(_values(orders, settings))
    names = np.asarray(EXCEPTION_CODES + (None,), dtype=object)[np.where(code < 0, -1, code)]
    t = orders
    for name, arr in (("exception", pa.array(names, pa.string())),
                      ("exception_value", pa.array(value, pa.float64(), from_pandas=True))):
        if name in t.column_names:
            t = t.set_column(t.column_names.index(name), name, arr)
        else:
            t = t.append_column(name, arr)
    return t


#: Columns of ``orders`` each exception row carries (besides keys, reason and value).
EXCEPTION_CONTEXT = ("as_of", "on_hand", "inventory_position", "order_up_to", "order_quantity",
                     "days_of_supply_on_hand", "stockout_date", "binding_rule", "unit_cost")


def exception_rows(orders: pa.Table, settings: ExceptionSettings) -> pa.Table:
    """One row per raised (item, reason), most valuable first: ``sku``, ``location``,
    ``reason``, ``value`` (currency), and context columns of the order."""
    from ..kernels import EXCEPTION_CODES
    val = _values(orders, settings)
    item, j = np.nonzero(np.isfinite(val))
    v = val[item, j]
    order = np.lexsort((j, item, -v))
    item, j, v = item[order], j[order], v[order]
    idx = pa.array(item.astype(np.int64))
    cols = {"sku": orders.column("sku").take(idx), "location": orders.column("location").take(idx),
            "reason": pa.array(np.asarray(EXCEPTION_CODES, dtype=object)[j], pa.string()),
            "value": pa.array(v, pa.float64())}
    for c in EXCEPTION_CONTEXT:
        cols[c] = orders.column(c).take(idx)
    return pa.table(cols)


def read_exceptions(out: str | Path, columns: list[str] | None = None) -> pa.Table:
    """All exceptions of a finished job, ranked by money (most valuable first, ``rank`` 1)."""
    import pyarrow.dataset as pds
    d = Path(out) / "exceptions"
    if not d.exists() or not any(d.glob("*.parquet")):
        raise DataError(f"{out} holds no exceptions (a plan or optimize job's output folder)")
    t = pds.dataset(str(d), format="parquet").to_table(columns=columns)
    if "value" in t.column_names:
        t = t.take(pc.sort_indices(t, sort_keys=[("value", "descending")]))
        t = t.append_column("rank", pa.array(np.arange(1, t.num_rows + 1, dtype=np.int64)))
    return t


def summarize_exceptions(out: str | Path) -> dict[str, dict[str, float]]:
    """Items and money at stake per reason code (for the job summary)."""
    d = Path(out) / "exceptions"
    if not d.exists() or not any(d.glob("*.parquet")):
        return {}
    t = read_exceptions(out, columns=["reason", "value"])
    g = t.group_by("reason").aggregate([("value", "count"), ("value", "sum")])
    rows = sorted(zip(g.column("reason").to_pylist(), g.column("value_count").to_pylist(),
                      g.column("value_sum").to_pylist()), key=lambda r: -r[2])
    return {r: {"items": int(c), "value": round(float(v), 2)} for r, c, v in rows}


# ---- the evaluate ledger ------------------------------------------------------------------

def ledger_accuracy(ledger: str | Path, runs: int = 4) -> pa.Table | None:
    """Per SKU-location forecast bias and RMSSE over the ``runs`` most recent evaluations.

    Reads the ledger's rows (one per ``replenish evaluate`` run, oldest first) and each
    row's evaluation folder (its ``series.parquet``). Bias is
    ``sum(median forecast) / sum(demand) - 1`` over those runs' evaluated periods
    (positive: over-forecast; null without demand); RMSSE is the mean over the runs.

    Returns
    -------
    pyarrow.Table or None
        ``sku``, ``location`` (as text), ``forecast_bias``, ``forecast_rmsse``,
        ``evaluations``; None when the ledger names no readable evaluation.
    """
    import pyarrow.parquet as pq

    from ..engine.validate import key_text
    path = Path(ledger)
    if not path.exists():
        raise DataError(f"ledger {ledger}: no such file (a Parquet file written by "
                        f"`replenish evaluate --ledger`)")
    t = pq.read_table(path)
    if "evaluation" not in t.column_names:
        log.warning("ledger %s records no evaluation folders (written by an older replenish): "
                    "no per-item forecast bias", ledger)
        return None
    folders: list[str] = []
    for f in reversed(t.column("evaluation").to_pylist()):
        if f and f not in folders:
            folders.append(f)
    parts = []
    for f in folders:
        p = Path(f) / "series.parquet"
        if not p.exists():
            log.warning("ledger %s: the evaluation %s is gone (no series.parquet); skipped",
                        ledger, f)
            continue
        s = pq.read_table(p, columns=["sku", "location", "demand", "forecast_median", "rmsse"])
        parts.append(pa.table({
            "sku": pa.array(key_text(s.column("sku")), pa.string()),
            "location": pa.array(key_text(s.column("location")), pa.string()),
            "demand": s.column("demand").cast(pa.float64()),
            "forecast_median": s.column("forecast_median").cast(pa.float64()),
            "rmsse": pc.if_else(pc.is_nan(s.column("rmsse").cast(pa.float64())), None,
                                s.column("rmsse").cast(pa.float64()))}))
        if len(parts) == runs:
            break
    if not parts:
        return None
    g = pa.concat_tables(parts).group_by(["sku", "location"]).aggregate(
        [("demand", "sum"), ("forecast_median", "sum"), ("rmsse", "mean"), ("demand", "count")])
    dem = g.column("demand_sum").to_numpy(zero_copy_only=False)
    med = g.column("forecast_median_sum").to_numpy(zero_copy_only=False)
    with np.errstate(divide="ignore", invalid="ignore"):
        bias = np.where(dem > 0, med / dem - 1, np.nan)
    return pa.table({"sku": g.column("sku"), "location": g.column("location"),
                     "forecast_bias": pa.array(bias, pa.float64()),
                     "forecast_rmsse": pc.fill_null(g.column("rmsse_mean"), np.nan),
                     "evaluations": g.column("demand_count")})


def accuracy_arrays(table: pa.Table | None, panel) -> dict[str, np.ndarray]:
    """The staged accuracy rows of a shard aligned to the panel's series (NaN where none)."""
    from ..engine.validate import _match_keys
    out = {k: np.full(panel.n_series, np.nan) for k in ("forecast_bias", "forecast_rmsse")}
    if table is None or table.num_rows == 0:
        return out
    pos = _match_keys(panel, table.column("sku"), table.column("location"))
    ok = pos >= 0
    for k in out:
        out[k][pos[ok]] = _num(table, k)[ok]
    return out


# ---- the items the report draws -------------------------------------------------------------

def recent_table(panel, rows: np.ndarray | None = None, periods: int = 56) -> pa.Table:
    """The last ``periods`` actuals of series ``rows`` of ``panel`` (all when None):
    ``sku``, ``location``, ``actuals_start`` (date of the first value), ``actuals``
    (list of units per period)."""
    rows = np.arange(panel.n_series) if rows is None else np.asarray(rows, np.int64)
    ends = panel.indptr[1:][rows]
    w = np.minimum(panel.lengths[rows], periods)
    offsets = np.concatenate([[0], np.cumsum(w)]).astype(np.int32)
    take = np.concatenate([np.arange(e - k, e) for e, k in zip(ends, w)]) if len(rows) else \
        np.zeros(0, np.int64)
    values = pa.array(panel.demand[take].astype(np.float32))
    start = panel.end[rows] - (w - 1) * panel.step
    return pa.table({"sku": pa.array(panel.sku[rows]), "location": pa.array(panel.location[rows]),
                     "actuals_start": pa.array(start.astype("datetime64[D]")),
                     "actuals": pa.ListArray.from_arrays(pa.array(offsets), values)})


def highlight_rows(orders: pa.Table, k: int) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Rows of ``orders`` the report may draw: the ``k`` most valuable exceptions and the
    ``k`` least accurate items (highest recent RMSSE; without a ledger the most uncertain:
    highest coefficient of variation of protection-interval demand)."""
    value = _num(orders, "exception_value")
    top = np.flatnonzero(np.isfinite(value))
    top = top[np.argsort(-value[top], kind="stable")][:k]
    rmsse = _num(orders, "forecast_rmsse")
    if np.isfinite(rmsse).any():
        score = rmsse
    else:
        mu, sd = _num(orders, "protection_demand_mean"), _num(orders, "protection_demand_std")
        with np.errstate(divide="ignore", invalid="ignore"):
            score = np.where(mu > 0, sd / mu, np.nan)
    cand = np.flatnonzero(np.isfinite(score))
    worst = cand[np.argsort(-score[cand], kind="stable")][:k]
    rows = np.concatenate([top, worst]).astype(np.int64)
    why = ["exception"] * len(top) + ["least_accurate"] * len(worst)
    return rows, why, np.concatenate([value[top], score[worst]])


def highlights_table(orders: pa.Table, recent: pa.Table | None, k: int) -> pa.Table:
    """The highlight rows of ``orders`` with their recent actuals (from ``recent``, a
    :func:`recent_table` of the shard; None: no history, empty actuals)."""
    from ..engine.validate import key_text
    rows, why, score = highlight_rows(orders, k)
    idx = pa.array(rows)
    t = pa.table({"sku": orders.column("sku").take(idx),
                  "location": orders.column("location").take(idx),
                  "why": pa.array(why, pa.string()), "score": pa.array(score, pa.float64())})
    start = pa.nulls(len(rows), pa.date32())
    actuals = pa.array([[] for _ in rows], pa.list_(pa.float32()))
    if recent is not None and recent.num_rows and len(rows):
        import pandas as pd
        have = pd.MultiIndex.from_arrays([key_text(recent.column("sku")),
                                          key_text(recent.column("location"))])
        want = pd.MultiIndex.from_arrays([key_text(t.column("sku")),
                                          key_text(t.column("location"))])
        at = have.get_indexer(want)
        found = at >= 0
        pick = pa.array(np.where(found, at, 0).astype(np.int64))
        mask = pa.array(~found)
        start = pc.if_else(mask, None, recent.column("actuals_start").take(pick))
        actuals = pc.if_else(mask, pa.scalar([], pa.list_(pa.float32())),
                             recent.column("actuals").take(pick))
    return t.append_column("actuals_start", start).append_column("actuals", actuals)


def write_exception_files(orders: pa.Table, recent: pa.Table | None, settings: ExceptionSettings,
                          k: int, out: str | Path, shard: int) -> dict[str, Any]:
    """Write one shard's ``OUT/exceptions/part-<shard>.parquet`` (one row per item and reason)
    and ``OUT/highlights/part-<shard>.parquet`` (the recent actuals of its ``k`` highlight
    items, for the report); return the files written with their rows and checksums."""
    from ..engine.io import write_parquet_atomic
    from ._sharding import file_checksum
    files: dict[str, Any] = {}
    for name, table in (("exceptions", exception_rows(orders, settings)),
                        ("highlights", highlights_table(orders, recent, k))):
        rel = f"{name}/part-{shard:05d}.parquet"
        write_parquet_atomic(table, Path(out) / rel)
        files[rel] = {"rows": table.num_rows, "sha256": file_checksum(Path(out) / rel)}
    return files

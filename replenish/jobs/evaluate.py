"""How a finished plan did, once the actuals are in: forecast accuracy and realised service.

``replenish evaluate --run OUT --history NEW_HISTORY --out EVAL [--ledger FILE]`` reads the
forecasts and orders a plan job wrote to ``OUT`` and the demand history as it is now (the
periods after the plan's ``as_of`` included), and measures:

- **forecast accuracy** over the forecast periods that have actuals: RMSSE of the median and
  SPL over the model's quantile levels (M5 definitions, :mod:`replenish.engine.metrics`;
  scaled by the series' history before its forecast start), WAPE (sum of absolute errors of
  the median over the sum of demand) and bias (sum of medians over the sum of demand, minus 1;
  positive: over-forecast), the share of actuals inside the central interval (the levels
  nearest 0.05 and 0.95) and, per level, the share of actuals at or below that quantile
  (calibration: it should be close to the level);
- **realised service** of the orders: for each SKU-location, demand over its protection
  interval (review period plus lead time from ``as_of``, rounded up to whole periods: the
  next order cannot arrive earlier) against the stock available to meet it (inventory
  position plus today's order quantity). The share of SKU-locations whose demand was covered
  is the realised cycle service level, to compare with their mean target; the share of the
  interval's demand that was covered is the realised fill rate. SKU-locations whose interval
  has not ended yet are counted as ``not_yet_due`` and left out.

Writes ``EVAL/series.parquet`` (one row per SKU-location), ``EVAL/summary.json``, and with
``ledger`` appends the summary as one row to a Parquet ledger, so that accuracy and service
can be followed night after night. Units: demand in units of stock per period, dates as in
the plan, service levels and rates as fractions.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..engine.contract import ColumnMap, DataError
from ..engine.io import open_dataset, read_table, write_parquet_atomic
from ..engine.metrics import history_scales, pinball
from ..engine.panel import FREQ_STEP_DAYS, _ranges
from ..engine.validate import _match_keys, build_panel, constant_keys, key_text

__all__ = ["evaluate_run", "forecast_blocks"]

log = logging.getLogger("replenish")


def evaluate_run(run: str | Path, history: Any, out: str | Path | None = None, *,
                 columns: ColumnMap = ColumnMap(), freq: str | None = None,
                 negative: str = "error", missing_demand: str = "error",
                 duplicates: str = "error", gaps: str = "zero",
                 ledger: str | Path | None = None) -> dict[str, Any]:
    """Evaluate the forecasts and orders of the finished plan in ``run`` against ``history``.

    Parameters
    ----------
    run : path
        Output folder of a finished ``replenish plan`` (or ``forecast``) job.
    history : path, URL or pyarrow.Table
        The demand history including the periods after the plan's ``as_of``; columns named
        by ``columns`` (covariates are not needed). The data rules and repairs are those of
        the plan job (``negative``, ``missing_demand``, ``duplicates``, ``gaps``: with
        ``"missing"`` a period without a row is unknown, left out of every score and scale;
        a protection interval holding one is not judged, counted as ``unknown_actuals``).
    out : path, optional
        Folder for ``series.parquet`` and ``summary.json``.
    ledger : path, optional
        Parquet file the summary is appended to (created when absent).

    Returns
    -------
    dict
        The summary, plus ``"series_table"``: the per-SKU-location pyarrow Table.
    """
    from ._sources import as_source as _as_source
    from ._outputs import read_output, run_forecasts, run_freq

    t0 = time.perf_counter()
    run = Path(run)
    if not run.is_dir():
        raise DataError(f"{run} does not exist (give the --out folder of a finished plan or optimize job)")
    if not (run / "_SUCCESS").exists():
        raise DataError(f"{run} holds no finished job (no _SUCCESS marker)")
    fc = run_forecasts(run)
    orders = read_output(run, "orders") if (run / "orders").exists() else None
    planned = run_freq(run, fc)   # the actuals are read in the run's periods
    if freq is not None and freq != planned:
        raise DataError(f"evaluate: --freq {freq} but the run {run} planned in periods of "
                        f"{'a day' if planned == 'D' else 'a week'} ({planned})")
    cols = ColumnMap(sku=columns.sku, location=columns.location, date=columns.date,
                     demand=columns.demand, date_format=columns.date_format)
    history = _as_source(history, name="history")
    if not isinstance(history, pa.Table):   # (a key the history lacks is the constant "all")
        names = open_dataset(history).schema.names
        one = constant_keys(names, cols)
        history = read_table(history, [c for c in cols.required if c not in one])
    table = history
    try:
        panel = build_panel(table, cols, freq=planned, negative=negative,
                            missing_demand=missing_demand, duplicates=duplicates, gaps=gaps)
    except DataError as e:
        raise DataError(f"evaluate: the run {run} planned in {'days' if planned == 'D' else 'weeks'}"
                        f" ({planned}), so the history is read in them: {e}") from e
    step = FREQ_STEP_DAYS[panel.freq]

    import pandas as pd
    levels, q, uniq, first, fc_row = forecast_blocks(fc, step)
    k, h = q.shape[:2]

    # actuals: the panel's series and periods on the forecast dates
    sid = _match_keys(panel, pa.chunked_array([uniq.get_level_values(0).to_numpy()]),
                      pa.chunked_array([uniq.get_level_values(1).to_numpy()]))
    found = sid >= 0
    s = np.where(found, sid, 0)
    start = panel.start.astype("datetime64[D]").astype(np.int64)[s]
    cut = (first - start) // step                   # position of the first forecast period
    lengths = panel.lengths[s]
    p = cut[:, None] + np.arange(h)
    has = found[:, None] & (p >= 0) & (p < lengths[:, None]) & np.isfinite(q[..., 0])
    actual = np.where(has, panel.demand[panel.indptr[s][:, None] + np.clip(p, 0, None)
                                        .clip(max=(lengths - 1)[:, None])], np.nan)
    has &= np.isfinite(actual)                      # unknown periods (gaps="missing")

    # scales from each series' history before its forecast start
    before = np.where(found, np.clip(cut, 0, lengths), 0)
    rows = _ranges(panel.indptr[s], before)
    msd, mad = history_scales(panel.demand[rows],
                              np.concatenate([[0], np.cumsum(before)]).astype(np.int64))
    mid = int(np.argmin(np.abs(levels - 0.5)))
    med = q[..., mid]
    n = has.sum(1)
    err = np.where(has, actual - med, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        rmsse = np.sqrt((err ** 2).sum(1) / n / msd)
        loss = pinball(np.where(has, actual, 0.0), np.nan_to_num(q), levels)
        spl = (loss * has[..., None]).sum((1, 2)) / (n * len(levels)) / mad
    ok = (n > 0) & np.isfinite(msd) & (msd > 0) & np.isfinite(mad) & (mad > 0)
    rmsse, spl = np.where(ok, rmsse, np.nan), np.where(ok, spl, np.nan)
    act_sum = np.where(has, actual, 0.0).sum(1)
    med_sum = np.where(has, med, 0.0).sum(1)
    lo = int(np.argmin(np.abs(levels - 0.05)))
    hi = int(np.argmin(np.abs(levels - 0.95)))
    inside = has & (actual >= q[..., lo]) & (actual <= q[..., hi])
    below = has[..., None] & (actual[..., None] <= q)

    summary: dict[str, Any] = {
        "run": str(run), "evaluated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        # where series.parquet is: the plan's per-item forecast bias reads it from the ledger
        "evaluation": str(Path(out).resolve()) if out is not None else None,
        "forecast_start": str(np.datetime64(int(first.min()), "D")) if k else None,
        "series": int(k), "series_without_actuals": int((n == 0).sum()),
        "series_without_scale": int(((n > 0) & ~ok).sum()), "periods": int(n.sum()),
        "rmsse": _mean(rmsse), "spl": _mean(spl),
        "wape": _ratio(np.abs(err).sum(), act_sum.sum()),
        "bias": _ratio(med_sum.sum() - act_sum.sum(), act_sum.sum()),
        "interval": {"low": float(levels[lo]), "high": float(levels[hi]),
                     "nominal": round(float(levels[hi] - levels[lo]), 6),
                     "covered": _ratio(inside.sum(), n.sum())},
        "calibration": {f"{lv:g}": _ratio(below[..., j].sum(), n.sum())
                        for j, lv in enumerate(levels)},
    }
    series = {"sku": fc.column("sku").take(pa.array(fc_row)),
              "location": fc.column("location").take(pa.array(fc_row)),
              "forecast_start": first.astype("datetime64[D]"), "periods": n,
              "demand": act_sum, "forecast_median": med_sum, "rmsse": rmsse, "spl": spl}
    if orders is not None:
        svc, cols_svc = _service(orders, panel, step)
        summary["service"] = svc
        okeys = pd.MultiIndex.from_arrays([key_text(orders.column("sku")),
                                           key_text(orders.column("location"))])
        at = okeys.get_indexer(uniq)
        for name, v in cols_svc.items():
            series[name] = np.where(at >= 0, v[np.clip(at, 0, None)], np.nan) \
                if v.dtype.kind == "f" else np.where(at >= 0, v[np.clip(at, 0, None)], False)
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    series_table = pa.table(series)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        write_parquet_atomic(series_table, out / "series.parquet")
        tmp = out / "summary.json.tmp"
        tmp.write_text(json.dumps(summary, indent=2))
        os.replace(tmp, out / "summary.json")
    if ledger is not None:
        _append_ledger(Path(ledger), summary)
    log.info("evaluate: %d SKU-locations, %d periods, RMSSE %.3f", k, int(n.sum()),
             summary["rmsse"] if summary["rmsse"] is not None else float("nan"))
    return {**summary, "series_table": series_table}


def forecast_blocks(fc: pa.Table, step: int):
    """A forecasts table as blocks, one per SKU-location.

    Returns
    -------
    levels : ndarray, shape (Q,), increasing
    q : ndarray of float64, shape (k, H, Q)
        Quantiles, units per period (NaN where a period has no row).
    keys : pandas.MultiIndex
        (sku, location) as text, one per block.
    first : ndarray of int64, shape (k,)
        Day number (days since 1970-01-01) of each block's first forecast period.
    row : ndarray of int64, shape (k,)
        A row of ``fc`` of each block (to take its keys in their own types).
    """
    import pandas as pd
    qcols = [c for c in fc.column_names if c.startswith("q")]
    levels = np.array([float(c[1:]) for c in qcols])
    order = np.argsort(levels)
    levels, qcols = levels[order], [qcols[i] for i in order]
    keys = pd.MultiIndex.from_arrays([key_text(fc.column("sku")), key_text(fc.column("location"))])
    code, uniq = pd.factorize(keys)
    k = len(uniq)
    day = fc.column("date").to_numpy().astype("datetime64[D]").astype(np.int64)
    first = np.full(k, np.iinfo(np.int64).max)
    np.minimum.at(first, code, day)
    off = day - first[code]
    if (off % step).any():
        raise DataError(f"forecasts: dates are not on a {'daily' if step == 1 else 'weekly'} "
                        f"grid per SKU-location")
    h = int(off.max() // step) + 1 if len(off) else 0
    q = np.full((k, h, len(levels)), np.nan)
    q[code, off // step] = np.column_stack([fc.column(c).to_numpy() for c in qcols])
    row = np.zeros(k, np.int64)
    row[code[::-1]] = np.arange(len(code))[::-1]
    return levels, q, uniq, first, row


def _service(orders: pa.Table, panel, step: int) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Realised service of the orders (see the module docstring)."""
    o = {c: orders.column(c).to_numpy(zero_copy_only=False) for c in (
        "as_of", "lead_time_days", "review_period_days", "service_level", "inventory_position",
        "order_quantity")}
    # a plan made with an echelon placement waited for the DC too (older runs lack the column)
    dc = orders.column("dc_service_days").to_numpy(zero_copy_only=False) \
        if "dc_service_days" in orders.column_names else 0.0
    sid = _match_keys(panel, orders.column("sku"), orders.column("location"))
    found = sid >= 0
    s = np.where(found, sid, 0)
    periods = np.ceil((o["lead_time_days"] + dc + o["review_period_days"]) / step
                      - 1e-9).astype(np.int64)
    periods = np.maximum(periods, 1)
    start = panel.start.astype("datetime64[D]").astype(np.int64)[s]
    first = (o["as_of"].astype("datetime64[D]").astype(np.int64) - start) // step
    lengths = panel.lengths[s]
    due = found & (first >= 0) & (first + periods <= lengths)
    unknown = np.isnan(panel.demand)
    cs = np.concatenate([[0.0], np.cumsum(np.where(unknown, 0.0, panel.demand.astype(np.float64)))])
    cu = np.concatenate([[0], np.cumsum(unknown)])
    a = panel.indptr[s] + np.clip(first, 0, lengths)
    b = panel.indptr[s] + np.clip(first + periods, 0, lengths)
    # an interval with a period of unknown demand (gaps="missing") cannot be judged
    unjudged = due & (cu[b] - cu[a] > 0)
    due &= ~unjudged
    demand = np.where(due, cs[b] - cs[a], np.nan)
    available = o["inventory_position"] + o["order_quantity"]
    covered = due & (demand <= available + 1e-6)
    short = np.where(due, np.maximum(demand - available, 0.0), 0.0)
    tot = float(np.nansum(np.where(due, demand, 0.0)))
    svc = {"series_due": int(due.sum()), "not_yet_due": int((found & ~due & ~unjudged).sum()),
           "unknown_actuals": int(unjudged.sum()),
           "not_in_history": int((~found).sum()),
           "realised_cycle_service_level": _ratio(covered.sum(), due.sum()),
           "target_service_level": _mean(np.where(due, o["service_level"], np.nan)),
           "realised_fill_rate": _ratio(tot - short.sum(), tot),
           "units_short": float(short.sum())}
    per = {"protection_periods": periods.astype(np.float64), "protection_demand": demand,
           "available": np.where(due, available, np.nan), "covered": covered,
           "service_level": o["service_level"].astype(np.float64)}
    return svc, per


def _append_ledger(path: Path, summary: dict[str, Any]) -> None:
    """Append the summary as one flat row; the file is replaced atomically. A row of the same
    run and evaluation folder (a retried nightly evaluate) is replaced, not added again."""
    row = {k: v for k, v in summary.items() if not isinstance(v, dict)}
    row.update({f"interval_{k}": v for k, v in summary["interval"].items()})
    row.update({f"service_{k}": v for k, v in summary.get("service", {}).items()})
    # the share of actuals at or below each quantile level: one column per level
    row.update({f"calibration_q{k}": v for k, v in summary.get("calibration", {}).items()})
    new = pa.Table.from_pylist([row])
    if path.exists():
        old = pq.read_table(path)
        if row.get("evaluation") and {"run", "evaluation"} <= set(old.column_names):
            same = pc.and_(pc.equal(old.column("run"), row["run"]),
                           pc.equal(old.column("evaluation"), row["evaluation"]))
            same = pc.fill_null(same, False)
            if pc.any(same).as_py():
                log.info("ledger %s: the earlier row of this evaluation (%s) replaced", path,
                         row["evaluation"])
                old = old.filter(pc.invert(same))
        new = pa.concat_tables([old, new], promote_options="permissive")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_parquet_atomic(new, path)


def _mean(x: np.ndarray) -> float | None:
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    return float(x.mean()) if len(x) else None


def _ratio(a: float, b: float) -> float | None:
    a, b = float(a), float(b)
    return a / b if b > 0 and math.isfinite(a) else None

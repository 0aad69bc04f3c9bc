"""Work of the backtest on one shard, in one worker process. No Dask here: ``backtest.py``
maps these over the shards.

``forecast_origin_task`` forecasts a shard as it was at one origin (its history cut there);
``simulate_shard_task`` sets, for every SKU-location, day of the backtest, policy and target,
the reorder point and order-up-to level, simulates them all on the actual demand in one call
of :func:`replenish.kernels.simulate_inventory`, and writes the shard's sums.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from scipy.special import ndtri

from ..engine.contract import ColumnMap, DataError
from ..engine.io import write_parquet_atomic
from ..engine.metrics import history_scales, pinball
from ..engine.panel import FREQ_STEP_DAYS, Panel
from ..engine.validate import _match_keys, validate_inventory
from ._sharding import read_shard
from ._tasks import (ShardError, _get_model, forecast_table, inventory_defaults, load_shard_panel,
                     plan_kwargs)

__all__ = ["forecast_origin_task", "simulate_shard_task", "shard_freq", "POLICIES", "SUM_COLUMNS"]

POLICIES = ("replenish", "classical")
#: Per (policy, target, origin) sums a shard writes (simulator sums plus the stock's value).
SUM_COLUMNS = ("items", "periods", "demand", "sold", "short", "lost", "received", "ordered", "orders",
               "expired", "cycles", "stockout_cycles", "stockout_periods", "on_hand_sum",
               "on_hand_value_sum", "backorder_sum", "holding_cost", "stockout_cost",
               "ordering_cost", "waste_cost")
#: Per (policy, origin) forecast-accuracy sums.
ACC_COLUMNS = ("series", "rmsse_sum", "spl_sum", "periods", "forecast_sum", "actual_sum",
               "inside", "interval_periods")


def shard_freq(stage: str, shard: int, spec: dict[str, Any]) -> str | None:
    """The period ("D" or "W") of a shard's history (None when it holds no series)."""
    panel = load_shard_panel(stage, shard, {**spec, "until": None})
    return None if panel is None else panel.freq


def forecast_origin_task(stage: str, shard: int, spec: dict[str, Any], model_dir: str,
                         path: str) -> dict[str, Any]:
    """Forecast one shard as of ``spec["until"]``; write the forecasts to ``path``."""
    t0 = time.perf_counter()
    try:
        model = _get_model(model_dir, spec["forecast"].get("device", "auto"), spec["forecast"])
        if not spec.get("freq"):
            spec = {**spec, "freq": model.spec.freq}
        panel = load_shard_panel(stage, shard, spec)
        if panel is None:
            return {"shard": shard, "series": 0, "seconds": 0.0, "file": None}
        q = model.predict(panel)
        write_parquet_atomic(forecast_table(panel, np.asarray(model.levels), q), Path(path))
    except Exception as e:
        raise ShardError(f"shard {shard}: {type(e).__name__}: {e}") from e
    return {"shard": shard, "series": panel.n_series, "seconds": time.perf_counter() - t0,
            "file": path, "closed_days_zeroed": int(panel.report.get("closed_days_zeroed", 0)),
            "closed_days_examples": list(panel.report.get("closed_days_examples", []))}


def _dense(panel: Panel, first: np.datetime64, periods: int) -> np.ndarray:
    """Demand of every series on ``periods`` periods from ``first``, (n, periods), NaN where
    a series has no row."""
    step = FREQ_STEP_DAYS[panel.freq]
    off = (panel.start - np.datetime64(first, "D")).astype(np.int64) // step   # column of row 0
    out = np.full((panel.n_series, periods), np.nan)
    col = np.repeat(off, panel.lengths) + (np.arange(panel.n_rows) - np.repeat(panel.indptr[:-1],
                                                                               panel.lengths))
    keep = (col >= 0) & (col < periods)
    out[panel.series_of_row[keep], col[keep]] = panel.demand[keep]
    return out


def _read_forecasts(path: str | None, panel: Panel, horizon: int):
    """Forecasts of one origin for the panel's series: (levels, q (n, H, Q) with NaN rows for
    series without forecasts)."""
    if path is None or not Path(path).exists():
        return None, None
    t = pq.read_table(path)
    qcols = [c for c in t.column_names if c.startswith("q")]
    levels = np.array([float(c[1:]) for c in qcols])
    order = np.argsort(levels)
    levels, qcols = levels[order], [qcols[i] for i in order]
    pos = _match_keys(panel, t.column("sku"), t.column("location"))
    date = t.column("date").to_numpy().astype("datetime64[D]")
    q = np.full((panel.n_series, horizon, len(levels)), np.nan)
    ok = pos >= 0
    # rows of one series come in date order (forecast_table writes them so)
    first = np.full(panel.n_series, np.datetime64("NaT"), "datetime64[D]")
    first[pos[ok]] = date[ok]
    np.minimum.at(first.view(np.int64), pos[ok], date[ok].view(np.int64))
    step = FREQ_STEP_DAYS[panel.freq]
    h = (date[ok] - first[pos[ok]]).astype(np.int64) // step
    inside = h < horizon
    vals = np.column_stack([t.column(c).to_numpy() for c in qcols])[ok]
    q[pos[ok][inside], h[inside]] = vals[inside]
    return levels, q


def _accuracy(actual: np.ndarray, q: np.ndarray, levels: np.ndarray, hist: np.ndarray) -> dict[str, float]:
    """Accuracy sums of one origin's forecasts (n, H, Q) against actuals (n, H) (NaN: none),
    scaled by each series' history before the origin (hist (n, T), NaN before its start)."""
    has = np.isfinite(actual) & np.isfinite(q[..., 0])
    n_per = has.sum(1)
    ok_rows = np.isfinite(hist)
    lengths = ok_rows.sum(1)
    values = hist[ok_rows]   # row-major: each series' values in order, as one flat array
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    msd, mad = history_scales(values, indptr)
    mid = int(np.argmin(np.abs(levels - 0.5)))
    a = np.where(has, actual, 0.0)
    f = np.nan_to_num(q)
    med = f[..., mid]
    with np.errstate(invalid="ignore", divide="ignore"):
        rmsse = np.sqrt((np.where(has, a - med, 0.0) ** 2).sum(1) / n_per / msd)
        spl = (pinball(a, f, levels) * has[..., None]).sum((1, 2)) / (n_per * len(levels)) / mad
    ok = (n_per > 0) & np.isfinite(msd) & (msd > 0) & np.isfinite(mad) & (mad > 0)
    lo = int(np.argmin(np.abs(levels - 0.05)))
    hi = int(np.argmin(np.abs(levels - 0.95)))
    inside = has & (actual >= f[..., lo]) & (actual <= f[..., hi])
    return {"series": float(ok.sum()), "rmsse_sum": float(rmsse[ok].sum()),
            "spl_sum": float(spl[ok].sum()), "periods": float(n_per.sum()),
            "forecast_sum": float(np.where(has, med, 0.0).sum()), "actual_sum": float(a.sum()),
            "inside": float(inside.sum()), "interval_periods": float(has.sum())}


def _shifted(q: np.ndarray, shift: int) -> np.ndarray:
    """Forecasts seen from ``shift`` periods later: periods shift.. of q, the last repeated."""
    if shift == 0:
        return q
    h = q.shape[1]
    idx = np.minimum(np.arange(h) + shift, h - 1)
    return q[:, idx]


def _tile(a, reps: int):
    """An (n,) array (or a scalar/None) repeated ``reps`` times as blocks: (reps * n,)."""
    if a is None or np.ndim(a) == 0:
        return a
    return np.tile(np.asarray(a), reps)


def _shelf_life(days: np.ndarray, step: int, horizon: int, tile):
    """Whole periods a unit keeps (at least 1); None when nothing expires. Units that do not
    expire keep longer than the backtest lasts."""
    if not np.isfinite(days).any():
        return None
    periods = np.where(np.isfinite(days), np.maximum(np.round(days / step), 1), horizon + 1)
    return tile(periods)


def simulate_shard_task(stage: str, shard: int, spec: dict[str, Any], bt: dict[str, Any],
                        out_dir: str) -> dict[str, Any]:
    """Policies for every day, policy and target of one shard, simulated on its actuals.

    ``bt``: the backtest's settings: ``origins`` (dates, the last period each forecast saw),
    ``forecasts`` (per origin, this shard's forecast file or None), ``every`` (periods per
    origin), ``targets``, ``classical`` (method: "ma" or "ets", window, season, error window,
    season length for ETS), ``unmet``,
    ``crossing``. Writes ``sums-<shard>.parquet``, ``accuracy-<shard>.parquet`` and
    ``series-<shard>.parquet`` under ``out_dir``.
    """
    t0 = time.perf_counter()
    try:
        return _simulate_shard(stage, shard, spec, bt, out_dir, t0)
    except Exception as e:
        raise ShardError(f"shard {shard}: {type(e).__name__}: {e}") from e


def _simulate_shard(stage, shard, spec, bt, out_dir, t0):
    from ..kernels import plan_orders, simulate_inventory
    from ..kernels.classical import classical_policy, forecast_error_std, moving_average_forecast

    panel = load_shard_panel(stage, shard, spec)
    if panel is None:
        return {"shard": shard, "series": 0, "seconds": 0.0, "excluded": 0}
    step = FREQ_STEP_DAYS[panel.freq]
    origins = [np.datetime64(o, "D") for o in bt["origins"]]
    every, targets = int(bt["every"]), [float(t) for t in bt["targets"]]
    n_orig = len(origins)
    first_day = origins[0] + np.timedelta64(step, "D")
    horizon_sim = n_orig * every
    # only SKU-locations that existed at the first origin are backtested (the others had no
    # history to plan from); they are counted
    inv = validate_inventory(read_shard(stage, "inventory", shard), panel, ColumnMap(**spec["columns"]),
                             inventory_defaults(spec, panel.freq), report=panel.report)
    exists = np.flatnonzero(panel.start <= origins[0])
    excluded = panel.n_series - len(exists)
    panel = panel.take(exists)
    inv = {k: v[exists] for k, v in inv.items()}
    n = panel.n_series
    if n == 0:
        return {"shard": shard, "series": 0, "seconds": 0.0, "excluded": excluded}
    kw = plan_kwargs(inv, spec, step)
    actual = _dense(panel, first_day, horizon_sim)
    # unknown periods (--gaps missing) have no demand in the simulation: nothing is sold or
    # short on them; they are counted (ends are aligned, so no other period is NaN)
    unknown = int((~np.isfinite(actual)).sum())
    actual = np.where(np.isfinite(actual), actual, 0.0)
    t_hist = int((origins[-1] - panel.start.min()).astype(np.int64) // step) + 1
    hist_all = _dense(panel, panel.start.min(), t_hist + horizon_sim)
    review = np.maximum(np.round(kw["review_period"]), 1.0)
    protection = np.asarray(kw["lead_time"], np.float64) + np.asarray(kw["review_period"], np.float64)
    cm = bt["classical"]
    hold = inv["unit_cost"] * inv["holding_cost_rate"] / (365.0 / step)

    n_t = len(targets)
    s_lvl = np.zeros((2, n_t, n, horizon_sim))
    big_s = np.zeros((2, n_t, n, horizon_sim))
    acc_rows = []
    ets_fallbacks = 0   # series-origins AutoETS could not fit (moving average instead)
    for k, origin in enumerate(origins):
        cut = int((origin - panel.start.min()).astype(np.int64) // step) + 1
        hist = hist_all[:, :cut]
        levels, q = _read_forecasts(bt["forecasts"][k], panel, int(bt["horizon"]))
        if q is None:
            raise DataError(f"no forecasts for origin {origin}")
        missing = ~np.isfinite(q[:, 0, 0])
        q = np.nan_to_num(q)
        h = q.shape[1]
        fut = hist_all[:, cut:cut + h]
        fut = np.concatenate([fut, np.full((n, h - fut.shape[1]), np.nan)], axis=1)
        acc = _accuracy(np.where(missing[:, None], np.nan, fut), q, levels, hist)
        acc_rows.append({"policy": "replenish", "origin": str(origin), **acc})
        # ours: each day of the week from the origin's forecast, seen from that day
        qs = np.concatenate([_shifted(q, j) for j in range(every)] * n_t)      # (n_t*every*n, H, Q)
        reps = n_t * every
        args = {key: _tile(v, reps) for key, v in kw.items()
                if key not in ("method", "n_samples", "seed", "target", "periods_per_year")}
        args["service_level"] = np.repeat(np.asarray(targets), every * n)
        res = plan_orders(levels, qs, **args, target=kw["target"], periods_per_year=kw["periods_per_year"],
                          method=kw["method"], n_samples=kw["n_samples"], seed=kw["seed"], n_threads=1)
        days = slice(k * every, (k + 1) * every)
        s_lvl[0, :, :, days] = res["reorder_point"].reshape(n_t, every, n).transpose(0, 2, 1)
        big_s[0, :, :, days] = res["order_up_to"].reshape(n_t, every, n).transpose(0, 2, 1)
        # classical: moving average (or AutoETS) and the std of its own one-period errors,
        # at the origin
        f = moving_average_forecast(hist, h + every, window=cm["window"], season=cm["season"])
        sigma = forecast_error_std(hist, window=cm["window"], season=cm["season"], errors=cm["errors"])
        if cm.get("method") == "ets":
            from ..engine.ets import ets_forecasts
            fe, se, bad = ets_forecasts(hist, h + every, season=cm["season_length"], errors=cm["errors"])
            f, sigma = np.where(bad[:, None], f, fe), np.where(bad, sigma, se)
            ets_fallbacks += int(bad.sum())
        f = np.where(np.isfinite(f), f, 0.0)
        sigma = np.where(np.isfinite(sigma), sigma, 0.0)
        cq = np.maximum(f[:, :h, None] + sigma[:, None, None] * ndtri(levels)[None, None, :], 0.0)
        acc_rows.append({"policy": "classical", "origin": str(origin),
                         **_accuracy(np.where(missing[:, None], np.nan, fut), cq, levels, hist)})
        for ti, target in enumerate(targets):
            for j in range(every):
                pol = classical_policy(f[:, j:], sigma, protection=protection, service_level=target,
                                       target=kw["target"], review_period=kw["review_period"],
                                       order_cost=kw["order_cost"], holding_cost=hold)
                s_lvl[1, ti, :, k * every + j] = pol["reorder_point"]
                big_s[1, ti, :, k * every + j] = pol["order_up_to"]

    combos = 2 * n_t
    tile = lambda a: _tile(a, combos)  # noqa: E731
    lead_std = kw["lead_time_std"]
    sim = simulate_inventory(
        np.tile(actual, (combos, 1)), reorder_point=s_lvl.reshape(combos * n, horizon_sim),
        order_up_to=big_s.reshape(combos * n, horizon_sim),
        segment_start=np.arange(horizon_sim), review_period=tile(review),
        review_offset=0, lead_time=tile(np.asarray(kw["lead_time"], np.float64)),
        lead_time_std=tile(np.asarray(lead_std, np.float64)) if lead_std is not None else None,
        crossing=bool(bt["crossing"]), moq=tile(kw["moq"]), case_pack=tile(kw["case_pack"]),
        max_order=tile(np.where(np.isinf(inv["max_order"]), np.inf, inv["max_order"])),
        on_hand=big_s[:, :, :, 0].reshape(-1), lost_sales=bt["unmet"] == "lost",
        shelf_life=_shelf_life(inv["shelf_life_days"], step, horizon_sim, tile),
        unit_cost=tile(inv["unit_cost"]), holding_cost_rate=tile(inv["holding_cost_rate"]),
        stockout_cost=tile(np.nan_to_num(inv["stockout_cost"])), order_cost=tile(inv["order_cost"]),
        periods_per_year=365.0 / step, seed=int(spec["seed"]), item_ids=tile(np.arange(n)))
    # days -> origins
    def per_origin(a):
        return a.reshape(combos * n, n_orig, every).sum(axis=2).reshape(2, n_t, n, n_orig)

    sums = {k: per_origin(sim[k]) for k in SUM_COLUMNS if k in sim}
    sums["on_hand_value_sum"] = sums["on_hand_sum"] * inv["unit_cost"][None, None, :, None]
    rows = []
    for pi, policy in enumerate(POLICIES):
        for ti, target in enumerate(targets):
            for k, origin in enumerate(origins):
                r = {"policy": policy, "target": target, "origin": str(origin), "items": float(n)}
                r.update({c: float(sums[c][pi, ti, :, k].sum()) for c in SUM_COLUMNS if c in sums})
                rows.append(r)
    out = Path(out_dir)
    write_parquet_atomic(pa.Table.from_pylist(rows), out / f"sums-{shard:05d}.parquet")
    write_parquet_atomic(pa.Table.from_pylist(acc_rows), out / f"accuracy-{shard:05d}.parquet")
    # per SKU-location, policy and target: totals over the whole backtest
    tot = {c: sums[c].sum(axis=3) for c in sums}
    with np.errstate(invalid="ignore", divide="ignore"):
        fill = np.where(tot["demand"] > 0, tot["sold"] / tot["demand"], np.nan)
        csl = np.where(tot["cycles"] > 0, 1 - tot["stockout_cycles"] / tot["cycles"], np.nan)
    cols = {"sku": np.tile(panel.sku, combos), "location": np.tile(panel.location, combos),
            "policy": np.repeat(np.array(POLICIES, dtype=object), n_t * n),
            "target": np.tile(np.repeat(np.asarray(targets), n), 2),
            "fill_rate": fill.reshape(-1), "cycle_service_level": csl.reshape(-1),
            "avg_on_hand_units": (tot["on_hand_sum"] / horizon_sim).reshape(-1),
            "avg_on_hand_value": (tot["on_hand_value_sum"] / horizon_sim).reshape(-1)}
    for c in ("demand", "stockout_periods", "orders", "ordered", "expired", "holding_cost",
              "stockout_cost", "ordering_cost", "waste_cost"):
        cols[c] = tot[c].reshape(-1)
    write_parquet_atomic(pa.table(cols), out / f"series-{shard:05d}.parquet")
    return {"shard": shard, "series": n, "excluded": excluded, "unknown_periods": unknown,
            "ets_fallbacks": ets_fallbacks, "seconds": time.perf_counter() - t0}

"""Work done on one shard, in one worker process. No Dask here: ``plan.py`` maps these.

Each function reads its shard from the staging area, runs the engine and the kernels, and
writes its outputs atomically. The model is loaded once per worker process and cached.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ..engine.contract import ColumnMap, DataError, InventoryDefaults
from ..engine.io import write_parquet_atomic
from ..engine.panel import FREQ_DEFAULTS, FREQ_STEP_DAYS, Panel, union_categories
from ..engine.validate import build_panel, validate_inventory
from ._sharding import _pair_hash, file_checksum, read_shard, shard_dir

__all__ = ["load_shard_panel", "train_task", "plan_shard_task", "prepare_shard_task",
           "compute_shard_task", "write_shard_task", "quantile_column", "plan_kwargs",
           "network_store_task", "inventory_defaults", "WEEKLY_REVIEW_DAYS"]

log = logging.getLogger("replenish")
repair_log = logging.getLogger("replenish.repairs")   # counted in the report: said once per job
_MODEL_CACHE: dict[tuple[str, float], Any] = {}


class ShardError(RuntimeError):
    """A shard failed; the message starts with the shard number."""


def quantile_column(level: float) -> str:
    """Column name of a quantile level: 0.05 -> 'q0.05', 0.5 -> 'q0.5'."""
    return f"q{float(level):g}"


def load_shard_panel(stage: str, shard: int, spec: dict[str, Any]) -> Panel | None:
    """Build and validate the Panel of one shard (None when the shard holds no series)."""
    columns = ColumnMap(**spec["columns"])
    hist = read_shard(stage, "history", shard)
    if hist is None:
        return None
    fut = read_shard(stage, "future", shard) if spec.get("has_future") else None
    panel = build_panel(hist, columns, freq=spec.get("freq"), negative=spec["negative"],
                        missing_demand=spec["missing_demand"], duplicates=spec["duplicates"],
                        min_history=spec["min_history"], future=fut,
                        horizon=spec["forecast"].get("horizon", "auto") if fut is not None else None,
                        end=spec.get("end"), gaps=spec.get("gaps", "zero"), **_feed_rules(spec))
    if spec.get("until") is not None:
        # the history as it was on that day (a backtest origin); the known covariates of the
        # following periods come from the later rows
        horizon = spec["forecast"].get("horizon") or FREQ_DEFAULTS[panel.freq]["horizon"]
        panel = panel.cut(np.datetime64(spec["until"], "D"), int(horizon))[0]
        if panel.n_series == 0:
            return None
    if spec.get("has_future") and panel.future_known is None:
        panel.future_known = np.zeros((panel.n_series, 0, len(columns.known)), np.float32)
    return panel


def model_settings(freq: str, forecast: dict[str, Any]) -> dict[str, Any]:
    """The forecaster's settings for data of frequency ``freq`` ("D" or "W"): the config's
    ``[forecast]`` over the frequency's defaults (``FREQ_DEFAULTS``: daily 28 days ahead, 112
    back, 1,400 training steps; weekly 12 weeks ahead, 52 back, ``ForecastConfig``'s 700)."""
    return {**FREQ_DEFAULTS[freq], **forecast}


def _feed_rules(spec: dict[str, Any]) -> dict[str, Any]:
    """build_panel's arguments for the job-wide choices (``jobs._profile``): static numbers
    and their imputation, gap rules and flags."""
    return {"missing_static": spec.get("missing_static", "error"),
            "static_fill": spec.get("static_fill"), "static_numbers": spec.get("static_numbers"),
            "gap_fill": spec.get("gap_fill") or None, "flags": spec.get("flags")}


#: Review period of a weekly plan whose inventory does not give one: once a period.
WEEKLY_REVIEW_DAYS = 7.0


def inventory_defaults(spec: dict[str, Any], freq: str) -> InventoryDefaults:
    """The inventory defaults of a job: the built-in ones, the period's review default
    (weekly data: review once a week, ``WEEKLY_REVIEW_DAYS``; daily: every day), then the
    job's own ``[inventory_defaults]``."""
    period = {"review_period_days": WEEKLY_REVIEW_DAYS} if freq == "W" else {}
    return InventoryDefaults().with_overrides({**period, **spec.get("inventory_defaults", {})})


#: Forecast settings that only change how a saved model runs (not what it is): the job's
#: values apply to a loaded model too.
_RUNTIME_FIELDS = ("precision", "compile", "predict_batch_size", "closed_days")


def _get_model(model_dir: str, device: str = "auto", runtime: dict[str, Any] | None = None):
    from ..engine.forecast import TFTForecaster
    runtime = {k: v for k, v in (runtime or {}).items() if k in _RUNTIME_FIELDS}
    key = (str(model_dir), os.path.getmtime(model_dir), device, tuple(sorted(runtime.items())))
    if key not in _MODEL_CACHE:
        _MODEL_CACHE.clear()
        model = TFTForecaster.load(model_dir, device=device)
        for k, v in runtime.items():
            setattr(model.config, k, v)
        _MODEL_CACHE[key] = model
    return _MODEL_CACHE[key]


def train_task(stage: str, shards: list[int], spec: dict[str, Any], model_dir: str,
               max_series: int, init_from: str | None = None) -> dict[str, Any]:
    """Train the global model on the series of ``shards`` (at most ``max_series``) and save it.

    Training is the only task running, so it may use the cores of its machine
    (:func:`train_threads`); the worker's thread count is restored afterwards, so the shard
    tasks that follow, one per worker, do not oversubscribe the cores.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(train_threads())
    try:
        return _train(stage, shards, spec, model_dir, max_series, init_from)
    finally:
        torch.set_num_threads(threads)


def train_threads() -> int:
    """Threads of the training task: every core, but one on a machine of two or fewer.

    Measured on the 2-vCPU development machine: a second OpenMP thread does not speed up a
    step of the default model (hidden 32), and while another process is busy two threads
    spin-wait for each other and run 5-50x slower (``benchmarks/RESULTS.md``).
    """
    cores = os.cpu_count() or 1
    return 1 if cores <= 2 else cores


def _train(stage: str, shards: list[int], spec: dict[str, Any], model_dir: str,
           max_series: int, init_from: str | None) -> dict[str, Any]:
    from ..engine.forecast import ForecastConfig, TFTForecaster

    t0 = time.perf_counter()
    panels = []
    failed: list[str] = []
    n = 0
    for s in shards:
        try:
            p = load_shard_panel(stage, s, spec)
        except DataError as e:   # check the other shards too, so that all are reported at once
            failed.append(f"shard {s}: {e}")
            continue
        if p is not None:
            if not spec.get("freq"):   # inferred once: every shard then has the first's
                spec = {**spec, "freq": p.freq}
                log.info("frequency inferred from shard %d: %s", s, p.freq)
            panels.append(p)
            n += p.n_series
        if n >= max_series:
            break
    if failed:
        raise DataError(f"{len(failed)} of the {len(shards)} shards read for training failed "
                        f"the data rules:\n  " + "\n  ".join(failed))
    if not panels:
        raise DataError("history: no series to train on")
    panel = _concat_panels(panels)
    if panel.n_series > max_series:
        rng = np.random.default_rng(spec.get("seed", 0))
        panel = panel.take(np.sort(rng.choice(panel.n_series, max_series, replace=False)))
    model = TFTForecaster(ForecastConfig(**model_settings(panel.freq, spec["forecast"])))
    from ._progress import training_reporter
    model.fit(panel, init_from=init_from, progress=training_reporter())
    try:   # for the report; a failure here must not fail the training
        from ..engine._importance import variable_importance
        model.history["variable_importance"] = variable_importance(model, panel,
                                                                   seed=spec.get("seed", 0))
    except Exception as e:  # noqa: BLE001
        log.warning("variable importances not computed: %s: %s", type(e).__name__, e)
    tmp = Path(model_dir).with_name(Path(model_dir).name + ".tmp")
    model.save(tmp)
    if Path(model_dir).exists():
        import shutil
        shutil.rmtree(model_dir)
    os.replace(tmp, model_dir)
    from ._messages import sum_reports
    return {"series": panel.n_series, "rows": panel.n_rows, "seconds": time.perf_counter() - t0,
            "history": getattr(model, "history", {}),
            "report": sum_reports(p.report for p in panels)}


def _concat_panels(panels: list[Panel]) -> Panel:
    if len(panels) == 1:
        return panels[0]
    if panels[0].categories:   # each shard numbers its labels itself: one list for all
        cats = union_categories(panels)
        panels = [p.recode(cats) for p in panels]
    p0 = panels[0]
    lengths = np.concatenate([p.lengths for p in panels])
    fk = None
    if all(p.future_known is not None for p in panels):
        fk = np.concatenate([p.future_known for p in panels])
    return Panel(
        sku=np.concatenate([p.sku for p in panels]),
        location=np.concatenate([p.location for p in panels]),
        start=np.concatenate([p.start for p in panels]),
        indptr=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        demand=np.concatenate([p.demand for p in panels]), freq=p0.freq,
        known=np.concatenate([p.known for p in panels]), known_names=p0.known_names,
        observed=np.concatenate([p.observed for p in panels]), observed_names=p0.observed_names,
        static={k: np.concatenate([p.static[k] for p in panels]) for k in p0.static},
        future_known=fk, categories=dict(p0.categories))


def forecast_table(panel: Panel, levels: np.ndarray, q: np.ndarray) -> pa.Table:
    """Long forecasts table: sku, location, date, one column per quantile (units per period)."""
    n, h, _ = q.shape
    cols: dict[str, Any] = {
        "sku": np.repeat(panel.sku, h), "location": np.repeat(panel.location, h),
        "date": panel.horizon_dates(h).reshape(-1),
    }
    for j, lvl in enumerate(levels):
        cols[quantile_column(lvl)] = q[:, :, j].reshape(-1).astype(np.float32)
    return pa.table(cols)


def _unlimited_as_none(max_order: np.ndarray) -> np.ndarray | None:
    """The kernels take finite inputs only: 'no maximum' (inf) becomes None or a huge cap."""
    if np.isinf(max_order).all():
        return None
    return np.where(np.isinf(max_order), 1e15, max_order)


def dc_service_days(stage: str, shard: int, panel: Panel, report: dict[str, Any]) -> np.ndarray:
    """Days each series' DC may take to serve it, from the staged echelon placement.

    ``net_lead_time_days - lead_time_days`` of the stores table (the DC's service time, less
    the days a store may take to serve its shoppers with ``--network``); 0
    for a series without a row there (its DC serves at once), counted in
    ``report["echelon_missing"]`` and logged. Rows for other SKU-locations are ignored.
    """
    from ..engine.validate import _match_keys, to_numeric

    out = np.zeros(panel.n_series)
    t = read_shard(stage, "echelon", shard)
    pos = np.empty(0, np.int64) if t is None else _match_keys(panel, t.column("sku"),
                                                               t.column("location"))
    if t is not None and (pos >= 0).any():
        net_lt = to_numeric(t.column("net_lead_time_days"), "net_lead_time_days")
        extra = net_lt - to_numeric(t.column("lead_time_days"), "lead_time_days")
        # (negative with --network when a store promises its shoppers more days than its DC takes)
        bad = int((~((net_lt >= 0) & np.isfinite(extra)))[pos >= 0].sum())
        if bad:
            raise DataError(f"echelon: rule 'net_lead_time_days >= 0, both numbers' "
                            f"broken by {bad} rows")
        if np.bincount(pos[pos >= 0], minlength=panel.n_series).max() > 1:
            raise DataError("echelon: rule 'one row per SKU-location' broken")
        out[pos[pos >= 0]] = extra[pos >= 0]
    missing = panel.n_series - int((pos >= 0).sum())
    if missing:
        report["echelon_missing"] = missing
        repair_log.warning("echelon: %d SKU-locations without a row in the placement keep their own "
                    "lead time (their DC serves at once)", missing)
    return out


def plan_kwargs(inv: dict[str, np.ndarray], spec: dict[str, Any], step: int,
                dc_days: np.ndarray | float = 0.0) -> dict[str, Any]:
    """The arguments of :func:`replenish.kernels.plan_orders` for validated inventory rows:
    days become periods of ``step`` days, the DC's service time (``dc_days``) lengthens the
    lead time, and the policy settings come from the job's ``spec``."""
    return dict(
        on_hand=inv["on_hand"], on_order=inv["on_order"], backorders=inv["backorders"],
        lead_time=(inv["lead_time_days"] + dc_days) / step,
        lead_time_std=inv["lead_time_std_days"] / step,
        review_period=inv["review_period_days"] / step, service_level=inv["service_level"],
        target=spec["target"], unit_cost=inv["unit_cost"],
        holding_cost_rate=inv["holding_cost_rate"],
        stockout_cost=np.where(np.isnan(inv["stockout_cost"]), 0.0, inv["stockout_cost"])
        if spec["target"] != "cost" else inv["stockout_cost"],
        order_cost=inv["order_cost"], moq=inv["moq"], case_pack=inv["case_pack"],
        max_order=_unlimited_as_none(inv["max_order"]), periods_per_year=365.0 / step,
        method=spec["method"], n_samples=spec["n_samples"], seed=spec["seed"])


def optimize(panel: Panel, levels: np.ndarray, q, inv: dict[str, np.ndarray],
             spec: dict[str, Any], n_threads: int | None = 1,
             dc_days: np.ndarray | None = None, report: dict[str, Any] | None = None,
             history: bool = True, accuracy: dict[str, np.ndarray] | None = None) -> pa.Table:
    """Inventory decisions for every series of the panel (see README, 'orders').

    ``q`` (n, H, Q): NumPy, or CuPy (on a GPU worker, straight from the model's output
    tensor): the kernels run on its backend and only the output columns come back to the
    host. ``n_threads`` 1 (the default): the shard tasks run one per worker thread and the
    cluster has one worker thread per core, so the kernels must not start threads of
    their own (``None``: the kernels' default, every core). ``dc_days``: days each
    series' DC may take to serve it (:func:`dc_service_days`), added to its lead time.
    SKU-locations whose lead time + review period reach past the forecast horizon (the
    kernels repeat the last forecast period there) are counted in
    ``report["protection_beyond_horizon"]`` and logged. ``history``: the panel holds the
    series' history (False for the key panel of an optimize job: no history columns).
    ``accuracy``: per-item recent forecast bias and RMSSE (:mod:`.exceptions`). The
    explanation and exception columns come from :mod:`.exceptions`.
    """
    from ..kernels import plan_orders
    from ..kernels._backend import to_numpy
    from . import exceptions as exc

    step = FREQ_STEP_DAYS[panel.freq]
    dc_days = np.zeros(panel.n_series) if dc_days is None else np.asarray(dc_days, np.float64)
    need = (inv["lead_time_days"] + dc_days + inv["review_period_days"]) / step
    beyond = int((need > q.shape[1] + 1e-9).sum())
    if beyond:
        repair_log.warning("%d SKU-locations need demand beyond the %d-period horizon (lead time + "
                    "review period up to %.0f periods): its last period is repeated there",
                    beyond, q.shape[1], float(need.max()))
        if report is not None:
            report["protection_beyond_horizon"] = beyond
    res = plan_orders(levels, q, **plan_kwargs(inv, spec, step, dc_days), n_threads=n_threads)
    res = {k: to_numpy(v) for k, v in res.items() if k in _ORDER_KEYS}   # device to host
    as_of = panel.end + np.timedelta64(step, "D")
    wait = res["periods_until_order"]
    has = np.isfinite(wait)
    order_date = np.where(has, as_of + np.round(np.where(has, wait, 0) * step).astype("timedelta64[D]"),
                          np.datetime64("NaT"))
    position = inv["on_hand"] + inv["on_order"] - inv["backorders"]
    cols = {
        "sku": panel.sku, "location": panel.location, "as_of": as_of,
        "on_hand": inv["on_hand"], "on_order": inv["on_order"], "backorders": inv["backorders"],
        "inventory_position": position, "lead_time_days": inv["lead_time_days"],
        "lead_time_std_days": inv["lead_time_std_days"],
        "dc_service_days": dc_days,
        "review_period_days": inv["review_period_days"], "service_level": inv["service_level"],
        "unit_cost": inv["unit_cost"], "holding_cost_rate": inv["holding_cost_rate"],
        "lead_time_demand_mean": res["lead_time_demand_mean"],
        "lead_time_demand_std": res["lead_time_demand_std"],
        "protection_demand_mean": res["protection_demand_mean"],
        "protection_demand_std": res["protection_demand_std"],
        "safety_stock": res["safety_stock"], "reorder_point": res["reorder_point"],
        "order_up_to": res["order_up_to"], "order_quantity": res["order_quantity"],
        "order_date": order_date, "order_value": res["order_quantity"] * inv["unit_cost"],
        "expected_fill_rate": res["expected_fill_rate"],
        "expected_cycle_service_level": res["expected_cycle_service_level"],
        "expected_holding_cost": res["expected_holding_cost"],
        "expected_stockout_cost": res["expected_stockout_cost"],
        "expected_ordering_cost": res["expected_ordering_cost"],
    }
    cols.update(exc.explain_columns(levels, q, inv, res, step=step, as_of=as_of, dc_days=dc_days,
                                    panel=panel if history else None, accuracy=accuracy))
    t = pa.table({k: (pa.array(v) if k in ("sku", "location") else
                      pa.array(np.asarray(v, dtype="datetime64[D]"))
                      if k in ("as_of", "order_date", "stockout_date") else
                      pa.array(v, pa.string()) if k == "binding_rule"
                      else pa.array(np.asarray(v, dtype=np.float64)))
                  for k, v in cols.items()})
    return exc.with_exception_columns(t, exc.ExceptionSettings.from_mapping(spec.get("exceptions")))


#: The kernels' outputs the orders table uses (the only ones copied back from a GPU).
_ORDER_KEYS = ("lead_time_demand_mean", "lead_time_demand_std", "protection_demand_mean",
               "protection_demand_std", "safety_stock", "reorder_point", "order_up_to",
               "order_quantity", "periods_until_order", "expected_fill_rate",
               "expected_cycle_service_level", "expected_holding_cost", "expected_stockout_cost",
               "expected_ordering_cost")


def write_output(table: pa.Table, out: str, name: str, shard: int) -> dict[str, Any]:
    """Write one shard's rows of an output dataset, partitioned by location (hive layout).

    Files are ``OUT/<name>/location=<value>/part-<shard>.parquet`` (the value URI-encoded),
    each written atomically; the same shard always writes the same names, so a retried or
    resumed shard replaces its files and never duplicates rows. Returns
    ``{relative path: {"rows", "sha256"}}``.
    """
    from urllib.parse import quote
    files: dict[str, Any] = {}
    loc = table.column("location")
    if table.num_rows == 0:
        return files
    import pyarrow.compute as pc
    body = table.drop_columns(["location"])
    for value in pc.unique(loc).to_pylist():
        part = body.filter(pc.equal(loc, pa.scalar(value, loc.type)))
        rel = f"{name}/location={quote(str(value), safe='')}/part-{shard:05d}.parquet"
        path = Path(out) / rel
        write_parquet_atomic(part, path)
        files[rel] = {"rows": part.num_rows, "sha256": file_checksum(path)}
    return files


def planner_outputs(orders: pa.Table, out: str, shard: int, spec: dict[str, Any], stage: str,
                    panel: Panel | None, horizon: int) -> dict[str, Any]:
    """Write one shard's exceptions (``OUT/exceptions/part-<shard>.parquet``, one row per
    item and reason) and the recent actuals of its highlight items
    (``OUT/highlights/part-<shard>.parquet``, read by the report); with a budget also the
    recent actuals of all its items (``_work/recent``), for the budget pass to choose from.
    Returns the files written, as :func:`write_output` does."""
    from . import exceptions as exc
    settings = exc.ExceptionSettings.from_mapping(spec.get("exceptions"))
    k = int(spec.get("highlights", 8))
    periods = 2 * horizon
    recent = None
    if panel is not None:
        if spec.get("budget"):
            recent = exc.recent_table(panel, periods=periods)
            write_parquet_atomic(recent, Path(stage) / "recent" / f"shard={shard:05d}.parquet")
        else:
            rows, _, _ = exc.highlight_rows(orders, k)
            recent = exc.recent_table(panel, np.unique(rows), periods=periods)
    return exc.write_exception_files(orders, recent, settings, k, out, shard)


def _read_forecasts_shard(stage: str, shard: int, freq: str | None) -> tuple[Panel, np.ndarray, np.ndarray] | None:
    """Forecasts of one shard (written by a forecast job) as (key panel, levels, q[n, H, Q])."""
    t = read_shard(stage, "forecasts", shard)
    if t is None:
        return None
    qcols = [c for c in t.column_names if c.startswith("q")]
    levels = np.array([float(c[1:]) for c in qcols])
    order = np.argsort(levels)
    levels, qcols = levels[order], [qcols[i] for i in order]
    import pyarrow.compute as pc
    t = t.take(pc.sort_indices(t, sort_keys=[("sku", "ascending"), ("location", "ascending"),
                                            ("date", "ascending")]))
    sku, loc = t.column("sku").to_numpy(), t.column("location").to_numpy()
    new = np.ones(t.num_rows, bool)
    new[1:] = (sku[1:] != sku[:-1]) | (loc[1:] != loc[:-1])
    firsts = np.flatnonzero(new)
    lengths = np.diff(np.append(firsts, t.num_rows))
    if (lengths != lengths[0]).any():
        raise DataError(f"forecasts: rule 'every SKU-location has the same horizon' broken by "
                        f"{int((lengths != lengths[0]).sum())} SKU-locations")
    h = int(lengths[0])
    dates = t.column("date").to_numpy().astype("datetime64[D]")
    first_date = dates[firsts]
    if freq is None:
        freq = "W" if h > 1 and (dates[1] - dates[0]).astype(int) == 7 else "D"
    q = np.stack([t.column(c).to_numpy().astype(np.float32) for c in qcols], -1).reshape(len(firsts), h, -1)
    # A one-period key panel ending the period before the forecasts begin.
    keys = Panel(sku=sku[firsts], location=loc[firsts],
                 start=first_date - np.timedelta64(FREQ_STEP_DAYS[freq], "D"),
                 indptr=np.arange(len(firsts) + 1, dtype=np.int64),
                 demand=np.zeros(len(firsts), np.float32), freq=freq)
    return keys, levels, q


def _with_budget_group(orders: pa.Table, inv_tab: pa.Table, panel: Panel,
                       spec: dict[str, Any]) -> pa.Table:
    """``orders`` with ``budget_group`` (text) from the inventory column that names each
    SKU-location's budget group (``--budget-group``); unchanged without one."""
    col = spec.get("budget_group")
    if not col:
        return orders
    from ..engine.validate import _match_keys, _inventory_keys, key_text
    if col not in inv_tab.column_names:
        raise DataError(f"inventory: the budget group column '{col}' (--budget-group) is missing; "
                        f"it has {inv_tab.column_names}")
    sc, lc = _inventory_keys(inv_tab, ColumnMap(**spec["columns"]))
    pos = _match_keys(panel, inv_tab.column(sc), inv_tab.column(lc))
    groups = np.empty(panel.n_series, dtype=object)
    ok = pos >= 0
    groups[pos[ok]] = key_text(inv_tab.column(col))[ok]
    missing = int(sum(g is None for g in groups))
    if missing:
        raise DataError(f"inventory: column '{col}': rule 'every SKU-location has a budget "
                        f"group' broken by {missing} rows")
    return orders.append_column("budget_group", pa.array(groups, pa.string()))


def _accuracy(stage: str, shard: int, panel: Panel, spec: dict[str, Any]):
    """Per-item recent forecast bias and RMSSE from the staged ledger accuracy (or None)."""
    if not spec.get("has_accuracy"):
        return None
    from .exceptions import accuracy_arrays
    return accuracy_arrays(read_shard(stage, "accuracy", shard), panel)


def optimize_shard_task(stage: str, shard: int, spec: dict[str, Any], out: str) -> dict[str, Any]:
    """Optimize one shard from staged forecasts (the ``optimize`` job); write its orders."""
    t0 = time.perf_counter()
    try:
        got = _read_forecasts_shard(stage, shard, spec.get("freq"))
        inv_tab = read_shard(stage, "inventory", shard)
        if got is None:
            if inv_tab is not None and inv_tab.num_rows:
                raise DataError(f"inventory: rule 'every row is a SKU-location of the forecasts' "
                                f"broken by {inv_tab.num_rows} rows")
            return {"shard": shard, "series": 0, "files": {}, "seconds": 0.0}
        keys, levels, q = got
        if inv_tab is None:
            raise DataError(f"inventory: rule 'every SKU-location has an inventory row' broken by "
                            f"{keys.n_series} SKU-locations")
        report: dict[str, Any] = {"freq": keys.freq}
        inv = validate_inventory(inv_tab, keys, ColumnMap(**spec["columns"]),
                                 inventory_defaults(spec, keys.freq), report=report)
        dc_days = dc_service_days(stage, shard, keys, report) if spec.get("has_echelon") else None
        acc = _accuracy(stage, shard, keys, spec)
        ot = optimize(keys, levels, q, inv, spec, dc_days=dc_days, report=report, history=False,
                      accuracy=acc)
        ot = _with_budget_group(ot, inv_tab, keys, spec)
        files = write_output(ot, out, "orders", shard)
        files.update(planner_outputs(ot, out, shard, spec, stage, None, q.shape[1]))
    except Exception as e:
        raise ShardError(f"shard {shard}: {type(e).__name__}: {e}") from e
    return {"shard": shard, "series": keys.n_series, "seconds": time.perf_counter() - t0,
            "files": files, "report": report, "backend": {"optimize": "numpy"}}


def prepare_shard(stage: str, shard: int, spec: dict[str, Any],
                  stages: tuple[str, ...]) -> dict[str, Any]:
    """Read and validate one shard: its Panel, and (to optimize) its inventory and DC days.

    ``spec["freq"]`` must be set (the model's when the job does not declare it). Returns
    ``{"panel": Panel or None, "inv", "dc_days"}``.
    """
    panel = load_shard_panel(stage, shard, spec)
    if panel is None:
        inv_tab = read_shard(stage, "inventory", shard)
        if inv_tab is not None and inv_tab.num_rows:
            raise DataError(f"inventory: rule 'every row is a SKU-location of the history' "
                            f"broken by {inv_tab.num_rows} rows")
        return {"panel": None}
    prep: dict[str, Any] = {"panel": panel, "inv": None, "inv_tab": None, "dc_days": None,
                            "accuracy": None}
    if "optimize" in stages:
        inv_tab = read_shard(stage, "inventory", shard)
        if inv_tab is None:
            raise DataError(f"inventory: rule 'every SKU-location of the history has an "
                            f"inventory row' broken by {panel.n_series} SKU-locations")
        prep["inv_tab"] = inv_tab
        prep["inv"] = validate_inventory(inv_tab, panel, ColumnMap(**spec["columns"]),
                                         inventory_defaults(spec, panel.freq),
                                         report=panel.report)
        if spec.get("has_echelon"):
            prep["dc_days"] = dc_service_days(stage, shard, panel, panel.report)
        prep["accuracy"] = _accuracy(stage, shard, panel, spec)
    return prep


def compute_shard(prep: dict[str, Any], spec: dict[str, Any], model_dir: str,
                  stages: tuple[str, ...]) -> dict[str, Any]:
    """Forecast and/or optimize a prepared shard; return its output tables (not written).

    The forecasts stay where the model computed them: on a GPU they go from the model's
    output tensor to the CuPy kernels by DLPack (no copy), and only the output columns come
    to the host; on the CPU the same code runs on NumPy (a view of the tensor). Which
    backend each stage used is returned under ``"backend"`` (and recorded in the manifest).
    """
    from ..kernels._backend import backend_name, from_dlpack, to_numpy

    panel = prep["panel"]
    model = _get_model(model_dir, spec["forecast"].get("device", "auto"), spec["forecast"])
    q_t = model.predict(panel, as_tensor=True)          # on the model's device
    q = from_dlpack(q_t)                                 # CuPy on a GPU, NumPy on the host
    levels = np.asarray(model.levels)
    backend = {"forecast": f"torch:{q_t.device.type}"}
    tables: dict[str, pa.Table] = {}
    if "forecast" in stages:
        tables["forecasts"] = forecast_table(panel, levels, to_numpy(q))
    if "optimize" in stages:
        ot = optimize(panel, levels, q, prep["inv"], spec, dc_days=prep["dc_days"],
                      report=panel.report, accuracy=prep["accuracy"])
        tables["orders"] = _with_budget_group(ot, prep["inv_tab"], panel, spec)
        backend["optimize"] = backend_name(q)
    return {"tables": tables, "backend": backend, "series": panel.n_series,
            "report": panel.report, "horizon": int(q.shape[1])}


def write_shard(computed: dict[str, Any], out: str, shard: int, spec: dict[str, Any],
                stage: str, panel: Panel) -> dict[str, Any]:
    """Write a computed shard's tables atomically, and the planner's outputs of its orders
    (:func:`planner_outputs`, which read the recent actuals of ``panel``); return
    ``{relative path: {rows, sha256}}``."""
    files: dict[str, Any] = {}
    tables = computed["tables"]
    if "forecasts" in tables:
        files.update(write_output(tables["forecasts"], out, "forecasts", shard))
        if spec.get("stage_forecasts"):   # --network: optimized after the placement
            write_parquet_atomic(tables["forecasts"],
                                 shard_dir(stage, "forecasts", shard) / "forecast.parquet")
    if "orders" in tables:
        files.update(write_output(tables["orders"], out, "orders", shard))
        files.update(planner_outputs(tables["orders"], out, shard, spec, stage, panel,
                                     computed["horizon"]))
    return files


def _tail_panel(panel: Panel, periods: int) -> Panel:
    """The last ``periods`` of each series' demand, without covariates: what the planner's
    outputs read of the history (so a GPU worker sends that, not the whole panel, on to the
    task that writes)."""
    w = np.minimum(panel.lengths, periods).astype(np.int64)
    indptr = np.concatenate([[0], np.cumsum(w)]).astype(np.int64)
    take = np.repeat(panel.indptr[1:] - w, w) + (np.arange(indptr[-1]) - np.repeat(indptr[:-1], w))
    return Panel(sku=panel.sku, location=panel.location,
                 start=panel.end - (w - 1) * panel.step, indptr=indptr,
                 demand=panel.demand[take], freq=panel.freq)


def _with_freq(spec: dict[str, Any], model_dir: str) -> dict[str, Any]:
    if spec.get("freq"):
        return spec
    # not declared: the model's (inferred when it was trained)
    import json
    return {**spec, "freq": json.loads((Path(model_dir) / "model.json").read_text())["spec"]["freq"]}


def plan_shard_task(stage: str, shard: int, spec: dict[str, Any], model_dir: str, out: str,
                    stages: tuple[str, ...] = ("forecast", "optimize")) -> dict[str, Any]:
    """Forecast and/or optimize one shard; write its output files atomically; return its stats.

    All in one task, one process (CPU clusters); a GPU cluster runs the three steps as
    separate tasks (:func:`prepare_shard_task`, :func:`compute_shard_task`,
    :func:`write_shard_task`).
    """
    t0 = time.perf_counter()
    try:
        spec = _with_freq(spec, model_dir)
        prep = prepare_shard(stage, shard, spec, stages)
        if prep["panel"] is None:
            return {"shard": shard, "series": 0, "files": {}, "seconds": 0.0}
        computed = compute_shard(prep, spec, model_dir, stages)
        files = write_shard(computed, out, shard, spec, stage, prep["panel"])
    except Exception as e:
        raise ShardError(f"shard {shard}: {type(e).__name__}: {e}") from e
    return {"shard": shard, "series": computed["series"], "files": files,
            "report": computed["report"], "backend": computed["backend"],
            "seconds": time.perf_counter() - t0}


def _worker_name() -> str | None:
    try:
        from distributed import get_worker
        return str(get_worker().name)
    except (ImportError, ValueError):
        return None


def prepare_shard_task(stage: str, shard: int, spec: dict[str, Any], model_dir: str,
                       stages: tuple[str, ...]) -> dict[str, Any]:
    """Step 1 of 3 on a GPU cluster (any worker): read and validate the shard."""
    t0 = time.perf_counter()
    try:
        prep = prepare_shard(stage, shard, _with_freq(spec, model_dir), stages)
    except Exception as e:
        raise ShardError(f"shard {shard}: {type(e).__name__}: {e}") from e
    return {**prep, "shard": shard, "seconds": {"prepare": time.perf_counter() - t0},
            "workers": {"prepare": _worker_name()}}


def compute_shard_task(prep: dict[str, Any], spec: dict[str, Any], model_dir: str,
                       stages: tuple[str, ...]) -> dict[str, Any]:
    """Step 2 of 3 (a GPU worker): forecast and optimize; the output tables come back."""
    shard = prep["shard"]
    t0 = time.perf_counter()
    if prep["panel"] is None:
        return {**prep, "tables": {}, "series": 0, "report": None, "backend": None}
    try:
        computed = compute_shard(prep, _with_freq(spec, model_dir), model_dir, stages)
        tail = _tail_panel(prep["panel"], 2 * computed["horizon"])   # the planner's outputs
    except Exception as e:
        raise ShardError(f"shard {shard}: {type(e).__name__}: {e}") from e
    return {**computed, "shard": shard, "panel": tail,
            "seconds": {**prep["seconds"], "compute": time.perf_counter() - t0},
            "workers": {**prep["workers"], "compute": _worker_name()}}


def write_shard_task(computed: dict[str, Any], out: str, spec: dict[str, Any],
                     stage: str) -> dict[str, Any]:
    """Step 3 of 3 (any worker): write the tables; return the shard's stats for the manifest."""
    shard = computed["shard"]
    t0 = time.perf_counter()
    try:
        files = write_shard(computed, out, shard, spec, stage, computed["panel"])
    except Exception as e:
        raise ShardError(f"shard {shard}: {type(e).__name__}: {e}") from e
    steps = {**computed["seconds"], "write": time.perf_counter() - t0}
    res = {"shard": shard, "series": computed["series"], "files": files,
           "seconds": sum(steps.values()), "steps_s": steps,
           "workers": {**computed["workers"], "write": _worker_name()}}
    if computed["series"]:
        res.update(report=computed["report"], backend=computed["backend"])
    return res


def network_store_task(stage: str, shard: int, spec: dict[str, Any]) -> dict[str, Any] | None:
    """What the network placement needs of one shard's stores (``--network``): keys, their
    forecasts (levels, quantiles, per-period mean and variance), stable ids for the random
    streams, and the inventory inputs; None for a shard without series."""
    from ..kernels import daily_moments
    try:
        got = _read_forecasts_shard(stage, shard, spec.get("freq"))
        if got is None:
            return None
        keys, levels, q = got
        inv_tab = read_shard(stage, "inventory", shard)
        if inv_tab is None:
            raise DataError(f"inventory: rule 'every SKU-location has an inventory row' broken by "
                            f"{keys.n_series} SKU-locations")
        inv = validate_inventory(inv_tab, keys, ColumnMap(**spec["columns"]),
                                 inventory_defaults(spec, keys.freq), report={})
        mean, var = daily_moments(levels, q)
    except Exception as e:
        raise ShardError(f"shard {shard}: {type(e).__name__}: {e}") from e
    out = {"sku": keys.sku, "location": keys.location, "levels": np.asarray(levels), "q": q,
           "mean": np.asarray(mean, np.float64), "var": np.asarray(var, np.float64),
           "ids": _pair_hash(keys.sku, keys.location)[0], "freq": keys.freq,
           "as_of": keys.end + np.timedelta64(FREQ_STEP_DAYS[keys.freq], "D")}
    for k in ("lead_time_days", "review_period_days", "unit_cost", "holding_cost_rate",
              "service_level"):
        out[k] = inv[k]
    return out

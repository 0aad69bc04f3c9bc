"""``replenish backtest``: the plan, night after night on past data, against the ERP's policy.

Rolling origins over the last ``origins * every`` periods of the history. At each origin
(the last period a forecast sees), the global model is fine-tuned on the actuals up to that
day from the previous origin's model (continuous learning; ``retrain``: from scratch) and
forecasts every SKU-location; for each of the following ``every`` periods (a week of days by
default) and each service target, the kernels set the reorder point and order-up-to level
from that forecast seen from that day. The classical policy of an ERP gets the same days and
targets from a moving average and the standard deviation of its own past errors
(:mod:`replenish.kernels.classical`). Both are then simulated on the actual demand with the
same inventory rules (lead times, MOQ, case pack, maximum order, review period, shelf life)
by :func:`replenish.kernels.simulate_inventory`, the stock carried from origin to origin:
one call per shard for every SKU-location, day, policy and target. Each policy starts with
its own first order-up-to level on hand and nothing on order (today's stock is not the stock
of the first origin).

Outputs (``DIR/``):

- ``summary.parquet``: one row per (policy, target): realised fill rate and cycle service
  level, average stock on hand (units and value, summed over SKU-locations), stockout
  periods, expired units, costs, and the forecast accuracy of the policy's forecasts;
- ``origins.parquet``: the same per origin, with that origin's forecast accuracy (RMSSE,
  SPL, bias, interval coverage);
- ``series/``: per SKU-location, policy and target, totals over the backtest;
- ``backtest.json``: settings, the service-against-inventory curve of each policy, and the
  key figure: at the realised service of our policy, how much less average stock value it
  holds than the classical policy (the classical curve interpolated at that service);
- ``origins/<date>/forecasts/``: each origin's forecasts; ``model/``: the last model.

Origins are done one by one and recorded in the manifest: a rerun resumes after the last
finished origin (and after the last simulated shard).
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..engine.contract import DataError
from ..engine.io import write_parquet_atomic
from ..engine.panel import FREQ_DEFAULTS, FREQ_STEP_DAYS
from . import _progress
from ._messages import first_dates
from ._backtest_tasks import POLICIES, forecast_origin_task, shard_freq, simulate_shard_task
from ._tasks import train_task
from .config import PlanConfig
from . import _profile
from .plan import (JobError, _constant_keys, _inputs_signature, _job_client, _key_types, _n_shards,
                   _profile_history, _say, _spec, _stage_all, _write_manifest, read_manifest)

__all__ = ["BacktestSettings", "run_backtest", "finished_backtest", "equal_service_reduction",
           "print_backtest"]

log = logging.getLogger("replenish")

#: What a backtest writes in its output folder.
_OWN = {"manifest.json", ".manifest.json.tmp", "_work", "_models", "origins", "series", "model",
        "summary.parquet", "origins.parquet", "backtest.json", "_SUCCESS"}


@dataclass
class BacktestSettings:
    """The backtest's own settings (TOML section ``[backtest]``; flags win).

    Attributes
    ----------
    origins : int
        Number of rolling origins.
    every : int, optional
        Periods between origins (default: a week: 7 for daily data, 1 for weekly).
    targets : tuple of float
        Service targets (cycle service level or fill rate, per ``--target``) planned and
        simulated for each policy; they replace the inventory's ``service_level``.
    retrain : bool
        Train from scratch at every origin instead of fine-tuning the previous model.
    finetune_steps : int, optional
        Training steps of a fine-tune (default: a quarter of the config's ``max_steps``, at
        least 100; 175 when the config sets none, also for daily data, whose first origin
        trains 1,400 steps from scratch).
    classical : {"ma", "seasonal", "ets"}
        The classical forecast: moving average, seasonal moving average (same weekday
        of the last weeks, for daily data; same week of the last years for weekly data), or
        statsforecast's AutoETS fitted per series at each origin (season 7 days or 52 weeks;
        needs statsforecast; series it cannot fit keep the moving average, counted).
    classical_window : int, optional
        Periods it averages (default 28 days, or 8 weeks).
    unmet : {"backorder", "lost"}
        Unmet demand is backordered (the planning model's assumption) or lost.
    crossing : bool
        Random lead times may make orders overtake each other (see the simulator).
    """

    origins: int = 26
    every: int | None = None
    targets: tuple[float, ...] = (0.8, 0.9, 0.95, 0.98, 0.99)
    retrain: bool = False
    finetune_steps: int | None = None
    classical: str = "ma"
    classical_window: int | None = None
    unmet: str = "backorder"
    crossing: bool = True

    @classmethod
    def build(cls, toml: dict[str, Any] | None = None, **flags: Any) -> "BacktestSettings":
        known = {f.name for f in fields(cls)}
        toml = dict(toml or {})
        unknown = sorted(set(toml) - known)
        if unknown:
            raise ValueError(f"config: unknown key(s) {unknown} in [backtest]; known: {sorted(known)}")
        kw = {**toml, **{k: v for k, v in flags.items() if v is not None}}
        if isinstance(kw.get("targets"), str):
            kw["targets"] = tuple(float(x) for x in kw["targets"].split(",") if x.strip())
        if "targets" in kw:
            kw["targets"] = tuple(float(x) for x in kw["targets"])
        s = cls(**kw)
        s.check()
        return s

    def check(self) -> None:
        if int(self.origins) < 1:
            raise ValueError("backtest: --origins must be at least 1")
        if self.every is not None and int(self.every) < 1:
            raise ValueError("backtest: --every must be at least 1 period")
        if not self.targets or any(not (0 < t < 1) for t in self.targets):
            raise ValueError(f"backtest: every target must be in (0, 1) (0.95 for 95%); got "
                             f"{list(self.targets)}")
        if self.classical not in ("ma", "seasonal", "ets"):
            raise ValueError(f"backtest: classical must be 'ma', 'seasonal' or 'ets'; got "
                             f"{self.classical!r}")
        if self.classical == "ets":
            from ..engine.ets import _autoets
            _autoets(1)   # a clear error now, not in a worker after training
        if self.unmet not in ("backorder", "lost"):
            raise ValueError("backtest: unmet must be 'backorder' or 'lost'")


def run_backtest(cfg: PlanConfig, settings: BacktestSettings | None = None, *,
                 overwrite: bool = False, client=None) -> dict[str, Any]:
    """Run the backtest (see the module docstring); return its summary.

    Parameters
    ----------
    cfg : PlanConfig
        History, inventory, columns, data rules, forecast and policy settings and cluster,
        as for ``replenish plan`` (``future`` is not used: the known covariates of each
        origin's horizon come from the history itself).
    settings : BacktestSettings
    overwrite : bool
        Replace another job's results in ``cfg.out``.
    client : distributed.Client, optional
    """
    settings = settings or BacktestSettings()
    settings.check()
    if cfg.out is None:
        raise ValueError("an output folder (--out) is required")
    if cfg.history is None or cfg.inventory is None:
        raise ValueError("a backtest needs a demand history (--history) and an inventory (--inventory)")
    if cfg.model:
        raise ValueError("backtest: --model would forecast the past with a model that may have "
                         "seen it; the backtest trains its own models (use --init-from to start "
                         "from a saved one, trained on data before the first origin)")
    if cfg.target not in ("csl", "fill_rate"):
        raise ValueError("backtest: --target must be csl or fill_rate (the targets are service levels)")
    unsimulated = [flag for flag, v in (("--echelon", cfg.echelon), ("--network", cfg.network),
                                        ("--dc-inventory", cfg.dc_inventory),
                                        ("--forecasts", cfg.forecasts),
                                        ("--budget", cfg.budget), ("--capacity", cfg.capacity),
                                        ("--budget-table", cfg.budget_table)) if v is not None]
    if unsimulated:
        raise ValueError(f"backtest: {', '.join(unsimulated)} cannot be backtested (the backtest "
                         f"simulates each SKU-location on its own, with its own forecasts and no "
                         f"budget); drop them")
    if cfg.future is not None:
        _say("backtest: --future is not used (each origin's horizon covariates come from the history)")
        cfg = PlanConfig(**{**_fields(cfg), "future": None})
    if not cfg.align_end:
        raise ValueError("backtest: --no-align-end is not supported (every SKU-location is "
                         "simulated on the same days)")
    out = Path(cfg.out)
    fp = hashlib.sha256(json.dumps([cfg.fingerprint(), asdict(settings), _inputs_signature(cfg)],
                                   default=str).encode()).hexdigest()[:16]
    manifest = read_manifest(out)
    if not manifest and out.is_dir():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in _OWN)
        if foreign:
            raise JobError(f"{out} is not empty and holds no replenish job ({foreign[:3]}): "
                           f"choose a new or empty --out folder (nothing there was changed)")
    if manifest and (manifest.get("fingerprint") != fp or manifest.get("job") != "backtest"):
        if not overwrite:
            raise JobError(f"{out} holds the results of a different job; choose another --out or "
                           f"pass --overwrite")
        manifest = {}
    if manifest.get("status") == "complete" and (out / "_SUCCESS").exists():
        _say(f"backtest: {out} holds this backtest, finished: nothing to do")
        return finished_backtest(out)
    if not manifest:
        for name in _OWN - {"manifest.json"}:
            p = out / name
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "_SUCCESS").unlink(missing_ok=True)
    t_start = time.perf_counter()
    with _job_client(client, cfg) as cl:
        n_workers = max(1, len(cl.scheduler_info().get("workers", {})))
        if not manifest:
            manifest = {"job": "backtest", "fingerprint": fp, "status": "running",
                        "n_shards": _n_shards(cfg, n_workers), "origins": {}, "simulated": {},
                        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                        "settings": asdict(settings), "key_types": _key_types(cfg),
                        "config": {k: (v if not isinstance(v, pa.Table) else "<pyarrow.Table>")
                                   for k, v in asdict(cfg).items()}}
        manifest["status"] = "running"
        _write_manifest(out, manifest)
        try:
            summary = _run(cl, cfg, settings, out, manifest, n_workers)
        except BaseException as e:
            manifest["status"] = "failed"
            manifest["error"] = str(e)
            _write_manifest(out, manifest)
            raise
    summary["seconds"] = round(time.perf_counter() - t_start, 1)
    manifest["status"] = "complete"
    manifest["summary"] = {k: v for k, v in summary.items() if k != "table"}
    manifest["staged"] = False
    manifest["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    _write_manifest(out, manifest)
    shutil.rmtree(out / "_work", ignore_errors=True)
    (out / "_SUCCESS").write_text("")
    return summary


def finished_backtest(out: str | Path) -> dict[str, Any]:
    """The summary of a finished backtest in ``out`` (as :func:`run_backtest` returns it)."""
    out = Path(out)
    res = json.loads((out / "backtest.json").read_text())
    res["table"] = pq.read_table(out / "summary.parquet").to_pandas()
    res["seconds"] = (read_manifest(out).get("summary") or {}).get("seconds", 0.0)
    return res


def _fields(cfg: PlanConfig) -> dict[str, Any]:
    return {f.name: getattr(cfg, f.name) for f in fields(cfg)}


def _run(cl, cfg: PlanConfig, settings: BacktestSettings, out: Path, manifest: dict,
         n_workers: int) -> dict[str, Any]:
    stage = out / "_work" / "stage"
    n_shards = manifest["n_shards"]
    if not manifest.get("staged") or not stage.exists():
        shutil.rmtree(stage, ignore_errors=True)
        _say(f"backtest: staging inputs into {n_shards} shards on {n_workers} workers")
        spec0 = _spec(cfg, True, ("train", "forecast"))
        plan, last = _stage_all(cl, cfg, stage, n_shards, tuple(_constant_keys(cfg)))
        manifest.update(staged=True, shard_plan=plan.to_json(), history_end=last,
                        profile=_profile_history(cl, cfg, stage, n_shards, spec0, None))
        _write_manifest(out, manifest)
    spec = _spec(cfg, True, ("train", "forecast"))   # the history holds the known covariates' future
    if manifest.get("profile"):   # the same static numbers, medians and flags in every shard
        spec.update(_profile.spec_entries(manifest["profile"]))
    spec["end"] = manifest["history_end"]
    if not spec.get("freq"):
        for s in range(n_shards):
            freq = cl.submit(shard_freq, str(stage), s, spec, pure=False).result()
            if freq:
                spec["freq"] = freq
                break
        else:
            raise DataError("history: no series to backtest")
    freq = spec["freq"]
    step = FREQ_STEP_DAYS[freq]
    every = int(settings.every or max(1, 7 // step))
    horizon = int(cfg.forecast.get("horizon") or FREQ_DEFAULTS[freq]["horizon"])
    if every > horizon:
        raise ValueError(f"backtest: --every {every} periods is longer than the forecast horizon "
                         f"({horizon}): each origin's forecast must cover its periods")
    end = np.datetime64(manifest["history_end"], "D")
    n_orig = int(settings.origins)
    origins = [end - np.timedelta64((n_orig - k) * every * step, "D") for k in range(n_orig)]
    _say(f"backtest: {n_orig} origins every {every} period(s) ({freq}), from {origins[0]} to "
         f"{origins[-1]}; simulated {origins[0] + np.timedelta64(step, 'D')} to {end}")

    # 1. forecasts at each origin, from a model fine-tuned on the actuals up to it
    prev_model = cfg.init_from
    from ..engine._config import ForecastConfig   # (torch-free)
    base_steps = int(cfg.forecast.get("max_steps", ForecastConfig().max_steps))
    for k, origin in enumerate(origins):
        key = str(origin)
        rec = manifest["origins"].get(key)
        model_dir = out / "_models" / key
        if rec and rec.get("done"):   # resumed: the latest finished origin's model is kept
            prev_model = str(model_dir)
            continue
        t0 = time.perf_counter()
        spec_k = {**spec, "until": key, "forecast": dict(spec["forecast"])}
        init = prev_model if (k == 0 or not settings.retrain) else None
        if k > 0 and not settings.retrain:
            spec_k["forecast"]["max_steps"] = int(settings.finetune_steps or max(100, base_steps // 4))
        with _progress.TrainingProgress(cl):
            info = cl.submit(train_task, str(stage), list(range(n_shards)), spec_k, str(model_dir),
                             cfg.train_series, init, pure=False).result()
        t1 = time.perf_counter()
        paths = {s: str(out / "origins" / key / "forecasts" / f"part-{s:05d}.parquet")
                 for s in range(n_shards)}
        futs = [cl.submit(forecast_origin_task, str(stage), s, spec_k, str(model_dir), paths[s],
                          pure=False, retries=1) for s in range(n_shards)]
        done = _gather(cl, futs, f"origin {key}: forecast")
        shut = sum(int(d.get("closed_days_zeroed", 0)) for d in done)
        shut_days = [e for d in done for e in d.get("closed_days_examples", [])]
        manifest["origins"][key] = {
            "done": True, "model": str(model_dir), "trained_series": info["series"],
            "fine_tuned_from": init, "train_s": round(t1 - t0, 1),
            "forecast_s": round(time.perf_counter() - t1, 1), "closed_days_zeroed": shut,
            "files": {str(d["shard"]): d["file"] for d in done if d["file"]}}
        _write_manifest(out, manifest)
        if prev_model and prev_model != cfg.init_from and Path(prev_model).parent == out / "_models":
            shutil.rmtree(prev_model, ignore_errors=True)   # the next origin fine-tunes from this one
        prev_model = str(model_dir)
        _say(f"origin {k + 1}/{n_orig} ({key}): {'fine-tuned' if init else 'trained'} on "
             f"{info['series']} series in {t1 - t0:.0f} s, forecast in "
             f"{time.perf_counter() - t1:.0f} s"
             + (f" ({shut:,} forecasts on days their location is closed every year set to "
                f"zero: {first_dates(shut_days)})"
                if shut else ""))

    # 2. policies for every day, policy and target, simulated on the actuals
    cm = settings.classical_window or max(1, 28 // step if step == 1 else 8)
    season = (7 if step == 1 else 52) if settings.classical == "seasonal" else None
    bt = {"origins": [str(o) for o in origins], "every": every, "horizon": horizon,
          "targets": list(settings.targets), "unmet": settings.unmet, "crossing": settings.crossing,
          "classical": {"method": "ets" if settings.classical == "ets" else "ma",
                        "window": int(max(cm, season or 1)), "season": season,
                        "season_length": 7 if step == 1 else 52,
                        "errors": int(max(8, 56 // step))}}
    sim_dir = out / "_work" / "sim"
    todo = [s for s in range(n_shards) if str(s) not in manifest["simulated"]]
    futs = []
    for s in todo:
        bt_s = {**bt, "forecasts": [manifest["origins"][str(o)]["files"].get(str(s)) for o in origins]}
        futs.append(cl.submit(simulate_shard_task, str(stage), s, spec, bt_s, str(sim_dir),
                              pure=False, retries=1))
    t0 = time.perf_counter()
    failed = []
    for fut, _ in _progress.completed(futs, "backtest: simulate", unit="shard",
                                      count=lambda r: r.get("series", 0), count_unit="series"):
        if fut.status == "error":
            failed.append(str(fut.exception()))
            continue
        d = fut.result()
        manifest["simulated"][str(d["shard"])] = d
        _write_manifest(out, manifest)
    if failed:
        raise JobError(f"simulate: {len(failed)} of {len(futs)} shards failed:\n  " + "\n  ".join(sorted(failed)))
    _say(f"backtest: simulated {sum(d.get('series', 0) for d in manifest['simulated'].values())} "
         f"SKU-locations x {2 * len(settings.targets)} policies in {time.perf_counter() - t0:.0f} s")
    fallbacks = sum(d.get("ets_fallbacks", 0) for d in manifest["simulated"].values())
    if fallbacks:
        _say(f"backtest: AutoETS could not fit {fallbacks} series-origin(s) (fewer than 3 known "
             f"periods or a numerical failure); the classical policy used the moving average there")

    # 3. the tables
    summary = _aggregate(out, sim_dir, manifest, settings, cfg.target, step)
    last = out / "_models" / str(origins[-1])
    if last.exists():
        shutil.rmtree(out / "model", ignore_errors=True)
        shutil.move(str(last), str(out / "model"))
    shutil.rmtree(out / "_models", ignore_errors=True)
    summary["freq"] = freq
    return summary


def _gather(cl, futs, what: str) -> list[dict[str, Any]]:
    from distributed import wait
    wait(futs)
    failed = [str(f.exception()) for f in futs if f.status == "error"]
    if failed:
        raise JobError(f"{what}: {len(failed)} of {len(futs)} shards failed:\n  " + "\n  ".join(sorted(failed)))
    return [f.result() for f in futs]


def _aggregate(out: Path, sim_dir: Path, manifest: dict, settings: BacktestSettings, target: str,
               step: int) -> dict[str, Any]:
    import pandas as pd
    sums = [pq.read_table(p).to_pandas() for p in sorted(sim_dir.glob("sums-*.parquet"))]
    accs = [pq.read_table(p).to_pandas() for p in sorted(sim_dir.glob("accuracy-*.parquet"))]
    if not sums:
        raise DataError("backtest: no SKU-location existed at the first origin")
    s = pd.concat(sums).groupby(["policy", "target", "origin"], sort=True).sum().reset_index()
    a = pd.concat(accs).groupby(["policy", "origin"], sort=True).sum().reset_index()
    by_origin = _measures(s).merge(_accuracy(a), on=["policy", "origin"], how="left")
    grouped = s.drop(columns="origin").groupby(["policy", "target"], sort=True)
    tot = grouped.sum().reset_index()
    tot["items"] = grouped["items"].max().to_numpy()   # the same SKU-locations at every origin
    acc_tot = _accuracy(a.drop(columns="origin").groupby("policy").sum().reset_index())
    summary_tab = _measures(tot).merge(acc_tot, on="policy", how="left")
    summary_tab["stockout_days"] = summary_tab["stockout_periods"] * step
    by_origin["stockout_days"] = by_origin["stockout_periods"] * step
    write_parquet_atomic(pa.Table.from_pandas(summary_tab, preserve_index=False), out / "summary.parquet")
    write_parquet_atomic(pa.Table.from_pandas(by_origin, preserve_index=False), out / "origins.parquet")
    (out / "series").mkdir(parents=True, exist_ok=True)
    for p in sorted(sim_dir.glob("series-*.parquet")):
        shutil.copy(p, out / "series" / f"part-{p.stem.split('-')[1]}.parquet")
    measure = "cycle_service_level" if target == "csl" else "fill_rate"
    curves = {pol: [{"target": float(r.target), "service": _num(r[measure]),
                     "avg_on_hand_value": _num(r.avg_on_hand_value)}
                    for _, r in summary_tab[summary_tab.policy == pol].iterrows()] for pol in POLICIES}
    at = min(settings.targets, key=lambda t: abs(t - 0.95))
    headline = equal_service_reduction(curves["replenish"], curves["classical"], at)
    per_target = {f"{t:g}": equal_service_reduction(curves["replenish"], curves["classical"], t)
                  for t in settings.targets}
    excluded = sum(int(d.get("excluded", 0)) for d in manifest["simulated"].values())
    result = {"out": str(out), "series": int(sum(int(d.get("series", 0)) for d in manifest["simulated"].values())),
              "excluded_new_series": excluded, "origins": list(manifest["origins"]),
              "unknown_periods": sum(int(d.get("unknown_periods", 0))
                                     for d in manifest["simulated"].values()),
              "service_measure": measure, "curves": curves,
              "inventory_reduction_at_equal_service": headline["reduction"],
              "equal_service": headline, "equal_service_by_target": per_target,
              "settings": asdict(settings)}
    tmp = out / "backtest.json.tmp"
    tmp.write_text(json.dumps(result, indent=2, default=str))
    tmp.replace(out / "backtest.json")
    result["table"] = summary_tab
    return result


def _num(v) -> float | None:
    v = float(v)
    return v if np.isfinite(v) else None


def _measures(df):
    """Rates and averages from the sums (per row): fill rate, cycle service level, average
    stock on hand summed over SKU-locations (units, currency), costs."""
    per_item = df["periods"] / df["items"].where(df["items"] > 0)   # periods simulated per SKU-location
    out = df[[c for c in ("policy", "target", "origin") if c in df]].copy()
    out["series"] = df["items"]
    out["fill_rate"] = df["sold"] / df["demand"].where(df["demand"] > 0)
    out["cycle_service_level"] = 1 - df["stockout_cycles"] / df["cycles"].where(df["cycles"] > 0)
    out["avg_on_hand_units"] = df["on_hand_sum"] / per_item
    out["avg_on_hand_value"] = df["on_hand_value_sum"] / per_item
    for c in ("demand", "stockout_periods", "orders", "ordered", "expired", "holding_cost",
              "stockout_cost", "ordering_cost", "waste_cost"):
        out[c] = df[c]
    out["expired_units"] = df["expired"]
    out["total_cost"] = df["holding_cost"] + df["stockout_cost"] + df["ordering_cost"] + df["waste_cost"]
    return out


def _accuracy(a):
    out = a[[c for c in ("policy", "origin") if c in a]].copy()
    out["rmsse"] = a["rmsse_sum"] / a["series"].where(a["series"] > 0)
    out["spl"] = a["spl_sum"] / a["series"].where(a["series"] > 0)
    out["bias"] = a["forecast_sum"] / a["actual_sum"].where(a["actual_sum"] > 0) - 1
    out["interval_coverage"] = a["inside"] / a["interval_periods"].where(a["interval_periods"] > 0)
    return out


def equal_service_reduction(ours: list[dict], classical: list[dict], target: float) -> dict[str, Any]:
    """How much less stock value ours holds than the classical policy at the same service.

    ``ours``/``classical``: curves, one point per target (``target``, realised ``service``,
    ``avg_on_hand_value``). Our point at ``target`` is compared with the classical curve
    interpolated (linearly, in realised service) at our realised service. Returns
    ``{"target", "service", "ours_value", "classical_value", "reduction"}``: ``reduction =
    1 - ours / classical`` (a fraction; positive: ours holds less), None where our service is
    outside the classical curve's range (``"reason"`` says so).
    """
    pt = next((p for p in ours if abs(p["target"] - target) < 1e-12), None)
    res: dict[str, Any] = {"target": target, "service": None, "ours_value": None,
                           "classical_value": None, "reduction": None}
    if pt is None or pt["service"] is None or pt["avg_on_hand_value"] is None:
        res["reason"] = "no realised service for this target"
        return res
    pts = sorted((p["service"], p["avg_on_hand_value"]) for p in classical
                 if p["service"] is not None and p["avg_on_hand_value"] is not None)
    res.update(service=pt["service"], ours_value=pt["avg_on_hand_value"])
    if len(pts) < 1 or not (pts[0][0] - 1e-12 <= pt["service"] <= pts[-1][0] + 1e-12):
        res["reason"] = (f"our realised service {pt['service']:.4f} is outside the classical "
                         f"policy's range {pts[0][0]:.4f}-{pts[-1][0]:.4f}" if pts else
                         "the classical policy has no realised service")
        return res
    xs, ys = np.array([p[0] for p in pts]), np.array([p[1] for p in pts])
    xs = np.maximum.accumulate(xs)   # equal services: np.interp takes the later point
    cv = float(np.interp(pt["service"], xs, ys))
    res.update(classical_value=cv, reduction=(1 - pt["avg_on_hand_value"] / cv) if cv > 0 else None)
    return res


def print_backtest(summary: dict[str, Any]) -> None:
    """The summary table and the key figure, as the CLI prints them (each line prefixed)."""
    def line(text: str) -> None:
        print(f"[replenish] {text}", flush=True)

    t = summary["table"]
    measure = summary["service_measure"]
    line(f"backtest of {summary['series']} SKU-locations over {len(summary['origins'])} origins "
         f"({summary['origins'][0]} ... {summary['origins'][-1]}), in {summary.get('seconds', 0):.0f} s")
    if summary.get("unknown_periods"):
        line(f"  ({summary['unknown_periods']} SKU-location periods of unknown demand, --gaps "
             f"missing, are simulated without demand)")
    if summary.get("excluded_new_series"):
        line(f"  ({summary['excluded_new_series']} SKU-locations without history at the first "
             f"origin are not simulated)")
    head = (f"{'policy':10s} {'target':>6s} {'cycle svc':>9s} {'fill rate':>9s} {'avg stock':>11s} "
            f"{'stock value':>12s} {'stockouts':>9s} {'expired':>8s} {'total cost':>11s}")
    line(head)
    line("-" * len(head))
    for _, r in t.iterrows():
        line(f"{r.policy:10s} {r.target:6.2f} {r.cycle_service_level:9.4f} {r.fill_rate:9.4f} "
             f"{r.avg_on_hand_units:11,.1f} {r.avg_on_hand_value:12,.0f} {r.stockout_periods:9,.0f} "
             f"{r.expired_units:8,.0f} {r.total_cost:11,.0f}")
    line("  (avg stock: units on hand summed over SKU-locations, averaged over periods; "
         "stock value in currency; stockouts: SKU-location periods)")
    acc = t.drop_duplicates("policy")
    for _, r in acc.iterrows():
        line(f"  forecast accuracy, {r.policy}: RMSSE {r.rmsse:.3f}, SPL {r.spl:.3f}, bias "
             f"{r.bias:+.3f}, 90% interval coverage {r.interval_coverage:.3f}")
    h = summary["equal_service"]
    if h.get("reduction") is not None:
        more_less = "less" if h["reduction"] >= 0 else "more"
        line(f"at the realised {measure.replace('_', ' ')} of the {h['target']:g} target "
             f"({h['service']:.4f}), replenish holds {h['ours_value']:,.0f} of stock value against "
             f"{h['classical_value']:,.0f} for the classical policy: "
             f"{100 * abs(h['reduction']):.1f}% {more_less}")
    else:
        line(f"equal-service comparison at the {h['target']:g} target: not available ({h.get('reason')})")

"""The batch jobs: stage -> train -> forecast + optimize, mapped over hash shards with Dask.

Output folder layout::

    OUT/manifest.json          job status, config fingerprint, shards done (rows, checksums)
    OUT/_SUCCESS               written last; absent while running or after a failure
    OUT/model/                 the trained global model (reused on resume)
    OUT/forecasts/part-NNNNN.parquet
    OUT/orders/part-NNNNN.parquet
    OUT/_work/                 staged input shards (removed after success)

Each shard's files are written atomically and recorded in the manifest; rerunning the same
job on the same folder skips the shards already done (resume).
"""
from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ..engine.contract import DataError, InventoryDefaults
from ..engine.io import open_dataset
from ..engine.validate import (KEY_CONSTANT, check_inventory_rows, check_rows, constant_keys,
                               examples_text, gap_rules, missing_hint)
from . import _messages, _profile, _progress, _sharding
from ._tasks import (compute_shard_task, optimize_shard_task, plan_shard_task, prepare_shard_task,
                     train_task, write_shard_task)
from .cluster import connect, gpu_resources
from ._outputs import JobError, read_manifest, read_output, run_forecasts, run_freq
from ._outputs import write_manifest as _write_manifest
from ._shard_runs import remove_unrecorded as _remove_unrecorded
from ._shard_runs import run_shards as _run_shards, shard_files_ok as _shard_files_ok
from .config import PlanConfig

__all__ = ["run_plan", "JobError", "read_manifest", "read_output", "run_forecasts", "run_freq"]

log = logging.getLogger("replenish")


def _source_job(forecasts: Any) -> dict[str, Any]:
    """The manifest of the job that wrote a forecasts dataset (``DIR`` or ``DIR/forecasts``),
    or {} for forecasts from elsewhere."""
    if not isinstance(forecasts, (str, Path)) or "://" in str(forecasts):
        return {}
    p = Path(forecasts)
    return read_manifest(p.parent if p.name == "forecasts" else p)


def _constant_keys(cfg: PlanConfig) -> list[str]:
    """The roles ("sku", "location") of the key columns the history lacks (one-key data,
    filled with KEY_CONSTANT); for an optimize job, those of the job that forecast."""
    if cfg.history is None:
        return list(_source_job(cfg.forecasts).get("constant_keys", []))
    schema = cfg.history.schema if isinstance(cfg.history, pa.Table) else \
        open_dataset(cfg.history).schema
    one = constant_keys(schema.names, cfg.columns)
    return [role for role in ("sku", "location") if getattr(cfg.columns, role) in one]


def _key_types(cfg: PlanConfig) -> dict[str, str]:
    src = cfg.history if cfg.history is not None else cfg.forecasts
    schema = src.schema if isinstance(src, pa.Table) else open_dataset(src).schema
    names = {"sku": cfg.columns.sku, "location": cfg.columns.location} if cfg.history is not None \
        else {"sku": "sku", "location": "location"}
    one = set(_constant_keys(cfg)) if cfg.history is not None else set()
    required = list(cfg.columns.all_columns()) if cfg.history is not None else list(names.values())
    required = [c for c in required if c not in {names[r] for r in one}]
    if cfg.history is None and _source_job(cfg.forecasts).get("key_types"):
        # a hive read of the forecasts infers the location's type from the folder names
        return dict(_source_job(cfg.forecasts)["key_types"])
    missing = [c for c in required if c not in schema.names]
    if missing:
        raise DataError(f"{'history' if cfg.history is not None else 'forecasts'}: required "
                        f"column(s) {missing} missing; it has {schema.names}. Map your names with "
                        f"--sku-col/--location-col/--date-col/--demand-col/--known-cols/..."
                        f"{missing_hint(missing, cfg.columns) if cfg.history is not None else ''}")
    out = {}
    for k, col in names.items():
        if k in one:
            out[k] = "string"
            continue
        typ = schema.field(col).type
        out[k] = str(typ.value_type if pa.types.is_dictionary(typ) else typ)
    return out


def _inputs_signature(cfg: PlanConfig) -> str:
    """Hash of the input data's identity: files with sizes and modification times, or the
    content of in-memory tables. New data under the same paths is a new job, not a resume."""
    import hashlib
    h = hashlib.blake2b(digest_size=8)
    for src in (cfg.history, cfg.inventory, cfg.future, cfg.forecasts, cfg.model, cfg.init_from,
                cfg.echelon, cfg.ledger, cfg.budget_table, cfg.network, cfg.dc_inventory):
        if src is None:
            h.update(b"-")
        elif isinstance(src, pa.Table):
            for col in src.columns:
                for chunk in col.chunks:
                    for buf in chunk.buffers():
                        if buf is not None:
                            h.update(memoryview(buf))
        elif "://" in str(src):
            h.update(str(src).encode())
        else:
            p = Path(src)
            files = [p] if p.is_file() else sorted(q for q in p.rglob("*") if q.is_file())
            for f in files:
                st = f.stat()
                h.update(f"{f}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()


#: What a job writes in its output folder (anything else there is the user's).
_OWN_NAMES = {"manifest.json", ".manifest.json.tmp", "forecasts", "orders", "model", "model.tmp",
              "_work", "_SUCCESS", "exceptions", "highlights", "report.html", "dc_orders",
              "network.parquet"}


def _say(msg: str) -> None:
    _messages.say(msg)


def _check_saved_model(cfg: PlanConfig) -> dict[str, Any]:
    """Fail before any work when a saved model cannot make the forecasts asked for; return
    its metadata."""
    meta_path = Path(cfg.model) / "model.json"
    if not meta_path.exists():
        raise JobError(f"no model at {cfg.model} (no model.json): a folder written by "
                       f"`replenish train` or `plan` (OUT/model)")
    meta = json.loads(meta_path.read_text())
    horizon = meta["config"]["horizon"]
    asked = cfg.forecast.get("horizon")
    if asked is not None and int(asked) != int(horizon):
        raise JobError(f"the model {cfg.model} forecasts {horizon} periods; a horizon of {asked} "
                       f"needs a model trained with it (drop --horizon, or train one)")
    known = meta["spec"]["known"]
    if known and cfg.future is None:
        raise JobError(f"the model {cfg.model} uses the known covariates {known}: give their "
                       f"values for the forecast horizon with --future")
    return meta


def _spec(cfg: PlanConfig, has_future: bool, stages: tuple[str, ...],
          model_meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the worker tasks need: plain data only (never the engine objects)."""
    cols = asdict(cfg.columns)
    if model_meta is not None:
        # a saved model trained with a covariate as observed-only reads it so
        moved = [c for c in cols["known"] if c in model_meta["spec"]["observed"]]
        if moved:
            _say(f"the model {cfg.model} was trained with {moved} as observed-only covariates: "
                 f"they are used so (their future values are not read)")
            cols["known"] = tuple(c for c in cols["known"] if c not in moved)
            cols["observed"] = tuple(cols["observed"]) + tuple(moved)
    # Training alone keeps known covariates known (a later forecast job gives their future).
    if not has_future and cols["known"] and "forecast" in stages:
        # Without future values, known covariates can only describe the past.
        _say(f"no --future table: the known covariates {list(cols['known'])} are used as "
             f"observed-only covariates (their horizon values are unknown)")
        cols["observed"] = tuple(cols["observed"]) + tuple(cols["known"])
        cols["known"] = ()
    forecast = dict(cfg.forecast)
    if model_meta is not None:   # the future table is read for the model's horizon
        forecast["horizon"] = int(model_meta["config"]["horizon"])
    return {"columns": cols, "freq": cfg.freq, "negative": cfg.negative,
            "missing_demand": cfg.missing_demand, "duplicates": cfg.duplicates,
            "gaps": cfg.gaps, "min_history": cfg.min_history, "forecast": forecast,
            "has_future": has_future, "has_echelon": cfg.echelon is not None,
            "missing_static": cfg.missing_static, "gap_fill": dict(cfg.gap_fill),
            "target": cfg.target, "method": cfg.method,
            "n_samples": cfg.n_samples, "seed": cfg.seed,
            "inventory_defaults": dict(cfg.inventory_defaults),
            **_planner_spec(cfg)}


def _planner_spec(cfg: PlanConfig) -> dict[str, Any]:
    """What the shard tasks need for exceptions, budgets and the report's items."""
    from .budget import BudgetSettings
    from .exceptions import ExceptionSettings
    return {"exceptions": ExceptionSettings.from_mapping(cfg.exceptions).to_dict(),
            "budget": BudgetSettings.from_config(cfg).active, "budget_group": cfg.budget_group,
            "has_accuracy": cfg.ledger is not None, "highlights": 8}


def _n_shards(cfg: PlanConfig, n_workers: int) -> int:
    if cfg.shards:
        return int(cfg.shards)
    src = cfg.history if cfg.history is not None else cfg.forecasts
    rows = src.num_rows if isinstance(src, pa.Table) else open_dataset(src).count_rows()
    return max(2 * n_workers, math.ceil(rows / cfg.rows_per_shard))


def _stage_all(client, cfg: PlanConfig, stage: Path, n_shards: int,
               one_key: tuple[str, ...] = ()) -> tuple["_sharding.ShardPlan", str | None]:
    """Stage every input into shard folders; return the shard plan and the history's last date.

    ``one_key``: the roles of the key columns the history lacks: the history, inventory and
    future get them as the constant KEY_CONSTANT where they lack them too."""
    c = cfg.columns
    jobs = []
    if cfg.forecasts is not None:
        fschema = open_dataset(cfg.forecasts).schema.names
        jobs.append(("forecasts", cfg.forecasts, fschema, ("sku", "location")))
    if cfg.history is not None:
        jobs.append(("history", cfg.history, list(c.all_columns()), c.keys))
    if cfg.inventory is not None:
        inv_schema = cfg.inventory.schema.names if isinstance(cfg.inventory, pa.Table) else \
            open_dataset(cfg.inventory).schema.names
        keys = tuple(k if k in inv_schema else d for k, d in zip(c.keys, ("sku", "location")))
        jobs.append(("inventory", cfg.inventory, inv_schema, keys))
    if cfg.future is not None:
        jobs.append(("future", cfg.future, list(c.keys) + [c.date] + list(c.known), c.keys))
    if cfg.echelon is not None:
        jobs.append(("echelon", _echelon_source(cfg.echelon), list(ECHELON_COLUMNS),
                     ("sku", "location")))
    if cfg.ledger is not None:
        from .exceptions import ACCURACY_COLUMNS, ledger_accuracy
        settings = _planner_spec(cfg)["exceptions"]
        acc = ledger_accuracy(cfg.ledger, settings["bias_runs"])
        if acc is not None:
            jobs.append(("accuracy", acc, list(ACCURACY_COLUMNS), ("sku", "location")))
    listing = {name: _sharding.input_files(source) for name, source, _, _ in jobs
               if not isinstance(source, pa.Table)}
    # A job's own forecasts: the location of the folder names has the type that job recorded
    # (a hive read would infer it: "0042" would be the number 42).
    types = {"forecasts": {"location": t} for t in [(_source_job(cfg.forecasts).get("key_types")
                                                     or {}).get("location")] if t}
    # CSV: labels are text, demand a number, whatever the file's first rows look like
    csv_types = {"history": {**{x: "string" for x in c.categorical}, c.demand: "double"},
                 "future": {x: "string" for x in c.categorical if x in c.known}}
    # The shard plan comes from the rows per location of the main input (history or forecasts).
    name, source, _, keys = jobs[0]
    if isinstance(source, pa.Table):
        counts = [_sharding.count_locations(source, None, None, None, keys[1])]
    else:
        files, fmt, base = listing[name]
        counts = client.gather([client.submit(_sharding.count_locations, str(source), f, fmt, base,
                                              keys[1], types.get(name), pure=False)
                                for f in files])
    rows: dict[str, int] = {}
    for part in counts:
        for loc, r in part.items():
            rows[loc] = rows.get(loc, 0) + r
    plan = _sharding.ShardPlan.from_counts(rows, n_shards)
    budget = _budget_settings(cfg)
    if budget.table is not None and not budget.group:
        from .budget import check_table_keys   # before any work: the table's ids are the run's
        check_table_keys(budget, list(rows))
    futures = []
    # row rules fail the job here, before training; rules that need whole series (or the
    # history's SKU-locations, for the inventory) are checked per shard
    checks = {"history": functools.partial(check_rows, columns=c, negative=cfg.negative,
                                           missing_demand=cfg.missing_demand),
              "inventory": functools.partial(check_inventory_rows, columns=c,
                                             defaults=InventoryDefaults().with_overrides(cfg.inventory_defaults))}
    # the main input's and the inventory's SKU-locations are compared here too (as pair hashes)
    main = jobs[0][0]
    match = cfg.inventory is not None
    pairs = {main: "unique", "inventory": "all"} if match else {}
    if match and cfg.echelon is not None:
        pairs["echelon"] = "unique"
    for name, source, columns, keys in jobs:
        check = checks.get(name)
        fill = tuple(k for k, role in zip(keys, ("sku", "location")) if role in one_key) \
            if name in ("history", "inventory", "future") else ()
        if isinstance(source, pa.Table):
            futures.append((name, _sharding.stage_table(source, columns, keys, plan, str(stage), name,
                                                        check=check, pairs=pairs.get(name),
                                                        fill_keys=fill)))
            continue
        files, fmt, base = listing[name]
        if not files:
            raise DataError(f"{name}: no input files found at {source}")
        futures += [(name, client.submit(_sharding.stage_file, str(source), f, fmt, base, columns, keys,
                                         plan, str(stage), name, order=i, check=check,
                                         pairs=pairs.get(name), fill_keys=fill,
                                         part_types=types.get(name),
                                         csv_types=csv_types.get(name), pure=False))
                    for i, f in enumerate(files)]
    done = [f for _, f in futures]
    pending = [f for f in done if not isinstance(f, dict)]
    if pending:
        got_ = iter(_progress.gather(pending, "staging", unit="file",
                                     count=lambda r: sum(r["counts"].values()), count_unit="rows"))
        done = [f if isinstance(f, dict) else next(got_) for f in done]
    if match:
        got = {main: [], "inventory": [], "echelon": []}
        for (name, _), res in zip(futures, done):
            if name in got:
                got[name].append(res["pairs"])
        if got["echelon"]:
            ech = np.concatenate(got["echelon"])
            if len(ech) and not np.isin(ech, np.concatenate(got[main])).any():
                raise DataError(f"echelon: rule 'the placement is of these SKU-locations' broken: "
                                f"none of its {len(ech)} SKU-locations is in the {main} (a "
                                f"placement made for another plan?)")
        keys_of = {name: keys for name, _, _, keys in jobs}
        _match_inventory(main, *(np.concatenate(got[k]) for k in (main, "inventory")),
                         examples=lambda name, h: _sharding.pair_examples(stage, name,
                                                                          keys_of[name], h))
    ends = [res["last_date"] for (name, _), res in zip(futures, done)
            if name == "history" and res["last_date"] is not None]
    return plan, (str(max(ends)) if ends else None)


#: Columns of an echelon placement's stores table that the orders use.
ECHELON_COLUMNS = ("sku", "location", "lead_time_days", "net_lead_time_days")


def _echelon_source(src: Any) -> Any:
    """A `replenish echelon` output: its stores table (the folder's stores.parquet)."""
    if isinstance(src, (str, Path)) and "://" not in str(src) and Path(src).is_dir():
        return str(Path(src) / "stores.parquet")
    return src


def _match_inventory(main: str, main_pairs, inv_pairs, examples=None) -> None:
    """Fail before training when the inventory's SKU-locations are not those of ``main``.

    ``main_pairs``: pair hashes of the history (or forecasts), ``inv_pairs``: one per
    inventory row; ``examples(name, hashes)``: some (sku, location) pairs of the staged
    input ``name`` with those hashes, named in the error. The same rules are checked again
    per shard on the actual keys.
    """
    def named(name: str, hashes: np.ndarray) -> str:
        return examples_text(examples(name, hashes) if examples is not None else [], len(hashes))

    series = np.unique(main_pairs)
    inv, counts = np.unique(inv_pairs, return_counts=True)
    broken = []                     # every key rule at once: one fix of the file, not three runs
    dup = counts > 1
    if dup.any():
        broken.append(f"inventory: rule 'one row per SKU-location' broken by {int(dup.sum())} "
                      f"SKU-locations{named('inventory', inv[dup])}")
    extra = ~np.isin(inv, series, assume_unique=True)
    if extra.any():
        # none matching at all is most often ids written differently ('002' and 2, 'S1 ')
        more = "" if not extra.all() else (
            f"; no row matches: the {main}'s SKU-locations are{named(main, series[:3])}. Ids "
            f"match as written: 2 matches '2' but not '002' (a CSV file's 002 is read as the "
            f"number 2: give such ids as text, in Parquet)")
        broken.append(f"inventory: rule 'every row is a SKU-location of the {main}' broken by "
                      f"{int(extra.sum())} rows{named('inventory', inv[extra])}{more}")
    lacking = ~np.isin(series, inv, assume_unique=True)
    if lacking.any() and not extra.all():
        broken.append(f"inventory: rule 'every SKU-location of the {main} has an inventory row' "
                      f"broken by {int(lacking.sum())} SKU-locations"
                      f"{named(main, series[lacking])}")
    if broken:
        raise DataError("\n".join(broken))


def run_plan(cfg: PlanConfig, *, stages: tuple[str, ...] = ("train", "forecast", "optimize"),
             overwrite: bool = False, client=None) -> dict[str, Any]:
    """Run the plan job (or some of its stages) and return its summary.

    Parameters
    ----------
    cfg : PlanConfig
        Inputs, column mapping, model and policy settings, cluster.
    stages : tuple of {"train", "forecast", "optimize"}
        Which stages to run. Without "train", ``cfg.model`` (or OUT/model) must hold a model.
    overwrite : bool
        Start afresh even if OUT holds another job's results.
    client : distributed.Client, optional
        Use this client instead of connecting per ``cfg.scheduler``.
    """
    if cfg.out is None:
        raise ValueError("an output folder (--out) is required")
    if stages == ("optimize",):
        if cfg.forecasts is None:
            raise ValueError("the optimize job needs forecasts (--forecasts, a forecast job's output)")
    elif cfg.history is None:
        raise ValueError("a demand history (--history) is required")
    if "optimize" in stages and cfg.inventory is None:
        raise ValueError("optimizing needs an inventory state (--inventory)")
    if cfg.echelon is not None and "optimize" not in stages:
        raise ValueError("--echelon changes the orders: it needs the optimize stage (plan or optimize)")
    network_inputs = None
    if cfg.network is not None:
        if "optimize" not in stages:
            raise ValueError("--network plans the orders of the whole chain: it needs the optimize "
                             "stage (plan or optimize)")
        if cfg.echelon is not None:
            raise ValueError("--network places the safety stock itself: drop --echelon")
        from .network import check_network_inputs
        network_inputs = check_network_inputs(cfg)     # bad tables fail before any work
    elif cfg.dc_inventory is not None:
        raise ValueError("--dc-inventory needs --network (the DCs' places in the chain)")
    if cfg.forecast:
        from dataclasses import fields as dc_fields

        from ..engine._config import ForecastConfig   # (no torch in this process)
        unknown = sorted(set(cfg.forecast) - {f.name for f in dc_fields(ForecastConfig)})
        if unknown:
            raise ValueError(f"forecast settings: unknown key(s) {unknown} (the fields of "
                             f"replenish.engine.forecast.ForecastConfig)")
    budget = _budget_settings(cfg)
    if budget.active:
        if "optimize" not in stages:
            raise ValueError("a budget or capacity limits orders: it needs the optimize stage "
                             "(plan or optimize)")
        budget.kind()   # both kinds, or a table without its columns: an error before any work
    elif cfg.budget_group:
        raise ValueError("--budget-group names the groups of a budget: give --budget, "
                         "--capacity or --budget-table too")
    from .exceptions import ExceptionSettings
    ExceptionSettings.from_mapping(cfg.exceptions)
    if cfg.missing_static not in ("error", "impute"):
        raise ValueError(f"missing_static must be 'error' or 'impute', got {cfg.missing_static!r}")
    if cfg.gap_fill:   # a column or value the rules cannot use fails now, not in every shard
        gap_rules(cfg.columns, cfg.gap_fill)
    model_meta = _check_saved_model(cfg) if cfg.model and "forecast" in stages else None
    out = Path(cfg.out)
    # the inputs' columns are checked before anything under --out is made or removed
    key_types, constant = _key_types(cfg), _constant_keys(cfg)
    fp = cfg.fingerprint() + "-" + _inputs_signature(cfg) + "-" + "+".join(stages)
    manifest = read_manifest(out)
    if not manifest and out.is_dir():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in _OWN_NAMES)
        if foreign:
            raise JobError(f"{out} is not empty and holds no replenish job ({foreign[:3]}"
                           f"{' ...' if len(foreign) > 3 else ''}): choose a new or empty --out "
                           f"folder (nothing there was changed)")
    if manifest and manifest.get("fingerprint") != fp:
        if not overwrite:
            raise JobError(f"{out} holds the results of a different job (config fingerprint "
                           f"{manifest.get('fingerprint')}); choose another --out or pass --overwrite")
        manifest = {}
    if not manifest:
        # a fresh start: another job's outputs go, its model too unless this job reads it
        reads = {Path(p).resolve() for p in (cfg.model, cfg.init_from) if p}
        for sub in ("forecasts", "orders", "_work", "_SUCCESS", "model", "exceptions",
                    "highlights", "report.html", "dc_orders", "network.parquet"):
            p = out / sub
            if sub == "model" and p.resolve() in reads:
                continue
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "_SUCCESS").unlink(missing_ok=True)
    t_start = time.perf_counter()
    timings: dict[str, float] = dict(manifest.get("timings", {}))
    with _job_client(client, cfg) as cl:
        n_workers = max(1, len(cl.scheduler_info().get("workers", {})))
        gpu = gpu_resources(cl)   # GPU workers: model tasks go there, the rest anywhere
        if not manifest:
            n_shards = _n_shards(cfg, n_workers)
            manifest = {"job": "plan", "stages": list(stages), "fingerprint": fp,
                        "status": "running", "n_shards": n_shards, "shards": {},
                        "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "config": asdict(cfg),
                        "key_types": key_types, "constant_keys": constant,
                        "unit_cost_given": _unit_cost_given(cfg)}
            for k in ("history", "inventory", "future", "budget_table", "network", "dc_inventory"):
                if isinstance(getattr(cfg, k), pa.Table):
                    manifest["config"][k] = "<pyarrow.Table>"
        manifest["status"] = "running"
        n_shards = manifest["n_shards"]
        _write_manifest(out, manifest)
        stage = out / "_work"
        spec = _spec(cfg, cfg.future is not None, stages, model_meta)
        spec["location_type"] = manifest.get("key_types", {}).get("location")
        optimizing = "optimize" in stages
        one_key = tuple(manifest.get("constant_keys", ()))
        for role in one_key:
            _say(f"series with one key: the history has no {role} column, so every series has "
                 f"the {role} {KEY_CONSTANT!r} (totals per "
                 f"{'location' if role == 'sku' else 'SKU'}), as the outputs' {role} column says")
        try:
            if not manifest.get("staged") or not stage.exists():
                t0 = time.perf_counter()
                shutil.rmtree(stage, ignore_errors=True)
                _say(f"staging inputs into {n_shards} shards on {n_workers} workers")
                plan, last = _stage_all(cl, cfg, stage, n_shards, one_key)
                if network_inputs is not None:   # the stores' places in the chain, before training
                    from .network import check_store_locations
                    check_store_locations(network_inputs[0], plan.units)
                manifest["staged"] = True
                if cfg.network is not None:   # its steps read staged forecasts: redo them
                    manifest["shards"], manifest["optimize_shards"] = {}, {}
                manifest["shard_plan"] = plan.to_json()
                manifest["history_end"] = last
                if cfg.history is not None and stages != ("optimize",):
                    manifest["profile"] = _profile_history(cl, cfg, stage, n_shards, spec,
                                                           model_meta)
                timings["stage_s"] = time.perf_counter() - t0
                _write_manifest(out, manifest)
            if manifest.get("profile"):
                spec.update(_profile.spec_entries(manifest["profile"]))
                for line in _profile.profile_lines(manifest["profile"]):
                    _say(line)
            if cfg.align_end:  # every series ends on the history's latest date (see build_panel)
                spec["end"] = manifest.get("history_end")
            if stages == ("optimize",) and cfg.network is None:
                todo = [s for s in range(n_shards) if str(s) not in manifest["shards"]
                        or not _shard_files_ok(out, manifest["shards"][str(s)])]
                t0 = time.perf_counter()
                _say(f"optimize: {len(todo)} shards to do, {n_shards - len(todo)} already done")
                _remove_unrecorded(out, manifest, todo)
                _run_shards(cl, out, manifest, todo, optimize_shard_task,
                            (str(stage),), (spec, str(out)), label="optimize")
                timings["shards_s"] = timings.get("shards_s", 0.0) + time.perf_counter() - t0
                stages = ()
            model_dir = str(Path(cfg.model)) if cfg.model else str(out / "model")
            if "train" in stages and cfg.model:
                _say(f"using the saved model {cfg.model} (no training)")
            elif "train" in stages and not manifest.get("model"):
                t0 = time.perf_counter()
                _say("training the global model")
                with _progress.TrainingProgress(cl):
                    info = cl.submit(train_task, str(stage), list(range(n_shards)), spec,
                                     model_dir, cfg.train_series, cfg.init_from,
                                     pure=False, resources=gpu).result()
                manifest["model"] = {k: v for k, v in info.items() if k != "history"}
                timings["train_s"] = time.perf_counter() - t0
                _write_manifest(out, manifest)
                _say(f"trained on {info['series']} series in {info['seconds']:.0f} s")
            if stages and stages != ("optimize",) and not Path(model_dir).exists():
                raise JobError(f"no model at {model_dir}: run the train stage or pass --model")
            todo = [s for s in range(n_shards) if str(s) not in manifest["shards"]
                    or not _shard_files_ok(out, manifest["shards"][str(s)])]
            work = tuple(s for s in stages if s != "train")
            if cfg.network is not None:
                from .network import run_network_job
                run_network_job(cl, cfg, out, manifest, stage, spec, model_dir, work, timings,
                                network_inputs)
            elif work:
                t0 = time.perf_counter()
                _say(f"{'+'.join(work)}: {len(todo)} shards to do, "
                     f"{n_shards - len(todo)} already done")
                _remove_unrecorded(out, manifest, todo)
                if gpu:
                    _run_shard_pipeline(cl, out, manifest, todo, str(stage), spec, model_dir, work,
                                        gpu)
                else:
                    _run_shards(cl, out, manifest, todo, plan_shard_task, (str(stage),),
                                (spec, model_dir, str(out), work), label="+".join(work))
                timings["shards_s"] = timings.get("shards_s", 0.0) + time.perf_counter() - t0
            if optimizing and _budget_settings(cfg).active:
                from .budget import apply_budget
                t0 = time.perf_counter()
                manifest["budget"] = apply_budget(cl, out, manifest, _budget_settings(cfg),
                                                  {**spec, "stage": str(stage)})
                timings["budget_s"] = time.perf_counter() - t0
                _write_manifest(out, manifest)
        except BaseException as e:
            manifest["status"] = "failed"
            manifest["error"] = str(e)
            manifest["timings"] = timings
            _write_manifest(out, manifest)
            raise
    manifest["status"] = "complete"
    manifest["timings"] = timings
    manifest["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    summary = _summarize(out, manifest, time.perf_counter() - t_start)
    reports = [r.get("report", {}) for r in manifest["shards"].values()] or \
        [(manifest.get("model") or {}).get("report", {})]
    rules = next((r["gap_fill_rules"] for r in reports if r.get("gap_fill_rules")), None)
    for line in _messages.repair_lines(summary["repairs"], reports, rules):
        _say(line)
    manifest["summary"] = summary
    manifest["staged"] = False  # the staged shards are removed now
    _write_manifest(out, manifest)
    shutil.rmtree(out / "_work", ignore_errors=True)
    (out / "_SUCCESS").write_text("")
    if cfg.report:
        from .report import write_report
        try:
            summary["report"] = str(write_report(out, ledger=cfg.ledger))
        except Exception as e:  # noqa: BLE001  -- the plan itself is complete
            _say(f"the plan is complete, but its report failed: {type(e).__name__}: {e} (rerun "
                 f"`replenish report {out}`)")
    return summary


def _budget_settings(cfg: PlanConfig):
    from .budget import BudgetSettings
    return BudgetSettings.from_config(cfg)


class _borrowed:
    def __init__(self, client):
        self.client = client

    def __enter__(self):
        return self.client

    def __exit__(self, *a):
        return False


@contextlib.contextmanager
def _job_client(client, cfg: PlanConfig):
    """The job's Dask client (``client``, or an embedded/joined cluster), with the workers'
    messages said here, once each (``_messages.forward_worker_logs``)."""
    with (_borrowed(client) if client is not None else connect(cfg.scheduler, cfg.n_workers)) as cl:
        with _messages.forward_worker_logs(cl):
            yield cl


def _unit_cost_given(cfg: PlanConfig) -> bool:
    """Whether order values are money: the inventory has unit costs (or a default is set)."""
    if "unit_cost" in cfg.inventory_defaults:
        return True
    inv = cfg.inventory
    if inv is None:
        return False
    names = inv.schema.names if isinstance(inv, pa.Table) else open_dataset(inv).schema.names
    return "unit_cost" in names


def _profile_history(cl, cfg: PlanConfig, stage: Path, n_shards: int, spec: dict[str, Any],
                     model_meta: dict[str, Any] | None) -> dict[str, Any] | None:
    """The job-wide choices of ``jobs._profile`` from every staged shard (one task each)."""
    c = cfg.columns
    if not c.static and not [x for x in c.covariates if x not in c.categorical]:
        return None
    parts = cl.gather([cl.submit(_profile.profile_shard, str(stage), s, spec["columns"],
                                 pure=False) for s in range(n_shards)])
    return _profile.resolve(parts, c, cfg.missing_static,
                            model_meta["spec"] if model_meta is not None else None)


def _run_shard_pipeline(cl, out: Path, manifest: dict, todo: list[int], stage: str,
                        spec: dict[str, Any], model_dir: str, work: tuple[str, ...],
                        gpu: dict[str, int]) -> None:
    """The shards on a GPU cluster: prepare (any worker) -> compute (a GPU worker) -> write
    (any worker), three tasks per shard, recorded in the manifest as :func:`_run_shards` does.

    At most ``2 x workers`` shards are in flight, so prepared panels do not pile up in
    memory while the GPU workers are busy.
    """
    from distributed import as_completed

    n_workers = max(1, len(cl.scheduler_info().get("workers", {})))
    window = 2 * n_workers
    pending = list(todo)
    shard_of: dict[Any, int] = {}

    def submit(s: int):
        tag = f"{s:05d}-{os.urandom(4).hex()}"
        prep = cl.submit(prepare_shard_task, stage, s, spec, model_dir, work, pure=False,
                         retries=2, key=f"prepare-{tag}")
        comp = cl.submit(compute_shard_task, prep, spec, model_dir, work, pure=False, retries=2,
                         resources=gpu, key=f"compute-{tag}")
        fut = cl.submit(write_shard_task, comp, str(out), spec, stage, pure=False, retries=2,
                        key=f"write-{tag}")
        shard_of[fut] = s
        return fut

    running = as_completed([submit(pending.pop(0)) for _ in range(min(window, len(pending)))])
    failed: list[str] = []
    done = series = 0
    t0 = time.perf_counter()
    label = "forecast+optimize" if "optimize" in work else "forecast"
    bar = _progress.bar(len(todo), label, "shard")
    try:
        for fut in running:
            s = shard_of.pop(fut)
            if pending:
                running.add(submit(pending.pop(0)))
            if bar is not None:
                bar.update(1)
            if fut.status == "error":
                msg = str(fut.exception())
                failed.append(msg if msg.startswith(f"shard {s}") else f"shard {s}: {msg}")
                continue
            res = fut.result()
            manifest["shards"][str(s)] = {k: v for k, v in res.items() if k != "shard"}
            _write_manifest(out, manifest)
            done += 1
            series += res["series"]
            if bar is not None:
                rate = series / max(time.perf_counter() - t0, 1e-9)
                bar.set_postfix_str(f"{series:,} series ({rate:,.0f}/s)", refresh=False)
            log.info("shard %d done (%d series, %.1f s) [%d/%d]", s, res["series"], res["seconds"],
                     done, len(todo))
    finally:
        if bar is not None:
            bar.close()
    if bar is None and todo:
        _progress.say(f"{label}: {len(todo)} shards done in {time.perf_counter() - t0:.1f} s, "
                      f"{series:,} series")
    if failed:
        raise JobError(f"{len(failed)} of {len(todo)} shards failed:\n  " + "\n  ".join(sorted(failed)))


def _summarize(out: Path, manifest: dict, seconds: float) -> dict[str, Any]:
    series = sum(r.get("series", 0) for r in manifest["shards"].values())
    freqs = sorted({r["report"]["freq"] for r in manifest["shards"].values()
                    if r.get("report", {}).get("freq")})
    config_model = (manifest.get("config") or {}).get("model")
    s: dict[str, Any] = {"out": str(out), "series": series, "shards": manifest["n_shards"],
                         "freq": freqs[0] if len(freqs) == 1 else None,
                         "trained_series": (manifest.get("model") or {}).get("series"),
                         "model": str(out / "model") if manifest.get("model") else config_model,
                         "seconds": round(seconds, 1), "timings": manifest.get("timings", {})}
    orders_dir = out / "orders"
    if orders_dir.exists() and any(orders_dir.rglob("*.parquet")):
        import pyarrow.compute as pc
        t = read_output(out, "orders", columns=["order_quantity", "order_value", "safety_stock",
                                                "order_date", "as_of"])
        qty = t.column("order_quantity")
        s.update({
            "orders_today": int(pc.sum(pc.greater(qty, 0)).as_py() or 0),
            "units_to_order": float(pc.sum(qty).as_py() or 0.0),
            "order_value": float(pc.sum(t.column("order_value")).as_py() or 0.0),
            "safety_stock_units": float(pc.sum(t.column("safety_stock")).as_py() or 0.0),
            "items_with_order_date_in_horizon": int(t.num_rows - t.column("order_date").null_count),
        })
    reports = [r.get("report", {}) for r in (*manifest["shards"].values(),
                                              *manifest.get("optimize_shards", {}).values())] or \
        [(manifest.get("model") or {}).get("report", {})]   # a train job: its panels'
    s["repairs"] = _messages.merge_reports(reports)
    s["constant_keys"] = {role: KEY_CONSTANT for role in manifest.get("constant_keys", [])}
    s["unit_cost_given"] = bool(manifest.get("unit_cost_given", True))
    if manifest.get("network"):
        s["network"] = manifest["network"]["summary"]
    from .exceptions import summarize_exceptions
    s["exceptions"] = summarize_exceptions(out)
    if manifest.get("budget"):
        s["budget"] = manifest["budget"]
    # which array backend each stage ran on, over the shards ({"forecast": ["torch:cuda"],
    # "optimize": ["cupy"]} on a GPU; torch:cpu / numpy on the CPU)
    used: dict[str, set] = {}
    for r in manifest["shards"].values():
        for stage_name, name in (r.get("backend") or {}).items():
            used.setdefault(stage_name, set()).add(name)
    s["backend"] = {k: sorted(v) for k, v in sorted(used.items())}
    return s

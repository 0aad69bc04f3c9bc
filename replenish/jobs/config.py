"""Job configuration: a TOML file, overridden by command-line flags.

TOML layout (every key optional; CLI flags win)::

    [data]
    history = "sales/"            # Parquet/CSV file, folder or hive dataset, or URL
    inventory = "inventory.parquet"
    future = "future.parquet"      # known covariates for the horizon
    echelon = "ech/"               # a `replenish echelon` output: stores wait for their DC's service time
    ledger = "accuracy.parquet"    # an evaluate ledger: per-item forecast bias of recent runs
    report = true                  # write OUT/report.html when the plan is done
    network = "network.parquet"    # the whole chain (node, parent, ...): places stock, orders for DCs
    dc_inventory = "dc_inventory.parquet"   # the DCs' state (sku, location, on_hand, on_order, ...)
    freq = "D"                     # "D" or "W"; inferred when absent
    negative = "error"             # or "clip"
    missing_demand = "error"       # or "zero"
    duplicates = "error"           # or "sum"
    gaps = "zero"                  # or "missing": a period without a row is unknown, not zero
    min_history = 1                # periods
    align_end = true               # extend series without recent rows to the latest date (zero demand)
    missing_static = "error"       # or "impute": a missing static number gets the median over series
    gap_fill = { Open = 0 }        # covariates in filled periods (also "Open=0,price=interpolate")

    [columns]
    sku = "item_id"                # leave sku (or location) out when the history has no such
    location = "store_id"          # column: every series then has the sku (location) "all"
    date = "day"
    date_format = "%d.%m.%Y"       # of date strings; default ISO 8601 (YYYY-MM-DD)
    demand = "units_sold"
    known = ["price", "promo", "event"]
    categorical = ["event"]        # covariates that are categories (names), not numbers
    observed = []
    static = ["category"]

    [forecast]                     # fields of replenish.engine.forecast.ForecastConfig
    horizon = 28

    [policy]
    target = "csl"                 # "csl", "fill_rate" or "cost"
    method = "sample"              # "sample" (Monte Carlo) or "normal"
    n_samples = 1000
    seed = 0

    [inventory_defaults]           # values for optional inventory columns that are absent
    review_period_days = 7

    [exceptions]                   # thresholds of the exception reasons (README, "Exceptions")
    excess_days_of_supply = 90     # days
    no_demand_days = 56            # days

    [budget]                       # order budgets, applied across all shards
    budget = 5000.0                # currency per location (or per group), or:
    # capacity = 800.0             # units per location (or per group)
    table = "budgets.parquet"      # per location (or group): location|group, budget|capacity
    group = "buyer"                # an inventory column naming each SKU-location's group

    [cluster]
    scheduler = "tcp://10.0.0.5:8786"   # join an existing cluster; embedded LocalCluster when absent
    n_workers = 2
    shards = 8                     # number of hash shards (default from the data size)
    train_series = 20000           # at most this many series train the global model

    [backtest]                     # replenish backtest only (replenish.jobs.backtest.BacktestSettings)
    origins = 26                   # rolling origins
    every = 7                      # periods between origins (default a week)
    targets = [0.8, 0.9, 0.95, 0.98, 0.99]
    retrain = false                # true: train from scratch at every origin
    finetune_steps = 175           # default max_steps / 4, at least 100
    classical = "ma"               # or "seasonal", or "ets" (statsforecast's AutoETS)
    classical_window = 28          # periods the classical forecast averages
    unmet = "backorder"            # or "lost"
    crossing = true                # random lead times may reorder receipts
"""
from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..engine.contract import ColumnMap, InventoryDefaults

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["PlanConfig", "load_toml", "parse_gap_fill"]

_SECTIONS = ("data", "columns", "forecast", "policy", "inventory_defaults", "exceptions", "budget",
             "cluster", "backtest")


def load_toml(path: str | Path | None) -> dict[str, Any]:
    """Read a TOML config; unknown sections are an error (they are usually typos)."""
    if path is None:
        return {}
    with open(path, "rb") as f:
        cfg = tomllib.load(f)
    unknown = sorted(set(cfg) - set(_SECTIONS))
    if unknown:
        raise ValueError(f"config {path}: unknown section(s) {unknown}; known: {list(_SECTIONS)}")
    return cfg


_POLICY_KEYS = {"target", "method", "n_samples", "seed"}
#: [budget] keys and the PlanConfig fields they set.
_BUDGET_KEYS = {"budget": "budget", "capacity": "capacity", "table": "budget_table",
                "group": "budget_group"}


def parse_gap_fill(v: Any) -> dict[str, Any]:
    """``"Open=0,promo=0"`` (the flag) or a TOML table ``{Open = 0}`` as a dict column ->
    value (text values stay text; the job checks them against the columns)."""
    if isinstance(v, dict):
        return dict(v)
    out: dict[str, Any] = {}
    for part in (p.strip() for p in str(v).split(",")):
        if not part:
            continue
        if "=" not in part:
            raise ValueError(f"--gap-fill {v!r}: write COLUMN=VALUE pairs separated by commas "
                             f"(e.g. Open=0,promo=0,price=interpolate)")
        k, val = part.split("=", 1)
        out[k.strip()] = val.strip()
    return out


def _check_keys(toml: dict[str, Any], plan_fields: set[str]) -> None:
    """Unknown keys inside a section are an error too (a typo would silently fall back to a
    default)."""
    from dataclasses import fields as dc_fields
    allowed: dict[str, set[str]] = {
        "data": plan_fields, "cluster": plan_fields, "policy": _POLICY_KEYS,
        "budget": set(_BUDGET_KEYS),
        "columns": {k for f in dc_fields(ColumnMap) for k in (f.name, f"{f.name}_col",
                                                               f"{f.name}_cols")}}
    # [forecast] keys are checked by the job (against ForecastConfig), for the API too
    for section, keys in allowed.items():
        unknown = sorted(set(toml.get(section, {})) - keys)
        if unknown:
            raise ValueError(f"config: unknown key(s) {unknown} in [{section}]; known: "
                             f"{sorted(keys)}")


@dataclass
class PlanConfig:
    """Everything a plan/train/forecast/optimize job needs. Paths may be URLs."""

    history: Any = None
    inventory: Any = None
    future: Any = None
    forecasts: Any = None
    echelon: Any = None
    network: Any = None
    dc_inventory: Any = None
    out: str | None = None
    columns: ColumnMap = field(default_factory=ColumnMap)
    freq: str | None = None
    negative: str = "error"
    missing_demand: str = "error"
    duplicates: str = "error"
    gaps: str = "zero"
    min_history: int = 1
    align_end: bool = True
    missing_static: str = "error"
    gap_fill: dict[str, Any] = field(default_factory=dict)
    forecast: dict[str, Any] = field(default_factory=dict)
    target: str = "csl"
    method: str = "sample"
    n_samples: int = 1000
    seed: int = 0
    inventory_defaults: dict[str, float] = field(default_factory=dict)
    scheduler: str | None = None
    n_workers: int | None = None
    shards: int | None = None
    rows_per_shard: int = 5_000_000
    train_series: int = 20_000
    model: str | None = None
    init_from: str | None = None
    ledger: str | None = None
    exceptions: dict[str, float] = field(default_factory=dict)
    budget: float | None = None
    capacity: float | None = None
    budget_table: Any = None
    budget_group: str | None = None
    report: bool = False

    @classmethod
    def build(cls, toml: dict[str, Any] | None = None, **flags: Any) -> "PlanConfig":
        """Merge a parsed TOML dict and CLI flags (None means 'not given')."""
        toml = toml or {}
        _check_keys(toml, set(cls.__dataclass_fields__))
        kw: dict[str, Any] = {}
        data = dict(toml.get("data", {}))
        kw.update({k: v for k, v in data.items() if k in cls.__dataclass_fields__})
        pol = toml.get("policy", {})
        kw.update({k: v for k, v in pol.items() if k in _POLICY_KEYS})
        cl = toml.get("cluster", {})
        kw.update({k: v for k, v in cl.items() if k in cls.__dataclass_fields__})
        kw["forecast"] = dict(toml.get("forecast", {}))
        kw["inventory_defaults"] = dict(toml.get("inventory_defaults", {}))
        kw["exceptions"] = dict(toml.get("exceptions", {}))
        from .exceptions import ExceptionSettings
        ExceptionSettings.from_mapping(kw["exceptions"])  # validates the keys and values
        kw.update({_BUDGET_KEYS[k]: v for k, v in toml.get("budget", {}).items()})
        InventoryDefaults().with_overrides(kw["inventory_defaults"])  # validates the keys
        columns = ColumnMap.from_mapping(toml.get("columns", {}))
        col_flags = {k[:-4] if k.endswith("_col") else k[:-5]: flags.pop(k)
                     for k in list(flags) if k.endswith(("_col", "_cols"))}
        columns = columns.with_overrides(**col_flags)
        if "gap_fill" in kw:
            kw["gap_fill"] = parse_gap_fill(kw["gap_fill"])
        for k, v in flags.items():
            if v is None:
                continue
            if k == "gap_fill":   # flags add to (and win over) the file's values
                kw["gap_fill"] = {**kw.get("gap_fill", {}), **parse_gap_fill(v)}
                continue
            if k in ("horizon",):
                kw["forecast"][k] = v
            elif k in cls.__dataclass_fields__:
                kw[k] = v
            else:
                raise TypeError(f"unknown option {k}")
        return cls(columns=columns, **kw)

    def fingerprint(self) -> str:
        """Hash of everything that changes the results (not where they go, nor the cluster)."""
        d = asdict(self)
        for k in ("out", "scheduler", "n_workers", "report"):
            d.pop(k, None)
        for k in ("history", "inventory", "future", "forecasts", "echelon", "budget_table", "network",
                  "dc_inventory"):
            if d.get(k) is not None and not isinstance(d[k], (str, Path)):
                d[k] = f"<{type(d[k]).__name__}>"
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]

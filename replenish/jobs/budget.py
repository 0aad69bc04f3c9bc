"""Order budgets (currency) or capacities (units) per location or group, over the whole run.

A location's SKU-locations may sit in several shards (large locations are split, see
``_sharding.ShardPlan``), so a budget cannot be applied per shard. After every shard has
written its unconstrained orders (``planned_quantity``), this pass reads the candidates of
all shards (a few columns per item), cuts them with the allocation kernel
(:func:`replenish.kernels.allocate_budget`: units kept in decreasing order of expected
stockout cost avoided per currency unit, or per unit of capacity, across each group) in one
call, and has each shard rewrite its orders, exceptions and highlights with the allocated
quantities. The pass starts again from ``planned_quantity``, so a resumed job that reruns it
gets the same result.

Settings (``[budget]`` TOML section, or ``--budget``, ``--capacity``, ``--budget-table``,
``--budget-group``):

- ``budget`` (currency) or ``capacity`` (units): the limit of every group not in the table;
- ``table``: one row per location (column ``location``) or group (column ``group``), with a
  ``budget`` or a ``capacity`` column (one of them, matching the flag's kind);
- ``group``: an inventory column naming each SKU-location's group (a buyer, a supplier, a
  department); without it the group is the location.

A unit short is priced at ``stockout_cost`` where given, else at ``unit_cost``. Items
with ``unit_cost`` 0 cost nothing against a budget and keep their orders.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..engine.contract import DataError

__all__ = ["BudgetSettings", "check_table_keys", "group_limits", "apply_budget",
           "budget_shard_task", "requantify"]

log = logging.getLogger("replenish")

#: Orders columns the allocation reads.
CANDIDATE_COLUMNS = ("planned_quantity", "protection_demand_mean", "protection_demand_std",
                     "inventory_position", "unit_cost", "stockout_cost", "case_pack", "moq")


@dataclass(frozen=True)
class BudgetSettings:
    """A budget or capacity per location or group (see the module docstring)."""

    budget: float | None = None
    capacity: float | None = None
    table: Any = None
    group: str | None = None

    @classmethod
    def from_config(cls, cfg) -> "BudgetSettings":
        return cls(cfg.budget, cfg.capacity, cfg.budget_table, cfg.budget_group)

    @property
    def active(self) -> bool:
        return self.budget is not None or self.capacity is not None or self.table is not None

    def kind(self) -> str:
        """"budget" or "capacity" (checks the settings and the table's columns)."""
        if self.budget is not None and self.capacity is not None:
            raise ValueError("give a budget (currency) or a capacity (units), not both")
        for name, v in (("budget", self.budget), ("capacity", self.capacity)):
            if v is not None and (not np.isfinite(float(v)) or float(v) < 0):
                raise ValueError(f"--{name} must be a number >= 0, got {v!r}")
        flag = "budget" if self.budget is not None else "capacity" if self.capacity is not None else None
        if self.table is None:
            return flag
        cols = self._table().column_names
        have = [c for c in ("budget", "capacity") if c in cols]
        key = "group" if self.group else "location"
        if len(have) != 1 or key not in cols:
            raise DataError(f"budget table {self.table}: needs a '{key}' column and one of "
                            f"'budget' (currency) or 'capacity' (units); it has {cols}")
        if flag is not None and have[0] != flag:
            raise DataError(f"budget table {self.table} holds a {have[0]} but --{flag} was "
                            f"given: use one kind of limit")
        return have[0]

    def _table(self) -> pa.Table:
        from ..engine.io import read_table
        from ._sources import as_source as _as_source
        src = _as_source(self.table, name="budget table")
        return src if isinstance(src, pa.Table) else read_table(src)


def _examples(values, k: int = 3) -> str:
    return ", ".join(repr(v) for v in list(values)[:k])


def check_table_keys(settings: BudgetSettings, names, what: str = "location") -> int:
    """Compare the budget table's locations (or groups) with those of the run, as text (ids
    as written: ``'002'`` is not ``2``). None of them in the run: an error (a limit that
    matches nothing would leave every order uncut). Some not in it: a warning with their
    count and examples (they limit nothing). Returns how many rows match nothing."""
    from ..engine.validate import key_text
    if settings.table is None:
        return 0
    t = settings._table()
    keys = key_text(t.column("group" if settings.group else "location"))
    have = set(np.asarray(names, dtype=object).astype(str).tolist())
    stray = [k for k in keys if k not in have]
    if not stray:
        return 0
    col = "group" if settings.group else "location"
    if len(stray) == len(keys) and len(keys):
        raise DataError(
            f"budget table {settings.table}: column '{col}': rule 'names a {what} of the run' "
            f"broken by all {len(keys)} rows (e.g. {_examples(stray)}; the run's {what}s are "
            f"e.g. {_examples(sorted(have))}). Ids match as written: '002' is not 2")
    log.warning("budget table: %d of its %d %ss are no %s of this run (e.g. %s): they limit "
                "nothing", len(stray), len(keys), col, what, _examples(stray))
    return len(stray)


def group_limits(settings: BudgetSettings, groups: np.ndarray) -> tuple[str, np.ndarray]:
    """The kind of limit and each group's limit (currency or units; inf: unlimited).

    ``groups``: the groups' names as text (location ids as text, or the group column's
    values).
    """
    from ..engine.validate import key_text, to_numeric
    kind = settings.kind()
    default = settings.budget if kind == "budget" else settings.capacity
    lim = np.full(len(groups), np.inf if default is None else float(default))
    if settings.table is not None:
        t = settings._table()
        key = key_text(t.column("group" if settings.group else "location"))
        val = to_numeric(t.column(kind), kind)
        bad = int((~np.isfinite(val) | (val < 0)).sum())
        if bad:
            raise DataError(f"budget table: rule '{kind} is a number >= 0' broken by {bad} rows")
        if len(set(key)) != len(key):
            raise DataError("budget table: rule 'one row per location or group' broken")
        at = {k: v for k, v in zip(key, val)}
        for i, g in enumerate(groups):
            if g in at:
                lim[i] = at[g]
    return kind, lim


def _location_of(rel: str) -> str:
    part = Path(rel).parent.name
    return unquote(part.split("=", 1)[1]) if part.startswith("location=") else ""


def apply_budget(client, out: Path, manifest: dict[str, Any], settings: BudgetSettings,
                 spec: dict[str, Any]) -> dict[str, Any]:
    """Allocate the budget over all shards' planned orders; have each shard rewrite its files.

    Returns a summary: kind, groups, the limit and spend per group in all, orders and units
    cut. Updates the shard records of ``manifest`` in place (new checksums).
    """
    from ..kernels import allocate_budget
    shards = sorted(manifest["shards"], key=int)
    files = [(s, rel) for s in shards for rel in sorted(manifest["shards"][s].get("files", {}))
             if rel.startswith("orders/")]
    cols = list(CANDIDATE_COLUMNS) + (["budget_group"] if settings.group else [])
    parts, sizes = [], []
    for _, rel in files:
        t = pq.read_table(out / rel, columns=cols)
        parts.append(t)
        sizes.append(t.num_rows)
    if not parts:
        return {"kind": settings.kind(), "groups": 0}
    cand = pa.concat_tables(parts)

    def col(name):
        c = cand.column(name)
        return np.asarray(c.to_numpy(zero_copy_only=False), np.float64)

    if settings.group:
        names = np.asarray(cand.column("budget_group").to_pylist(), dtype=object)
        names = np.where(names == None, "", names).astype(str)  # noqa: E711
    else:
        names = np.repeat(np.asarray([_location_of(rel) for _, rel in files], dtype=object), sizes)
    uniq, code = np.unique(names.astype(str), return_inverse=True)
    kind, limits = group_limits(settings, uniq)
    # groups are known only now (an inventory column); locations were checked at staging
    unmatched = check_table_keys(settings, uniq, "group") if settings.group else None
    planned = col("planned_quantity")
    cost = col("unit_cost")
    short = col("stockout_cost")
    price = np.where(np.isfinite(short) & (short > 0), short, cost)
    free = (cost <= 0) if kind == "budget" else np.zeros(len(cost), bool)
    use = ~free & (price > 0) & np.isfinite(limits[code])
    alloc = planned.copy()
    if use.any():
        lim = np.where(np.isfinite(limits), limits, 0.0)
        kw = {kind: lim}
        alloc[use] = allocate_budget(
            planned[use], group=code[use].astype(np.int64), demand_mean=col("protection_demand_mean")[use],
            demand_std=col("protection_demand_std")[use], position=col("inventory_position")[use],
            unit_cost=cost[use] if kind == "budget" else None, stockout_cost=price[use],
            case_pack=col("case_pack")[use], moq=col("moq")[use], **kw)
    weight = cost if kind == "budget" else np.ones(len(cost))
    spend = np.bincount(code, weights=alloc * weight, minlength=len(uniq))
    # each shard rewrites its files with its slice of the allocation
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    per_shard: dict[str, dict[str, np.ndarray]] = {}
    for i, (s, rel) in enumerate(files):
        per_shard.setdefault(s, {})[rel] = alloc[bounds[i]:bounds[i + 1]]
    from . import _progress
    futs = {client.submit(budget_shard_task, str(out), int(s), arrays, spec, pure=False): s
            for s, arrays in per_shard.items()}
    for fut, s in _progress.completed(futs, "budget", unit="shard"):
        manifest["shards"][s]["files"].update(fut.result())
    cut = planned - alloc
    limited = np.isfinite(limits)
    return {"kind": kind, "groups": int(len(uniq)), "groups_limited": int(limited.sum()),
            **({} if unmatched is None else {"table_rows_unmatched": unmatched}),
            "limit": float(limits[limited].sum()), "spend": float(spend.sum()),
            "spend_limited_groups": float(spend[limited].sum()),
            "orders_cut": int((cut > 1e-9).sum()), "units_cut": float(cut.sum())}


def requantify(orders: pa.Table, quantity: np.ndarray) -> pa.Table:
    """``orders`` with the order quantity set to ``quantity`` (units; at most the planned
    one) and the columns that depend on it recomputed: ``order_value``, ``binding_rule``,
    ``days_of_supply_after_order``."""
    from ..kernels import BINDING_RULES, binding_rule, periods_of_supply

    def num(name):
        return np.asarray(orders.column(name).to_numpy(zero_copy_only=False), np.float64)

    q = np.asarray(quantity, np.float64)
    pos = num("inventory_position")
    code, _ = binding_rule(pos, num("reorder_point"), num("order_up_to"), q,
                           planned_quantity=num("planned_quantity"), moq=num("moq"))
    new = {"order_quantity": pa.array(q), "order_value": pa.array(q * num("unit_cost")),
           "binding_rule": pa.array(np.asarray(BINDING_RULES, dtype=object)[code], pa.string()),
           "days_of_supply_after_order": pa.array(periods_of_supply(pos + q, num("demand_per_day")))}
    t = orders
    for name, arr in new.items():
        t = t.set_column(t.column_names.index(name), name, arr)
    return t


def budget_shard_task(out: str, shard: int, quantities: dict[str, np.ndarray],
                      spec: dict[str, Any]) -> dict[str, Any]:
    """Rewrite one shard's orders with its allocated quantities (``{orders file: units}``),
    and its exceptions and highlights; return the files written (rows, SHA-256)."""
    from ..engine.io import write_parquet_atomic
    from ._sharding import file_checksum
    from . import exceptions as exc
    settings = exc.ExceptionSettings.from_mapping(spec.get("exceptions"))
    loc_type = spec.get("location_type")
    files: dict[str, Any] = {}
    full = []
    for rel, q in sorted(quantities.items()):
        path = Path(out) / rel
        t = requantify(pq.read_table(path), q)
        t = exc.with_exception_columns(t, settings)
        write_parquet_atomic(t, path)
        files[rel] = {"rows": t.num_rows, "sha256": file_checksum(path)}
        loc = pa.array([_location_of(rel)] * t.num_rows, pa.string())
        if loc_type:
            loc = loc.cast(pa.type_for_alias(loc_type))
        full.append(t.add_column(1, "location", loc))
    orders = pa.concat_tables(full, promote_options="permissive")
    recent = None
    rp = Path(spec["stage"]) / "recent" / f"shard={shard:05d}.parquet"
    if rp.exists():
        recent = pq.read_table(rp)
    k = int(spec.get("highlights", 8))
    files.update(exc.write_exception_files(orders, recent, settings, k, out, shard))
    return files

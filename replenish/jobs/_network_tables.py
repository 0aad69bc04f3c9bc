"""The network table and the DC inventory table of ``--network`` / ``--dc-inventory``: read and
check them before any work. Their columns and rules are documented in the README.

Node ids and SKUs compare as text (:func:`replenish.engine.validate.key_text`: 7, "7" and
7.0 are one id); the original values are kept for the outputs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from ..engine.contract import DataError
from ..engine.io import read_table
from ..engine.validate import key_text
from ..kernels._tree import TreeError, tree_structure

__all__ = ["NETWORK_COLUMNS", "DC_INVENTORY_COLUMNS", "Network", "load_network", "load_dc_inventory"]

#: Optional number columns of the network table and their defaults (NaN: decided later).
NETWORK_COLUMNS = {"lead_time_days": np.nan, "holding_cost_per_day": np.nan, "service_days": 0.0,
                   "service_level": np.nan, "inbound_service_days": 0.0}
#: Columns of the DC inventory table: default (None: required; NaN: from the network).
DC_INVENTORY_COLUMNS = {"on_hand": None, "on_order": None, "lead_time_days": np.nan,
                        "review_period_days": 1.0, "backorders": 0.0, "unit_cost": 1.0,
                        "holding_cost_rate": 0.25, "service_level": np.nan, "moq": 0.0,
                        "case_pack": 1.0, "max_order": np.inf}


def _examples(values, k: int = 3) -> str:
    vals = list(values)
    if not vals:
        return ""
    more = ", ..." if len(vals) > k else ""
    return f" (e.g. {', '.join(repr(v) for v in vals[:k])}{more})"


def _source_table(src: Any, name: str) -> pa.Table:
    from ._sources import as_source as _as_source
    t = _as_source(src, name=name)
    return t if isinstance(t, pa.Table) else read_table(t)


def _numbers(df, name: str, columns: dict[str, Any]) -> None:
    """Columns as float64 in place: absent ones get their default; bad values are errors."""
    import pandas as pd
    for c, default in columns.items():
        if c not in df:
            if default is None:
                raise DataError(f"{name}: required column '{c}' missing; it has {list(df.columns)}")
            df[c] = default
            continue
        v = pd.to_numeric(df[c], errors="coerce").astype(np.float64)
        unreadable = int((v.isna() & df[c].notna()).sum())
        if unreadable:
            raise DataError(f"{name}: column '{c}': rule 'a number' broken by {unreadable} rows")
        if default is None and int(v.isna().sum()):
            raise DataError(f"{name}: column '{c}': rule 'must not be missing' broken by "
                            f"{int(v.isna().sum())} rows")
        if default is not None and not np.isnan(default):
            v = v.fillna(default)
        if c == "service_level":
            bad = int(((v <= 0) | (v >= 1)).sum())
            rule = "inside (0, 1)"
        elif c in ("case_pack",):
            bad = int((v <= 0).sum())
            rule = "> 0"
        else:
            bad = int((v < 0).sum())
            rule = ">= 0"
        if bad:
            raise DataError(f"{name}: column '{c}': rule '{rule}' broken by {bad} rows")
        df[c] = v


@dataclass
class Network:
    """A checked network table: one row per node (per SKU with a ``sku`` column).

    ``frame``: pandas, columns ``sku_key`` (text, or None for every SKU), ``node_key``,
    ``parent_key`` (text or None), the number columns, ``row`` (the table's row);
    ``table``: the table as given (for the node ids' own values and type).
    """

    frame: Any
    table: pa.Table
    per_sku: bool

    def groups(self):
        """(sku key or None, frame rows of that network) per network."""
        if not self.per_sku:
            return [(None, self.frame)]
        return list(self.frame.groupby("sku_key", sort=True))


def load_network(src: Any, sku_col: str = "sku") -> Network:
    """Read and check the network table (rules: README, 'The network table').

    Errors name the rule, how many nodes (or SKUs) break it and some of their ids.
    """
    t = _source_table(src, "network")
    missing = [c for c in ("node", "parent") if c not in t.column_names]
    if missing:
        raise DataError(f"network: required column(s) {missing} missing; it has {t.column_names}")
    sku_name = sku_col if sku_col in t.column_names else ("sku" if "sku" in t.column_names else None)
    df = t.select([c for c in t.column_names if c in NETWORK_COLUMNS]).to_pandas()
    df["node_key"] = key_text(t.column("node"))
    df["parent_key"] = key_text(t.column("parent"))
    df["sku_key"] = key_text(t.column(sku_name)) if sku_name else None
    df["row"] = np.arange(t.num_rows)
    if int(df["node_key"].isna().sum()):
        raise DataError(f"network: column 'node': rule 'must not be missing' broken by "
                        f"{int(df['node_key'].isna().sum())} rows")
    if sku_name and int(df["sku_key"].isna().sum()):
        raise DataError(f"network: column '{sku_name}': rule 'must not be missing' broken by "
                        f"{int(df['sku_key'].isna().sum())} rows")
    df.loc[df["parent_key"].isin(["", "nan", "None"]), "parent_key"] = None
    _numbers(df, "network", NETWORK_COLUMNS)
    net = Network(df, t, sku_name is not None)
    where = " per SKU" if net.per_sku else ""
    dup = df.duplicated(["sku_key", "node_key"] if net.per_sku else ["node_key"], keep=False)
    if dup.any():
        nodes = sorted(set(df.loc[dup, "node_key"]))
        raise DataError(f"network: rule 'one row (one parent) per node{where}' broken by "
                        f"{len(nodes)} nodes{_examples(nodes)}")
    many_roots = []
    for sku, g in net.groups():
        at = {k: i for i, k in enumerate(g["node_key"])}
        par = g["parent_key"].to_numpy(object)
        unknown = [(n, p) for n, p in zip(g["node_key"], par) if p is not None and p not in at]
        if unknown:
            raise DataError(f"network{'' if sku is None else f' (sku {sku!r})'}: rule 'every "
                            f"parent is a node of the network' broken by {len(unknown)} nodes"
                            f"{_examples(f'{n} (parent {p})' for n, p in unknown)}")
        parent = np.array([-1 if p is None else at[p] for p in par], np.int64)
        try:
            tree_structure(parent)
        except TreeError as e:
            names = g["node_key"].to_numpy(object)[e.nodes]
            raise DataError(f"network{'' if sku is None else f' (sku {sku!r})'}: rule 'no "
                            f"cycles (following parents from every node reaches a root)' broken "
                            f"by {len(names)} nodes{_examples(names)}") from None
        roots = g["node_key"].to_numpy(object)[parent < 0]
        if len(roots) > 1:
            many_roots.append((sku, roots))
    if many_roots:
        sku, roots = many_roots[0]
        if sku is None:
            raise DataError(f"network: rule 'one root (the one node without a parent: the "
                            f"supplier serves it)' broken by {len(roots)} roots{_examples(roots)}; "
                            f"give separate chains a common root with lead time 0 and holding "
                            f"cost 0, or one network per SKU (a sku column)")
        raise DataError(f"network: rule 'one root per SKU (the one node without a parent)' broken "
                        f"by {len(many_roots)} SKUs (e.g. sku {sku!r}: roots "
                        f"{', '.join(map(repr, roots[:3]))})")
    return net


def load_dc_inventory(src: Any, sku_col: str = "sku", location_col: str = "location"):
    """Read and check the DC inventory table (one row per SKU and DC node).

    Returns a pandas frame with ``sku_key``, ``node_key``, ``row`` and the number columns of
    :data:`DC_INVENTORY_COLUMNS` (defaults filled in), and the table as given.
    """
    t = _source_table(src, "dc-inventory")
    sc = sku_col if sku_col in t.column_names else "sku"
    lc = location_col if location_col in t.column_names else "location"
    missing = [c for c in (sc, lc) if c not in t.column_names]
    if missing:
        raise DataError(f"dc-inventory: key column(s) {missing} missing (your --sku-col/"
                        f"--location-col names, or sku/location); it has {t.column_names}")
    df = t.select([c for c in t.column_names if c in DC_INVENTORY_COLUMNS]).to_pandas()
    df["sku_key"], df["node_key"] = key_text(t.column(sc)), key_text(t.column(lc))
    df["row"] = np.arange(t.num_rows)
    for c, name in ((df["sku_key"], sc), (df["node_key"], lc)):
        if int(c.isna().sum()):
            raise DataError(f"dc-inventory: column '{name}': rule 'key must not be missing' "
                            f"broken by {int(c.isna().sum())} rows")
    _numbers(df, "dc-inventory", DC_INVENTORY_COLUMNS)
    dup = df.duplicated(["sku_key", "node_key"], keep=False)
    if dup.any():
        pairs = sorted(set(zip(df.loc[dup, "sku_key"], df.loc[dup, "node_key"])))
        raise DataError(f"dc-inventory: rule 'one row per SKU and DC' broken by {len(pairs)} "
                        f"pairs{_examples(pairs)}")
    return df, t, (sc, lc)

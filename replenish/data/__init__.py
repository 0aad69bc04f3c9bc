"""Bundled real data: daily demand of a bakery chain (ddop 0.7.6 'bakery', MIT licence).

3 products in 35 stores, 2016-01-02 to 2019-04-30: 105 complete daily series of 1,215 days.
Provenance and columns: ``BAKERY.md`` beside this file.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..engine.contract import ColumnMap

__all__ = ["bakery_path", "load_bakery", "BAKERY_COLUMNS", "bakery_inventory"]

#: How the bakery's columns map to replenish's roles.
BAKERY_COLUMNS = ColumnMap(
    sku="product", location="store", date="date", demand="demand",
    known=("is_holiday", "is_holiday_next2days", "is_schoolholiday", "promotion_currentweek",
           "promotion_lastweek", "rain", "temperature"))


def bakery_path() -> Path:
    """Path of the bundled Parquet file."""
    return Path(__file__).with_name("bakery.parquet")


def load_bakery() -> pa.Table:
    """The bakery demand history as a pyarrow Table (127,575 rows)."""
    return pq.read_table(bakery_path())


def bakery_inventory(history: pa.Table | None = None, seed: int = 0) -> pa.Table:
    """A plausible inventory state for the bakery's 105 SKU-locations (generated, not real).

    On hand is 0.5 to 3 days of recent mean demand; lead time 1 or 2 days (std 0.25 day);
    daily review; case pack 6, MOQ 12 units; unit cost 0.5 to 3 currency; 95% service level.
    """
    t = history if history is not None else load_bakery()
    df = t.select(["product", "store", "date", "demand"]).to_pandas()
    last = df["date"].max()
    recent = df[df["date"] > last - np.timedelta64(28, "D")]
    m = recent.groupby(["product", "store"], sort=True)["demand"].mean().reset_index()
    rng = np.random.default_rng(seed)
    n = len(m)
    cost_by_product = {p: c for p, c in zip(sorted(m["product"].unique()),
                                            np.round(rng.uniform(0.5, 3.0, m["product"].nunique()), 2))}
    return pa.table({
        "product": m["product"].to_numpy(), "store": m["store"].to_numpy(),
        "on_hand": np.round(m["demand"].to_numpy() * rng.uniform(0.5, 3.0, n)),
        "on_order": np.zeros(n),
        "lead_time_days": rng.integers(1, 3, n).astype(np.float64),
        "lead_time_std_days": np.full(n, 0.25),
        "review_period_days": np.ones(n),
        "unit_cost": m["product"].map(cost_by_product).to_numpy(),
        "holding_cost_rate": np.full(n, 0.25),
        "service_level": np.full(n, 0.95),
        "moq": np.full(n, 12.0), "case_pack": np.full(n, 6.0),
    })

"""The data contract: which column plays which role, and the defaults of the inventory state.

Users map their own column names to roles; nothing downstream knows the names of any
particular data set. Keys are always ``sku`` and ``location``; the time column is a date
(daily data) or the first day of a week (weekly data).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Mapping

__all__ = ["ColumnMap", "InventoryDefaults", "DataError", "INVENTORY_COLUMNS"]


class DataError(ValueError):
    """Bad input data. The message names the column, the rule, and how many rows break it."""


@dataclass(frozen=True)
class ColumnMap:
    """Names of the user's columns, by role.

    Attributes
    ----------
    sku, location : str
        Key columns. Together they identify one series (one SKU at one location).
    date : str
        Date of the period (daily data) or its first day (weekly data).
    demand : str
        Demand in units of stock per period (the forecasting target).
    known : tuple of str
        Covariates known in advance for the forecast horizon (price, promotion flags,
        holidays, events, weather forecasts). Their future values come from a future table.
    observed : tuple of str
        Covariates only known in the past (e.g. realised weather, footfall).
    static : tuple of str
        Per-series attributes constant over time (category, store format...). Integer and
        string columns are treated as categories, float columns as numbers.
    categorical : tuple of str
        Those of the known and observed covariates that are categories (event or holiday
        names, promotion types): text or integer labels, read as categories of the model
        instead of numbers. A missing value is a category of its own ("no event").
    date_format : str or None
        ``strftime`` format of date strings (e.g. ``"%d.%m.%Y"``) in the history and future
        tables. None: date or timestamp columns, or ISO 8601 text (``YYYY-MM-DD``).
    """

    sku: str = "sku"
    location: str = "location"
    date: str = "date"
    demand: str = "demand"
    known: tuple[str, ...] = ()
    observed: tuple[str, ...] = ()
    static: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    date_format: str | None = None

    @property
    def keys(self) -> tuple[str, str]:
        return (self.sku, self.location)

    @property
    def required(self) -> tuple[str, ...]:
        return (self.sku, self.location, self.date, self.demand)

    @property
    def covariates(self) -> tuple[str, ...]:
        return self.known + self.observed

    def all_columns(self) -> tuple[str, ...]:
        return self.required + self.known + self.observed + self.static

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any]) -> "ColumnMap":
        """Build from a mapping such as a TOML ``[columns]`` table (keys ``sku_col`` or ``sku`` ...)."""
        kw: dict[str, Any] = {}
        for f in fields(cls):
            for key in (f.name, f"{f.name}_col", f"{f.name}_cols"):
                if key in m and m[key] is not None:
                    v = m[key]
                    if f.name in _LISTS:
                        v = tuple(_split(v))
                    kw[f.name] = v
        return cls(**kw)

    def with_overrides(self, **kw: Any) -> "ColumnMap":
        kw = {k: (tuple(_split(v)) if k in _LISTS else v)
              for k, v in kw.items() if v is not None}
        return replace(self, **kw)

    def check_distinct(self) -> None:
        cols = self.all_columns()
        dup = sorted({c for c in cols if cols.count(c) > 1})
        if dup:
            raise DataError(f"column mapping: columns {dup} are given more than one role")
        stray = [c for c in self.categorical if c not in self.covariates]
        if stray:
            raise DataError(f"column mapping: categorical columns {stray} must also be known or "
                            f"observed covariates (static columns are categories by type)")


#: ColumnMap fields that hold lists of column names.
_LISTS = ("known", "observed", "static", "categorical")


def _split(v: Any) -> list[str]:
    if isinstance(v, str):
        return [s.strip() for s in v.split(",") if s.strip()]
    return [str(s) for s in v]


#: Inventory-state columns: name -> (default or None when required, unit/meaning).
INVENTORY_COLUMNS: dict[str, tuple[Any, str]] = {
    "on_hand": (None, "units of stock on hand now"),
    "on_order": (None, "units ordered and not yet received"),
    "lead_time_days": (None, "days from placing an order to receiving it"),
    "lead_time_std_days": (0.0, "standard deviation of the lead time, days"),
    "review_period_days": (1.0, "days between order reviews (1 = daily review)"),
    "backorders": (0.0, "units of demand owed to customers"),
    "unit_cost": (1.0, "currency per unit"),
    "holding_cost_rate": (0.25, "holding cost per year as a fraction of unit cost"),
    "service_level": (0.95, "target cycle service level or fill rate, in (0, 1)"),
    "stockout_cost": (float("nan"), "currency per unit short (NaN: not used, service target instead)"),
    "order_cost": (0.0, "fixed currency per order placed"),
    "moq": (0.0, "minimum order quantity, units"),
    "case_pack": (1.0, "order multiple, units"),
    "max_order": (float("inf"), "maximum order quantity, units"),
    "shelf_life_days": (float("inf"), "days a unit can be sold after its receipt (inf: does not "
                                      "expire; used by the backtest's simulation)"),
}


@dataclass(frozen=True)
class InventoryDefaults:
    """Values used where the inventory table lacks an optional column (see ``INVENTORY_COLUMNS``)."""

    values: dict[str, Any] = field(
        default_factory=lambda: {k: v for k, (v, _) in INVENTORY_COLUMNS.items() if v is not None})

    def with_overrides(self, m: Mapping[str, Any]) -> "InventoryDefaults":
        unknown = sorted(set(m) - set(self.values))
        if unknown:
            raise DataError(f"inventory defaults: unknown keys {unknown}; known: {sorted(self.values)}")
        return InventoryDefaults({**self.values, **{k: float(v) for k, v in m.items()}})

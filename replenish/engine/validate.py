"""Validation of demand history and inventory state, and construction of the Panel.

Every rule either raises :class:`DataError` naming the column, the rule and the number of
rows that break it, or applies a documented repair whose count is logged and kept in
``Panel.report``. Nothing is dropped or invented silently.

Repairs (all logged):
- gaps in a series' dates are filled with zero demand (``gaps="zero"``, the default), or left
  unknown (``gaps="missing"``: demand NaN, see :class:`~replenish.engine.panel.Panel`);
- negative demand is clipped to zero when ``negative="clip"``;
- missing demand (null/NaN) is set to zero when ``missing_demand="zero"``;
- duplicate (sku, location, date) rows are summed when ``duplicates="sum"`` (covariates: first row);
- missing covariate values of the rows given are filled forward within the series, then
  backward, then with 0 for a series where the covariate is entirely missing;
- the periods a filled gap adds have no row, so their covariates follow the gap rules
  (:func:`gap_rules`), never the value before the gap: 0 for 0/1 flags, the missing label
  for categories, linear interpolation for other numbers, or the value given per column;
- categorical covariates (``ColumnMap.categorical``) are not filled: a missing label gets
  the "missing" category (the empty label ``""``);
- a missing static category (int or text column) gets the "missing" category ``""`` too
  (counted as ``static_missing``); a missing static number is an error naming the series,
  or with ``missing_static="impute"`` the median over series plus a ``<column>_missing``
  indicator (counted as ``static_imputed``);
- a key column left at its default name (``sku`` or ``location``) and absent from the
  table is the constant :data:`KEY_CONSTANT` (series with one key: store or product totals).
"""
from __future__ import annotations

import logging
from typing import Any, Iterable, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .contract import ColumnMap, DataError, INVENTORY_COLUMNS, InventoryDefaults
from .panel import FREQ_DEFAULTS, FREQ_STEP_DAYS, Panel

__all__ = ["build_panel", "check_inventory_rows", "check_rows", "checked_demand",
           "validate_inventory", "infer_freq", "to_categories", "to_dates", "to_numeric",
           "MISSING_CATEGORY", "KEY_CONSTANT", "constant_keys", "missing_hint", "with_constant_keys",
           "gap_rules", "id_text", "examples_text", "key_text", "MISSING_SUFFIX", "GAP_RULE_WORDS"]

#: Label of a missing value of a categorical covariate (code 0 of every Panel category list).
MISSING_CATEGORY = ""
#: The value of a key column the history does not have (store totals: every series is the
#: SKU "all"; product totals: the location "all").
KEY_CONSTANT = "all"
#: Suffix of the indicator column added for an imputed static number (1: imputed).
MISSING_SUFFIX = "_missing"
#: Gap rules given by name instead of a value (``--gap-fill price=interpolate``).
GAP_RULE_WORDS = ("interpolate", "previous")

log = logging.getLogger("replenish")
#: Repairs that are also counted in ``Panel.report``: the jobs report those once per job
#: from the counts, so worker processes do not forward these records (``jobs._messages``).
repair_log = logging.getLogger("replenish.repairs")


def constant_keys(names: list[str] | tuple[str, ...], columns: ColumnMap) -> tuple[str, ...]:
    """The key columns of ``columns`` that a table with columns ``names`` lacks and that are
    filled with :data:`KEY_CONSTANT`: a key left at its default name (``sku``,
    ``location``) when the other key is there. (A key mapped to another name and absent is
    a typo, and a table with neither key has no series: both are missing columns, see
    :func:`missing_hint`.)"""
    out = []
    for role, other in (("sku", "location"), ("location", "sku")):
        name = getattr(columns, role)
        if name not in names and name == role and getattr(columns, other) in names:
            out.append(name)
    return tuple(out)


def missing_hint(missing: list[str], columns: ColumnMap) -> str:
    """What to do about missing key columns, for the 'required column(s) missing' error."""
    for role in ("sku", "location"):
        name = getattr(columns, role)
        if name in missing and name != role:
            return (f" (a table without a {'product' if role == 'sku' else 'location'} column: "
                    f"leave --{role}-col out, and every series has the {role} {KEY_CONSTANT!r})")
    if columns.sku in missing and columns.location in missing:
        return " (at least one key column is needed: map yours with --sku-col/--location-col)"
    return ""


def with_constant_keys(table: pa.Table, keys: tuple[str, ...] | list[str]) -> pa.Table:
    """``table`` with a text column :data:`KEY_CONSTANT` for each absent name in ``keys``."""
    for k in keys:
        if k not in table.column_names:
            table = table.append_column(k, pa.array([KEY_CONSTANT] * table.num_rows, pa.string()))
    return table


def to_dates(arr: pa.ChunkedArray | pa.Array, column: str, fmt: str | None = None) -> np.ndarray:
    """Parse a date column to datetime64[D]; raise naming the unparseable rows.

    Date and timestamp columns are taken as they are; text is ISO 8601 unless ``fmt`` (a
    ``strftime`` format such as ``"%d.%m.%Y"``) says otherwise.
    """
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    n_null_in = arr.null_count
    t = arr.type
    if fmt and pa.types.is_integer(t):  # 20240131 with "%Y%m%d"
        arr = arr.cast(pa.string())
        t = arr.type
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        out = arr.cast(pa.date32()) if not pa.types.is_date32(t) else arr
    elif pa.types.is_string(t) or pa.types.is_large_string(t):
        import pandas as pd
        text = pd.Series(arr.to_numpy(zero_copy_only=False))
        parsed = pd.to_datetime(text, errors="coerce", format=fmt)
        out = pa.array(parsed.values.astype("datetime64[D]"),
                       mask=parsed.isna().to_numpy()).cast(pa.date32())
        failed = parsed.isna() & text.notna()
        if failed.any() and fmt:
            raise DataError(f"column '{column}': rule 'must be a date in the format {fmt!r}' broken "
                            f"by {int(failed.sum())} rows (e.g. {text[failed].iloc[0]!r})")
        if failed.any():
            # without a format it is inferred from the first value, so a day-first column whose
            # first day is <= 12 fails on the later days > 12: never guessed, reported with an example
            raise DataError(f"column '{column}': rule 'must be a valid date' broken by "
                            f"{int(failed.sum())} rows (e.g. {text[failed].iloc[0]!r}); write dates "
                            f"as YYYY-MM-DD (ISO 8601) text or as a date or timestamp column, or "
                            f"give their format (--date-format '%d.%m.%Y')")
    else:
        hint = " (integers such as 20240131: give --date-format '%Y%m%d')" if pa.types.is_integer(t) else ""
        raise DataError(f"column '{column}': rule 'must be a date or an ISO date string' broken by "
                        f"all {len(arr)} rows (type {t}){hint}")
    bad = out.null_count
    if bad:
        extra = f" ({bad - n_null_in} unparseable, {n_null_in} missing)" if n_null_in else ""
        raise DataError(f"column '{column}': rule 'must be a valid date' broken by {bad} rows{extra}")
    return out.to_numpy(zero_copy_only=False).astype("datetime64[D]")


_FLAG_WORDS = {"true": 1.0, "false": 0.0, "yes": 1.0, "no": 0.0, "y": 1.0, "n": 0.0, "t": 1.0, "f": 0.0}


def to_numeric(arr: pa.ChunkedArray | pa.Array, column: str, flags: bool = False) -> np.ndarray:
    """Cast a column to float64 (nulls become NaN); raise naming the non-numeric rows.

    Booleans become 1/0; with ``flags`` (covariates) so do the words true/false, yes/no,
    y/n and t/f in any case.
    """
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    t = arr.type
    if pa.types.is_boolean(t):
        arr = arr.cast(pa.int8())
        t = arr.type
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return arr.cast(pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        import pandas as pd
        raw = pd.Series(arr.to_numpy(zero_copy_only=False))
        num = pd.to_numeric(raw, errors="coerce")
        text = num.isna() & raw.notna()
        if flags and text.any():  # flags written as words (CSV exports of booleans)
            words = raw[text].str.strip().str.lower().map(_FLAG_WORDS)
            num[text] = words
        bad = num.isna() & raw.notna()
        if bad.any():
            raise DataError(f"column '{column}': rule 'must be numeric' broken by {int(bad.sum())} rows "
                            f"(e.g. {raw[bad].iloc[0]!r}); a covariate of labels such as event "
                            f"names is read as categories when listed in --categorical-cols "
                            f"(TOML [columns] categorical)")
        return num.to_numpy(np.float64)
    raise DataError(f"column '{column}': rule 'must be numeric' broken by all {len(arr)} rows "
                    f"(type {t})")


def to_categories(arr: pa.ChunkedArray | pa.Array, labels: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Codes and labels of a categorical covariate column (text, integer or boolean labels).

    Labels are compared as text (``7`` and ``"7"`` are one category). Missing values get
    code 0, the label :data:`MISSING_CATEGORY`. With ``labels`` (a panel's list) new labels
    are appended to it, so codes of an existing panel stay valid.

    Returns
    -------
    codes : ndarray of float32, shape (n,)
        Index into ``labels`` (float, as it is stored among the panel's covariates).
    labels : ndarray of object (str)
        ``MISSING_CATEGORY`` first, then the known labels, then new ones in sorted order.
    """
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    if pa.types.is_dictionary(arr.type):
        arr = arr.cast(arr.type.value_type)
    if pa.types.is_floating(arr.type):   # 3.0 -> "3": float columns of integer labels
        whole = pc.equal(pc.floor(arr), arr)
        if pc.all(pc.fill_null(whole, True)).as_py():
            arr = arr.cast(pa.int64())
    text = pc.fill_null(arr.cast(pa.string()), MISSING_CATEGORY)
    enc = pc.dictionary_encode(text)
    seen = np.asarray(enc.dictionary.to_numpy(zero_copy_only=False), dtype=object)
    base = np.array([MISSING_CATEGORY], dtype=object) if labels is None \
        else np.asarray(labels, dtype=object)
    import pandas as pd
    pos = pd.Index(base).get_indexer(seen)
    new = np.array(sorted(set(seen[pos < 0])), dtype=object)
    labels = np.concatenate([base, new]) if len(new) else base
    pos = pd.Index(labels).get_indexer(seen)
    codes = pos[enc.indices.to_numpy(zero_copy_only=False)]
    return codes.astype(np.float32), labels


def checked_demand(arr: pa.ChunkedArray | pa.Array, column: str, negative: str = "error",
                   missing_demand: str = "error", report: dict[str, Any] | None = None) -> np.ndarray:
    """Demand as float64 units per period, after its row rules (finite, not negative).

    Raises :class:`DataError` naming the column, the rule and the rows that break it, or
    applies the chosen repair (``negative="clip"``, ``missing_demand="zero"``), counting it in
    ``report`` and logging it when a report is given.
    """
    demand = to_numeric(arr, column)
    bad = ~np.isfinite(demand)
    if bad.any():
        inf = int(np.isinf(demand).sum())
        if inf:   # no repair: an infinite demand is an error in the feed, not a missing value
            raise DataError(f"column '{column}': rule 'demand must be a finite number' "
                            f"broken by {inf} rows of infinite demand (no option repairs "
                            f"those: fix or drop them in the feed)")
        if missing_demand == "error":
            raise DataError(f"column '{column}': rule 'demand must be a finite number' "
                            f"broken by {int(bad.sum())} rows of missing demand (use "
                            f"--missing-demand zero to treat missing as zero demand)")
        demand[bad] = 0.0
        if report is not None:
            report["missing_demand_zeroed"] = int(bad.sum())
            repair_log.warning("%d rows with missing demand set to zero", int(bad.sum()))
    neg = demand < 0
    if neg.any():
        if negative == "error":
            raise DataError(f"column '{column}': rule 'demand must not be negative' broken "
                            f"by {int(neg.sum())} rows (use --negative clip to clip them to zero)")
        demand[neg] = 0.0
        if report is not None:
            report["negative_clipped"] = int(neg.sum())
            repair_log.warning("%d rows with negative demand clipped to zero", int(neg.sum()))
    return demand


def check_rows(table: pa.Table, columns: ColumnMap, negative: str = "error",
               missing_demand: str = "error") -> np.datetime64 | None:
    """The rules of :func:`build_panel` that hold row by row, for any chunk of a history.

    Keys present, dates valid, demand finite and not negative (unless repaired), covariates
    numeric. The rules that need whole series (duplicates, static attributes, history
    length) are checked when a shard's Panel is built. The jobs run this while staging, so
    bad rows fail the job before any training. Returns the chunk's latest date (None when
    it has no rows).
    """
    for key in columns.keys:
        nulls = table.column(key).null_count
        if nulls:
            raise DataError(f"column '{key}': rule 'key must not be missing' broken by {nulls} rows")
    dates = to_dates(table.column(columns.date), columns.date, columns.date_format)
    checked_demand(table.column(columns.demand), columns.demand, negative, missing_demand)
    for c in columns.known + columns.observed:
        if c not in columns.categorical:
            to_numeric(table.column(c), c, flags=True)
    return dates.max() if len(dates) else None


def _plain(table: pa.Table) -> pa.Table:
    """Decode dictionary columns (pandas categoricals, Parquet dictionaries) to their values."""
    for i, f in enumerate(table.schema):
        if pa.types.is_dictionary(f.type):
            table = table.set_column(i, f.name, table.column(i).cast(f.type.value_type))
    return table


def _rank_codes(col: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes of a column that sort as its values do, and its sorted distinct values.

    ``values[codes]`` gives the column back as a NumPy array; comparing or sorting codes
    compares or sorts the values (hashing once per row, sorting only the distinct values).
    """
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    enc = pc.dictionary_encode(col)
    values = enc.dictionary
    by_value = pc.sort_indices(values).to_numpy()
    rank = np.empty(len(values), dtype=np.int64)
    rank[by_value] = np.arange(len(values), dtype=np.int64)
    codes = rank[enc.indices.to_numpy(zero_copy_only=False)]
    return codes, values.take(pa.array(by_value)).to_numpy(zero_copy_only=False)


def _steps(series_id: np.ndarray, dates: np.ndarray) -> np.ndarray:
    """Positive steps (days) between consecutive dates of the same series (sorted input)."""
    same = series_id[1:] == series_id[:-1]
    diffs = (dates[1:] - dates[:-1]).astype(np.int64)[same]
    return diffs[diffs > 0]


#: Steps between dates, all whole weeks, from which data declared daily is refused as weekly.
WEEKLY_EVIDENCE_STEPS = 10


def infer_freq(series_id: np.ndarray, dates: np.ndarray, column: str = "date") -> str:
    """'D' or 'W' from the smallest step between consecutive dates of the same series
    (``column``: the date column's name, for the messages)."""
    diffs = _steps(series_id, dates)
    if len(diffs) == 0:
        return "D"
    step = int(diffs.min())
    if step == 1:
        return "D"
    if step == 7 or (step % 7 == 0 and not np.any(diffs % 7)):
        return "W"     # (dates off the weekly grid are then reported with their count)
    if step >= 28:
        raise DataError(f"column '{column}': rule 'daily or weekly periods' broken: consecutive "
                        f"dates of a series are {step} days or more apart and not whole weeks "
                        f"(monthly data?); replenish plans in days (D) or weeks (W)")
    off = int(np.count_nonzero(diffs % 7))
    if off * 10 <= len(diffs):   # mostly whole weeks: weekly dates, a few off their weekday
        raise DataError(f"column '{column}': rule 'daily or weekly periods' broken: {off:,} of "
                        f"{len(diffs):,} steps between a series' dates are not whole weeks (the "
                        f"smallest {step} days), the others are: weekly data with dates off "
                        f"their weekday? Declare --freq W (the rows off it are then counted and "
                        f"named) or --freq D")
    raise DataError(f"column '{column}': rule 'daily or weekly periods' broken: the smallest step "
                    f"between dates is {step} days; declare the frequency with --freq")


def build_panel(table: pa.Table, columns: ColumnMap = ColumnMap(), *, freq: str | None = None,
                negative: str = "error", missing_demand: str = "error", duplicates: str = "error",
                min_history: int = 1, future: pa.Table | None = None,
                horizon: int | str | None = None, end: Any = None,
                missing_static: str = "error", static_fill: Mapping[str, float] | None = None,
                static_numbers: Iterable[str] | None = None,
                gap_fill: Mapping[str, Any] | None = None,
                flags: Iterable[str] | None = None, gaps: str = "zero") -> Panel:
    """Validate a long demand table and build the :class:`Panel`.

    Parameters
    ----------
    table : pyarrow.Table
        One row per SKU, location and period; columns named by ``columns``.
    columns : ColumnMap
        Which column plays which role.
    freq : {"D", "W"} or None
        Period length; inferred from the dates when None.
    negative : {"error", "clip"}
        Negative demand (units): raise, or clip to zero and log the count.
    missing_demand : {"error", "zero"}
        Null/NaN demand: raise, or set to zero and log the count.
    duplicates : {"error", "sum"}
        Duplicate (sku, location, date) rows: raise, or sum their demand and log the count.
    min_history : int
        Minimum number of periods (after filling gaps) a series must have.
    future : pyarrow.Table, optional
        Known covariates after the history: key columns, date, and the known columns.
    horizon : int or "auto", optional
        Number of future periods to take from ``future`` (default: as many as it covers;
        "auto": the default horizon of the panel's frequency, ``FREQ_DEFAULTS``).
    end : date-like, optional
        The history's last date for every series (the jobs pass the latest date of the whole
        history). A series whose rows stop earlier (no sales reported since, or discontinued)
        is extended to its last period on or before ``end`` with zero demand, counted as
        ``trailing_filled`` in the report and logged, so that every series is forecast and
        ordered from the same day. Without it each series ends at its own last row.
    missing_static : {"error", "impute"}
        A static number (float column) missing for some series: raise naming the series, or
        give those series the median over series (``static_fill``) and add the indicator
        column ``<column>_missing`` (1 for them, else 0), counted as ``static_imputed``.
    static_fill : dict, optional
        The value each static number is imputed with (the jobs pass the median over all the
        history's series, so every shard agrees); every column named gets its indicator,
        even where nothing is missing. Without it: this table's median over series, and an
        indicator only for the columns with missing values.
    static_numbers : list of str, optional
        The static columns that are numbers (the jobs pass them, so that a column read as
        integers in one file and as floats in another is one thing). Default: float and
        decimal columns; the other static columns are categories.
    gap_fill : dict, optional
        Column -> value (a number, a label for a categorical covariate, or "interpolate" /
        "previous") of the covariates in the periods a filled gap or extension adds; see
        :func:`gap_rules` for the defaults.
    flags : list of str, optional
        The numeric covariates that are 0/1 flags (0 in filled periods by default). Default:
        those whose values in this table are all 0 or 1.
    gaps : {"zero", "missing"}
        Periods without a row inside a series (and, with ``end``, after its last row):
        ``"zero"`` fills them with zero demand (transaction feeds that omit the periods
        without sales), counted as ``gaps_filled`` / ``trailing_filled``; ``"missing"``
        leaves their demand unknown (NaN: never a training target, not in any scale),
        counted as ``gaps_missing`` / ``trailing_missing``.
    """
    columns.check_distinct()
    for name, opts, v in (("negative", ("error", "clip"), negative),
                          ("missing_demand", ("error", "zero"), missing_demand),
                          ("duplicates", ("error", "sum"), duplicates),
                          ("missing_static", ("error", "impute"), missing_static),
                          ("gaps", ("zero", "missing"), gaps)):
        if v not in opts:
            raise ValueError(f"{name} must be one of {opts}, got {v!r}")
    one_key = constant_keys(table.column_names, columns)
    if one_key:
        log.info("history: no column %s: every series has the %s %r", one_key,
                 "sku" if one_key[0] == columns.sku else "location", KEY_CONSTANT)
        table = with_constant_keys(table, one_key)
    missing = [c for c in columns.all_columns() if c not in table.column_names]
    if missing:
        raise DataError(f"history: required column(s) {missing} missing; the table has "
                        f"{table.column_names}. Map your names with --sku-col/--location-col/"
                        f"--date-col/--demand-col/--known-cols/--observed-cols/--static-cols"
                        f"{missing_hint(missing, columns)}")
    if table.num_rows == 0:
        raise DataError("history: rule 'at least one row' broken: the table is empty")
    report: dict[str, Any] = {"input_rows": table.num_rows}

    for key in columns.keys:
        nulls = table.column(key).null_count
        if nulls:
            raise DataError(f"column '{key}': rule 'key must not be missing' broken by {nulls} rows")
    table = _plain(table.select(list(columns.all_columns())))
    dates = to_dates(table.column(columns.date), columns.date, columns.date_format)
    # Sort by (sku, location, date) on integer ranks of the keys (a key's rank among its
    # distinct values sorts as the value does): no string comparisons per row, and no
    # reordering at all when the input is already sorted (staged shards are).
    sku_code, sku_values = _rank_codes(table.column(columns.sku))
    loc_code, loc_values = _rank_codes(table.column(columns.location))
    key = sku_code * np.int64(len(loc_values)) + loc_code
    day = dates.astype(np.int64)
    n = table.num_rows
    in_order = bool(np.all((key[1:] > key[:-1]) | ((key[1:] == key[:-1]) & (day[1:] >= day[:-1]))))
    order = None if in_order else np.lexsort((day, key))

    def column(name: str) -> pa.Array:
        col = table.column(name)
        return col if order is None else col.take(pa.array(order))

    if order is not None:
        key, dates = key[order], dates[order]
    new_series = np.ones(n, dtype=bool)
    new_series[1:] = key[1:] != key[:-1]
    sid = np.cumsum(new_series) - 1
    series_key = key[new_series]
    sku = sku_values[series_key // len(loc_values)]
    loc = loc_values[series_key % len(loc_values)]

    demand = checked_demand(column(columns.demand), columns.demand, negative, missing_demand, report)

    cov_names = columns.known + columns.observed
    cov = np.empty((n, len(cov_names)), dtype=np.float32)
    categories: dict[str, np.ndarray] = {}
    for j, c in enumerate(cov_names):
        if c in columns.categorical:
            cov[:, j], categories[c] = to_categories(column(c))
        else:
            cov[:, j] = to_numeric(column(c), c, flags=True)

    dup = np.zeros(n, dtype=bool)
    dup[1:] = (~new_series[1:]) & (dates[1:] == dates[:-1])
    if dup.any():
        n_dup = int(dup.sum())
        if duplicates == "error":
            raise DataError(f"columns ({columns.sku}, {columns.location}, {columns.date}): rule "
                            f"'one row per series and date' broken by {n_dup} duplicate rows "
                            f"(use --duplicates sum to add them up)")
        firsts = np.flatnonzero(~dup)
        demand = np.add.reduceat(demand, firsts)
        sid, dates, cov = sid[firsts], dates[firsts], cov[firsts]
        new_series = new_series[firsts]
        keep_idx = firsts
        report["duplicates_summed"] = n_dup
        repair_log.warning("%d duplicate rows summed into their first row", n_dup)
    else:
        keep_idx = None

    firsts = np.flatnonzero(new_series)
    n_series = len(firsts)
    if freq == "D":
        steps = _steps(sid, dates)
        if len(steps) >= WEEKLY_EVIDENCE_STEPS and not np.any(steps % 7):
            raise DataError(f"column '{columns.date}': rule 'daily periods (freq D)' broken: all "
                            f"{len(steps)} steps between consecutive dates of a series are whole "
                            f"weeks, so these are weekly data: declare --freq W (or leave the "
                            f"frequency to be inferred), and use a model trained on weekly data")
        if len(steps) >= WEEKLY_EVIDENCE_STEPS and steps.min() >= 28:
            raise DataError(f"column '{columns.date}': rule 'daily periods (freq D)' broken: all "
                            f"{len(steps)} steps between consecutive dates of a series are 28 "
                            f"days or more (monthly data?); replenish plans in days or weeks")
    freq = freq or infer_freq(sid, dates, columns.date)
    if freq not in FREQ_STEP_DAYS:
        raise ValueError(f"freq must be one of {sorted(FREQ_STEP_DAYS)}, got {freq!r}")
    step = FREQ_STEP_DAYS[freq]
    start = dates[firsts]
    offset_days = (dates - start[sid]).astype(np.int64)
    off_grid = offset_days % step != 0
    if off_grid.any():
        raise DataError(f"column '{columns.date}': rule 'weekly dates fall on the same weekday "
                        f"within a series' broken by {int(off_grid.sum())} rows")
    pos = offset_days // step
    lengths = np.zeros(n_series, dtype=np.int64)
    np.maximum.at(lengths, sid, pos + 1)
    short = lengths < min_history
    if short.any():
        raise DataError(f"column '{columns.date}': rule 'at least {min_history} periods of history "
                        f"per series' broken by {int(short.sum())} series (lower --min-history)")
    trailing = 0
    if end is not None:
        end_day = np.datetime64(end, "D")
        late = int((dates > end_day).sum())
        if late:
            raise DataError(f"column '{columns.date}': rule 'no date after the history's end "
                            f"{end_day}' broken by {late} rows")
        common = (end_day - start).astype(np.int64) // step + 1
        trailing = int((common - lengths).sum())
        if trailing:
            report["trailing_missing" if gaps == "missing" else "trailing_filled"] = trailing
            repair_log.info("%d periods after %d series' last rows, up to %s, %s", trailing,
                            int((common > lengths).sum()), end_day,
                            "left unknown (--gaps missing)" if gaps == "missing"
                            else "filled with zero demand")
            # A location none of whose series has a row in its last periods looks like a late
            # feed rather than no sales: named, so that the zeros are not taken for demand.
            lag = common - lengths
            loc_code = np.unique(loc, return_inverse=True)[1].reshape(-1)
            n_loc = int(loc_code.max()) + 1
            min_lag = np.full(n_loc, np.iinfo(np.int64).max)
            np.minimum.at(min_lag, loc_code, lag)
            quiet = np.flatnonzero(min_lag > 0)
            if len(quiet):
                one = np.zeros(n_loc, np.int64)
                one[loc_code[::-1]] = np.arange(len(loc_code))[::-1]   # a series of each
                report["locations_without_recent_rows"] = int(len(quiet))
                named = [f"{id_text(loc[one[i]])}: {int(min_lag[i])} periods" for i in quiet[:3]]
                report["locations_without_recent_rows_examples"] = named
                repair_log.warning("%d location(s) have no row in the last period(s) of the "
                                   "history (e.g. %s); their series were extended with %s "
                                   "demand: if their feeds are late, rerun once they are in, or "
                                   "use --no-align-end", len(quiet), ", ".join(named),
                                   "unknown" if gaps == "missing" else "zero")
            lengths = common
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    rows = indptr[sid] + pos
    n_rows = int(indptr[-1])
    n_gaps = n_rows - len(rows) - trailing
    if n_gaps and gaps == "missing":
        report["gaps_missing"] = n_gaps
        repair_log.info("%d missing periods left unknown (--gaps missing): not training "
                        "targets, not in the scales, not scored", n_gaps)
    elif n_gaps:
        report["gaps_filled"] = n_gaps
        repair_log.info("%d missing periods filled with zero demand", n_gaps)
        if n_gaps > len(rows):
            repair_log.warning("more periods were missing and filled with zero demand (%d) "
                               "than the history has rows (%d): check the frequency (%s) and "
                               "the dates", n_gaps, len(rows), freq)
    # missing values of the rows given come from the series' own rows, never from a gap
    given_ptr = np.concatenate([[0], np.cumsum(np.bincount(sid, minlength=n_series))])
    filled = _fill_covariates(cov, given_ptr.astype(np.int64), cov_names)
    if filled:
        report["covariates_filled"] = filled
        repair_log.info("missing covariate values filled (forward, backward, else 0): %s", filled)
    if n_gaps or trailing:
        # an unknown period's demand is NaN (Panel: "missing"); otherwise zero
        flat_demand = np.full(n_rows, np.nan if gaps == "missing" else 0.0, dtype=np.float32)
        flat_demand[rows] = demand
        flat_cov = np.empty((n_rows, len(cov_names)), dtype=np.float32)
        flat_cov[rows] = cov
        if cov_names:   # the added periods have no row: their covariates follow the gap rules
            given = np.zeros(n_rows, dtype=bool)
            given[rows] = True
            rules = gap_rules(columns, gap_fill, _flag_columns(cov, cov_names, categories)
                              if flags is None else flags)
            report["gap_fill"] = _fill_gap_periods(flat_cov, given, indptr, cov_names, rules,
                                                   categories)
            report["gap_fill_rules"] = rules
            repair_log.info("covariates of the %d filled periods: %s", n_rows - len(rows),
                            rules_text(rules))
    else:   # rows are sorted and unique, so without gaps they are 0 .. n_rows-1
        flat_demand = demand.astype(np.float32)
        flat_cov = cov

    static: dict[str, np.ndarray] = {}
    numbers = None if static_numbers is None else set(static_numbers)
    for c in columns.static:
        col = column(c)
        if keep_idx is not None:
            col = col.take(pa.array(keep_idx))
        col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
        is_number = (pa.types.is_floating(col.type) or pa.types.is_decimal(col.type)) \
            if numbers is None else c in numbers
        flag = None
        if is_number:
            v = to_numeric(col, c)
            lacking = np.zeros(n_series, dtype=bool)
            np.logical_or.at(lacking, sid, np.isnan(v))
            if lacking.any():
                where = np.flatnonzero(lacking)
                if missing_static == "error":
                    raise DataError(f"column '{c}': rule 'a numeric static attribute must not be "
                                    f"missing' broken by {len(where)} series"
                                    f"{_examples(sku, loc, where)} (use --missing-static impute "
                                    f"for the median over series plus a missing indicator)")
                fill = (static_fill or {}).get(c)
                if fill is None:
                    fill = float(np.median(series_values(v, sid, n_series)[~lacking])) \
                        if (~lacking).any() else 0.0
                v = np.where(np.isnan(v), fill, v)
                report.setdefault("static_imputed", {})[c] = len(where)
                repair_log.warning("column '%s': %d series without a value%s get the median "
                                   "over series, %g, and %s = 1", c, len(where),
                                   _examples(sku, loc, where), fill, c + MISSING_SUFFIX)
            if lacking.any() or (static_fill is not None and c in static_fill):
                flag = lacking.astype(np.float64)
            col = pa.array(v)
        elif col.null_count:
            # a category (int or text): a missing label is its own category, ""
            report.setdefault("static_missing", {})[c] = col.null_count
            lacking = np.zeros(n_series, dtype=bool)
            np.logical_or.at(lacking, sid, col.is_null().to_numpy(zero_copy_only=False))
            report.setdefault("static_missing_series", {})[c] = int(lacking.sum())
            repair_log.warning("column '%s': %d rows without a static attribute get the "
                               "missing category", c, col.null_count)
            col = pc.fill_null(pc.cast(col, pa.string()), MISSING_CATEGORY)
        code, values = _rank_codes(col)
        varies = np.zeros(n_series, dtype=bool)
        change = ~new_series[1:] & (code[1:] != code[:-1])
        np.logical_or.at(varies, sid[1:][change], True)
        if varies.any():
            raise DataError(f"column '{c}': rule 'static attribute is constant within a series' "
                            f"broken by {int(varies.sum())} series"
                            f"{_examples(sku, loc, np.flatnonzero(varies))}")
        static[c] = values[code[firsts]]
        if flag is not None:
            name = c + MISSING_SUFFIX
            if name in columns.all_columns():
                raise DataError(f"column '{name}': the indicator of the imputed static column "
                                f"'{c}' has the name of one of your columns; rename it")
            static[name] = flag

    nk = len(columns.known)
    panel = Panel(sku=sku, location=loc, start=start, indptr=indptr,
                  demand=flat_demand, freq=freq, known=flat_cov[:, :nk],
                  known_names=tuple(columns.known), observed=flat_cov[:, nk:],
                  observed_names=tuple(columns.observed), static=static,
                  categories=categories, report=report)
    report.update(series=n_series, rows=n_rows, freq=freq)
    if future is not None:
        if horizon == "auto":
            horizon = FREQ_DEFAULTS[freq]["horizon"]
        panel.future_known = _future_known(panel, future, columns, horizon)
    return panel


def _fill_covariates(cov: np.ndarray, indptr: np.ndarray, names: tuple[str, ...]) -> dict[str, int]:
    """Fill NaNs in place: forward within the series, then backward, then 0. Returns counts."""
    counts: dict[str, int] = {}
    if cov.shape[1] == 0:
        return counts
    n = cov.shape[0]
    seg_start = seg_end = ar = None
    for j, name in enumerate(names):
        col = cov[:, j]
        miss = np.isnan(col)
        if not miss.any():
            continue
        counts[name] = int(miss.sum())
        if ar is None:
            lengths = np.diff(indptr)
            seg_start = np.repeat(indptr[:-1], lengths)
            seg_end = np.repeat(indptr[1:] - 1, lengths)
            ar = np.arange(n)
        last = np.maximum.accumulate(np.where(miss, -1, ar))
        ok = last >= seg_start
        nxt = np.minimum.accumulate(np.where(miss, n, ar)[::-1])[::-1]
        ok_b = nxt <= seg_end
        src = np.where(ok, last, np.where(ok_b, nxt, -1))
        filled = np.where(src >= 0, col[np.clip(src, 0, None)], 0.0)
        cov[:, j] = np.where(miss, filled, col)
    return counts


def series_values(v: np.ndarray, sid: np.ndarray, n_series: int) -> np.ndarray:
    """Each series' first non-missing value of a per-row column (NaN where it has none),
    shape (n_series,); rows sorted by series ``sid``."""
    out = np.full(n_series, np.nan)
    ok = ~np.isnan(v)
    idx = np.flatnonzero(ok)
    s = sid[idx]
    first = np.ones(len(s), dtype=bool)
    first[1:] = s[1:] != s[:-1]
    out[s[first]] = v[idx[first]]
    return out


def _flag_columns(cov: np.ndarray, names: tuple[str, ...], categories: dict) -> list[str]:
    """The numeric covariates whose values are all 0 or 1 (and not all missing): flags."""
    out = []
    for j, name in enumerate(names):
        if name in categories:
            continue
        v = cov[:, j]
        v = v[~np.isnan(v)]
        if len(v) and np.isin(v, (0.0, 1.0)).all():
            out.append(name)
    return out


def gap_rules(columns: ColumnMap, gap_fill: Mapping[str, Any] | None = None,
              flags: Iterable[str] = ()) -> dict[str, str]:
    """What each covariate is in the periods that have no row (filled gaps, and the periods
    a series is extended by to the history's end), as text.

    Never the value before the gap (a store closed for six months was not open with zero
    sales): by default 0 for a 0/1 flag (``flags``: open, promotion, holiday flags), the
    missing label ``""`` for a categorical covariate, and for other numbers (price,
    temperature) the straight line between the values before and after the gap (the last
    value when nothing follows). ``gap_fill`` gives a column its own rule: a number, a label
    (categorical covariates), ``"interpolate"`` or ``"previous"`` (the value before the gap).
    """
    gap_fill = dict(gap_fill or {})
    covs = columns.known + columns.observed
    stray = sorted(set(gap_fill) - set(covs))
    if stray:
        raise DataError(f"gap fill: {stray} are not known or observed covariates "
                        f"({list(covs)}); only covariates are filled in gaps")
    flags = set(flags)
    rules: dict[str, str] = {}
    for c in covs:
        given = gap_fill.get(c)
        if given is None:
            rules[c] = MISSING_CATEGORY if c in columns.categorical else \
                "0" if c in flags else "interpolate"
            continue
        text = str(given).strip()
        if isinstance(given, bool):
            text = str(int(given))
        if c in columns.categorical:
            if text == "interpolate":
                raise DataError(f"gap fill: '{c}' is categorical: give a label or 'previous', "
                                f"not 'interpolate'")
            rules[c] = str(given) if not isinstance(given, float) or not given.is_integer() \
                else str(int(given))
        elif text in GAP_RULE_WORDS:
            rules[c] = text
        else:
            try:
                number = float(text)
            except ValueError:
                raise DataError(f"gap fill: '{c}={given}': a number, or one of "
                                f"{list(GAP_RULE_WORDS)}") from None
            rules[c] = f"{number:g}"
    return rules


def rules_text(rules: Mapping[str, str]) -> str:
    """'Open=0, price interpolated, event: missing label' for a log line."""
    parts = []
    for c, r in rules.items():
        if r == "interpolate":
            parts.append(f"{c} interpolated")
        elif r == "previous":
            parts.append(f"{c} as before the gap")
        elif r == MISSING_CATEGORY:
            parts.append(f"{c}: missing label")
        else:
            parts.append(f"{c}={r}")
    return ", ".join(parts)


def _fill_gap_periods(cov: np.ndarray, given: np.ndarray, indptr: np.ndarray,
                      names: tuple[str, ...], rules: Mapping[str, str],
                      categories: dict[str, np.ndarray]) -> dict[str, int]:
    """Covariates of the rows without input (``~given``) by ``rules``, in place; the
    categories lists gain a label given for gaps. Returns the rows filled per column. The
    first row of every series is given (a series starts at its first row)."""
    n = cov.shape[0]
    gap = np.flatnonzero(~given)
    if not len(gap):
        return {}
    ar = np.arange(n)
    prev = np.maximum.accumulate(np.where(given, ar, -1))[gap]
    nxt = np.minimum.accumulate(np.where(given, ar, n)[::-1])[::-1][gap]
    seg_end = np.repeat(indptr[1:] - 1, np.diff(indptr))[gap]
    has_next = nxt <= seg_end
    counts = {}
    for j, name in enumerate(names):
        rule = rules[name]
        col = cov[:, j]
        if rule == "previous":
            col[gap] = col[prev]
        elif rule == "interpolate":
            after = col[np.where(has_next, nxt, prev)]
            w = np.where(has_next, (gap - prev) / np.maximum(nxt - prev, 1), 0.0)
            col[gap] = col[prev] + w * (after - col[prev])
        elif name in categories:
            labels = categories[name]
            at = np.flatnonzero(labels == rule)
            if not len(at):
                categories[name] = labels = np.append(labels, np.array([rule], dtype=object))
                at = [len(labels) - 1]
            col[gap] = float(at[0])
        else:
            col[gap] = float(rule)
        counts[name] = len(gap)
    return counts


def key_text(values: Any) -> np.ndarray:
    """Ids as text (object array), by pyarrow's cast as the hash shards do (``jobs._sharding``):
    7, "7" and 7.0 are all "7" (float ids come from CSV files and pandas merges)."""
    a = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values)
    if isinstance(a, pa.ChunkedArray):
        a = a.combine_chunks()
    if pa.types.is_dictionary(a.type):
        a = a.cast(a.type.value_type)
    return pc.cast(a, pa.string()).to_numpy(zero_copy_only=False).astype(object)


def _match_keys(panel: Panel, sku: pa.ChunkedArray, location: pa.ChunkedArray) -> np.ndarray:
    """Series index of each (sku, location) row, -1 when not in the panel.

    Keys compare as text (:func:`key_text`), so an inventory file with integer ids matches a
    history with the same ids stored as strings (and the hash shards agree).
    """
    import pandas as pd
    pk = pd.MultiIndex.from_arrays([key_text(panel.sku), key_text(panel.location)])
    rows = pd.MultiIndex.from_arrays([key_text(sku), key_text(location)])
    return pk.get_indexer(rows).astype(np.int64)


def _future_known(panel: Panel, future: pa.Table, columns: ColumnMap,
                  horizon: int | None) -> np.ndarray:
    """Known covariates for the periods after each series' end, shape (n_series, H, k)."""
    need = list(columns.keys) + [columns.date] + list(columns.known)
    missing = [c for c in need if c not in future.column_names]
    if missing:
        raise DataError(f"future: required column(s) {missing} missing; it has {future.column_names}")
    future = _plain(future)
    fdates = to_dates(future.column(columns.date), columns.date, columns.date_format)
    sid = _match_keys(panel, future.column(columns.sku), future.column(columns.location))
    unknown = sid < 0
    if unknown.any():
        panel.report["future_rows_unknown"] = int(unknown.sum())
        repair_log.warning("future: %d rows for SKU-locations not in the history ignored",
                           int(unknown.sum()))
    step = FREQ_STEP_DAYS[panel.freq]
    off = (fdates - panel.end[np.clip(sid, 0, None)]).astype(np.int64)
    pos = off // step - 1
    valid = ~unknown & (off > 0) & (off % step == 0)
    h = int(horizon or (pos[valid].max() + 1 if valid.any() else 0))
    valid &= pos < h
    if (~unknown & ~valid).any():
        panel.report["future_rows_outside_horizon"] = int((~unknown & ~valid).sum())
        repair_log.info("future: %d rows outside the forecast horizon ignored",
                        int((~unknown & ~valid).sum()))
    k = len(columns.known)
    out = np.full((panel.n_series, h, k), np.nan, dtype=np.float32)
    if k:
        vals = np.empty((future.num_rows, k), np.float32)
        for j, c in enumerate(columns.known):
            if c in panel.categories:   # labels new to the history extend the panel's list
                vals[:, j], panel.categories[c] = to_categories(future.column(c),
                                                                panel.categories[c])
            else:
                vals[:, j] = to_numeric(future.column(c), c, flags=True)
        out[sid[valid], pos[valid]] = vals[valid]
        for j, c in enumerate(columns.known):
            if c in panel.categories:   # no row for a period: the missing category
                out[..., j] = np.nan_to_num(out[..., j], nan=0.0)
        miss = np.isnan(out)
        if miss.any():
            # Missing future values: carry the series' last known value forward.
            last = panel.known[panel.indptr[1:] - 1]
            out = np.where(miss, last[:, None, :], out)
            panel.report["future_known_filled"] = int(miss.sum())
            repair_log.warning("future: %d missing known-covariate values filled with the series' last "
                        "known value", int(miss.sum()))
    return out


#: (column, broken range, rule, values allowed beyond the finite numbers): NaN, or inf where
#: it is not allowed, breaks the rule 'must be a finite number' instead of the range
_INVENTORY_RULES = [
    ("on_hand", None, "", ()),
    ("on_order", lambda a: a < 0, "must be >= 0", ()),
    ("backorders", lambda a: a < 0, "must be >= 0", ()),
    ("lead_time_days", lambda a: a < 0, "lead time must be >= 0 days", ()),
    ("lead_time_std_days", lambda a: a < 0, "must be >= 0 days", ()),
    ("review_period_days", lambda a: a < 0, "must be >= 0 days", ()),
    ("unit_cost", lambda a: a < 0, "must be >= 0", ()),
    ("holding_cost_rate", lambda a: a < 0, "must be >= 0", ()),
    ("service_level", lambda a: ~((a > 0) & (a < 1)), "service level must be in (0, 1)", ()),
    ("stockout_cost", lambda a: a < 0, "must be >= 0 (or missing)", ("nan", "inf")),  # NaN: unused
    ("order_cost", lambda a: a < 0, "must be >= 0", ()),
    ("moq", lambda a: a < 0, "must be >= 0", ()),
    ("case_pack", lambda a: a <= 0, "must be > 0", ()),
    ("max_order", lambda a: a < 0, "must be >= 0", ("inf",)),
    ("shelf_life_days", lambda a: a < 1, "must be >= 1 day (inf: no expiry)", ("inf",)),
]


def _inventory_keys(inventory: pa.Table, columns: ColumnMap) -> tuple[str, str]:
    # the key columns (the mapped names, or sku/location) after checking the required columns
    sc, lc = columns.sku, columns.location
    if sc not in inventory.column_names and "sku" in inventory.column_names:
        sc = "sku"
    if lc not in inventory.column_names and "location" in inventory.column_names:
        lc = "location"
    required = [sc, lc] + [k for k, (d, _) in INVENTORY_COLUMNS.items() if d is None]
    missing = [c for c in required if c not in inventory.column_names]
    if missing:
        hint = "" if not set(missing) & {sc, lc} else \
            " (its key columns are named as the history's, or sku/location: map them with " \
            "--sku-col/--location-col)"
        raise DataError(f"inventory: required column(s) {missing} missing; it has "
                        f"{inventory.column_names}{hint}")
    return sc, lc


def _inventory_values(inventory: pa.Table, defaults: InventoryDefaults,
                      report: dict[str, Any] | None = None,
                      keys: tuple[str, str] | None = None) -> dict[str, np.ndarray]:
    # every INVENTORY_COLUMNS value per row (float64; defaults for absent columns and for
    # missing optional values, those counted in report["inventory_defaulted"] and logged),
    # after the value rules (every broken one in one error, with example ``keys`` values)
    out: dict[str, np.ndarray] = {}
    broken_rules: list[str] = []
    unchecked: set[str] = set()    # a required column with missing values: not checked further

    def example_keys(bad: np.ndarray) -> str:
        if keys is None:
            return ""
        return _examples(inventory.column(keys[0]).to_numpy(zero_copy_only=False),
                         inventory.column(keys[1]).to_numpy(zero_copy_only=False),
                         np.flatnonzero(bad))
    for name in INVENTORY_COLUMNS:
        if name in inventory.column_names:
            v = to_numeric(inventory.column(name), name)
            nulls = np.isnan(v)
            if nulls.any() and name in defaults.values:
                fill = defaults.values[name]
                v[nulls] = fill
                if report is not None and not np.isnan(fill):
                    report.setdefault("inventory_defaulted", {})[name] = int(nulls.sum())
                    repair_log.warning("inventory column '%s': %d missing values set to the default "
                                "%g", name, int(nulls.sum()), fill)
            elif nulls.any():
                broken_rules.append(f"inventory column '{name}': rule 'must not be missing' "
                                    f"broken by {int(nulls.sum())} rows{example_keys(nulls)}")
                unchecked.add(name)
            out[name] = v
        else:
            out[name] = np.full(inventory.num_rows, defaults.values[name], dtype=np.float64)
    for name, out_of_range, rule, allowed in _INVENTORY_RULES:
        if name in unchecked:
            continue
        v = out[name]
        not_number = (np.isnan(v) & ("nan" not in allowed)) | (np.isinf(v) & ("inf" not in allowed))
        outside = np.zeros(len(v), bool)
        if out_of_range is not None:
            with np.errstate(invalid="ignore"):
                outside = ~not_number & out_of_range(v)
        for bad, what in ((not_number, "must be a finite number"), (outside, rule)):
            nb = int(bad.sum())
            if not nb:
                continue
            hint = ""
            if name == "service_level" and what == rule and (v[bad] > 1).all() and \
                    (v[bad] < 100).all():
                hint = " (a fraction: 0.95 for 95%)"
            broken_rules.append(f"inventory column '{name}': rule '{what}' broken by {nb} "
                                f"rows{hint}{example_keys(bad)}")
    if broken_rules:   # every broken rule at once: one fix of the file, not one per run
        raise DataError("\n".join(broken_rules))
    return out


def check_inventory_rows(inventory: pa.Table, columns: ColumnMap = ColumnMap(),
                         defaults: InventoryDefaults = InventoryDefaults()) -> None:
    """The rules of :func:`validate_inventory` that hold row by row, for any chunk of an inventory.

    Required columns present, keys present, values numeric, not missing (unless they have a
    default) and within their bounds. Matching rows to the history's SKU-locations needs the
    whole history and is checked per shard. The jobs run this while staging, so a bad
    inventory fails the job before any training.
    """
    sc, lc = _inventory_keys(inventory, columns)
    for key in (sc, lc):
        nulls = inventory.column(key).null_count
        if nulls:
            raise DataError(f"inventory column '{key}': rule 'key must not be missing' broken by "
                            f"{nulls} rows")
    _inventory_values(_plain(inventory), defaults, keys=(sc, lc))


def id_text(value: Any) -> str:
    """An id as the user wrote it, for messages: ``9`` (not ``np.int64(9)``), text quoted
    (``'S1'``), a float id that is a whole number without its ``.0``."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return repr(value)


def examples_text(pairs: list[tuple[Any, Any]], total: int) -> str:
    """' (e.g. (sku, location), ...)' naming ``pairs``, of ``total`` keys in all ('' if none).

    A key that is :data:`KEY_CONSTANT` in every pair (a history with one key) is left out:
    ' (e.g. 3, 6, ...)'."""
    if not pairs:
        return ""
    more = ", ..." if total > len(pairs) else ""
    one = [all(str(p[i]) == KEY_CONSTANT for p in pairs) for i in (0, 1)]
    if one[0] != one[1]:
        keep = 1 if one[0] else 0
        return f" (e.g. {', '.join(id_text(p[keep]) for p in pairs)}{more})"
    return f" (e.g. {', '.join(f'({id_text(s)}, {id_text(l)})' for s, l in pairs)}{more})"


def _examples(sku: Any, location: Any, idx: np.ndarray, k: int = 3) -> str:
    """:func:`examples_text` for the first ``k`` of the positions ``idx``."""
    sku, location = np.asarray(sku), np.asarray(location)
    return examples_text([(sku[i], location[i]) for i in idx[:k]], len(idx))


def validate_inventory(inventory: pa.Table, panel: Panel, columns: ColumnMap = ColumnMap(),
                       defaults: InventoryDefaults = InventoryDefaults(),
                       unmatched: str = "error", report: dict[str, Any] | None = None
                       ) -> dict[str, np.ndarray]:
    """Align the inventory state to the panel's series and check its values.

    Returns a dict of float64 arrays of shape (n_series,), one per column of
    ``INVENTORY_COLUMNS`` (defaults filled in: for absent columns, and for missing values of
    optional columns, those counted in ``report["inventory_defaulted"]`` and logged).
    Raises :class:`DataError` for missing required columns, duplicate keys, inventory rows
    for unknown SKU-locations and SKU-locations without an inventory row
    (``unmatched="error"``; ``"drop"`` ignores extra inventory rows with a logged count),
    and impossible values; key errors name up to three of the keys.
    """
    for role in ("sku", "location"):   # a history with one key: so may the inventory be
        name, values = getattr(columns, role), getattr(panel, role)
        if name not in inventory.column_names and role not in inventory.column_names and \
                len(values) and (np.asarray(values).astype(str) == KEY_CONSTANT).all():
            inventory = with_constant_keys(inventory, [name])
    sc, lc = _inventory_keys(inventory, columns)
    inventory = _plain(inventory)
    pos = _match_keys(panel, inventory.column(sc), inventory.column(lc))
    unknown = int((pos < 0).sum())
    if unknown and unmatched == "error":
        ex = _examples(inventory.column(sc).to_numpy(zero_copy_only=False),
                       inventory.column(lc).to_numpy(zero_copy_only=False), np.flatnonzero(pos < 0))
        raise DataError(f"inventory: rule 'every row is a SKU-location of the history' broken by "
                        f"{unknown} rows{ex}")
    if unknown:
        log.warning("inventory: %d rows for SKU-locations not in the history ignored", unknown)
    valid = pos >= 0
    counts = np.bincount(pos[valid], minlength=panel.n_series)
    if (counts > 1).any():
        raise DataError(f"inventory: rule 'one row per SKU-location' broken by "
                        f"{int((counts > 1).sum())} SKU-locations"
                        f"{_examples(panel.sku, panel.location, np.flatnonzero(counts > 1))}")
    if (counts == 0).any():
        raise DataError(f"inventory: rule 'every SKU-location of the history has an inventory row' "
                        f"broken by {int((counts == 0).sum())} SKU-locations"
                        f"{_examples(panel.sku, panel.location, np.flatnonzero(counts == 0))}")
    rows = inventory if valid.all() else inventory.filter(pa.array(valid))
    out = {}
    for name, v in _inventory_values(rows, defaults, report, keys=(sc, lc)).items():
        arr = np.empty(panel.n_series)
        arr[pos[valid]] = v  # one row per series (checked above)
        out[name] = arr
    negative = out["on_hand"] < 0   # some ERPs net backorders into on hand: read as owed units
    if report is not None and negative.any():
        report["negative_on_hand"] = int(negative.sum())
        both = int((negative & (out["backorders"] > 0)).sum())
        if both:
            report["negative_on_hand_with_backorders"] = both
    return out

"""The Panel: many regular time series as one flat columnar block plus offsets.

Series ``i`` occupies rows ``indptr[i]:indptr[i+1]`` of every per-row array; its row ``j``
is the period starting on ``start[i] + j * step``. Gaps are already filled, so every series
is regular. Per-row arrays are float32 (demand in units of stock per period; covariates in
their own units). Per-series arrays have one entry per series. A period whose demand is
unknown (a missing week read with ``gaps="missing"``) has NaN demand: it is never a training
target, never in a scale, never scored.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pyarrow as pa

__all__ = ["Panel", "FREQ_STEP_DAYS", "union_categories"]

#: Days per period of each supported frequency.
FREQ_STEP_DAYS = {"D": 1, "W": 7}
#: Model settings a job's config may leave out, by frequency: the forecast horizon and encoder
#: length (periods; four weeks ahead and sixteen back for daily data, a quarter ahead and a year
#: back for weekly data) and, for daily data, twice the TFT's training steps (1,400): on the
#: bakery's daily validation windows the TFT's validation loss was still falling at 700 steps
#: (its best at the last validation in every run), and 1,400 lowered the plan model's RMSSE
#: by 0.7-3.4% on each of four runs (benchmarks/RESULTS.md); on weekly data it mostly stops
#: early before 700.
FREQ_DEFAULTS = {"D": {"horizon": 28, "encoder_length": 112, "max_steps": 1400},
                 "W": {"horizon": 12, "encoder_length": 52}}


@dataclass
class Panel:
    """Regular time series of demand and covariates for many SKU-locations.

    Attributes
    ----------
    sku, location : ndarray, shape (n_series,)
        Key values, in the user's own type (int or str), sorted by (sku, location).
    start : ndarray of datetime64[D], shape (n_series,)
        Date of each series' first period.
    indptr : ndarray of int64, shape (n_series + 1,)
        Row offsets of each series into the per-row arrays.
    demand : ndarray of float32, shape (n_rows,)
        Demand, units of stock per period; NaN where it is unknown (``gaps="missing"``).
    freq : {"D", "W"}
        Period length: one day or one week.
    known, observed : ndarray of float32, shape (n_rows, k)
        Time-varying covariates (known in advance / observed only), names in ``known_names``
        and ``observed_names``.
    static : dict of str -> ndarray, shape (n_series,)
        Per-series attributes (categories as int or str, numbers as float).
    future_known : ndarray of float32, shape (n_series, horizon, len(known_names)), or None
        Known covariates for the periods after each series' last period.
    categories : dict of str -> ndarray of str
        Labels of the categorical covariates (``ColumnMap.categorical``): the column of that
        name in ``known``/``observed``/``future_known`` holds codes, indices into this list
        (code 0: the missing label ``""``).
    report : dict
        What validation repaired (counts of filled gaps, clipped values...), for the logs.
    """

    sku: np.ndarray
    location: np.ndarray
    start: np.ndarray
    indptr: np.ndarray
    demand: np.ndarray
    freq: str = "D"
    known: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    known_names: tuple[str, ...] = ()
    observed: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    observed_names: tuple[str, ...] = ()
    static: dict[str, np.ndarray] = field(default_factory=dict)
    future_known: np.ndarray | None = None
    categories: dict[str, np.ndarray] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n_rows = len(self.demand)
        if self.known.shape[0] != n_rows:
            self.known = np.zeros((n_rows, len(self.known_names)), np.float32)
        if self.observed.shape[0] != n_rows:
            self.observed = np.zeros((n_rows, len(self.observed_names)), np.float32)

    # ---- shape -------------------------------------------------------------------------
    @property
    def n_series(self) -> int:
        return len(self.indptr) - 1

    @property
    def n_rows(self) -> int:
        return int(self.indptr[-1])

    @property
    def lengths(self) -> np.ndarray:
        """Number of periods in each series, shape (n_series,)."""
        return np.diff(self.indptr)

    @property
    def missing(self) -> np.ndarray:
        """Periods of unknown demand (NaN), bool, shape (n_rows,)."""
        return np.isnan(self.demand)

    @property
    def step(self) -> np.timedelta64:
        return np.timedelta64(FREQ_STEP_DAYS[self.freq], "D")

    @property
    def end(self) -> np.ndarray:
        """Date of each series' last period, datetime64[D], shape (n_series,)."""
        return self.start + (self.lengths - 1) * self.step

    @property
    def series_of_row(self) -> np.ndarray:
        """Series index of every row, int64, shape (n_rows,)."""
        return np.repeat(np.arange(self.n_series, dtype=np.int64), self.lengths)

    def row_dates(self) -> np.ndarray:
        """Date of every row, datetime64[D], shape (n_rows,)."""
        pos = np.arange(self.n_rows, dtype=np.int64) - np.repeat(self.indptr[:-1], self.lengths)
        return np.repeat(self.start, self.lengths) + pos * self.step

    def horizon_dates(self, horizon: int) -> np.ndarray:
        """Dates of the next ``horizon`` periods of each series, datetime64[D], shape (n_series, horizon)."""
        return self.end[:, None] + np.arange(1, horizon + 1) * self.step

    # ---- subsetting ----------------------------------------------------------------------
    def take(self, idx: np.ndarray) -> "Panel":
        """The panel of series ``idx`` (in that order)."""
        idx = np.asarray(idx, dtype=np.int64)
        lengths = self.lengths[idx]
        indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        rows = _ranges(self.indptr[idx], lengths)
        return replace(
            self, sku=self.sku[idx], location=self.location[idx], start=self.start[idx],
            indptr=indptr, demand=self.demand[rows], known=self.known[rows],
            observed=self.observed[rows], static={k: v[idx] for k, v in self.static.items()},
            future_known=None if self.future_known is None else self.future_known[idx],
            report=dict(self.report))

    def split_last(self, horizon: int) -> tuple["Panel", np.ndarray]:
        """Hold out the last ``horizon`` periods of every series.

        Returns the shortened panel (its ``future_known`` holds the held-out known
        covariates) and the held-out demand, shape (n_series, horizon), units per period
        (NaN where unknown).
        """
        if np.any(self.lengths <= horizon):
            raise ValueError(f"split_last: {int(np.sum(self.lengths <= horizon))} series have "
                             f"{horizon} periods or fewer")
        keep = self.lengths - horizon
        indptr = np.concatenate([[0], np.cumsum(keep)]).astype(np.int64)
        rows = _ranges(self.indptr[:-1], keep)
        held = _ranges(self.indptr[:-1] + keep, np.full(self.n_series, horizon))
        fut = self.known[held].reshape(self.n_series, horizon, len(self.known_names))
        actual = self.demand[held].reshape(self.n_series, horizon)
        return replace(self, indptr=indptr, demand=self.demand[rows], known=self.known[rows],
                       observed=self.observed[rows], future_known=fut,
                       report=dict(self.report)), actual

    def cut(self, end: np.datetime64, horizon: int) -> tuple["Panel", np.ndarray, np.ndarray]:
        """The panel as it was on ``end``: every series' periods up to that date.

        For a backtest origin: series that start after ``end`` are left out; the known
        covariates of the ``horizon`` periods after ``end`` become ``future_known`` (taken
        from the later rows; beyond a series' last row its last known values repeat).

        Returns
        -------
        panel : Panel
            The series that existed on ``end``, cut there.
        kept : ndarray of int64
            Their indices in this panel.
        actual : ndarray of float64, shape (len(kept), horizon)
            Their demand in the ``horizon`` periods after ``end`` (units per period; NaN
            past their last row).
        """
        step = FREQ_STEP_DAYS[self.freq]
        end = np.datetime64(end, "D")
        keep_len = (end - self.start).astype(np.int64) // step + 1
        kept = np.flatnonzero(keep_len > 0)
        sub = self.take(kept)
        keep_len = np.minimum(keep_len[kept], sub.lengths)
        rows = _ranges(sub.indptr[:-1], keep_len)
        after = keep_len[:, None] + np.arange(horizon)                  # positions after the cut
        inside = after < sub.lengths[:, None]
        pos = sub.indptr[:-1, None] + np.minimum(after, np.maximum(sub.lengths[:, None] - 1, 0))
        actual = np.where(inside, sub.demand[pos].astype(np.float64), np.nan)
        fut = sub.known[pos.reshape(-1)].reshape(len(kept), horizon, len(self.known_names))
        indptr = np.concatenate([[0], np.cumsum(keep_len)]).astype(np.int64)
        out = replace(sub, indptr=indptr, demand=sub.demand[rows], known=sub.known[rows],
                      observed=sub.observed[rows], future_known=fut, report=dict(self.report))
        return out, kept, actual

    # ---- conversion ----------------------------------------------------------------------
    def to_arrow(self, sku_col: str = "sku", location_col: str = "location",
                 date_col: str = "date", demand_col: str = "demand") -> pa.Table:
        """Long table, one row per series and period (filled gaps included)."""
        s = self.series_of_row
        cols: dict[str, Any] = {
            sku_col: self.sku[s], location_col: self.location[s],
            date_col: self.row_dates(), demand_col: self.demand,
        }
        for j, name in enumerate(self.known_names):
            cols[name] = self._values(name, self.known[:, j])
        for j, name in enumerate(self.observed_names):
            cols[name] = self._values(name, self.observed[:, j])
        for name, v in self.static.items():
            cols[name] = v[s]
        return pa.table(cols)

    def _values(self, name: str, col: np.ndarray) -> np.ndarray:
        """A covariate column as values: labels for a categorical one, else the numbers."""
        if name in self.categories:
            return self.categories[name][col.astype(np.int64)]
        return col

    def recode(self, categories: dict[str, np.ndarray]) -> "Panel":
        """The panel with its category codes re-expressed in ``categories``' lists.

        Every label of this panel must be in the new lists (use :func:`union_categories`).
        """
        if not self.categories:
            return self
        import pandas as pd
        known, observed = self.known.copy(), self.observed.copy()
        fk = None if self.future_known is None else self.future_known.copy()
        for name, labels in self.categories.items():
            lut = pd.Index(categories[name]).get_indexer(labels)
            if (lut < 0).any():
                raise ValueError(f"recode: labels of '{name}' missing from the new list")
            if name in self.known_names:
                j = self.known_names.index(name)
                known[:, j] = lut[known[:, j].astype(np.int64)]
                if fk is not None and fk.shape[1]:
                    fk[..., j] = lut[fk[..., j].astype(np.int64)]
            else:
                j = self.observed_names.index(name)
                observed[:, j] = lut[observed[:, j].astype(np.int64)]
        return replace(self, known=known, observed=observed, future_known=fk,
                       categories={n: categories[n] for n in self.categories})


def union_categories(panels: list["Panel"]) -> dict[str, np.ndarray]:
    """One label list per categorical covariate holding the labels of all ``panels``
    (the missing label first, then the others sorted)."""
    out = {}
    for name in panels[0].categories if panels else ():
        rest = set().union(*(set(p.categories[name][1:]) for p in panels))
        out[name] = np.array([panels[0].categories[name][0], *sorted(rest)], dtype=object)
    return out


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(starts[i], starts[i] + lengths[i])`` for all i, vectorized."""
    lengths = np.asarray(lengths, dtype=np.int64)
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    return np.repeat(np.asarray(starts, np.int64) - offsets, lengths) + np.arange(total, dtype=np.int64)

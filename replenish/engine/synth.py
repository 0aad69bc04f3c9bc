"""Synthetic retail demand history and inventory state, vectorized and chunked.

Each series is one SKU at one location. Series ``g`` (the global series index) is SKU
``g // N_LOCATIONS`` at location ``g % N_LOCATIONS``, so ordering by ``g`` is ordering by
(sku, location). Daily demand (units/day) is a Poisson draw around

    log mu = log base level + weekly and yearly seasonality (by category) + trend
             + promotion uplift + price elasticity x log(price / regular price)
             + holiday and holiday-eve effects (by category) + temperature effect (by category)
             + weekly AR(1) noise

with zero inflation for slow movers (intermittent demand). Holidays and temperature are
shared by all series of a location; promotions are planned per SKU (the same weeks at every
location that takes part), with a price cut during the promotion.

Reproducibility: random numbers come from one generator per block of ``BLOCK_SERIES``
consecutive series, seeded by (seed, block index). A series' data therefore depends only
on ``seed``, its global index and the calendar (``n_days``, ``freq``, ``start_date``), never on
how the series are split into chunks, files or shards.
"""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ._easter import easter_sunday

__all__ = ["synth_tables", "write_synth", "CATEGORIES", "N_LOCATIONS", "BLOCK_SERIES"]

#: Number of locations; series ``g`` is at location ``g % N_LOCATIONS``.
N_LOCATIONS = 50
#: Series per random-number block (a multiple of ``N_LOCATIONS``: blocks hold whole SKUs).
BLOCK_SERIES = 1000
_SKUS_PER_BLOCK = BLOCK_SERIES // N_LOCATIONS
_N_REGIONS = 5
_MEDIAN_LEVEL = 2.0  # median base demand, units/day

# Per category: weekly log-profile Mon..Sun, yearly amplitude (log), yearly peak (day of
# year), temperature effect (log per +10 deg C), holiday effect (log), holiday-eve effect
# (log), median price (currency).
_CATEGORY_TABLE = {
    "beverages":     ((-.10, -.10, -.05, 0., .10, .25, .15), .15, 200, .25, .20, .35, 1.5),
    "ice_cream":     ((-.15, -.15, -.10, 0., .10, .30, .30), .35, 200, .60, .25, .20, 4.0),
    "soups":         ((0., 0., 0., 0., .05, .05, -.10), .25, 15, -.35, -.10, .10, 2.5),
    "bakery":        ((-.05, -.05, -.05, 0., .10, .30, .05), .05, 350, -.05, -.40, .45, 2.0),
    "dairy":         ((0., 0., 0., 0., .05, .15, -.05), .03, 120, -.05, -.20, .25, 1.2),
    "produce":       ((-.05, -.05, 0., 0., .10, .25, -.10), .10, 220, .10, -.30, .30, 1.8),
    "snacks":        ((-.10, -.10, -.05, 0., .15, .30, .20), .05, 180, .05, .25, .30, 2.2),
    "frozen":        ((-.05, -.05, 0., 0., .05, .20, .05), .10, 190, .15, -.10, .20, 3.5),
    "household":     ((-.05, 0., 0., 0., .05, .25, -.15), .03, 90, 0., -.50, .10, 4.5),
    "personal_care": ((-.05, 0., 0., 0., .05, .20, -.10), .05, 160, .05, -.50, .05, 5.0),
}
#: Product categories (the static ``category`` column).
CATEGORIES: tuple[str, ...] = tuple(_CATEGORY_TABLE)
_CAT = {k: np.array([v[i] for v in _CATEGORY_TABLE.values()], dtype=np.float64) for i, k in
        enumerate(("weekly", "year_amp", "year_peak", "temp", "holiday", "eve", "price"))}

_HISTORY_SCHEMA = pa.schema([
    ("sku", pa.string()), ("location", pa.string()), ("date", pa.date32()),
    ("demand", pa.float64()), ("price", pa.float64()), ("promo", pa.int8()),
    ("holiday", pa.int8()), ("temperature", pa.float64()), ("category", pa.string()),
])
_INVENTORY_FLOAT = ("on_hand", "on_order", "lead_time_std_days", "unit_cost", "holding_cost_rate",
                    "service_level", "stockout_cost", "order_cost", "moq", "case_pack")
_INVENTORY_ORDER = ("sku", "location", "on_hand", "on_order", "lead_time_days",
                    "lead_time_std_days", "review_period_days", "unit_cost", "holding_cost_rate",
                    "service_level", "stockout_cost", "order_cost", "moq", "case_pack")


# ---- public API ----------------------------------------------------------------------------

def synth_tables(n_series: int, n_days: int, *, seed: int = 0, start_series: int = 0,
                 freq: str = "D", start_date: str = "2023-01-01") -> tuple[pa.Table, pa.Table]:
    """History (long) and inventory tables for series ``start_series .. start_series+n_series-1``.

    Parameters
    ----------
    n_series : int
        Number of series (SKU-locations).
    n_days : int
        Calendar days of history from ``start_date``. Weekly data (``freq="W"``) has
        ``n_days // 7`` periods, each the sum of 7 days.
    seed : int
        Non-negative seed; with the global series index it fixes every value.
    start_series : int
        Global index of the first series (for sharding: the data of a series does not
        depend on which call produces it).
    freq : {"D", "W"}
        Daily periods, or weeks starting on ``start_date``'s weekday, 7 days apart.
    start_date : str
        ISO date of the first period.

    Returns
    -------
    history : pyarrow.Table
        One row per series and period, sorted by (sku, location, date): ``sku`` (str, e.g.
        ``SKU000123``), ``location`` (str, e.g. ``L017``), ``date`` (date32), ``demand``
        (float64, integer-valued units per period, >= 0), ``price`` (float64, currency per
        unit; weekly: mean of the week), ``promo`` (int8 0/1), ``holiday`` (int8 0/1; weekly:
        any holiday in the week), ``temperature`` (float64, deg C; weekly: mean) and
        ``category`` (str, static per SKU).
    inventory : pyarrow.Table
        One row per series, the columns of ``contract.INVENTORY_COLUMNS`` in their units:
        ``on_hand``, ``on_order``, ``moq``, ``case_pack`` (units), ``lead_time_days`` (int32,
        1-14), ``lead_time_std_days`` (days), ``review_period_days`` (int32, days),
        ``unit_cost``, ``stockout_cost`` (currency per unit), ``holding_cost_rate`` (per year,
        fraction of unit cost), ``service_level`` (0.90-0.99), ``order_cost`` (currency per
        order).
    """
    arrays = _generate(n_series, n_days, seed, start_series, freq, start_date)
    history = _history_table(arrays)
    history = pa.table([c.cast(pa.string()) if pa.types.is_dictionary(c.type) else c
                        for c in history.columns], schema=_HISTORY_SCHEMA)
    return history, _inventory_table(arrays)


def write_synth(out_dir: str | os.PathLike, n_series: int, n_days: int, *, seed: int = 0,
                freq: str = "D", chunk_series: int | None = None, start_date: str = "2023-01-01",
                progress: Callable[[int, int], None] | None = None) -> dict:
    """Write a synthetic data set as Parquet (zstd), chunk by chunk with bounded memory.

    Writes ``out_dir/history/part-00000.parquet``, ... (one file per chunk of
    ``chunk_series`` series; the same columns as :func:`synth_tables`, sorted by (sku,
    location, date), row groups of whole series of about a million rows, string columns
    dictionary-encoded) and ``out_dir/inventory.parquet``; part files already in
    ``out_dir/history`` are replaced. The data equal
    ``synth_tables(n_series, n_days, seed=seed, freq=freq, start_date=start_date)`` whatever
    the chunk size. Generating the next chunk overlaps writing the previous one, so at most
    two chunks are in memory (about 45 bytes per row each).

    Parameters
    ----------
    chunk_series : int, optional
        Series per file; default: whole blocks of about 15 million rows.
    progress : callable, optional
        Called as ``progress(series_written, n_series)`` after each file.

    Returns
    -------
    dict
        ``rows`` (history rows), ``series``, ``periods`` (per series), ``files`` (history
        files), ``seconds`` (wall time), ``bytes`` (on disk), ``history`` and ``inventory``
        (paths).
    """
    t0 = time.perf_counter()
    n_periods = _n_periods(n_days, freq)
    if n_series < 1:
        raise ValueError(f"n_series must be >= 1, got {n_series}")
    if chunk_series is None:
        chunk_series = max(BLOCK_SERIES, (15_000_000 // n_periods) // BLOCK_SERIES * BLOCK_SERIES)
    if chunk_series < 1:
        raise ValueError(f"chunk_series must be >= 1, got {chunk_series}")
    out = Path(out_dir)
    hist_dir = out / "history"
    hist_dir.mkdir(parents=True, exist_ok=True)
    for old in hist_dir.glob("part-*.parquet"):
        old.unlink()
    group_rows = max(1, 1_000_000 // n_periods) * n_periods
    inventories: list[pa.Table] = []
    files, rows, done = 0, 0, 0

    def write(table: pa.Table, path: Path, n: int) -> int:
        pq.write_table(table, path, row_group_size=group_rows, compression="zstd",
                       use_dictionary=[c for c in table.column_names if c != "date"],
                       column_encoding={"date": "DELTA_BINARY_PACKED"},
                       # min/max of sku prune row groups; those of location and category
                       # would not (every row group holds them all) and cost a third of the time
                       write_statistics=["sku", "date"],
                       store_schema=False,  # dictionary columns read back as plain strings
                       sorting_columns=[pq.SortingColumn(i) for i in range(3)])
        return n

    # Two buffer sets: one is being written while the next chunk is generated into the other.
    n_files = -(-n_series // chunk_series)
    sets = [_buffers(min(chunk_series, n_series), n_periods) for _ in range(min(2, n_files))]
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = None
        for start in range(0, n_series, chunk_series):
            n = min(chunk_series, n_series - start)
            arrays = _generate(n, n_days, seed, start, freq, start_date, sets[files % len(sets)])
            table = _history_table(arrays)
            inventories.append(_inventory_table(arrays))
            del arrays
            if pending is not None:
                done += pending.result()
                if progress:
                    progress(done, n_series)
            path = hist_dir / f"part-{files:05d}.parquet"
            pending = pool.submit(write, table, path, n)
            files += 1
            rows += table.num_rows
            del table
        if pending is not None:
            done += pending.result()
            if progress:
                progress(done, n_series)
    inv_path = out / "inventory.parquet"
    pq.write_table(pa.concat_tables(inventories), inv_path, compression="zstd")
    nbytes = sum(p.stat().st_size for p in hist_dir.glob("part-*.parquet"))
    nbytes += inv_path.stat().st_size
    return {"rows": rows, "series": n_series, "periods": n_periods, "files": files,
            "seconds": time.perf_counter() - t0, "bytes": nbytes,
            "history": str(hist_dir), "inventory": str(inv_path)}


# ---- generation ----------------------------------------------------------------------------

def _n_periods(n_days: int, freq: str) -> int:
    if freq not in ("D", "W"):
        raise ValueError(f"freq must be 'D' or 'W', got {freq!r}")
    n = n_days if freq == "D" else n_days // 7
    if n < 1:
        raise ValueError(f"n_days={n_days} gives no {'day' if freq == 'D' else 'full week'}")
    return n


def _generate(n_series: int, n_days: int, seed: int, start_series: int, freq: str,
              start_date: str, buffers: dict | None = None) -> dict[str, np.ndarray]:
    """Arrays for series ``start_series ..``: per-row ones of shape (n_series, n_periods).

    ``buffers`` (from :func:`_buffers`) receive the per-row arrays instead of new memory, so
    that a long run reuses the same pages rather than faulting in fresh ones for every chunk.
    """
    if n_series < 1 or start_series < 0 or seed < 0:
        raise ValueError(f"need n_series >= 1, start_series >= 0, seed >= 0; got {n_series}, "
                         f"{start_series}, {seed}")
    n_periods = _n_periods(n_days, freq)
    cal = _calendar(seed, np.datetime64(start_date, "D"), n_periods * (7 if freq == "W" else 1),
                    freq)
    buffers = buffers or _buffers(n_series, n_periods)
    out = {k: buffers[k][:n_series] for k in _ROW_ARRAYS}
    out.update(series=np.arange(start_series, start_series + n_series, dtype=np.int64),
               category=np.empty(n_series, np.int32), dates=cal["dates"], buffers=buffers)
    inv: dict[str, np.ndarray] = {}
    first, last = start_series // BLOCK_SERIES, (start_series + n_series - 1) // BLOCK_SERIES
    for block in range(first, last + 1):  # a loop over blocks of series, not over series
        b0 = block * BLOCK_SERIES
        lo, hi = max(start_series, b0), min(start_series + n_series, b0 + BLOCK_SERIES)
        res = _block(seed, block, cal)
        dst, src = slice(lo - start_series, hi - start_series), slice(lo - b0, hi - b0)
        for k in ("demand", "price", "promo", "category"):
            out[k][dst] = res[k][src]
        for k, v in res["inventory"].items():
            inv.setdefault(k, np.empty(n_series, v.dtype))[dst] = v[src]
    loc = (out["series"] % N_LOCATIONS).astype(np.intp)
    np.take(cal["holiday"], loc, axis=0, out=out["holiday"])
    np.take(cal["temperature"], loc, axis=0, out=out["temperature"])
    out["inventory"] = inv
    return out


_ROW_ARRAYS = {"demand": np.float64, "price": np.float64, "promo": np.int8, "holiday": np.int8,
               "temperature": np.float64}
_CODE_ARRAYS = ("sku_code", "location_code", "category_code", "date_code")


def _buffers(n_series: int, n_periods: int) -> dict[str, np.ndarray]:
    """Uninitialised per-row arrays for up to ``n_series`` series (about 45 bytes per row)."""
    out = {k: np.empty((n_series, n_periods), t) for k, t in _ROW_ARRAYS.items()}
    out.update({k: np.empty(n_series * n_periods, np.int32) for k in _CODE_ARRAYS})
    return out


@lru_cache(maxsize=4)
def _calendar(seed: int, start: np.datetime64, n_days: int, freq: str) -> dict[str, np.ndarray]:
    """Location calendars (holidays, temperature) and day-level effects by category and location.

    Daily arrays have ``n_days`` columns; ``holiday`` and ``temperature`` are per output period.
    """
    rng = np.random.default_rng([seed, 0])
    days = start + np.arange(n_days)
    t = np.arange(n_days)
    dow = (days.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    year_start = days.astype("datetime64[Y]").astype("datetime64[D]")
    doy = (days - year_start).astype(np.int64)

    y0 = int(days[0].astype("datetime64[Y]").astype(np.int64)) + 1970
    years = np.arange(y0, int(days[-1].astype("datetime64[Y]").astype(np.int64)) + 1971)
    easter = easter_sunday(years).astype("datetime64[D]")
    national = np.concatenate([_ymd(years, 1, 1), easter - 2, easter + 1, _ymd(years, 5, 1),
                               _ymd(years, 12, 25), _ymd(years, 12, 26)])
    region_doy = rng.integers(10, 355, size=(_N_REGIONS, 3))
    region = rng.integers(0, _N_REGIONS, N_LOCATIONS)
    hol_nat = np.isin(days, national)
    hol_reg = (doy[None, :, None] == region_doy[:, None, :]).any(-1)  # (regions, days)
    holiday = hol_nat[None, :] | hol_reg[region]  # (locations, days)
    eve = np.zeros_like(holiday)
    eve[:, :-1] = holiday[:, 1:] & ~holiday[:, :-1]

    # Temperature: seasonal cycle plus persistent (AR(1)) weather anomalies, deg C.
    t_mean = rng.uniform(4.0, 18.0, N_LOCATIONS)
    t_amp = rng.uniform(5.0, 13.0, N_LOCATIONS)
    t_peak = rng.normal(200.0, 8.0, N_LOCATIONS)
    shocks = rng.normal(0.0, 2.0, size=(N_LOCATIONS, n_days))
    anomaly = np.empty_like(shocks)
    a = np.zeros(N_LOCATIONS)
    for j in range(n_days):  # over days, vectorized over locations
        a = 0.75 * a + shocks[:, j]
        anomaly[:, j] = a
    season = np.cos(2 * np.pi * (doy[None] - t_peak[:, None]) / 365.25)
    temp = np.round(t_mean[:, None] + t_amp[:, None] * season + anomaly, 1)
    log_size = rng.normal(0.0, 0.5, N_LOCATIONS)  # store size, log multiplier of demand

    # Log effects shared by all series of a category at a location: (category, location, day).
    effect = (_CAT["weekly"].reshape(-1, 7)[:, dow][:, None, :]
              + _CAT["temp"][:, None, None] * ((temp - 15.0) / 10.0)[None]
              + _CAT["holiday"][:, None, None] * holiday[None]
              + _CAT["eve"][:, None, None] * eve[None])
    yearly = _CAT["year_amp"][:, None] * np.cos(
        2 * np.pi * (doy[None] - _CAT["year_peak"][:, None]) / 365.25)
    if freq == "W":
        n_w = n_days // 7
        holiday_out = holiday.reshape(N_LOCATIONS, n_w, 7).any(-1)
        temp_out = np.round(temp.reshape(N_LOCATIONS, n_w, 7).mean(-1), 1)
        dates = start + 7 * np.arange(n_w)
    else:
        holiday_out, temp_out, dates = holiday, temp, days
    cal = {"t_years": t / 365.25, "week": t // 7, "effect": effect.reshape(-1, n_days),
           "yearly": yearly, "log_size": log_size, "holiday": holiday_out.astype(np.int8),
           "temperature": temp_out, "dates": dates}
    for v in cal.values():
        v.flags.writeable = False  # cached and shared by every chunk
    return {"n_days": n_days, "freq": freq, **cal}


def _ymd(years: np.ndarray, month, day) -> np.ndarray:
    """Dates from year, month (1-12) and day of month, datetime64[D]."""
    ym = (np.asarray(years) - 1970) * 12 + (np.asarray(month) - 1)
    return ym.astype("datetime64[M]").astype("datetime64[D]") + (np.asarray(day) - 1)


def _block(seed: int, block: int, cal: dict) -> dict:
    """All series of one block (``BLOCK_SERIES`` series, whole SKUs), daily then aggregated."""
    rng = np.random.default_rng([seed, 1, block])
    k, n, n_days = _SKUS_PER_BLOCK, BLOCK_SERIES, cal["n_days"]
    n_weeks = (n_days + 6) // 7
    s = np.arange(n) // N_LOCATIONS  # SKU within the block
    loc = np.arange(n) % N_LOCATIONS

    # SKU attributes.
    cat = rng.integers(0, len(CATEGORIES), k)
    log_pop = rng.normal(0.0, 1.6, k)
    price0 = np.maximum(np.round(_CAT["price"][cat] * rng.lognormal(0.0, 0.5, k), 1) - 0.01, 0.29)
    elasticity = rng.uniform(-2.5, -0.5, k)  # d log demand / d log price
    promo_lift = rng.uniform(0.1, 0.7, k)  # log uplift of display and advertising
    discount = rng.choice(np.array([0.1, 0.15, 0.2, 0.25, 0.3, 0.4]), k)
    promo_rate = np.where(rng.random(k) < 0.3, 0.0, rng.uniform(0.02, 0.12, k))  # weeks share
    promo_weeks = rng.random((k, n_weeks)) < promo_rate[:, None]
    trend = rng.normal(0.0, 0.15, k)  # log change per year
    year_scale = rng.uniform(0.5, 1.5, k)
    change_day = np.where(rng.random(k) < 0.5, rng.integers(0, n_days, k), n_days)
    change = np.exp(rng.normal(0.03, 0.06, k))  # regular price change factor
    sku_lead = rng.integers(1, 13, k)

    # Series attributes.
    takes_part = rng.random(n) < 0.85  # location runs the SKU's promotions
    loc_price = rng.uniform(0.95, 1.08, n)
    log_base = np.clip(np.log(_MEDIAN_LEVEL) + log_pop[s] + cal["log_size"][loc]
                       + rng.normal(0.0, 0.4, n), np.log(0.02), np.log(500.0))
    noise_sd = rng.uniform(0.05, 0.2, n)
    zero_share = np.where(log_base < 0.0, rng.uniform(0.1, 0.5, n), 0.0)  # slow movers: < 1/day

    # Per day (series, day), in place: few (series, day) temporaries keep the block fast.
    week = cal["week"]
    z = rng.normal(0.0, 1.0, (n, n_weeks))
    for j in range(1, n_weeks):  # weekly AR(1) demand noise, over weeks
        z[:, j] = 0.6 * z[:, j - 1] + 0.8 * z[:, j]
    z *= noise_sd[:, None]
    after = np.arange(n_days)[None, :] >= change_day[s][:, None]
    promo = promo_weeks[s][:, week]
    promo &= takes_part[:, None]
    price = np.multiply(after, change[s, None] - 1.0)
    price += 1.0
    price *= (price0[s] * loc_price)[:, None]
    tmp = np.multiply(promo, -discount[s, None])
    tmp += 1.0
    price *= tmp
    np.round(price, 2, out=price)

    log_mu = cal["effect"][cat[s] * N_LOCATIONS + loc]  # (series, day)
    log_mu += (log_base - 0.5 * noise_sd ** 2)[:, None]
    np.take(cal["yearly"], cat[s], axis=0, out=tmp)
    tmp *= year_scale[s, None]
    log_mu += tmp
    np.multiply.outer(trend[s], cal["t_years"], out=tmp)
    log_mu += tmp
    np.multiply(promo, (promo_lift + elasticity * np.log1p(-discount))[s, None], out=tmp)
    log_mu += tmp
    np.multiply(after, (elasticity * np.log(change))[s, None], out=tmp)
    log_mu += tmp
    np.take(z, week, axis=1, out=tmp)
    log_mu += tmp
    np.minimum(log_mu, np.log(1e5), out=log_mu)
    mu = np.exp(log_mu, out=log_mu)
    del tmp
    lumpy = np.flatnonzero(zero_share)
    if len(lumpy):  # zero-inflated, lumpy demand; the mean stays mu
        p0 = zero_share[lumpy, None]
        mu[lumpy] = np.where(rng.random((len(lumpy), n_days)) < p0, 0.0, mu[lumpy] / (1.0 - p0))
    demand = rng.poisson(mu).astype(np.float64)

    if cal["freq"] == "W":
        n_w = n_days // 7
        demand = demand.reshape(n, n_w, 7).sum(-1)
        price = np.round(price.reshape(n, n_w, 7).mean(-1), 2)
        promo = promo.reshape(n, n_w, 7).any(-1)
    per_day = 7.0 if cal["freq"] == "W" else 1.0
    recent = demand[:, -max(1, int(round(56 / per_day))):].mean(1) / per_day  # units/day
    inventory = _inventory(rng, recent, sku_lead[s], price0[s] * loc_price)
    return {"demand": demand, "price": price, "promo": promo.astype(np.int8),
            "category": cat[s].astype(np.int32), "inventory": inventory}


def _inventory(rng: np.random.Generator, daily: np.ndarray, sku_lead: np.ndarray,
               price: np.ndarray) -> dict[str, np.ndarray]:
    """Inventory state per series from its recent demand (units/day) and regular price."""
    n = len(daily)
    lead = np.clip(sku_lead + rng.integers(0, 3, n), 1, 14).astype(np.int32)
    review = rng.choice(np.array([1, 2, 3, 7], np.int32), n, p=[0.4, 0.15, 0.15, 0.3])
    packs = np.array([[1, 1], [1, 6], [6, 12], [12, 24], [24, 48]], np.float64)
    tier = np.searchsorted([0.5, 3.0, 20.0, 80.0], daily)
    case_pack = packs[tier, rng.integers(0, 2, n)]
    moq = np.where(rng.random(n) < 0.5, 0.0, case_pack * rng.integers(1, 4, n))
    unit_cost = np.round(price * rng.uniform(0.45, 0.75, n), 2)
    cover = rng.uniform(0.0, 1.0, n) * (lead + review + 7)  # days of stock on hand
    on_hand = np.where(rng.random(n) < 0.03, 0.0, np.round(daily * cover))
    open_order = rng.random(n) < 0.35
    on_order = np.where(open_order, np.ceil(daily * review * rng.uniform(0.5, 1.5, n) / case_pack)
                        * case_pack, 0.0)
    velocity = np.searchsorted([0.5, 5.0], daily)  # slow, medium, fast
    lo = np.array([0.90, 0.95, 0.97])[velocity]
    hi = np.array([0.95, 0.97, 0.99])[velocity]
    return {
        "on_hand": on_hand, "on_order": on_order, "lead_time_days": lead,
        "lead_time_std_days": np.round(lead * rng.uniform(0.05, 0.35, n), 2),
        "review_period_days": review, "unit_cost": unit_cost,
        "holding_cost_rate": np.round(rng.uniform(0.15, 0.35, n), 3),
        "service_level": np.round(rng.uniform(lo, hi), 3),
        "stockout_cost": np.round((price - unit_cost) * rng.uniform(1.0, 2.0, n), 2),
        "order_cost": np.round(rng.uniform(5.0, 60.0, n), 2), "moq": moq, "case_pack": case_pack,
    }


# ---- Arrow ---------------------------------------------------------------------------------

def _names(prefix: str, idx: np.ndarray, width: int) -> pa.Array:
    return pa.array(np.char.add(prefix, np.char.zfill(idx.astype(str), width)).astype(object),
                    pa.string())


def _history_table(a: dict) -> pa.Table:
    """Long history table with dictionary-encoded string columns (no copy of the value arrays)."""
    n, p = a["demand"].shape
    buf = a["buffers"]
    sku = a["series"] // N_LOCATIONS

    def filled(name: str, values: np.ndarray) -> np.ndarray:
        """Buffer ``name`` as (n, p) rows filled with ``values`` (broadcast), flattened."""
        flat = buf[name][:n * p]
        flat.reshape(n, p)[:] = values
        return flat

    def dict_column(name: str, codes: np.ndarray, dictionary: pa.Array) -> pa.DictionaryArray:
        return pa.DictionaryArray.from_arrays(pa.array(filled(name, codes[:, None])), dictionary,
                                              safe=False)  # codes are in range by construction

    dates = filled("date_code", a["dates"].astype(np.int32)[None, :])
    cols = {
        "sku": dict_column("sku_code", sku - sku[0],
                           _names("SKU", np.arange(sku[0], sku[-1] + 1), 6)),
        "location": dict_column("location_code", a["series"] % N_LOCATIONS,
                                _names("L", np.arange(N_LOCATIONS), 3)),
        "date": pa.Array.from_buffers(pa.date32(), n * p, [None, pa.py_buffer(dates)]),
        "demand": pa.array(a["demand"].reshape(-1)),
        "price": pa.array(a["price"].reshape(-1)),
        "promo": pa.array(a["promo"].reshape(-1)),
        "holiday": pa.array(a["holiday"].reshape(-1)),
        "temperature": pa.array(a["temperature"].reshape(-1)),
        "category": dict_column("category_code", a["category"], pa.array(CATEGORIES)),
    }
    return pa.table(cols)


def _inventory_table(a: dict) -> pa.Table:
    inv = a["inventory"]
    cols = {"sku": _names("SKU", a["series"] // N_LOCATIONS, 6),
            "location": _names("L", a["series"] % N_LOCATIONS, 3)}
    for k in _INVENTORY_ORDER[2:]:
        v = inv[k]
        cols[k] = pa.array(v.astype(np.float64) if k in _INVENTORY_FLOAT else v)
    return pa.table(cols)

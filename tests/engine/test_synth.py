"""Synthetic data: schema, demand sanity, reproducibility, chunk invariance, Parquet output."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from replenish.engine.contract import ColumnMap
from replenish.engine.synth import BLOCK_SERIES, CATEGORIES, N_LOCATIONS, synth_tables, write_synth
from replenish.engine.validate import build_panel, validate_inventory

COLUMNS = ColumnMap(known=("price", "promo", "holiday", "temperature"), static=("category",))
HISTORY_TYPES = {"sku": pa.string(), "location": pa.string(), "date": pa.date32(),
                 "demand": pa.float64(), "price": pa.float64(), "promo": pa.int8(),
                 "holiday": pa.int8(), "temperature": pa.float64(), "category": pa.string()}
INVENTORY_NAMES = ["sku", "location", "on_hand", "on_order", "lead_time_days", "lead_time_std_days",
                   "review_period_days", "unit_cost", "holding_cost_rate", "service_level",
                   "stockout_cost", "order_cost", "moq", "case_pack"]


@pytest.fixture(scope="module")
def year():
    """1000 series (one block) x 365 days: enough for statistical checks."""
    hist, inv = synth_tables(1000, 365, seed=7)
    return hist.to_pandas(), inv.to_pandas()


def test_schema_and_dtypes():
    hist, inv = synth_tables(60, 45, seed=3)
    assert {f.name: f.type for f in hist.schema} == HISTORY_TYPES
    assert hist.num_rows == 60 * 45
    assert inv.column_names == INVENTORY_NAMES and inv.num_rows == 60
    assert inv.schema.field("lead_time_days").type == pa.int32()
    df = hist.to_pandas()
    assert df["sku"].str.fullmatch(r"SKU\d{6}").all()
    assert df["location"].str.fullmatch(r"L\d{3}").all()
    assert set(df["category"]) <= set(CATEGORIES)
    assert set(df["promo"]) <= {0, 1} and set(df["holiday"]) <= {0, 1}
    assert (df["price"] > 0).all() and df["temperature"].between(-40, 50).all()
    keys = list(zip(df["sku"], df["location"], df["date"]))
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert df.groupby(["sku", "location"])["category"].nunique().eq(1).all()

    i = inv.to_pandas()
    assert list(zip(i["sku"], i["location"])) == list(dict.fromkeys(zip(df["sku"], df["location"])))
    assert i["lead_time_days"].between(1, 14).all()
    assert i["service_level"].between(0.9, 0.99).all()
    assert (i["lead_time_std_days"] >= 0).all() and i["review_period_days"].isin([1, 2, 3, 7]).all()
    assert (i["on_hand"] >= 0).all() and (i["on_order"] >= 0).all()
    assert (i["case_pack"] >= 1).all() and (i["moq"] % i["case_pack"] == 0).all()
    assert (i["on_order"] % i["case_pack"] == 0).all()
    assert (i["unit_cost"] > 0).all() and (i["stockout_cost"] > 0).all()
    assert i["holding_cost_rate"].between(0.1, 0.4).all() and (i["order_cost"] > 0).all()


def test_demand_nonnegative_integer_counts():
    hist, _ = synth_tables(200, 90, seed=1)
    d = hist.column("demand").to_numpy()
    assert np.isfinite(d).all() and (d >= 0).all() and (d == np.round(d)).all()


def test_deterministic_by_seed():
    a, ai = synth_tables(30, 40, seed=5)
    b, bi = synth_tables(30, 40, seed=5)
    c, _ = synth_tables(30, 40, seed=6)
    assert a.equals(b) and ai.equals(bi)
    assert not a.column("demand").equals(c.column("demand"))


@pytest.mark.parametrize("start, n", [(5, 10), (BLOCK_SERIES - 4, 9)])
def test_chunk_invariance(start, n):
    """A series' data depend on (seed, global index) only, also across block boundaries."""
    days = 30
    whole, whole_inv = synth_tables(start + n + 3, days, seed=11)
    part, part_inv = synth_tables(n, days, seed=11, start_series=start)
    assert part.equals(whole.slice(start * days, n * days))
    assert part_inv.equals(whole_inv.slice(start, n))


def test_locations_share_calendar():
    hist, _ = synth_tables(3 * N_LOCATIONS, 60, seed=2)
    df = hist.to_pandas()
    per_loc = df.groupby(["location", "date"])[["holiday", "temperature"]].nunique()
    assert (per_loc == 1).all().all()
    assert df["holiday"].sum() > 0  # Jan 1 at least


def test_write_synth_reads_back_and_validates(tmp_path):
    n, days = 30, 50
    calls = []
    summary = write_synth(tmp_path, n, days, seed=4, chunk_series=7,
                          progress=lambda done, total: calls.append((done, total)))
    files = sorted((tmp_path / "history").glob("part-*.parquet"))
    assert summary["files"] == len(files) == 5 and summary["rows"] == n * days
    assert summary["seconds"] >= 0 and calls[-1] == (n, n)
    table = ds.dataset(tmp_path / "history", format="parquet").to_table()
    assert table.num_rows == n * days
    table = table.sort_by([("sku", "ascending"), ("location", "ascending"), ("date", "ascending")])
    expected, expected_inv = synth_tables(n, days, seed=4)
    assert table.equals(expected)
    col = pq.ParquetFile(files[0]).metadata.row_group(0).column(0)
    assert col.path_in_schema == "sku" and col.has_dictionary_page and col.compression == "ZSTD"
    for f in files:  # each file sorted by (sku, location, date)
        t = pq.read_table(f)
        order = pc.sort_indices(t, sort_keys=[("sku", "ascending"), ("location", "ascending"),
                                              ("date", "ascending")])
        assert np.array_equal(order.to_numpy(), np.arange(t.num_rows))

    panel = build_panel(table, COLUMNS)
    assert panel.n_series == n and panel.freq == "D" and (panel.lengths == days).all()
    assert panel.report.get("gaps_filled", 0) == 0
    inventory = pq.read_table(tmp_path / "inventory.parquet")
    assert inventory.equals(expected_inv)
    state = validate_inventory(inventory, panel)
    assert state["lead_time_days"].min() >= 1


def test_weekly_is_sum_of_days():
    daily, _ = synth_tables(12, 70, seed=9)
    weekly, _ = synth_tables(12, 70, seed=9, freq="W")
    assert weekly.num_rows == 12 * 10
    d = daily.column("demand").to_numpy().reshape(12, 10, 7)
    w = weekly.column("demand").to_numpy().reshape(12, 10)
    assert np.array_equal(d.sum(-1), w)
    dates = weekly.column("date").to_numpy().astype("datetime64[D]").reshape(12, 10)
    assert (np.diff(dates, axis=1) == np.timedelta64(7, "D")).all()
    promo_d = daily.column("promo").to_numpy().reshape(12, 10, 7).max(-1)
    assert np.array_equal(promo_d, weekly.column("promo").to_numpy().reshape(12, 10))
    panel = build_panel(weekly, COLUMNS)
    assert panel.freq == "W" and panel.n_series == 12


def test_promotions_raise_mean_demand(year):
    df, _ = year
    means = df.groupby(["sku", "location", "promo"])["demand"].mean().unstack()
    means = means.dropna()
    means = means[means[0] >= 1.0]
    assert len(means) >= 100
    ratio = means[1] / means[0]
    assert ratio.median() > 1.3 and (ratio > 1).mean() > 0.9


def test_levels_span_slow_to_fast_and_slow_movers_are_intermittent(year):
    df, _ = year
    g = df.groupby(["sku", "location"])["demand"]
    level = g.mean()
    zeros = g.apply(lambda x: (x == 0).mean())
    assert level.min() < 0.2 and level.max() > 50
    slow = level < 0.5
    assert slow.mean() > 0.05
    assert zeros[slow].mean() > 0.6 and (zeros > 0.5).mean() > 0.1
    assert zeros[level > 20].mean() < 0.05


def test_inventory_tied_to_level(year):
    df, inv = year
    level = df.groupby(["sku", "location"], sort=True)["demand"].mean().to_numpy()
    inv = inv.sort_values(["sku", "location"])
    assert np.corrcoef(np.log1p(level), np.log1p(inv["case_pack"]))[0, 1] > 0.5
    fast, slow = level > np.quantile(level, 0.8), level < np.quantile(level, 0.2)
    for col in ("service_level", "on_hand"):
        v = inv[col].to_numpy()
        assert v[fast].mean() > v[slow].mean(), col


def test_bad_arguments():
    with pytest.raises(ValueError, match="freq"):
        synth_tables(2, 10, freq="M")
    with pytest.raises(ValueError, match="full week"):
        synth_tables(2, 6, freq="W")
    with pytest.raises(ValueError, match="n_series"):
        synth_tables(0, 10)

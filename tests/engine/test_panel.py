"""Panel: Parquet -> Panel -> the same values; subsetting and hold-out."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from replenish.data import BAKERY_COLUMNS, bakery_path
from replenish.engine.contract import ColumnMap
from replenish.engine.panel import _ranges
from replenish.engine.validate import build_panel
from tests.conftest import make_history


def test_bakery_round_trip(tmp_path):
    src = pq.read_table(bakery_path())
    c = BAKERY_COLUMNS
    p = build_panel(src, c)
    assert (p.n_series, p.n_rows, p.freq) == (105, 127_575, "D")
    path = tmp_path / "p.parquet"
    pq.write_table(p.to_arrow(c.sku, c.location, c.date, c.demand), path)
    back = pq.read_table(path).to_pandas().sort_values([c.sku, c.location, c.date])
    ref = src.to_pandas().sort_values([c.sku, c.location, c.date])
    for col in [c.sku, c.location, c.demand, *c.known]:
        np.testing.assert_allclose(back[col].to_numpy(float), ref[col].to_numpy(float), rtol=1e-6)
    np.testing.assert_array_equal(back[c.date].to_numpy().astype("datetime64[D]"),
                                  ref[c.date].to_numpy().astype("datetime64[D]"))


def test_shuffled_input_gives_same_panel():
    t = make_history(n_series=6, n_days=15)
    perm = np.random.default_rng(1).permutation(t.num_rows)
    a = build_panel(t, ColumnMap(known=("price",)))
    b = build_panel(t.take(pa.array(perm)), ColumnMap(known=("price",)))
    np.testing.assert_array_equal(a.demand, b.demand)
    np.testing.assert_array_equal(a.known, b.known)
    assert a.sku.tolist() == b.sku.tolist()


def test_take_and_split_last():
    p = build_panel(make_history(n_series=5, n_days=12), ColumnMap(known=("price",)))
    sub = p.take(np.array([3, 1]))
    assert sub.sku.tolist() == [p.sku[3], p.sku[1]]
    np.testing.assert_array_equal(sub.demand[:12], p.demand[36:48])
    train, actual = p.split_last(4)
    assert train.lengths.tolist() == [8] * 5 and actual.shape == (5, 4)
    np.testing.assert_array_equal(actual[2], p.demand[24 + 8:36])
    np.testing.assert_array_equal(train.future_known[2, :, 0], p.known[24 + 8:36, 0])
    assert train.horizon_dates(4)[0, 0] == p.start[0] + np.timedelta64(8, "D")


def test_ranges_matches_loop():
    rng = np.random.default_rng(0)
    starts = rng.integers(0, 100, 20)
    lengths = rng.integers(0, 5, 20)
    ref = np.concatenate([np.arange(s, s + n) for s, n in zip(starts, lengths)])
    np.testing.assert_array_equal(_ranges(starts, lengths), ref)

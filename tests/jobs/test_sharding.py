"""Hash sharding is stable and complete; staging splits files with nothing lost or doubled."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from replenish.engine.contract import DataError

from replenish.jobs import _sharding
from tests.conftest import make_history


def test_shard_of_is_stable_across_processes():
    sku = np.array([f"S{i}" for i in range(50)])
    loc = np.array([f"L{i % 7}" for i in range(50)])
    here = _sharding.shard_of(sku, loc, 13).tolist()
    code = ("import numpy as np; from replenish.jobs._sharding import shard_of;"
            "print(shard_of(np.array([f'S{i}' for i in range(50)]),"
            "np.array([f'L{i % 7}' for i in range(50)]), 13).tolist())")
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert there.stdout.strip() == str(here)
    assert set(here) <= set(range(13)) and len(set(here)) > 5


def test_int_and_string_keys_hash_alike():
    a = _sharding.shard_of(np.array([101, 102]), np.array([3, 4]), 8)
    b = _sharding.shard_of(np.array(["101", "102"]), np.array(["3", "4"]), 8)
    assert a.tolist() == b.tolist()


def test_stage_file_splits_by_series(tmp_path):
    t = make_history(n_series=12, n_days=10)
    src = tmp_path / "in"
    src.mkdir()
    pq.write_table(t.slice(0, 55), src / "a.parquet")
    pq.write_table(t.slice(55), src / "b.parquet")
    files, fmt, base = _sharding.input_files(str(src))
    assert len(files) == 2 and fmt == "parquet"
    total = {}
    for f in files:
        for k, v in _sharding.stage_file(str(src), f, fmt, base, t.column_names, ("sku", "location"),
                                         4, str(tmp_path / "stage"), "history", batch_rows=17)["counts"].items():
            total[k] = total.get(k, 0) + v
    assert sum(total.values()) == t.num_rows
    seen = set()
    for s in range(4):
        part = _sharding.read_shard(tmp_path / "stage", "history", s)
        if part is None:
            continue
        keys = set(zip(part.column("sku").to_pylist(), part.column("location").to_pylist()))
        assert not keys & seen  # a series lives in exactly one shard
        seen |= keys
        assert all(_sharding.shard_of(np.array([k[0]]), np.array([k[1]]), 4)[0] == s for k in keys)
    assert len(seen) == 12


def test_stage_hive_partitioned_and_csv(tmp_path):
    t = make_history(n_series=4, n_days=5)
    hive = tmp_path / "hive"
    pq.write_to_dataset(t, hive, partition_cols=["location"])
    files, fmt, base = _sharding.input_files(str(hive))
    rows = 0
    for f in files:
        rows += sum(_sharding.stage_file(str(hive), f, fmt, base, ["sku", "location", "date", "demand"],
                                         ("sku", "location"), 3, str(tmp_path / "st"), "h")["counts"].values())
    assert rows == t.num_rows
    csv = tmp_path / "h.csv"
    import pyarrow.csv as pcsv
    pcsv.write_csv(t, csv)
    files, fmt, base = _sharding.input_files(str(csv))
    assert fmt == "csv"
    n = sum(_sharding.stage_file(str(csv), files[0], fmt, base, t.column_names, ("sku", "location"),
                                 3, str(tmp_path / "st2"), "h")["counts"].values())
    assert n == t.num_rows


def test_shard_plan_keeps_locations_whole_and_balances_rows():
    rng = np.random.default_rng(0)
    rows = {f"L{i}": int(r) for i, r in enumerate(rng.integers(100, 1000, 40))}
    rows["BIG"] = 10 * sum(rows.values()) // 8        # more than a shard's share: split
    plan = _sharding.ShardPlan.from_counts(rows, 8)
    share = -(-sum(rows.values()) // 8)
    for loc, r in rows.items():
        expect = max(1, -(-r // share))
        assert len(plan.units[loc]) == expect
        assert len(set(plan.units[loc])) == expect     # a split location's buckets in distinct shards
    # series of each location go where the plan says, and a big location's series spread
    sku = np.array([f"S{i}" for i in range(300)] * len(rows))
    loc = np.repeat(list(rows), 300)
    got = plan.assign(sku, loc)
    for name in rows:
        assert set(got[loc == name].tolist()) == set(plan.units[name])
    # loads (rows per shard) stay within the largest bucket of the mean (greedy packing)
    load = np.zeros(8)
    for name, shards in plan.units.items():
        for k in shards:
            load[k] += rows[name] / len(shards)
    assert load.max() - load.mean() <= max(r / len(plan.units[n]) for n, r in rows.items())
    # unknown locations fall back to the series hash; int and str ids agree; JSON round trip
    np.testing.assert_array_equal(plan.assign(np.array(["S1", "S2"]), np.array(["NEW", "NEW"])),
                                  _sharding.shard_of(np.array(["S1", "S2"]), np.array(["NEW", "NEW"]), 8))
    again = _sharding.ShardPlan.from_json(plan.to_json())
    np.testing.assert_array_equal(again.assign(sku, loc), got)
    p2 = _sharding.ShardPlan.from_counts({"7": 10, "8": 10}, 2)
    np.testing.assert_array_equal(p2.assign(np.array([1, 2]), np.array([7, 8])),
                                  p2.assign(np.array(["1", "2"]), np.array(["7", "8"])))


def test_count_locations_matches_a_plain_count(tmp_path):
    t = make_history(n_series=6, n_days=9, str_keys=False)
    pq.write_table(t, tmp_path / "a.parquet")
    files, fmt, base = _sharding.input_files(str(tmp_path / "a.parquet"))
    got = _sharding.count_locations(str(tmp_path / "a.parquet"), files[0], fmt, base, "location")
    ref = {}
    for v in t.column("location").to_pylist():
        ref[str(v)] = ref.get(str(v), 0) + 1
    assert got == ref == _sharding.count_locations(t, None, None, None, "location")
    with_null = t.set_column(t.column_names.index("location"), "location",
                             pa.array([None] + t.column("location").to_pylist()[1:]))
    ref[str(t.column("location")[0].as_py())] -= 1
    assert _sharding.count_locations(with_null, None, None, None, "location") == ref



def test_csv_labels_late_in_a_file_are_text_not_a_crash(tmp_path):
    # a holiday column of "0" for more than pyarrow's first block (1 MB), then letters: the
    # inferred int64 cannot hold 'a'
    n = 120_000
    hol = np.array(["0"] * n, dtype=object)
    hol[-3:] = ["a", "b", "c"]
    t = pa.table({"sku": np.repeat(["S0", "S1"], n // 2), "location": ["L0"] * n,
                  "date": np.tile(np.datetime64("2020-01-01") + np.arange(n // 2), 2),
                  "demand": np.ones(n), "holiday": hol})
    csv = tmp_path / "h.csv"
    import pyarrow.csv as pcsv
    pcsv.write_csv(t, csv, pcsv.WriteOptions(quoting_style="none"))
    assert csv.stat().st_size > 2 << 20
    files, fmt, base = _sharding.input_files(str(csv))
    args = (str(csv), files[0], fmt, base, t.column_names, ("sku", "location"), 2)
    with pytest.raises(DataError, match=r"history file .*h.csv: column 'holiday': .*invalid value "
                                        r"'a'.*listed in --categorical-cols"):
        _sharding.stage_file(*args, str(tmp_path / "st"), "history")
    got = _sharding.stage_file(*args, str(tmp_path / "st2"), "history",
                               csv_types={"holiday": "string"})
    assert sum(got["counts"].values()) == n
    staged = pa.concat_tables([_sharding.read_shard(tmp_path / "st2", "history", s) for s in got["counts"]])
    assert staged.schema.field("holiday").type == pa.string()
    assert sorted(set(staged.column("holiday").to_pylist())) == ["0", "a", "b", "c"]


def test_text_in_a_csv_demand_names_the_column_and_row(tmp_path):
    """The demand is read as a number whatever the first rows hold: a word among the first
    rows fails when the file is opened, named by its column, not by its position."""
    csv = tmp_path / "h.csv"
    csv.write_text("item_id,store_nbr,ds,units_sold\n" + "".join(
        f"A,1,2024-01-{d:02d},{'abc' if d == 5 else d}\n" for d in range(1, 11)))
    files, fmt, base = _sharding.input_files(str(csv))
    with pytest.raises(DataError, match=r"history file .*h.csv: column 'units_sold': CSV "
                                        r"conversion error to double.*'abc'.*the demand is "
                                        r"always a number"):
        _sharding.stage_file(str(csv), files[0], fmt, base, ["item_id", "store_nbr", "ds", "units_sold"],
                             ("item_id", "store_nbr"), 2, str(tmp_path / "st"), "history",
                             csv_types={"units_sold": "double"})

"""Real feeds as they come, through the jobs on a real LocalCluster with the real TFT.

- keys keep the user's types in every output (int64, int32, text with leading zeros, text
  that looks like dates), also through forecast -> optimize, evaluate and echelon;
- a static number missing for some series stops the job before training, naming the series
  over all shards (not the rows of one shard), or is imputed with one median for all shards;
- a crafted Rossmann-like daily feed (stores only, Open/Promo/StateHoliday letters, store
  attributes with holes, a store closed for six months), end to end through the command line
  in a subprocess: its captured log has every line prefixed, no line twice and no Dask chatter.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from replenish.engine.contract import ColumnMap, DataError
from replenish.jobs.config import PlanConfig
from replenish.jobs.plan import read_manifest, read_output, run_plan
from tests.conftest import make_history

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TINY = {"horizon": 7, "encoder_length": 14, "hidden_size": 8, "attention_heads": 1,
        "max_steps": 10, "batch_size": 64, "seed": 0}
COLS = ColumnMap(observed=("price", "promo"), static=("category",))


def _inventory(keys: pa.Table) -> pa.Table:
    n = keys.num_rows
    return keys.append_column("on_hand", pa.array(np.full(n, 5.0))) \
        .append_column("on_order", pa.array(np.zeros(n))) \
        .append_column("lead_time_days", pa.array(np.full(n, 2.0)))


def _with_keys(hist: pa.Table, sku: pa.Array, location: pa.Array) -> pa.Table:
    """``hist`` with its (sku, location) pairs replaced, pair by pair, by the given keys."""
    pairs = pd.MultiIndex.from_arrays([hist.column("sku").to_numpy(zero_copy_only=False),
                                       hist.column("location").to_numpy(zero_copy_only=False)])
    code, _ = pd.factorize(pairs)
    idx = pa.array(code)
    return hist.set_column(0, "sku", sku.take(idx)).set_column(1, "location", location.take(idx))


@pytest.fixture(scope="module")
def trained(client, tmp_path_factory):
    out = tmp_path_factory.mktemp("model")
    run_plan(PlanConfig(history=make_history(n_series=8, n_days=40, seed=5), out=str(out),
                        columns=COLS, forecast=dict(TINY), shards=2), stages=("train",),
             client=client)
    return out / "model"


KEYS = {
    # the case: int64 in, int64 out (a hive read infers int32 from the folder names)
    "int64": (pa.array([f"S{i}" for i in range(8)]), pa.array([10 ** 10 + i % 3 for i in range(8)],
                                                               pa.int64())),
    "int32": (pa.array(list(range(8)), pa.int32()), pa.array([i % 3 for i in range(8)], pa.int32())),
    # text that a reader would take for numbers or dates
    "text": (pa.array(["0042", "042", "42", "007", "7", "0", "00", "x"]),
             pa.array(["2024-01-01", "2024-01-02", "0007", "2024-01-01", "0007", "7", "7", "a b/c"])),
}


@pytest.mark.parametrize("kind", list(KEYS))
def test_keys_keep_their_types_in_every_output(client, trained, tmp_path, kind):
    sku, loc = KEYS[kind]
    hist = _with_keys(make_history(n_series=8, n_days=40, seed=5), sku, loc)
    keys = hist.select(["sku", "location"]).group_by(["sku", "location"]).aggregate([])
    inv = _inventory(keys)
    out = tmp_path / "plan"
    run_plan(PlanConfig(history=hist, inventory=inv, out=str(out), columns=COLS,
                        model=str(trained), shards=3, n_samples=100),
             stages=("forecast", "optimize"), client=client)
    want = set(zip(sku.to_pylist(), loc.to_pylist()))
    for name in ("orders", "forecasts"):
        t = read_output(out, name)
        assert t.schema.field("sku").type == sku.type, name
        assert t.schema.field("location").type == loc.type, name
        assert set(zip(t.column("sku").to_pylist(), t.column("location").to_pylist())) == want
    # forecast -> optimize: the optimize job reads the forecasts back with their types
    opt = tmp_path / "opt"
    run_plan(PlanConfig(forecasts=str(out / "forecasts"), inventory=inv, out=str(opt),
                        n_samples=100), stages=("optimize",), client=client)
    o = read_output(opt, "orders")
    assert o.schema.field("location").type == loc.type
    assert set(zip(o.column("sku").to_pylist(), o.column("location").to_pylist())) == want
    if kind != "int64":
        return
    # evaluate's and echelon's tables too
    from replenish.jobs.echelon import place_safety_stock
    from replenish.jobs.evaluate import evaluate_run
    later = _with_keys(make_history(n_series=8, n_days=47, seed=5), sku, loc)
    res = evaluate_run(out, later, tmp_path / "eval")
    assert res["series_table"].schema.field("location").type == pa.int64()
    locs = pc.unique(loc)
    net = pa.table({"location": locs, "dc": pa.array(["DC"] * len(locs)),
                    "dc_lead_time_days": pa.array(np.full(len(locs), 5.0))})
    ech = place_safety_stock(out, net, tmp_path / "ech")
    assert ech["stores_table"].schema.field("location").type == pa.int64()
    assert pq.read_table(tmp_path / "ech" / "stores.parquet").schema.field("location").type == pa.int64()


def test_static_number_missing_is_named_per_series_over_all_shards(client, tmp_path):
    hist = make_history(n_series=12, n_days=20, seed=2)
    sid = np.repeat(np.arange(12), 20)
    size = np.where(np.isin(sid, [2, 5, 9]), np.nan, 100.0 + sid)
    hist = hist.append_column("size", pa.array(size, pa.float64(), mask=np.isnan(size)))
    cols = ColumnMap(observed=("price", "promo"), static=("category", "size"))
    inv = _inventory(hist.select(["sku", "location"]).group_by(["sku", "location"]).aggregate([]))
    cfg = PlanConfig(history=hist, inventory=inv, out=str(tmp_path / "strict"), columns=cols,
                     forecast=dict(TINY), shards=4)
    # three series in (probably) several shards: one error, before training, in series
    with pytest.raises(DataError, match=r"column 'size': rule 'a numeric static attribute must "
                                        r"not be missing' broken by 3 series \(e.g. .*\) \(use "
                                        r"--missing-static impute"):
        run_plan(cfg, client=client)
    assert "model" not in read_manifest(tmp_path / "strict")
    # impute: one median for every shard (over the 9 series that have a value), with its
    # indicator, in the model and in the manifest
    cfg = PlanConfig(history=hist, inventory=inv, out=str(tmp_path / "impute"), columns=cols,
                     forecast=dict(TINY), shards=4, missing_static="impute", n_samples=100)
    summary = run_plan(cfg, client=client)
    m = read_manifest(tmp_path / "impute")
    expect = float(np.median(100.0 + np.setdiff1d(np.arange(12), [2, 5, 9])))
    assert m["profile"]["static_fill"] == {"size": expect}
    assert m["profile"]["imputed"]["size"]["series"] == 3
    assert summary["repairs"]["static_imputed:size"] == 3
    spec = json.loads((tmp_path / "impute" / "model" / "model.json").read_text())["spec"]
    assert spec["static_reals"] == ["size", "size_missing"]
    assert read_output(tmp_path / "impute", "orders").num_rows == 12


# ---- a Rossmann-like daily feed through the command line ---------------------------------

N_STORES = 6


def _rossmann_like(d: Path) -> dict:
    """Stores only (no product column); Open (0 on Sundays and holidays), Promo, StateHoliday
    letters ('0', 'a', 'c'), SchoolHoliday; store attributes merged in, with holes: three stores
    without a CompetitionDistance, PromoInterval empty where Promo2 is 0; store 4 closed (no
    rows) from 2023-03-01 to 2023-08-31, 184 days."""
    rng = np.random.default_rng(0)
    days = pd.date_range("2022-10-01", "2023-10-31", freq="D")
    stores = pd.DataFrame({"Store": np.arange(1, N_STORES + 1, dtype=np.int64),
                           "StoreType": list("abcabc"), "Promo2": [1, 0, 1, 0, 0, 1],
                           "CompetitionDistance": [520.0, np.nan, 1800.0, np.nan, 90.0, np.nan]})
    stores["PromoInterval"] = np.where(stores["Promo2"] == 1, "Jan,Apr,Jul,Oct", None)
    rows = []
    for s in stores["Store"]:
        closed = (days >= "2023-03-01") & (days < "2023-09-01") if s == 4 else np.zeros(len(days), bool)
        hol = np.where(days.strftime("%m-%d").isin(["12-25", "12-26"]), "c",
                       np.where(days.strftime("%m-%d").isin(["01-01", "10-03"]), "a", "0"))
        open_ = ((days.dayofweek != 6) & (hol == "0")).astype(int)
        promo = ((days.dayofweek < 5) & (days.isocalendar().week.to_numpy() % 2 == 0)).astype(int)
        sales = open_ * rng.poisson(400 * s * (1 + 0.3 * promo))
        rows.append(pd.DataFrame({"Store": s, "Date": days.strftime("%Y-%m-%d"), "Sales": sales,
                                  "Open": open_, "Promo": promo, "StateHoliday": hol,
                                  "SchoolHoliday": days.month.isin([7, 8]).astype(int)})[~closed])
    hist = pd.concat(rows).merge(stores, on="Store")
    pq.write_table(pa.Table.from_pandas(hist, preserve_index=False), d / "train.parquet")
    fd = pd.date_range(days[-1] + pd.Timedelta(days=1), periods=TINY["horizon"])
    fut = pd.DataFrame([(s, x.strftime("%Y-%m-%d"), int(x.dayofweek != 6),
                         int(x.dayofweek < 5 and x.isocalendar().week % 2 == 0), "0", 0)
                        for s in stores["Store"] for x in fd],
                       columns=["Store", "Date", "Open", "Promo", "StateHoliday", "SchoolHoliday"])
    fut.to_csv(d / "future.csv", index=False)
    pd.DataFrame({"Store": stores["Store"], "on_hand": 2000.0, "on_order": 0.0,
                  "lead_time_days": 2.0}).to_csv(d / "inventory.csv", index=False)
    (d / "job.toml").write_text(
        "[data]\nmissing_static = \"impute\"\n"
        "[forecast]\n" + "".join(f"{k} = {v}\n" for k, v in TINY.items()))
    return {"stores": stores}


def test_rossmann_like_feed_end_to_end_with_a_clean_log(tmp_path):
    d = tmp_path
    feed = _rossmann_like(d)
    out = d / "plan"
    cmd = [sys.executable, "-m", "replenish.jobs.cli", "plan", "--history", str(d / "train.parquet"),
           "--inventory", str(d / "inventory.csv"), "--future", str(d / "future.csv"),
           "--out", str(out), "--config", str(d / "job.toml"), "--location-col", "Store",
           "--date-col", "Date", "--demand-col", "Sales",
           "--known-cols", "Open,Promo,StateHoliday,SchoolHoliday", "--categorical-cols", "StateHoliday",
           "--static-cols", "StoreType,Promo2,PromoInterval,CompetitionDistance",
           "--gap-fill", "SchoolHoliday=previous", "--n-workers", "2", "--shards", "3",
           "--n-samples", "200"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # another job's dashboard port is taken: the embedded cluster must not say so
    with socket.socket() as busy:
        try:
            busy.bind(("127.0.0.1", 8787))
            busy.listen()
        except OSError:   # taken already, which is the point
            pass
        run = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    log = (run.stderr + run.stdout).splitlines()
    assert run.returncode == 0, run.stderr[-3000:]
    assert log and all(line.startswith("[replenish] ") for line in log), \
        [line for line in log if not line.startswith("[replenish] ")]
    assert len(log) == len(set(log)), [line for line in log if log.count(line) > 1]
    text = "\n".join(log)
    for chatter in ("distributed", "dask", "Port 8787", "Worker process", "still alive",
                    "Traceback", "UserWarning", "np.int64", "np.float"):
        assert chatter not in text, chatter
    # 1. one key: said once, and the outputs hold the constant
    assert text.count("the history has no sku column, so every series has the sku 'all'") == 1
    orders = read_output(out, "orders")
    assert set(orders.column("sku").to_pylist()) == {"all"}
    assert orders.schema.field("location").type == pa.int64()
    assert sorted(orders.column("location").to_pylist()) == feed["stores"]["Store"].tolist()
    m = read_manifest(out)
    assert m["constant_keys"] == ["sku"] and m["summary"]["constant_keys"] == {"sku": "all"}
    # 2. three stores without a CompetitionDistance: imputed with the median over the stores
    # that have one, said once, naming the stores as written (not np.int64(2))
    assert m["profile"]["static_fill"] == {"CompetitionDistance": 520.0}
    imputed = [line for line in log if "CompetitionDistance" in line]
    assert len(imputed) == 1 and "3 series without a value" in imputed[0]
    assert "(e.g. " in imputed[0] and "'all'" not in imputed[0]
    assert m["summary"]["repairs"]["static_imputed:CompetitionDistance"] == 3
    # PromoInterval's holes: the missing category, once for the job (not per shard and process)
    holes = [line for line in log if "PromoInterval" in line]
    assert len(holes) == 1 and "3 series" in holes[0]
    # 3. the store closed for six months: 184 gap days, their covariates by the gap rules
    rep = m["summary"]["repairs"]
    assert rep["gaps_filled"] == 184
    assert {rep[f"gap_fill:{c}"] for c in ("Open", "Promo", "StateHoliday", "SchoolHoliday")} == {184}
    rules = [line for line in log if "filled periods" in line]
    assert len(rules) == 1 and "Open=0" in rules[0] and "Promo=0" in rules[0] \
        and "StateHoliday: missing label" in rules[0] and "SchoolHoliday as before the gap" in rules[0]
    # 4. money is money only with unit costs; units of stock as units
    summary_line = next(line for line in log if "orders to place today" in line)
    assert "units of stock" in summary_line and "value unknown: the inventory has no unit_cost" \
        in summary_line
    f = read_output(out, "forecasts")
    assert f.num_rows == N_STORES * TINY["horizon"]


def _worker_says(i: int) -> int:
    import logging
    import warnings
    logging.getLogger("replenish").warning("the model has no validation periods")
    logging.getLogger("replenish.repairs").warning("shard %d: 3 rows clipped", i)  # in reports
    logging.getLogger("replenish").info("step %d", i)                # INFO: only with --verbose
    warnings.warn("a library's warning")
    return i


def test_worker_messages_are_said_once_in_the_job_process(client, caplog):
    import time

    from replenish.jobs._messages import forward_worker_logs
    caplog.set_level(logging.INFO)
    with forward_worker_logs(client, verbose=False):
        assert sorted(client.gather([client.submit(_worker_says, i, pure=False)
                                     for i in range(6)])) == list(range(6))
        for _ in range(50):   # the events travel worker -> scheduler -> client
            if "a library's warning" in caplog.text:
                break
            time.sleep(0.1)
    said = [r.getMessage() for r in caplog.records if not r.name.startswith("distributed")]
    assert said.count("the model has no validation periods") == 1
    assert sum("a library's warning" in m for m in said) == 1
    assert not [m for m in said if "clipped" in m or m.startswith("step")]


def test_product_totals_without_a_location_column(client, trained, tmp_path):
    """Product totals: no location column in the history, the inventory or the future; every
    series is at the location 'all', split over the shards by the series hash."""
    hist = _with_keys(make_history(n_series=8, n_days=40, seed=5),
                      pa.array([f"P{i}" for i in range(8)]), pa.array(["x"] * 8)).drop_columns(["location"])
    inv = _inventory(pa.table({"sku": pa.array([f"P{i}" for i in range(8)])}))
    out = tmp_path / "totals"
    summary = run_plan(PlanConfig(history=hist, inventory=inv, out=str(out), columns=COLS,
                                  model=str(trained), shards=3, n_samples=100),
                       stages=("forecast", "optimize"), client=client)
    assert summary["constant_keys"] == {"location": "all"} and summary["series"] == 8
    o = read_output(out, "orders")
    assert set(o.column("location").to_pylist()) == {"all"}
    assert sorted(o.column("sku").to_pylist()) == [f"P{i}" for i in range(8)]
    assert len(list((out / "orders" / "location=all").glob("*.parquet"))) == 3   # by hash
    # an inventory that names other locations does not match
    bad = inv.append_column("location", pa.array(["L1"] * 8))
    with pytest.raises(DataError, match="every row is a SKU-location of the history"):
        run_plan(PlanConfig(history=hist, inventory=bad, out=str(tmp_path / "bad"), columns=COLS,
                            model=str(trained), shards=3), stages=("forecast", "optimize"),
                 client=client)


def test_store_totals_through_evaluate_and_echelon(client, trained, tmp_path):
    """Store totals (no sku column anywhere): the plan, then evaluate with a later history of
    the same shape, and echelon with a network of the stores."""
    from replenish.jobs.echelon import place_safety_stock
    from replenish.jobs.evaluate import evaluate_run
    stores = pa.array([101, 102, 103, 104, 105, 106, 107, 108], pa.int64())
    full = _with_keys(make_history(n_series=8, n_days=47, seed=5), pa.array(["x"] * 8), stores)
    full = full.drop_columns(["sku"])
    last = pc.max(full.column("date")).as_py()
    import datetime as dt
    hist = full.filter(pc.less_equal(full.column("date"), pa.scalar(last - dt.timedelta(days=7))))
    inv = _inventory(pa.table({"location": stores}))
    out = tmp_path / "stores"
    run_plan(PlanConfig(history=hist, inventory=inv, out=str(out), columns=COLS, model=str(trained),
                        shards=2, n_samples=100), stages=("forecast", "optimize"), client=client)
    res = evaluate_run(out, full, tmp_path / "eval")
    assert res["series"] == 8 and res["periods"] == 8 * 7 and res["service"]["series_due"] == 8
    t = res["series_table"]
    assert set(t.column("sku").to_pylist()) == {"all"} and t.schema.field("location").type == pa.int64()
    net = pa.table({"location": stores, "dc": pa.array(["N"] * 4 + ["S"] * 4),
                    "dc_lead_time_days": pa.array(np.full(8, 5.0))})
    ech = place_safety_stock(out, net, tmp_path / "ech")
    dc = ech["dc_table"]
    assert dc.num_rows == 2 and set(dc.column("sku").to_pylist()) == {"all"}

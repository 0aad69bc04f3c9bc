"""The plan job on a real Dask LocalCluster with 2 worker processes and the real TFT.

One cluster and one small trained model serve the whole module (training is the slow part).
"""
from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from replenish.engine.contract import ColumnMap, DataError
from replenish.engine.forecast import TFTForecaster
from replenish.engine.validate import build_panel, validate_inventory
from replenish.jobs._sharding import ShardPlan
from replenish.jobs._tasks import optimize
from replenish.jobs.config import PlanConfig
from replenish.jobs.plan import JobError, read_manifest, read_output, run_plan
from tests.conftest import make_history

pytestmark = pytest.mark.slow

TINY = {"horizon": 7, "encoder_length": 14, "hidden_size": 8, "attention_heads": 1,
        "max_steps": 15, "batch_size": 64, "seed": 0,
        "device": "cpu"}   # pinned: on a GPU machine "auto" would pick CUDA
COLS = ColumnMap(known=("price", "promo"), static=("category",))
N_SERIES = 16


def _inventory(history: pa.Table, seed: int = 1) -> pa.Table:
    keys = history.select(["sku", "location"]).group_by(["sku", "location"]).aggregate([])
    n = keys.num_rows
    rng = np.random.default_rng(seed)
    return keys.append_column("on_hand", pa.array(rng.uniform(0, 40, n).round())) \
        .append_column("on_order", pa.array(np.zeros(n))) \
        .append_column("lead_time_days", pa.array(rng.integers(1, 5, n).astype(float))) \
        .append_column("lead_time_std_days", pa.array(np.full(n, 0.5))) \
        .append_column("service_level", pa.array(rng.uniform(0.6, 0.99, n))) \
        .append_column("moq", pa.array(np.full(n, 10.0))) \
        .append_column("case_pack", pa.array(np.full(n, 4.0)))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    hist = make_history(n_series=N_SERIES, n_days=60, seed=3)
    pq.write_table(hist.slice(0, 500), d / "h1.parquet")
    (d / "history").mkdir()
    pq.write_table(hist.slice(0, 500), d / "history" / "a.parquet")
    pq.write_table(hist.slice(500), d / "history" / "b.parquet")
    inv = _inventory(hist)
    pq.write_table(inv, d / "inventory.parquet")
    return {"dir": d, "history": hist, "inventory": inv}


@pytest.fixture(scope="module")
def trained(client, data, tmp_path_factory):
    # price and promo as observed-only: the jobs below have no future table (training alone
    # would keep known covariates known, and forecasting would then need their future)
    out = tmp_path_factory.mktemp("train")
    cols = ColumnMap(observed=COLS.known, static=COLS.static)
    cfg = PlanConfig(history=str(data["dir"] / "history"), out=str(out), columns=cols,
                     forecast=dict(TINY), shards=3)
    run_plan(cfg, stages=("train",), client=client)
    return out / "model"


def _cfg(data, out, model, **kw):
    base = dict(history=str(data["dir"] / "history"), inventory=str(data["dir"] / "inventory.parquet"),
                out=str(out), columns=COLS, forecast=dict(TINY), shards=4, model=str(model),
                n_samples=400)
    base.update(kw)
    return PlanConfig(**base)


def _orders(out) -> pa.Table:
    return read_output(out, "orders").sort_by([("sku", "ascending"), ("location", "ascending")])


def test_plan_outputs_schema_and_sanity(client, data, trained, tmp_path):
    out = tmp_path / "out"
    summary = run_plan(_cfg(data, out, trained), stages=("forecast", "optimize"), client=client)
    assert summary["series"] == N_SERIES and (out / "_SUCCESS").exists()
    m = read_manifest(out)
    assert m["status"] == "complete" and len(m["shards"]) == 4
    # the backend of each stage is recorded: on the CPU the forecasts go from the model's
    # tensor to the NumPy kernels (a DLPack view); a GPU run records torch:cuda and cupy
    for rec in m["shards"].values():
        assert rec["backend"] == {"forecast": "torch:cpu", "optimize": "numpy"}
    assert summary["backend"] == m["summary"]["backend"] == {"forecast": ["torch:cpu"],
                                                            "optimize": ["numpy"]}
    # one file per location and bucket of the shard plan (not per location and shard)
    plan = ShardPlan.from_json(m["shard_plan"])
    for name in ("forecasts", "orders"):
        for loc, shards in plan.units.items():
            files = sorted(p.name for p in (out / name / f"location={loc}").glob("*.parquet"))
            assert files == sorted(f"part-{k:05d}.parquet" for k in shards)
    f = read_output(out, "forecasts")
    assert f.num_rows == N_SERIES * TINY["horizon"]
    qcols = [c for c in f.column_names if c.startswith("q")]
    assert {"sku", "location", "date", "q0.5"} <= set(f.column_names)
    q = np.stack([f.column(c).to_numpy() for c in qcols], 1)
    assert (q >= 0).all() and (np.diff(q, axis=1) >= -1e-5).all()
    o = _orders(out)
    need = {"sku", "location", "safety_stock", "reorder_point", "order_up_to", "order_quantity",
            "order_date"}
    assert need <= set(o.column_names) and o.num_rows == N_SERIES
    qty = o.column("order_quantity").to_numpy()
    for c in ("safety_stock", "reorder_point", "order_up_to", "order_quantity"):
        assert (o.column(c).to_numpy() >= 0).all(), c
    pos = qty[qty > 0]
    assert np.allclose(pos % 4, 0) and (pos >= 10).all()
    sl = o.column("service_level").to_numpy()
    rop = o.column("reorder_point").to_numpy()
    ltd = o.column("lead_time_demand_mean").to_numpy()
    ptd = o.column("protection_demand_mean").to_numpy()   # over review period + lead time
    assert (ptd >= ltd - 1e-6).all() and (rop[sl > 0.5] >= ptd[sl > 0.5] - 1e-6).all()
    np.testing.assert_allclose(o.column("safety_stock").to_numpy(), rop - ptd, rtol=1e-5, atol=1e-3)
    assert (o.column("order_up_to").to_numpy() >= rop - 1e-6).all()
    # an item whose position is below its reorder point orders today
    position = o.column("inventory_position").to_numpy()
    assert ((qty > 0) == (position <= rop))[position < rop].all()


def test_sharded_equals_single_process(client, data, trained, tmp_path):
    out = tmp_path / "sharded"
    run_plan(_cfg(data, out, trained), stages=("forecast", "optimize"), client=client)
    # the same work in this process, on the whole table at once
    from replenish.jobs.plan import _spec
    spec = _spec(_cfg(data, out, trained), has_future=False,  # no future: known act as observed
                 stages=("forecast", "optimize"))
    panel = build_panel(data["history"], ColumnMap(**spec["columns"]))
    model = TFTForecaster.load(trained)
    q = model.predict(panel)
    inv = validate_inventory(data["inventory"], panel)
    ref = optimize(panel, np.asarray(model.levels), q, inv, spec)
    got = _orders(out)
    for c in ("safety_stock", "reorder_point", "order_up_to", "order_quantity"):
        np.testing.assert_allclose(got.column(c).to_numpy(), ref.column(c).to_numpy(),
                                   rtol=1e-4, atol=1e-3, err_msg=c)
    f = read_output(out, "forecasts").sort_by([("sku", "ascending"),
                                                          ("location", "ascending"), ("date", "ascending")])
    np.testing.assert_allclose(f.column("q0.5").to_numpy().reshape(N_SERIES, -1),
                               q[:, :, list(model.levels).index(0.5)], rtol=1e-4, atol=1e-4)


def test_resume_writes_only_missing_shards(client, data, trained, tmp_path):
    out = tmp_path / "resume"
    cfg = _cfg(data, out, trained)
    run_plan(cfg, stages=("forecast", "optimize"), client=client)
    m = read_manifest(out)
    done = sorted(m["shards"], key=int)
    victim = next(s for s in done if m["shards"][s]["files"])
    for f in m["shards"][victim]["files"]:
        (out / f).unlink()
    del m["shards"][victim]
    m["status"] = "running"
    (out / "manifest.json").write_text(json.dumps(m))
    (out / "_SUCCESS").unlink()
    before = {p: p.stat().st_mtime_ns for p in out.rglob("part-*.parquet")}
    run_plan(cfg, stages=("forecast", "optimize"), client=client)
    after = {p: p.stat().st_mtime_ns for p in out.rglob("part-*.parquet")}
    rewritten = {p.name for p in after if before.get(p) != after[p]}
    assert rewritten == {f"part-{int(victim):05d}.parquet"}
    assert _orders(out).num_rows == N_SERIES and (out / "_SUCCESS").exists()


def test_bad_shard_is_named_and_no_success_marker(client, data, trained, tmp_path):
    # Duplicate rows break a rule that needs whole series, so it is found in the shard's task.
    hist = data["history"]
    first_sku, first_loc = hist.column("sku")[0].as_py(), hist.column("location")[0].as_py()
    bad = pa.concat_tables([hist, hist.slice(0, 3)])
    out = tmp_path / "bad"
    cfg = _cfg(data, out, trained, history=bad)
    with pytest.raises(JobError) as e:
        run_plan(cfg, stages=("forecast", "optimize"), client=client)
    plan = ShardPlan.from_json(read_manifest(out)["shard_plan"])
    shard = int(plan.assign(np.array([first_sku]), np.array([first_loc]))[0])
    assert f"shard {shard}: DataError: columns (sku, location, date): rule 'one row per series " \
           f"and date' broken by 3 duplicate rows" in str(e.value)
    assert "1 of 4 shards failed" in str(e.value)
    assert not (out / "_SUCCESS").exists() and read_manifest(out)["status"] == "failed"


def test_bad_rows_fail_while_staging_before_training(client, data, tmp_path):
    hist = data["history"]
    d = hist.column("demand").to_numpy().copy()
    d[[0, 1, 2]] = -1.0
    src = tmp_path / "hist"
    src.mkdir()
    pq.write_table(hist.set_column(hist.column_names.index("demand"), "demand", pa.array(d)),
                   src / "part-0.parquet")
    out = tmp_path / "bad_rows"
    cfg = _cfg(data, out, None, history=str(src))
    cfg.model = None
    with pytest.raises(DataError, match=r"history file .*part-0.parquet: column 'demand': rule "
                                        r"'demand must not be negative' broken by 3 rows"):
        run_plan(cfg, client=client)
    m = read_manifest(out)
    assert m["status"] == "failed" and "model" not in m and not (out / "model").exists()
    assert not (out / "_SUCCESS").exists()


def test_bad_rows_found_while_training_list_every_shard(client, data, tmp_path):
    # duplicates need whole series: the training task finds them, in every shard it reads,
    # and the job fails with a DataError (a clean CLI error), not a worker traceback
    hist = data["history"]
    firsts = np.flatnonzero(np.r_[True, np.diff(np.arange(hist.num_rows) // 60) != 0])
    bad = pa.concat_tables([hist, hist.take(pa.array(firsts))])
    out = tmp_path / "dups"
    cfg = _cfg(data, out, None, history=bad, shards=3)
    cfg.model = None
    with pytest.raises(DataError) as e:
        run_plan(cfg, client=client)
    msg = str(e.value)
    assert msg.startswith("3 of the 3 shards read for training failed the data rules")
    for shard in range(3):
        assert re.search(rf"shard {shard}: columns \(sku, location, date\): rule 'one row per "
                         rf"series and date' broken by \d+ duplicate rows", msg)
    assert sum(int(n) for n in re.findall(r"broken by (\d+) duplicate", msg)) == N_SERIES
    assert read_manifest(out)["status"] == "failed" and not (out / "model").exists()


def test_folder_of_csv_files_is_read_as_csv(client, data, trained, tmp_path):
    src = tmp_path / "csv"
    src.mkdir()
    hist = data["history"]
    for i, (a, b) in enumerate(((0, 400), (400, hist.num_rows))):
        hist.slice(a, b - a).to_pandas().to_csv(src / f"sales_{i}.csv", index=False)
    out = tmp_path / "from_csv"
    run_plan(_cfg(data, out, trained, history=str(src)), stages=("forecast", "optimize"),
             client=client)
    ref = tmp_path / "from_parquet"
    run_plan(_cfg(data, ref, trained), stages=("forecast", "optimize"), client=client)
    a, b = _orders(out), _orders(ref)
    assert a.num_rows == N_SERIES
    for col in ("reorder_point", "order_up_to", "order_quantity"):
        np.testing.assert_allclose(a.column(col).to_numpy(), b.column(col).to_numpy(), rtol=1e-5)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=r"no readable parquet file"):
        run_plan(_cfg(data, tmp_path / "o2", trained, history=str(empty)),
                 stages=("forecast", "optimize"), client=client)


def test_series_without_recent_sales_are_planned_from_the_same_day(client, data, trained, tmp_path):
    # sparse data: 3 series report no rows in the last 6 days (no sales); each series still
    # gets forecasts from the day after the history's last date and orders as of that day
    hist = data["history"]
    keys = list(zip(hist.column("sku").to_pylist(), hist.column("location").to_pylist()))
    quiet = sorted(set(keys))[:3]
    last = hist.column("date").to_numpy().max()
    dates = hist.column("date").to_numpy()
    keep = np.array([not (k in quiet and d > last - np.timedelta64(6, "D")) for k, d in zip(keys, dates)])
    src = tmp_path / "sparse"
    src.mkdir()
    pq.write_table(hist.filter(pa.array(keep)), src / "part-0.parquet")
    out = tmp_path / "aligned"
    summary = run_plan(_cfg(data, out, trained, history=str(src)), stages=("forecast", "optimize"),
                       client=client)
    assert summary["repairs"]["trailing_filled"] == 3 * 6
    assert read_manifest(out)["history_end"] == str(last.astype("datetime64[D]"))
    o = _orders(out)
    assert set(o.column("as_of").to_numpy().astype("datetime64[D]")) == {last.astype("datetime64[D]") + 1}
    f = read_output(out, "forecasts")
    first = pc.min(f.column("date")).as_py()
    assert np.datetime64(first, "D") == last.astype("datetime64[D]") + 1
    # without alignment each series keeps its own end (the quiet ones are planned 6 days back)
    out2 = tmp_path / "own_ends"
    run_plan(_cfg(data, out2, trained, history=str(src), align_end=False), stages=("forecast", "optimize"),
             client=client)
    as_of = _orders(out2).column("as_of").to_numpy().astype("datetime64[D]")
    assert sorted(set(as_of)) == [last.astype("datetime64[D]") - 5, last.astype("datetime64[D]") + 1]


def _inventory_variants(inv: pa.Table):
    two = inv.slice(0, 2).set_column(inv.column_names.index("sku"), "sku", pa.array(["NEW1", "NEW2"]))
    on_hand = inv.column("on_hand").to_numpy().copy()
    on_hand[[3, 5]] = np.nan
    first = (inv.column("sku")[0].as_py(), inv.column("location")[0].as_py())
    loc = re.escape(repr(inv.column("location")[0].as_py()))
    return [
        (inv.slice(1), r"inventory: rule 'every SKU-location of the history has an inventory row' "
                       rf"broken by 1 SKU-locations \(e.g. {re.escape(repr(first))}\)"),
        (pa.concat_tables([inv, two]), r"inventory: rule 'every row is a SKU-location of the history' "
                                       rf"broken by 2 rows \(e.g. \('NEW[12]', {loc}\), "
                                       rf"\('NEW[12]', {re.escape(repr(inv.column('location')[1].as_py()))}\)\)"),
        (pa.concat_tables([inv, inv.slice(0, 3)]), r"inventory: rule 'one row per SKU-location' broken by "
                                                   r"3 SKU-locations"),
        (inv.set_column(inv.column_names.index("on_hand"), "on_hand", pa.array(on_hand)),
         r"inventory file .*inventory.parquet: inventory column 'on_hand': rule 'must not be missing' "
         r"broken by 2 rows"),
        (inv.drop_columns(["on_order"]), r"inventory: required column\(s\) \['on_order'\] missing"),
        # the history's text locations written as numbers: no row matches, the history's named
        (inv.set_column(inv.column_names.index("location"), "location",
                        pa.array(np.arange(inv.num_rows) + 1000)),
         rf"broken by {inv.num_rows} rows \(e.g\. .*\); no row matches: the history's "
         rf"SKU-locations are \(e\.g\. \('.*', {loc[:2]}.*\)\)\. Ids match as written"),
        # a duplicate and two rows of unknown SKUs: both key rules in one error
        (pa.concat_tables([inv, inv.slice(0, 1), two]),
         r"inventory: rule 'one row per SKU-location' broken by 1 SKU-locations .*\n"
         r"inventory: rule 'every row is a SKU-location of the history' broken by 2 rows"),
        # two broken rules: both named in one error
        (inv.set_column(inv.column_names.index("on_order"), "on_order",
                        pa.array(np.r_[np.inf, -np.ones(inv.num_rows - 1)])),
         r"inventory column 'on_order': rule 'must be a finite number' broken by 1 rows \(e\.g\. .*\)"
         r"\n.*inventory column 'on_order': rule 'must be >= 0' broken by "
         rf"{inv.num_rows - 1} rows"),
    ]


@pytest.mark.parametrize("case", range(8))
def test_inventory_problems_fail_while_staging_before_training(client, data, tmp_path, case):
    inv, message = _inventory_variants(data["inventory"])[case]
    pq.write_table(inv, tmp_path / "inventory.parquet")
    out = tmp_path / "bad_inventory"
    cfg = _cfg(data, out, None, inventory=str(tmp_path / "inventory.parquet"))
    cfg.model = None
    with pytest.raises(DataError, match=message):
        run_plan(cfg, client=client)
    m = read_manifest(out)
    assert m["status"] == "failed" and "model" not in m and not (out / "model").exists()
    assert not (out / "_SUCCESS").exists()


from distributed.diagnostics.plugin import WorkerPlugin  # noqa: E402


class _KillOnce(WorkerPlugin):
    """Worker plugin: the first worker to start a given shard's task kills its own process."""

    def __init__(self, marker: str, shard: int):
        self.marker, self.shard = marker, shard

    def setup(self, worker):
        self.worker = worker

    def transition(self, key, start, finish, **kw):
        if finish == "executing" and str(key).startswith(f"shard-{self.shard:05d}") \
                and not os.path.exists(self.marker):
            Path(self.marker).write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)


def test_killed_worker_retries_and_output_is_complete(client, data, trained, tmp_path):
    marker = tmp_path / "killed"
    client.register_plugin(_KillOnce(str(marker), 1), name="kill-once")
    try:
        out = tmp_path / "killed_out"
        run_plan(_cfg(data, out, trained), stages=("forecast", "optimize"), client=client)
    finally:
        client.unregister_worker_plugin("kill-once")
    assert marker.exists()  # a worker really died mid-shard
    o = _orders(out)
    keys = list(zip(o.column("sku").to_pylist(), o.column("location").to_pylist()))
    assert len(keys) == len(set(keys)) == N_SERIES
    f = read_output(out, "forecasts")
    assert f.num_rows == N_SERIES * TINY["horizon"]
    client.wait_for_workers(2, timeout=60)


def test_other_job_in_same_folder_is_refused(client, data, trained, tmp_path):
    out = tmp_path / "o"
    run_plan(_cfg(data, out, trained), stages=("forecast", "optimize"), client=client)
    with pytest.raises(JobError, match="different job"):
        run_plan(_cfg(data, out, trained, target="fill_rate"), stages=("forecast", "optimize"),
                 client=client)


def test_non_empty_folder_without_a_job_is_refused(data, trained, tmp_path):
    out = tmp_path / "mine"
    (out / "notes").mkdir(parents=True)
    (out / "report.xlsx").write_text("the user's")
    with pytest.raises(JobError, match=r"not empty and holds no replenish job .*'notes', "
                                       r"'report.xlsx'"):
        run_plan(_cfg(data, out, trained), stages=("forecast", "optimize"), overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["notes", "report.xlsx"]


def test_cli_data_error_in_training_is_one_clean_message(data, tmp_path, capfd):
    # the embedded cluster (no --scheduler): exit code 2 and the job's message only, without
    # the workers' "Compute Failed" records and tracebacks
    from replenish.jobs.cli import main
    hist = data["history"]
    pq.write_table(pa.concat_tables([hist, hist.slice(0, 2)]), tmp_path / "h.parquet")
    rc = main(["plan", "--history", str(tmp_path / "h.parquet"),
               "--inventory", str(data["dir"] / "inventory.parquet"), "--out", str(tmp_path / "o"),
               "--known-cols", "price,promo", "--static-cols", "category", "--n-workers", "1",
               "--shards", "2"])
    err = capfd.readouterr().err
    assert rc == 2
    assert "error: 1 of the 2 shards read for training failed" in err and "broken by 2 duplicate" in err
    assert "Compute Failed" not in err and "Traceback" not in err
    # known covariates without a future table: the job says what it does with them
    assert "no --future table: the known covariates ['price', 'promo'] are used as observed-only" in err


def test_cli_on_existing_scheduler_with_mapped_columns(client, data, trained, tmp_path, capsys):
    from replenish.jobs.cli import main
    hist = data["history"].rename_columns(["item", "store", "day", "units", "price", "promo", "category"])
    pq.write_table(hist, tmp_path / "h.parquet")
    inv = data["inventory"].rename_columns(["item", "store"] + data["inventory"].column_names[2:])
    pq.write_table(inv, tmp_path / "i.parquet")
    (tmp_path / "job.toml").write_text(
        f"[forecast]\nhorizon = {TINY['horizon']}\ndevice = 'cpu'\n[policy]\nmethod = 'normal'\n")
    rc = main(["plan", "--history", str(tmp_path / "h.parquet"), "--inventory", str(tmp_path / "i.parquet"),
               "--out", str(tmp_path / "cli"), "--config", str(tmp_path / "job.toml"),
               "--sku-col", "item", "--location-col", "store", "--date-col", "day",
               "--demand-col", "units", "--known-cols", "price,promo", "--static-cols", "category",
               "--model", str(trained), "--scheduler", client.scheduler.address, "--shards", "2"])
    assert rc == 0
    o = read_output(tmp_path / "cli", "orders")
    assert o.num_rows == N_SERIES
    rc = main(["plan", "--history", str(tmp_path / "h.parquet"), "--inventory", str(tmp_path / "i.parquet"),
               "--out", str(tmp_path / "cli2"), "--model", str(trained),
               "--scheduler", client.scheduler.address])
    assert rc == 2  # default column names are not in this file: a clear error, not a crash
    assert "required column(s) ['sku', 'location', 'date', 'demand'] missing" in capsys.readouterr().err
    assert not (tmp_path / "cli2").exists()   # checked before --out is made: no empty folder


def test_evaluate_accuracy_and_realised_service(client, data, trained, tmp_path):
    """A plan made on the first 50 days, evaluated once the next days' actuals are in,
    against a per-series loop computing the same figures from the raw tables."""
    from replenish.jobs.cli import main
    from replenish.jobs.evaluate import evaluate_run
    hist = data["history"]
    day = pc.cast(hist.column("date"), pa.timestamp("s"))
    cut = np.datetime64("2024-02-20")
    past = hist.filter(pc.less(day, pa.scalar(cut.astype("datetime64[s]"))))
    pq.write_table(past, tmp_path / "past.parquet")
    out = tmp_path / "plan"
    run_plan(_cfg(data, out, trained, history=str(tmp_path / "past.parquet")), client=client)

    res = evaluate_run(out, hist, tmp_path / "eval", columns=COLS, ledger=tmp_path / "ledger.parquet")
    f = read_output(out, "forecasts").to_pandas()
    o = read_output(out, "orders").to_pandas()
    h = hist.to_pandas()
    levels = sorted(float(c[1:]) for c in f.columns if c.startswith("q"))
    rm, sp, covered, due_target, demand_tot, short_tot = [], [], [], [], 0.0, 0.0
    for (sku, loc), g in h.groupby(["sku", "location"]):
        g = g.sort_values("date")
        y = g["demand"].to_numpy()
        pre = y[g["date"].to_numpy() < cut]
        fg = f[(f.sku == sku) & (f.location == loc)].sort_values("date")
        act = g.set_index("date").loc[pd.to_datetime(fg["date"]), "demand"].to_numpy()
        med = fg["q0.5"].to_numpy()
        rm.append(np.sqrt(np.mean((act - med) ** 2) / np.mean(np.diff(pre) ** 2)))
        loss = [np.mean(np.maximum(lv * (act - fg[f"q{lv:g}"]), (lv - 1) * (act - fg[f"q{lv:g}"])))
                for lv in levels]
        sp.append(np.mean(loss) / np.mean(np.abs(np.diff(pre))))
        r = o[(o.sku == sku) & (o.location == loc)].iloc[0]
        periods = int(np.ceil(r.lead_time_days + r.review_period_days))
        d = y[len(pre):len(pre) + periods].sum()
        avail = r.inventory_position + r.order_quantity
        covered.append(d <= avail + 1e-6)
        due_target.append(r.service_level)
        demand_tot += d
        short_tot += max(d - avail, 0.0)
    assert res["series"] == N_SERIES and res["periods"] == N_SERIES * TINY["horizon"]
    assert res["rmsse"] == pytest.approx(np.mean(rm), rel=1e-5)
    assert res["spl"] == pytest.approx(np.mean(sp), rel=1e-5)
    svc = res["service"]
    assert svc["series_due"] == N_SERIES and svc["not_yet_due"] == 0
    assert svc["realised_cycle_service_level"] == pytest.approx(np.mean(covered))
    assert svc["target_service_level"] == pytest.approx(np.mean(due_target))
    assert svc["realised_fill_rate"] == pytest.approx(1 - short_tot / demand_tot)
    cal = [res["calibration"][f"{lv:g}"] for lv in levels]
    assert all(np.diff(cal) >= 0) and 0 <= cal[0] and cal[-1] <= 1   # monotone shares
    series = pq.read_table(tmp_path / "eval" / "series.parquet")
    assert series.num_rows == N_SERIES
    assert json.loads((tmp_path / "eval" / "summary.json").read_text())["rmsse"] == res["rmsse"]

    # two days of actuals only: two periods scored; long protection intervals not yet due
    early = hist.filter(pc.less(day, pa.scalar((cut + 2).astype("datetime64[s]"))))
    pq.write_table(early, tmp_path / "early.parquet")
    assert main(["evaluate", "--run", str(out), "--history", str(tmp_path / "early.parquet"),
                 "--out", str(tmp_path / "eval2"), "--ledger", str(tmp_path / "ledger.parquet")]) == 0
    s2 = json.loads((tmp_path / "eval2" / "summary.json").read_text())
    assert s2["periods"] == N_SERIES * 2
    long = int((np.ceil(o.lead_time_days + o.review_period_days) > 2).sum())
    assert s2["service"]["not_yet_due"] == long and s2["service"]["series_due"] == N_SERIES - long
    ledger = pq.read_table(tmp_path / "ledger.parquet").to_pandas()
    assert len(ledger) == 2 and list(ledger["periods"]) == [N_SERIES * 7, N_SERIES * 2]
    assert [ledger[f"calibration_q{lv:g}"].iloc[0] for lv in levels] == pytest.approx(cal)
    # a retried evaluate (same run, same folder) replaces its row: no evaluation counts twice
    evaluate_run(out, hist, tmp_path / "eval", columns=COLS, ledger=tmp_path / "ledger.parquet")
    again = pq.read_table(tmp_path / "ledger.parquet").to_pandas()
    assert list(again["periods"]) == [N_SERIES * 2, N_SERIES * 7]
    assert list(again["evaluation"]) == [str((tmp_path / d).resolve()) for d in ("eval2", "eval")]

    # the keys come back in their own types; the actuals are read in the run's periods;
    # a pandas history works; a history of the new days only has no scale, and no crash
    assert series.schema.field("sku").type == hist.schema.field("sku").type
    with pytest.raises(DataError, match=r"--freq W but the run .* planned in periods of a day"):
        evaluate_run(out, hist, columns=COLS, freq="W")
    assert evaluate_run(out, hist.to_pandas(), columns=COLS)["rmsse"] == res["rmsse"]
    new_only = hist.filter(pc.greater_equal(day, pa.scalar(cut.astype("datetime64[s]"))))
    r3 = evaluate_run(out, new_only, columns=COLS)
    assert r3["periods"] == N_SERIES * 7 and r3["rmsse"] is None
    assert r3["series_without_scale"] == N_SERIES


def test_echelon_placement_from_a_plan(client, data, trained, tmp_path):
    """Safety stock between one DC and the two store locations, per SKU, from a finished
    plan: equal to stockpyl's Graves-Willems DP on each network, built from the forecasts
    table and the plan's inputs independently."""
    from scipy.stats import norm
    from stockpyl.demand_source import DemandSource
    from stockpyl.gsm_tree import optimize_committed_service_times
    from stockpyl.supply_chain_network import SupplyChainNetwork
    from stockpyl.supply_chain_node import SupplyChainNode

    from replenish.jobs.cli import main
    from replenish.jobs.echelon import place_safety_stock
    from replenish.kernels import daily_moments
    out = tmp_path / "plan"
    run_plan(_cfg(data, out, trained), client=client)
    net = pa.table({"location": ["L0", "L1", "L9"], "dc": ["D1", "D1", "D2"],
                    "dc_lead_time_days": [6.0, 6.0, 3.0]})
    res = place_safety_stock(out, net, tmp_path / "ech")
    assert res["networks"] == N_SERIES // 2 and res["stores"] == N_SERIES

    f = read_output(out, "forecasts").to_pandas()
    o = read_output(out, "orders").to_pandas()
    levels = sorted(float(c[1:]) for c in f.columns if c.startswith("q"))
    dc_rows = res["dc_table"].to_pandas().set_index("sku")
    for sku, g in o.groupby("sku"):
        tree = SupplyChainNetwork()
        dc = SupplyChainNode(index=0)
        dc.processing_time, dc.external_inbound_cst = 6, 0
        dc.local_holding_cost = g.unit_cost.mean() * g.holding_cost_rate.mean() / 365
        dc.demand_bound_constant = norm.ppf(g.service_level.mean())
        dc.demand_source = DemandSource(type=None)
        tree.add_node(dc)
        for k, r in enumerate(g.itertuples()):
            qf = f[(f.sku == sku) & (f.location == r.location)].sort_values("date")
            m, v = daily_moments(levels, qf[[f"q{lv:g}" for lv in levels]].to_numpy()[None])
            st = SupplyChainNode(index=k + 1)
            st.processing_time, st.external_outbound_cst = int(r.lead_time_days), 0
            st.local_holding_cost = r.unit_cost * r.holding_cost_rate / 365
            st.demand_bound_constant = norm.ppf(r.service_level)
            st.demand_source = DemandSource(type="N", mean=float(m.mean()),
                                            standard_deviation=float(np.sqrt(v.mean())))
            tree.add_node(st)
            tree.add_edge(0, k + 1)
        cst, cost = optimize_committed_service_times(tree)
        assert dc_rows.loc[sku, "holding_cost_per_day"] == pytest.approx(cost, rel=1e-5), sku
        assert dc_rows.loc[sku, "dc_service_time_days"] == cst[0], sku
    stores = pq.read_table(tmp_path / "ech" / "stores.parquet").to_pandas()
    assert len(stores) == N_SERIES and (stores.safety_stock >= 0).all()
    # both tables keep the keys' own types (the plan's sku, the network's dc)
    dct = pq.read_table(tmp_path / "ech" / "dc.parquet")
    assert dct.schema.field("sku").type == read_output(out, "orders").schema.field("sku").type
    assert set(dct.column("dc").to_pylist()) == {"D1"}

    # a pandas network with float location ids (a CSV or a merge with gaps) of integer
    # locations: the same placement
    hist_int = data["history"].set_column(1, "location", pc.cast(pc.utf8_slice_codeunits(
        data["history"].column("location"), 1), pa.int64()))
    inv_int = data["inventory"].set_column(1, "location", pc.cast(pc.utf8_slice_codeunits(
        data["inventory"].column("location"), 1), pa.int64()))
    out_int = tmp_path / "plan_int"
    run_plan(_cfg(data, out_int, trained, history=hist_int, inventory=inv_int), client=client)
    net_f = pd.DataFrame({"location": [0.0, 1.0, np.nan], "dc": [7, 7, 8],
                          "dc_lead_time_days": [6.0, 6.0, 3.0]})
    r_int = place_safety_stock(out_int, net_f)
    r_ref = place_safety_stock(out_int, net_f.iloc[:2].astype({"location": np.int64}))
    assert r_int["stores"] == N_SERIES
    assert r_int["holding_cost_per_day"] == r_ref["holding_cost_per_day"]
    assert r_int["dc_table"].schema.field("dc").type == pa.int64()

    # every planned location needs a DC; DC values must agree within a DC
    with pytest.raises(DataError, match=r"'every planned location has a DC' broken by 1 locations"):
        place_safety_stock(out, net.slice(1))
    bad = net.set_column(2, "dc_lead_time_days", pa.array([6.0, 5.0, 3.0]))
    with pytest.raises(DataError, match=r"'dc_lead_time_days': rule 'one value per DC' broken by 1 DCs"):
        place_safety_stock(out, bad)
    pq.write_table(net, tmp_path / "net.parquet")
    assert main(["echelon", "--run", str(out), "--network", str(tmp_path / "net.parquet"),
                 "--out", str(tmp_path / "ech2")]) == 0
    assert pq.read_table(tmp_path / "ech2" / "dc.parquet").num_rows == N_SERIES // 2


def test_orders_wait_for_the_dc_service_time_of_an_echelon_placement(client, data, trained, tmp_path):
    """--echelon: each store's lead time grows by its DC's service time (net lead time minus
    lead time in the placement's stores table); the orders equal a plan whose inventory has
    those longer lead times, and keep the transport lead time in lead_time_days."""
    from replenish.jobs.cli import main
    from replenish.jobs.echelon import place_safety_stock
    inv = data["inventory"]
    lt = inv.column("lead_time_days").to_numpy()
    extra = np.where(np.arange(inv.num_rows) % 2 == 0, 5.0, 0.0)
    ech = tmp_path / "ech"
    ech.mkdir()
    stores = pa.table({"sku": inv.column("sku"), "location": inv.column("location"),
                       "lead_time_days": lt, "net_lead_time_days": lt + extra})
    pq.write_table(stores.slice(1), ech / "stores.parquet")   # the first SKU-location has no row
    extra[0] = 0.0
    out = tmp_path / "with_dc"
    summary = run_plan(_cfg(data, out, trained, echelon=str(ech)), stages=("forecast", "optimize"),
                       client=client)
    assert summary["repairs"]["echelon_missing"] == 1
    longer = inv.set_column(inv.column_names.index("lead_time_days"), "lead_time_days",
                            pa.array(lt + extra))
    pq.write_table(longer, tmp_path / "inv_longer.parquet")
    ref = tmp_path / "longer_lead_times"
    run_plan(_cfg(data, ref, trained, inventory=str(tmp_path / "inv_longer.parquet")),
             stages=("forecast", "optimize"), client=client)
    a, b = _orders(out).to_pandas(), _orders(ref).to_pandas()
    key = inv.to_pandas().set_index(["sku", "location"])
    key["extra"] = extra
    want = key.loc[list(zip(a.sku, a.location))]
    np.testing.assert_array_equal(a.dc_service_days, want.extra)
    np.testing.assert_array_equal(a.lead_time_days, want.lead_time_days)   # transport time kept
    for col in ("safety_stock", "reorder_point", "order_up_to", "order_quantity",
                "protection_demand_mean", "expected_fill_rate"):
        np.testing.assert_allclose(a[col], b[col], rtol=1e-6, err_msg=col)

    # a placement of other SKU-locations entirely (another plan's) is refused before work
    other = stores.set_column(0, "sku", pa.array([f"X{i}" for i in range(stores.num_rows)]))
    pq.write_table(other, tmp_path / "other.parquet")
    with pytest.raises(DataError, match=r"none of its 16 SKU-locations is in the history"):
        run_plan(_cfg(data, tmp_path / "other_out", trained, echelon=str(tmp_path / "other.parquet")),
                 stages=("forecast", "optimize"), client=client)

    # the whole loop on the CLI: plan -> echelon -> optimize --echelon on the plan's forecasts
    net = pa.table({"location": ["L0", "L1"], "dc": ["D1", "D1"], "dc_lead_time_days": [9.0, 9.0],
                    "dc_holding_cost_rate": [2.0, 2.0]})   # DC stock dear: stores hold it
    place_safety_stock(out, net, tmp_path / "ech_real")
    placed = pq.read_table(tmp_path / "ech_real" / "stores.parquet").to_pandas()
    assert (placed.net_lead_time_days > placed.lead_time_days).any()
    rc = main(["optimize", "--forecasts", str(out / "forecasts"),
               "--inventory", str(data["dir"] / "inventory.parquet"),
               "--echelon", str(tmp_path / "ech_real"), "--out", str(tmp_path / "opt"),
               "--scheduler", client.scheduler.address, "--n-samples", "400"])
    assert rc == 0
    o = _orders(tmp_path / "opt").to_pandas().merge(placed, on=["sku", "location"],
                                                     suffixes=("", "_placed"))
    np.testing.assert_allclose(o.dc_service_days, o.net_lead_time_days - o.lead_time_days_placed)
    # an optimize job's folder has no forecasts of its own: evaluate and echelon read those it
    # planned from
    from replenish.jobs.evaluate import evaluate_run
    ev = evaluate_run(tmp_path / "opt", data["history"], columns=COLS)
    assert ev["series"] == N_SERIES and ev["service"]["series_due"] == 0   # nothing due yet
    assert place_safety_stock(tmp_path / "opt", net)["stores"] == N_SERIES


def test_training_alone_keeps_known_covariates_and_forecasting_needs_their_future(client, data,
                                                                                   tmp_path):
    out = tmp_path / "train"
    run_plan(PlanConfig(history=str(data["dir"] / "history"), out=str(out), columns=COLS,
                        forecast=dict(TINY), shards=2), stages=("train",), client=client)
    meta = json.loads((out / "model" / "model.json").read_text())
    assert meta["spec"]["known"] == ["price", "promo"] and meta["spec"]["observed"] == []
    model = str(out / "model")
    with pytest.raises(JobError, match=r"uses the known covariates \['price', 'promo'\]: give "
                                       r"their values for the forecast horizon with --future"):
        run_plan(_cfg(data, tmp_path / "f1", model), stages=("forecast", "optimize"), client=client)
    with pytest.raises(JobError, match=r"forecasts 7 periods; a horizon of 14 needs a model"):
        run_plan(_cfg(data, tmp_path / "f2", model, forecast={"horizon": 14}),
                 stages=("forecast",), client=client)
    assert not (tmp_path / "f1").exists() and not (tmp_path / "f2").exists()   # nothing started
    # with the future table it forecasts (the known values of the horizon are read)
    hist = data["history"]
    last = hist.column("date").to_numpy().max()
    keys = hist.select(["sku", "location"]).group_by(["sku", "location"]).aggregate([])
    n, h = keys.num_rows, TINY["horizon"]
    fut = pa.table({"sku": np.repeat(keys.column("sku").to_numpy(zero_copy_only=False), h),
                    "location": np.repeat(keys.column("location").to_numpy(zero_copy_only=False), h),
                    "date": np.tile(last + np.arange(1, h + 1), n).astype("datetime64[D]"),
                    "price": np.full(n * h, 1.5), "promo": np.zeros(n * h, np.int8)})
    res = run_plan(_cfg(data, tmp_path / "f3", model, future=fut), stages=("forecast", "optimize"),
                   client=client)
    assert res["series"] == N_SERIES and _orders(tmp_path / "f3").num_rows == N_SERIES
    assert read_manifest(tmp_path / "f3")["summary"]["freq"] == "D"


def test_gpu_cluster_pipeline_with_a_faked_gpu(client, data, trained, tmp_path):
    """The embedded GPU cluster, built as on a one-GPU machine (the GPU count faked; the model
    pinned to the CPU): 2 workers asked for = 1 GPU worker + 1 CPU worker, said in a log line;
    every forecast+optimize task runs on the GPU worker, preparation and writing also on the
    CPU worker; the memory limit holds per worker; the orders equal a CPU cluster's."""
    from replenish.jobs.cluster import connect

    ref = tmp_path / "cpu"
    run_plan(_cfg(data, ref, trained, shards=6), stages=("forecast", "optimize"), client=client)
    out = tmp_path / "gpu"
    with connect(n_workers=2, memory_limit="1.5GB", gpus=["0"]) as cl:
        workers = cl.scheduler_info()["workers"].values()
        assert sorted(w["name"] for w in workers) == ["cpu-0", "gpu-0"]
        assert {w["name"]: w.get("resources", {}) for w in workers} == {"gpu-0": {"GPU": 1},
                                                                         "cpu-0": {}}
        assert {w["memory_limit"] for w in workers} == {1_500_000_000}
        env = cl.run(lambda: __import__("os").environ.get("CUDA_VISIBLE_DEVICES"))
        names = {a: w["name"] for a, w in cl.scheduler_info()["workers"].items()}
        assert {names[a]: v for a, v in env.items()} == {"gpu-0": "0", "cpu-0": ""}
        summary = run_plan(_cfg(data, out, trained, shards=6), stages=("forecast", "optimize"),
                           client=cl)
    m = read_manifest(out)
    assert summary["series"] == N_SERIES and m["status"] == "complete" and len(m["shards"]) == 6
    steps = [r["workers"] for r in m["shards"].values() if r["series"]]
    assert steps and all(w["compute"] == "gpu-0" for w in steps)
    assert any("cpu-0" in (w["prepare"], w["write"]) for w in steps)
    assert summary["backend"] == {"forecast": ["torch:cpu"], "optimize": ["numpy"]}
    a, b = _orders(out), _orders(ref)
    for c in ("reorder_point", "order_up_to", "order_quantity", "safety_stock"):
        np.testing.assert_allclose(a.column(c).to_numpy(), b.column(c).to_numpy(), rtol=1e-5,
                                   atol=1e-4, err_msg=c)

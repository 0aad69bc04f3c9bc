"""The backtest job end to end (CLI, real Parquet files, LocalCluster, the real TFT), and its
equal-service comparison."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from distributed import Client, LocalCluster

from replenish.jobs import backtest
from replenish.jobs.backtest import BacktestSettings, equal_service_reduction, run_backtest
from replenish.jobs.cli import _build_parser, backtest_config, main
from replenish.jobs.plan import JobError, read_manifest
from tests.conftest import make_history

TINY = {"horizon": 10, "encoder_length": 14, "hidden_size": 8, "attention_heads": 1,
        "max_steps": 12, "batch_size": 64, "val_every": 6, "seed": 0,
        "device": '"cpu"'}   # pinned: on a GPU machine "auto" would pick CUDA


def _inventory(history: pa.Table) -> pa.Table:
    keys = history.select(["sku", "location"]).group_by(["sku", "location"]).aggregate([])
    n = keys.num_rows
    rng = np.random.default_rng(3)
    return keys.append_column("on_hand", pa.array(np.full(n, 10.0))) \
        .append_column("on_order", pa.array(np.zeros(n))) \
        .append_column("lead_time_days", pa.array(rng.integers(1, 3, n).astype(float))) \
        .append_column("unit_cost", pa.array(rng.uniform(1, 3, n))) \
        .append_column("case_pack", pa.array(np.full(n, 2.0)))


@pytest.mark.slow
def test_backtest_end_to_end_with_a_failure_and_a_resume(tmp_path, capsys, monkeypatch):
    hist = make_history(n_series=6, n_days=90, seed=2)
    # one SKU-location starts after the first origin: it cannot be planned from the past
    late = pa.table({"sku": ["S9"] * 10, "location": ["L0"] * 10,
                     "date": (np.datetime64("2024-03-21") + np.arange(10)).astype("datetime64[D]"),
                     "demand": np.full(10, 3.0), "price": np.full(10, 1.5),
                     "promo": np.zeros(10, np.int8), "category": ["C0"] * 10})
    hist = pa.concat_tables([hist, late.cast(hist.schema)])
    # five days without a row in the simulated weeks: unknown demand (--gaps missing)
    d = hist.to_pandas()
    gone = (d.sku == "S0") & (d.location == "L0") & pd.to_datetime(d.date).between("2024-03-18", "2024-03-22")
    hist = pa.Table.from_pandas(d[~gone], schema=hist.schema, preserve_index=False)
    pq.write_table(hist, tmp_path / "history.parquet")
    pq.write_table(_inventory(hist), tmp_path / "inventory.parquet")
    cfg = tmp_path / "job.toml"
    cfg.write_text("[forecast]\n" + "".join(f"{k} = {v}\n" for k, v in TINY.items())
                   + "[backtest]\nclassical = 'seasonal'\nclassical_window = 14\n")
    out = tmp_path / "bt"
    argv = ["backtest", "--history", str(tmp_path / "history.parquet"),
            "--inventory", str(tmp_path / "inventory.parquet"), "--out", str(out),
            "--config", str(cfg), "--known-cols", "price,promo", "--static-cols", "category",
            "--origins", "3", "--targets", "0.7,0.95", "--method", "normal",
            "--finetune-steps", "6", "--n-workers", "2", "--gaps", "missing"]
    job, settings = backtest_config(_build_parser().parse_args(argv))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        # 1. the simulation fails after every origin was forecast: the job says failed ...
        def broken(*a, **k):
            raise RuntimeError("simulated crash")
        monkeypatch.setattr(backtest, "simulate_shard_task", broken)
        with pytest.raises(JobError, match="simulated crash"):
            run_backtest(job, settings, client=client)
        man = read_manifest(out)
        assert man["status"] == "failed" and len(man["origins"]) == 3
        assert not (out / "_SUCCESS").exists() and not (out / "summary.parquet").exists()
        # 2. ... and the rerun resumes: no origin is trained again
        monkeypatch.undo()
        monkeypatch.setattr(backtest, "train_task", broken)
        run_backtest(job, settings, client=client)
    # 3. the CLI finds the finished job and prints it
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "replenish" in printed and "classical" in printed and "forecast accuracy" in printed
    assert all(ln.startswith("[replenish]") for ln in printed.splitlines())
    assert (out / "_SUCCESS").exists() and not (out / "_work").exists()
    man = read_manifest(out)
    assert man["status"] == "complete"
    origins = list(man["origins"])
    assert origins == ["2024-03-09", "2024-03-16", "2024-03-23"]   # the last 3 weeks of 2024-03-30
    assert man["origins"][origins[1]]["fine_tuned_from"].endswith(origins[0])
    assert (out / "model" / "model.json").exists() and not (out / "_models").exists()

    summary = pq.read_table(out / "summary.parquet").to_pandas()
    by_origin = pq.read_table(out / "origins.parquet").to_pandas()
    series = pd.read_parquet(out / "series")
    assert sorted(zip(summary.policy, summary.target)) == [
        ("classical", 0.7), ("classical", 0.95), ("replenish", 0.7), ("replenish", 0.95)]
    # every policy met the same actual demand: the simulated days of the 6 series that existed
    h = hist.to_pandas()
    days = (pd.to_datetime(h.date) > pd.Timestamp(origins[0])) & h.sku.ne("S9")
    np.testing.assert_allclose(summary.demand, h.loc[days, "demand"].sum())
    assert (summary.series == 6).all()
    # the totals are the sums of the origins' and of the SKU-locations' rows
    for col in ("demand", "orders", "ordered", "stockout_periods", "holding_cost"):
        per_origin = by_origin.groupby(["policy", "target"])[col].sum()
        per_series = series.groupby(["policy", "target"])[col].sum()
        s = summary.set_index(["policy", "target"])[col]
        np.testing.assert_allclose(per_origin.loc[s.index], s, rtol=1e-9)
        np.testing.assert_allclose(per_series.loc[s.index], s, rtol=1e-9)
    # rates in [0, 1]; a higher target holds more stock, for each policy
    for col in ("fill_rate", "cycle_service_level", "rmsse", "interval_coverage"):
        assert summary[col].notna().all(), col
    assert ((summary.fill_rate >= 0) & (summary.fill_rate <= 1)).all()
    value = summary.set_index(["policy", "target"]).avg_on_hand_value
    assert value[("replenish", 0.95)] > value[("replenish", 0.7)]
    assert value[("classical", 0.95)] > value[("classical", 0.7)]
    assert set(by_origin.origin) == set(origins)
    res = json.loads((out / "backtest.json").read_text())
    assert res["excluded_new_series"] == 1 and res["service_measure"] == "cycle_service_level"
    assert res["unknown_periods"] == 5   # SKU-location days of unknown demand
    assert set(res["curves"]) == {"replenish", "classical"}
    assert "inventory_reduction_at_equal_service" in res

    # a rerun of the finished job redoes nothing and prints the same table
    stamp = (out / "summary.parquet").stat().st_mtime_ns
    assert main(argv) == 0
    assert capsys.readouterr().out == printed
    assert (out / "summary.parquet").stat().st_mtime_ns == stamp

    # the classical policy from AutoETS instead (statsforecast): same demand, its own stock
    monkeypatch.undo()   # training works again
    if __import__("importlib").util.find_spec("statsforecast") is not None:
        out2 = tmp_path / "bt_ets"
        argv2 = [a if a != str(out) else str(out2) for a in argv] + ["--classical", "ets"]
        assert main(argv2) == 0
        printed2 = capsys.readouterr().out
        ets = pq.read_table(out2 / "summary.parquet").to_pandas().set_index(["policy", "target"])
        assert read_manifest(out2)["settings"]["classical"] == "ets"
        np.testing.assert_allclose(ets.demand, h.loc[days, "demand"].sum())
        assert ets.loc[("classical", 0.95), "avg_on_hand_value"] > ets.loc[("classical", 0.7), "avg_on_hand_value"]
        # its forecasts are not the moving average's: the same origins score differently
        ets_origins = pq.read_table(out2 / "origins.parquet").to_pandas()
        key = ["policy", "target", "origin"]
        a = by_origin.set_index(key).rmsse.loc["classical"]
        b = ets_origins.set_index(key).rmsse.loc["classical"].loc[a.index]
        assert np.all(np.abs(a.to_numpy() - b.to_numpy()) > 1e-6)
        assert "classical" in printed2


def test_equal_service_reduction_interpolates_the_classical_curve():
    ours = [{"target": 0.9, "service": 0.91, "avg_on_hand_value": 80.0},
            {"target": 0.95, "service": 0.955, "avg_on_hand_value": 90.0}]
    classical = [{"target": 0.9, "service": 0.93, "avg_on_hand_value": 100.0},
                 {"target": 0.95, "service": 0.97, "avg_on_hand_value": 140.0},
                 {"target": 0.8, "service": 0.85, "avg_on_hand_value": 60.0}]
    r = equal_service_reduction(ours, classical, 0.95)
    # 0.955 lies 25/40 of the way from 0.93 to 0.97: 100 + 0.625 * 40 = 125
    assert r["classical_value"] == pytest.approx(125.0)
    assert r["reduction"] == pytest.approx(1 - 90 / 125)
    out = equal_service_reduction([{"target": 0.95, "service": 0.99, "avg_on_hand_value": 1.0}],
                                  classical, 0.95)
    assert out["reduction"] is None and "outside" in out["reason"]


def test_settings_are_checked():
    with pytest.raises(ValueError, match="target must be in"):
        BacktestSettings.build(targets="0.9,95")
    with pytest.raises(ValueError, match="unknown key"):
        BacktestSettings.build({"origin": 3})
    assert BacktestSettings.build(targets="0.8, 0.9").targets == (0.8, 0.9)


@pytest.mark.parametrize("option", ["network", "echelon", "dc_inventory", "budget"])
def test_chain_and_budget_options_are_refused_not_ignored(tmp_path, option):
    from replenish.jobs.config import PlanConfig
    cfg = PlanConfig(history=str(tmp_path / "h.parquet"), inventory=str(tmp_path / "i.parquet"),
                     out=str(tmp_path / "bt"), **{option: 100.0 if option == "budget" else "x.parquet"})
    flag = "--" + option.replace("_", "-")
    with pytest.raises(ValueError, match=f"backtest: {flag} cannot be backtested"):
        run_backtest(cfg)
    assert not (tmp_path / "bt").exists()

"""What a planner sees, on a real Dask LocalCluster with the real TFT: budgets across shards,
per-item forecast bias from an evaluate ledger, progress while it runs, and the report in a
real headless browser.

One cluster, one model and two plans (with and without a budget) serve the module. The
history has two locations, each split over two shards (``--shards 4``), so a location's
budget can only hold if it is applied over the shards' candidates together.
"""
from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from replenish.engine.contract import ColumnMap, DataError
from replenish.jobs import _progress
from replenish.jobs._sharding import ShardPlan
from replenish.jobs.config import PlanConfig
from replenish.jobs.evaluate import evaluate_run
from replenish.jobs.plan import read_manifest, read_output, run_plan
from replenish.kernels import allocate_budget
from tests.conftest import make_history

pytestmark = pytest.mark.slow

TINY = {"horizon": 7, "encoder_length": 14, "hidden_size": 8, "attention_heads": 1,
        "max_steps": 20, "val_every": 10, "batch_size": 64, "seed": 0}
COLS = ColumnMap(observed=("price", "promo"), static=("category",))
N_SERIES, DAYS, CUT = 24, 60, 53


def _inventory(history: pa.Table, seed: int = 1) -> pa.Table:
    keys = history.select(["sku", "location"]).group_by(["sku", "location"]).aggregate([])
    keys = keys.sort_by([("sku", "ascending"), ("location", "ascending")])
    n = keys.num_rows
    rng = np.random.default_rng(seed)
    return keys.append_column("on_hand", pa.array(rng.uniform(0, 30, n).round())) \
        .append_column("on_order", pa.array(np.zeros(n))) \
        .append_column("lead_time_days", pa.array(rng.integers(2, 6, n).astype(float))) \
        .append_column("lead_time_std_days", pa.array(np.full(n, 1.0))) \
        .append_column("review_period_days", pa.array(np.full(n, 3.0))) \
        .append_column("service_level", pa.array(rng.uniform(0.8, 0.98, n))) \
        .append_column("unit_cost", pa.array(rng.uniform(1, 9, n).round(2))) \
        .append_column("case_pack", pa.array(rng.choice([1.0, 4.0], n))) \
        .append_column("buyer", pa.array(np.array(["north", "south", "west"])[np.arange(n) % 3]))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("planner")
    full = make_history(n_series=N_SERIES, n_days=DAYS, seed=5)
    cut = np.datetime64("2024-01-01") + CUT
    hist = full.filter(pc.less(full.column("date"), pa.scalar(cut.astype("datetime64[D]").item(), pa.date32())))
    (d / "history").mkdir()
    pq.write_table(hist, d / "history" / "h.parquet")
    pq.write_table(full, d / "full.parquet")
    pq.write_table(_inventory(hist), d / "inventory.parquet")
    return {"dir": d, "history": hist, "full": full}


@pytest.fixture(scope="module")
def trained(client, data, tmp_path_factory):
    out = tmp_path_factory.mktemp("train")
    buf = io.StringIO()
    _progress.set_mode("bars", stream=buf)
    try:
        run_plan(PlanConfig(history=str(data["dir"] / "history"), out=str(out), columns=COLS,
                            forecast=dict(TINY), shards=4), stages=("train",), client=client)
    finally:
        _progress.set_mode(None)
    return {"model": out / "model", "progress": buf.getvalue()}


def _cfg(data, out, model, **kw):
    base = dict(history=str(data["dir"] / "history"), inventory=str(data["dir"] / "inventory.parquet"),
                out=str(out), columns=COLS, forecast=dict(TINY), shards=4, model=str(model),
                n_samples=300)
    base.update(kw)
    return PlanConfig(**base)


def _orders(out) -> pd.DataFrame:
    return read_output(out, "orders").to_pandas().sort_values(["sku", "location"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def runs(client, data, trained, tmp_path_factory):
    """An unconstrained plan, its evaluation (ledger), and a plan under a budget with it."""
    root = tmp_path_factory.mktemp("runs")
    free = root / "free"
    run_plan(_cfg(data, free, trained["model"]), stages=("forecast", "optimize"), client=client)
    ledger = root / "accuracy.parquet"
    evaluate_run(free, str(data["dir"] / "full.parquet"), root / "eval", ledger=ledger)
    planned = _orders(free)
    spend = planned.assign(v=planned.order_quantity * planned.unit_cost).groupby("location").v.sum()
    budget = float(0.5 * spend.min())
    capped = root / "budget"
    buf = io.StringIO()
    _progress.set_mode("quiet", stream=buf)
    try:
        summary = run_plan(_cfg(data, capped, trained["model"], budget=budget, ledger=str(ledger),
                                report=True), stages=("forecast", "optimize"), client=client)
    finally:
        _progress.set_mode(None)
    return {"free": free, "capped": capped, "budget": budget, "ledger": ledger,
            "eval": root / "eval", "summary": summary, "quiet_log": buf.getvalue()}


def test_each_location_spans_two_shards(runs):
    plan = ShardPlan.from_json(read_manifest(runs["capped"])["shard_plan"])
    assert {loc: len(s) for loc, s in plan.units.items()} == {"L0": 2, "L1": 2}


def test_budget_holds_per_location_across_shards_and_equals_one_allocation(runs):
    free, got = _orders(runs["free"]), _orders(runs["capped"])
    budget = runs["budget"]
    np.testing.assert_array_equal(got.planned_quantity, free.order_quantity)
    spend = got.assign(v=got.order_quantity * got.unit_cost).groupby("location").v.sum()
    assert (spend <= budget * (1 + 1e-9)).all(), spend
    assert (spend > 0.8 * budget).all(), spend         # the budget is used, not wasted
    # the reference: one allocation over all items of the run, grouped by location
    code = pd.factorize(got.location)[0]
    ref = allocate_budget(free.order_quantity.to_numpy(), group=code,
                          demand_mean=free.protection_demand_mean.to_numpy(),
                          demand_std=free.protection_demand_std.to_numpy(),
                          position=free.inventory_position.to_numpy(),
                          unit_cost=free.unit_cost.to_numpy(), stockout_cost=free.unit_cost.to_numpy(),
                          budget=np.full(code.max() + 1, budget), case_pack=free.case_pack.to_numpy(),
                          moq=free.moq.to_numpy())
    np.testing.assert_allclose(got.order_quantity, ref, rtol=1e-6, atol=1e-6)
    # per shard, each shard would have spent up to the whole budget: the location overspends
    m = read_manifest(runs["free"])
    plan = ShardPlan.from_json(m["shard_plan"])
    shard = plan.assign(free.sku.to_numpy(), free.location.to_numpy())
    per_shard = np.zeros(len(free))
    for s in np.unique(shard):
        i = shard == s
        per_shard[i] = allocate_budget(
            free.order_quantity[i].to_numpy(), group=code[i], demand_mean=free.protection_demand_mean[i].to_numpy(),
            demand_std=free.protection_demand_std[i].to_numpy(), position=free.inventory_position[i].to_numpy(),
            unit_cost=free.unit_cost[i].to_numpy(), stockout_cost=free.unit_cost[i].to_numpy(),
            budget=np.full(code.max() + 1, budget), case_pack=free.case_pack[i].to_numpy(),
            moq=free.moq[i].to_numpy())
    over = pd.Series(per_shard * free.unit_cost).groupby(free.location).sum()
    assert (over > budget * 1.2).any(), over
    # the cut orders say so, and raise capped_budget exceptions
    cut = got.order_quantity < got.planned_quantity - 1e-9
    assert cut.any() and (got.binding_rule[cut] == "budget").all()
    np.testing.assert_allclose(got.order_value, got.order_quantity * got.unit_cost)
    exc = pq.read_table(runs["capped"] / "exceptions").to_pandas()
    assert set(exc.sku[exc.reason == "capped_budget"]) == set(got.sku[cut])
    b = runs["summary"]["budget"]
    assert b["kind"] == "budget" and b["groups_limited"] == 2 and b["orders_cut"] == int(cut.sum())


def test_capacity_per_group_from_a_table_spans_locations_and_shards(client, data, trained, runs,
                                                                    tmp_path):
    free = _orders(runs["free"])
    inv = pq.read_table(data["dir"] / "inventory.parquet").to_pandas()
    free = free.merge(inv[["sku", "location", "buyer"]], on=["sku", "location"])
    caps = {"north": 0.4, "south": 0.6}            # "west" is not in the table: unlimited
    units = free.groupby("buyer").order_quantity.sum()
    table = pa.table({"group": list(caps), "capacity": [float(np.floor(f * units[g])) for g, f in caps.items()]})
    # a group no item has limits nothing: the job says so (a warning, counted in the manifest)
    pq.write_table(pa.concat_tables([table, pa.table({"group": ["east"], "capacity": [1.0]})]),
                   tmp_path / "caps.parquet")
    out = tmp_path / "cap"
    run_plan(_cfg(data, out, trained["model"], budget_table=str(tmp_path / "caps.parquet"),
                  budget_group="buyer"), stages=("forecast", "optimize"), client=client)
    got = _orders(out)
    assert read_manifest(out)["budget"]["table_rows_unmatched"] == 1
    assert (got.budget_group.to_numpy() == free.buyer.to_numpy()).all()
    used = got.groupby("budget_group").order_quantity.sum()
    limit = dict(zip(table.column("group").to_pylist(), table.column("capacity").to_pylist()))
    for g, c in limit.items():
        assert used[g] <= c + 1e-9 and used[g] > 0.7 * c, (g, used[g], c)
    west = got.budget_group == "west"
    np.testing.assert_array_equal(got.order_quantity[west], free.order_quantity[west])
    code, names = pd.factorize(got.budget_group)
    lim = np.array([limit.get(n, np.inf) for n in names])
    ref = free.order_quantity.to_numpy().copy()
    use = np.isfinite(lim[code])
    ref[use] = allocate_budget(
        free.order_quantity[use].to_numpy(), group=code[use], demand_mean=free.protection_demand_mean[use].to_numpy(),
        demand_std=free.protection_demand_std[use].to_numpy(), position=free.inventory_position[use].to_numpy(),
        stockout_cost=free.unit_cost[use].to_numpy(), capacity=np.where(np.isfinite(lim), lim, 0),
        case_pack=free.case_pack[use].to_numpy(), moq=free.moq[use].to_numpy())
    np.testing.assert_allclose(got.order_quantity, ref, rtol=1e-6, atol=1e-6)


def test_a_budget_table_of_other_locations_stops_the_job_before_any_work(client, data, trained,
                                                                        tmp_path):
    """Locations written as other ids (2 for 'L2', or ids of another run) match no location:
    every order would stay uncut under a budget that seems set. An error at staging."""
    pq.write_table(pa.table({"location": [0, 1], "budget": [100.0, 100.0]}), tmp_path / "b.parquet")
    out = tmp_path / "b"
    with pytest.raises(DataError, match=r"budget table .*column 'location': rule 'names a location "
                                        r"of the run' broken by all 2 rows \(e.g. '0', '1'; the "
                                        r"run's locations are e.g. 'L0', 'L1'\)"):
        run_plan(_cfg(data, out, trained["model"], budget_table=str(tmp_path / "b.parquet")),
                 stages=("forecast", "optimize"), client=client)
    assert not (out / "orders").exists()


def test_forecast_bias_of_the_ledger_reaches_the_orders(runs):
    series = pq.read_table(runs["eval"] / "series.parquet").to_pandas()
    want = (series.forecast_median / series.demand - 1).where(series.demand > 0)
    got = _orders(runs["capped"]).merge(series.assign(want=want)[["sku", "location", "want", "rmsse"]],
                                        on=["sku", "location"])
    np.testing.assert_allclose(got.forecast_bias, got.want, rtol=1e-9, equal_nan=True)
    np.testing.assert_allclose(got.forecast_rmsse, got.rmsse, rtol=1e-9, equal_nan=True)
    assert read_manifest(runs["capped"])["config"]["ledger"] == str(runs["ledger"])


def test_progress_shows_training_steps_loss_and_time_left_and_quiet_is_few_lines(trained, runs):
    text = trained["progress"]
    assert re.search(r"training.*\d+/20 .*loss \d+\.\d+, best val \d+\.\d+, left \d+:\d\d", text), text[-800:]
    assert re.search(r"staging.*2/2 .*rows", text) or re.search(r"staging.*1/1 .*rows", text), text
    quiet = runs["quiet_log"]
    assert "\r" not in quiet and "%|" not in quiet
    assert len(quiet.splitlines()) <= 6, quiet
    assert re.search(r"forecast\+optimize: 4 shards done in [\d.]+ s, 24 series", quiet), quiet


# ---- the report ---------------------------------------------------------------------------

def _backtest(d: Path) -> Path:
    """A backtest output of the lead's schema (issue 12), made by hand."""
    rows = []
    for policy, scale in (("replenish", 1.0), ("classical", 1.3)):
        for t in (0.8, 0.9, 0.95, 0.98):
            oh = scale * (40 + 25 * t)
            rows.append(dict(policy=policy, target=t, fill_rate=min(0.999, t + 0.02), cycle_service_level=t - 0.01,
                             avg_on_hand_units=oh, avg_on_hand_value=3 * oh, stockout_days=50 * (1 - t),
                             expired_units=0.0, holding_cost=0.01 * oh, stockout_cost=90 * (1 - t),
                             ordering_cost=5.0, waste_cost=0.0, total_cost=0.01 * oh + 90 * (1 - t) + 5))
    d.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), d / "summary.parquet")
    (d / "backtest.json").write_text(json.dumps({"inventory_reduction_at_equal_service": 0.23}))
    return d


def test_report_numbers_read_as_a_planner_writes_them():
    from replenish.jobs.report import _e
    assert [_e(v) for v in (311.0, 4586.4, 128000.0, 0.95, 12.345, 250.5, float("inf"),
                            float("nan"), 9.05, 0.9875, 73.0001)] == [
        "311", "4,586", "128,000", "0.95", "12.35", "250.5", "inf", "-", "9.05", "0.988", "73"]
    from replenish.jobs._charts import _tick
    assert [_tick(v) for v in (65000.0, 1e10, 0.25, 10.0)] == ["65,000", "10,000,000,000",
                                                            "0.25", "10"]


def test_report_renders_in_a_headless_browser(runs, tmp_path):
    from replenish.jobs.cli import main
    from replenish.jobs.report import SECTIONS
    from tests.jobs._browser import Browser, chromium_or_skip
    assert (runs["capped"] / "report.html").exists()           # plan --report wrote one
    path = tmp_path / "report.html"
    assert main(["report", str(runs["capped"]), "--ledger", str(runs["ledger"]), "--backtest",
                 str(_backtest(tmp_path / "backtest")), "--out", str(path), "--items", "3"]) == 0
    text = path.read_text()
    assert "http://" not in text and "https://" not in text and "<script" not in text
    assert len(text) < 3_000_000
    import re   # the items' facts speak whole units: "1 day", "reviewed daily", never "1 days"
    assert "reviewed daily" in text or "review every" in text
    assert not re.search(r"(?<![\d.,])1 days", text)
    words = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", text)   # numbers as a planner
    assert not re.search(r"\d\.\d+e[+-]\d", words) and not re.search(r"\d\.00\b", words)
    binary = chromium_or_skip()
    with Browser(binary) as b:
        b.open(path)
        info = b.evaluate("""JSON.stringify({
            sections: [...document.querySelectorAll('section')].map(s => s.id),
            images: [...document.images].map(i => ({alt: i.alt, done: i.complete,
                     w: i.naturalWidth, h: i.naturalHeight, section: i.closest('section').id}))})""")
        info = json.loads(info)
        shot = b.screenshot(tmp_path / "report.png")
        requests = b.requests()
    assert info["sections"] == list(SECTIONS)
    imgs = info["images"]
    assert imgs and all(i["done"] and i["w"] > 0 and i["h"] > 0 for i in imgs), imgs
    with_images = {i["section"] for i in imgs}
    assert with_images == set(SECTIONS) - {"summary"}, with_images
    assert sum(i["section"] == "top-exceptions" for i in imgs) == 3
    # nothing fetched but the file itself and its embedded pictures
    assert all(u.startswith(("file://", "data:image/png;base64,")) for u in requests), requests
    from PIL import Image
    with Image.open(shot) as im:
        assert im.size[0] == 1280 and im.size[1] > 2000
    print(f"report screenshot: {shot}")


def test_report_size_does_not_grow_with_the_items(runs, tmp_path):
    """Aggregates plus a fixed number of items: 200,000 more SKU-locations leave the size."""
    import shutil

    from replenish.jobs.report import write_report
    small = write_report(runs["capped"], out=tmp_path / "small.html", items=3).stat().st_size
    big = tmp_path / "big"
    shutil.copytree(runs["capped"], big)
    k = 200_000
    for name in ("orders", "exceptions"):
        src = next((big / name).rglob("part-*.parquet"))
        t = pq.read_table(src)
        reps = pa.concat_tables([t] * (k // t.num_rows + 1)).slice(0, k)
        sku = pa.array([f"X{i}" for i in range(k)])
        reps = reps.set_column(reps.column_names.index("sku"), "sku", sku)
        if name == "exceptions":   # less money than the real ones: they stay on top
            reps = reps.set_column(reps.column_names.index("value"), "value",
                                   pc.multiply(reps.column("value"), 1e-6))
        pq.write_table(reps, src.with_name("part-99999.parquet"))
    path = write_report(big, out=tmp_path / "big.html", items=3)
    size = path.stat().st_size
    assert size < 2_000_000 and abs(size - small) < 0.05 * small, (size, small)
    assert "200,024" in path.read_text()      # the summary counts every SKU-location

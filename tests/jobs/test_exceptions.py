"""Exceptions and explained orders through the job's own path (``_tasks.optimize`` ->
``exceptions``): every reason raised by a crafted SKU-location, none by a neutral one;
thresholds from the TOML config; the ledger's per-item bias."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy import stats

from replenish.engine.contract import INVENTORY_COLUMNS
from replenish.engine.panel import Panel
from replenish.jobs import exceptions as exc
from replenish.jobs._tasks import optimize
from replenish.jobs.budget import requantify
from replenish.jobs.config import PlanConfig
from replenish.kernels import EXCEPTION_CODES

LEVELS = np.array([0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99])
H = 14

# name -> (inventory changes, history length, trailing days without demand, bias)
ITEMS = {
    "neutral": ({}, 400, 0, 0.05),
    "expedite": ({"on_hand": 10.0}, 400, 0, 0.0),
    "order_today": ({"on_hand": 25.0}, 400, 0, 0.0),
    "excess": ({"on_hand": 100.0}, 400, 0, 0.0),
    "no_demand": ({}, 400, 70, 0.0),
    "moq_inflated": ({"on_hand": 25.0, "moq": 30.0}, 400, 0, 0.0),
    "case_pack_inflated": ({"on_hand": 25.0, "case_pack": 24.0}, 400, 0, 0.0),
    "capped_max_order": ({"on_hand": 22.0, "max_order": 3.0}, 400, 0, 0.0),
    "capped_budget": ({"on_hand": 24.0}, 400, 0, 0.0),
    "forecast_bias": ({}, 400, 0, 0.5),
    "new_item": ({}, 20, 0, 0.0),
}


def _case(settings=None):
    names = list(ITEMS)
    n = len(names)
    lengths = np.array([ITEMS[k][1] for k in names])
    demand = []
    for k in names:
        d = np.full(ITEMS[k][1], 5.0, np.float32)
        if ITEMS[k][2]:
            d[-ITEMS[k][2]:] = 0
        demand.append(d)
    end = np.datetime64("2024-06-30")
    panel = Panel(sku=np.arange(n) + 100, location=np.array(["L1"] * n, dtype=object),
                  start=end - (lengths - 1).astype("timedelta64[D]"),
                  indptr=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                  demand=np.concatenate(demand), freq="D")
    # the same forecast for every item: normal, mean 5, sd 1.5 per day
    q = np.broadcast_to(5.0 + 1.5 * stats.norm.ppf(LEVELS), (n, H, len(LEVELS))).astype(np.float32)
    inv = {k: np.full(n, np.nan if d is None else d, np.float64) for k, (d, _) in INVENTORY_COLUMNS.items()}
    inv.update(on_hand=np.full(n, 35.0), on_order=np.zeros(n), lead_time_days=np.full(n, 4.0),
               service_level=np.full(n, 0.9), unit_cost=np.full(n, 3.0))
    for i, k in enumerate(names):
        for col, v in ITEMS[k][0].items():
            inv[col][i] = v
    spec = {"target": "csl", "method": "normal", "n_samples": 100, "seed": 0,
            "exceptions": dict(settings or {})}
    acc = {"forecast_bias": np.array([ITEMS[k][3] for k in names]),
           "forecast_rmsse": np.full(n, 0.7)}
    orders = optimize(panel, LEVELS, q, inv, spec, accuracy=acc)
    # the budget pass cuts one order (as apply_budget does across shards)
    qty = orders.column("order_quantity").to_numpy().copy()
    i = names.index("capped_budget")
    assert qty[i] > 4
    qty[i] = 4.0
    orders = exc.with_exception_columns(requantify(orders, qty),
                                        exc.ExceptionSettings.from_mapping(settings))
    return names, orders


def test_each_crafted_item_raises_its_reason_and_the_neutral_one_none():
    names, orders = _case()
    rows = exc.exception_rows(orders, exc.ExceptionSettings())
    raised: dict[int, set[str]] = {}
    for sku, reason in zip(rows.column("sku").to_pylist(), rows.column("reason").to_pylist()):
        raised.setdefault(sku - 100, set()).add(reason)
    assert 0 not in raised, raised.get(0)
    for i, name in enumerate(names[1:], start=1):
        assert name in raised.get(i, set()), (name, raised.get(i))
    assert set(EXCEPTION_CODES) <= {r for s in raised.values() for r in s}
    # ranked by money; orders.exception is each item's most valuable reason
    v = rows.column("value").to_numpy()
    assert (np.diff(v) <= 0).all() and (v >= 0).all()
    top = orders.column("exception").to_pylist()
    assert top[0] is None
    for i in range(1, len(names)):
        mine = rows.filter(pa.compute.equal(rows.column("sku"), 100 + i))
        assert top[i] == mine.column("reason")[0].as_py()
        assert orders.column("exception_value")[i].as_py() == pytest.approx(mine.column("value")[0].as_py())
    rule = dict(zip(names, orders.column("binding_rule").to_pylist()))
    assert rule["moq_inflated"] == "moq" and rule["case_pack_inflated"] == "case_pack"
    assert rule["capped_max_order"] == "max_order" and rule["capped_budget"] == "budget"
    assert rule["neutral"] == "none"


def test_explained_columns_of_the_orders():
    names, o = _case()
    t = {c: o.column(c).to_numpy(zero_copy_only=False) for c in o.column_names}
    parts = t["pipeline_stock"] + t["cycle_stock"] + t["safety_stock_demand"] + t["safety_stock_lead_time"]
    np.testing.assert_allclose(parts, t["order_up_to"], rtol=1e-6)
    np.testing.assert_allclose(t["pipeline_stock"], 5.0 * 4, rtol=0.02)   # mean 5/day x 4 days
    np.testing.assert_allclose(t["demand_per_day"], t["pipeline_stock"] / 4, rtol=0.02)
    np.testing.assert_allclose(t["days_of_supply_on_hand"], t["on_hand"] / t["demand_per_day"])
    np.testing.assert_allclose(t["days_of_supply_after_order"],
                               (t["inventory_position"] + t["order_quantity"]) / t["demand_per_day"])
    # 35 units at about 5 a day: out in the 8th day (the forecast's mean is slightly above 5)
    i = names.index("neutral")
    assert str(t["stockout_date"][i]) == "2024-07-07"
    assert t["history_days"][names.index("new_item")] == 20
    assert t["days_since_demand"][names.index("no_demand")] == 70
    assert t["days_since_demand"][i] == 0


def test_thresholds_come_from_the_config(tmp_path):
    names, orders = _case({"no_demand_days": 90, "new_item_days": 10, "bias_threshold": 0.6})
    rows = exc.exception_rows(orders, exc.ExceptionSettings.from_mapping(
        {"no_demand_days": 90, "new_item_days": 10, "bias_threshold": 0.6}))
    reasons = set(rows.column("reason").to_pylist())
    assert not reasons & {"no_demand", "new_item", "forecast_bias"}
    toml = tmp_path / "job.toml"
    toml.write_text("[exceptions]\nno_demand_days = 90\nexcess_days_of_supply = 30\n"
                    "[budget]\ncapacity = 500\ngroup = 'buyer'\n")
    from replenish.jobs.config import load_toml
    cfg = PlanConfig.build(load_toml(toml))
    assert cfg.exceptions == {"no_demand_days": 90, "excess_days_of_supply": 30}
    assert cfg.capacity == 500 and cfg.budget_group == "buyer" and cfg.budget is None
    with pytest.raises(ValueError, match="unknown key"):
        PlanConfig.build({"exceptions": {"no_demand": 3}})
    with pytest.raises(ValueError, match=">= 0"):
        PlanConfig.build({"exceptions": {"no_demand_days": -1}})
    with pytest.raises(ValueError, match="unknown key"):
        PlanConfig.build({"budget": {"limit": 3}})


def test_ledger_bias_over_recent_runs(tmp_path):
    # three evaluation folders, oldest first; bias over the 2 most recent
    rng = np.random.default_rng(0)
    keys = [(9, "A"), (9, "B"), (10, "A")]
    folders, frames = [], []
    for r in range(3):
        d = tmp_path / f"eval{r}"
        d.mkdir()
        dem = rng.uniform(10, 50, 3)
        med = dem * rng.uniform(0.5, 1.6, 3)
        pq.write_table(pa.table({"sku": [k[0] for k in keys], "location": [k[1] for k in keys],
                                 "demand": dem, "forecast_median": med,
                                 "rmsse": rng.uniform(0.3, 1.2, 3)}), d / "series.parquet")
        folders.append(str(d))
        frames.append((dem, med))
    ledger = tmp_path / "ledger.parquet"
    pq.write_table(pa.table({"evaluation": folders, "rmsse": [0.5, 0.6, 0.7]}), ledger)
    t = exc.ledger_accuracy(ledger, runs=2)
    got = {(s, loc): b for s, loc, b in zip(t.column("sku").to_pylist(), t.column("location").to_pylist(),
                                            t.column("forecast_bias").to_pylist())}
    dem = frames[1][0] + frames[2][0]
    med = frames[1][1] + frames[2][1]
    for j, (s, loc) in enumerate(keys):
        assert got[(str(s), loc)] == pytest.approx(med[j] / dem[j] - 1)
    assert t.column("evaluations").to_pylist() == [2, 2, 2]

"""A messy weekly data set of another shape, end to end through ``replenish.plan``.

Weekly periods, the retailer's own column names, integer SKU ids, string dates, returns
(negative sales), missing sales, missing prices, boolean promotions, event names (a
categorical covariate, mostly empty), a gap of three weeks,
a series only three weeks old, pandas inputs: every repair is applied, counted and reported;
every series gets forecasts and an order line.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import replenish
from replenish.jobs.plan import read_output

pytestmark = pytest.mark.slow

WEEKS, HORIZON = 40, 6
TINY = {"horizon": HORIZON, "encoder_length": 12, "hidden_size": 8, "attention_heads": 1,
        "max_steps": 10, "batch_size": 32, "seed": 0, "device": "cpu"}
COLUMNS = {"sku": "item_id", "location": "store_id", "date": "week_start", "demand": "units_sold",
           "observed": ["price", "on_promo", "event"], "static": ["dept"],
           "categorical": ["event"]}


def _messy(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    rng = np.random.default_rng(seed)
    monday = pd.Timestamp("2024-01-01")
    rows = []
    for i in range(12):
        item, store = 100 + i // 2, f"S{i % 2}"
        weeks = range(WEEKS - 3, WEEKS) if i == 0 else range(WEEKS)   # a new item: 3 weeks
        for w in weeks:
            if i == 1 and 10 <= w < 13:                                 # 3 weeks not reported
                continue
            rows.append({"item_id": item, "store_id": store,
                         "week_start": (monday + pd.Timedelta(weeks=w)).strftime("%Y-%m-%d"),
                         "units_sold": float(rng.poisson(20 + 5 * i)),
                         "price": float(rng.uniform(1, 3)), "on_promo": bool(rng.random() < 0.2),
                         "dept": f"D{i % 3}",
                         # one item's own event, one for all: shards see different labels
                         "event": "clearance" if i == 5 and w > 30 else
                         "Easter" if w == 13 else None})
    hist = pd.DataFrame(rows).sample(frac=1.0, random_state=seed).reset_index(drop=True)  # any order
    at = rng.choice(np.flatnonzero(hist["item_id"] != 100), 15, replace=False)
    hist.loc[at[:5], "units_sold"] = -2.0        # returns
    hist.loc[at[5:9], "units_sold"] = np.nan     # missing sales
    hist.loc[at[9:], "price"] = np.nan           # missing prices
    keys = hist[["item_id", "store_id"]].drop_duplicates().reset_index(drop=True)
    inv = keys.assign(on_hand=rng.uniform(0, 100, len(keys)).round(), on_order=0.0,
                      lead_time_days=rng.choice([7.0, 14.0], len(keys)),
                      review_period_days=7.0, case_pack=6.0)
    # the gap's 3 weeks have no rows: their covariates follow the gap rules (price
    # interpolated, on_promo a flag: 0, event the missing label), the 6 missing prices of
    # rows that are there come from their series' own rows
    expect = {"negative_clipped": 5, "missing_demand_zeroed": 4, "gaps_filled": 3,
              "filled:price": 6, "gap_fill:price": 3, "gap_fill:on_promo": 3,
              "gap_fill:event": 3}
    return hist, inv, expect


def test_messy_weekly_data_end_to_end(client, tmp_path):
    hist, inv, expect = _messy()
    out = tmp_path / "plan"
    res = replenish.plan(hist, inv, out=out, columns=COLUMNS, negative="clip",
                         missing_demand="zero", forecast=TINY, n_samples=200, client=client,
                         return_tables=True)
    assert res["series"] == 12
    assert res["repairs"] == expect
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and (out / "_SUCCESS").exists()
    spec = json.loads((out / "model" / "model.json").read_text())["spec"]
    assert spec["categorical"] == ["event"]     # labels of every shard are classes
    assert {"", "Easter", "clearance"} <= set(spec["classes"]["observed__event"])

    f = res["forecasts"].to_pandas()
    assert len(f) == 12 * HORIZON
    assert {"item_id", "store_id"} <= set(f.columns) or {"sku", "location"} <= set(f.columns)
    sku_col = "item_id" if "item_id" in f.columns else "sku"
    loc_col = "store_id" if "store_id" in f.columns else "location"
    last = pd.to_datetime(hist["week_start"]).groupby([hist["item_id"], hist["store_id"]]).max()
    for (sku, loc), g in f.groupby([sku_col, loc_col]):
        dates = pd.to_datetime(g["date"]).sort_values().to_numpy()
        assert (np.diff(dates) == np.timedelta64(7, "D")).all()              # weekly
        assert dates[0] == last[(int(sku), str(loc))] + pd.Timedelta(weeks=1)
    q = f[[c for c in f.columns if c.startswith("q")]].to_numpy()
    assert np.isfinite(q).all() and (q >= 0).all() and (np.diff(q, axis=1) >= -1e-5).all()

    o = read_output(out, "orders").to_pandas()
    assert len(o) == 12
    assert set(zip(o[sku_col].astype(int), o[loc_col].astype(str))) == \
        set(zip(inv["item_id"], inv["store_id"]))
    qty = o["order_quantity"].to_numpy()
    assert (qty >= 0).all() and np.allclose(qty % 6, 0)
    assert (o["reorder_point"] >= 0).all() and (o["order_up_to"] >= o["reorder_point"] - 1e-6).all()
    assert (pd.to_datetime(o["as_of"]).dt.dayofweek == 0).all()               # the next Monday


def test_messy_data_without_repairs_fails_naming_the_rule(client, tmp_path):
    hist, inv, _ = _messy()
    with pytest.raises(Exception, match=r"column 'units_sold': rule 'demand must be a finite "
                                        r"number' broken by 4 rows"):
        replenish.plan(hist, inv, out=tmp_path / "strict", columns=COLUMNS, forecast=TINY,
                       client=client)


def test_weekly_data_get_weekly_default_horizon_and_encoder(client, tmp_path):
    # no horizon or encoder length given: a quarter ahead (12 weeks) and a year back (52)
    hist, inv, _ = _messy(seed=1)
    small = {k: v for k, v in TINY.items() if k not in ("horizon", "encoder_length")}
    out = tmp_path / "defaults"
    res = replenish.plan(hist, inv, out=out, columns=COLUMNS, negative="clip", missing_demand="zero",
                         forecast=small, n_samples=200, client=client, return_tables=True)
    config = json.loads((out / "model" / "model.json").read_text())["config"]
    assert config["horizon"] == 12 and config["encoder_length"] == 52
    f = res["forecasts"].to_pandas()
    assert len(f) == 12 * 12 and f.groupby(["sku", "location"]).size().eq(12).all()


def test_known_event_names_with_a_future_table(client, tmp_path):
    """Event names as a known categorical covariate: the future table brings the horizon's
    events, including a label never seen in the history (the model's unknown class)."""
    hist, inv, _ = _messy(seed=2)
    hist = hist.dropna(subset=["units_sold"]).query("units_sold >= 0")
    last = pd.to_datetime(hist["week_start"]).max()
    keys = hist[["item_id", "store_id"]].drop_duplicates()
    fut = pd.concat([keys.assign(week_start=(last + pd.Timedelta(weeks=k)).strftime("%Y-%m-%d"),
                                 event={1: "Easter", 2: "Anniversary"}.get(k))
                     for k in range(1, HORIZON + 1)])
    cols = {**COLUMNS, "observed": ["price", "on_promo"], "known": ["event"]}
    out = tmp_path / "known_events"
    res = replenish.plan(hist, inv, out=out, future=fut, columns=cols, forecast=TINY,
                         n_samples=200, client=client, return_tables=True)
    spec = json.loads((out / "model" / "model.json").read_text())["spec"]
    assert spec["known"] == ["event"] and spec["categorical"] == ["event"]
    assert "Anniversary" not in spec["classes"]["known__event"]
    assert "Easter" in spec["classes"]["known__event"]
    f = res["forecasts"].to_pandas()
    assert len(f) == 12 * HORIZON
    q = f[[c for c in f.columns if c.startswith("q")]].to_numpy()
    assert np.isfinite(q).all() and (np.diff(q, axis=1) >= -1e-5).all()
    assert len(res["orders"]) == 12


def test_missing_weeks_are_unknown_and_weekly_plans_review_once_a_week(client, tmp_path):
    """--gaps missing through the job: the 3 unreported weeks are counted as unknown, every
    series is forecast for every week; an inventory without review_period_days is reviewed
    weekly (7 days) in a weekly plan; evaluate leaves an unknown week out of its scores."""
    from replenish.jobs.evaluate import evaluate_run
    hist, inv, _ = _messy(seed=3)
    new = lambda t: (t["item_id"] == 100) & (t["store_id"] == "S0")   # the 3-week-old item
    hist = hist[~new(hist)].reset_index(drop=True)
    inv = inv[~new(inv)].drop(columns=["review_period_days"])
    week = pd.to_datetime(hist["week_start"])
    cut = pd.Timestamp("2024-01-01") + pd.Timedelta(weeks=WEEKS - HORIZON)
    out = tmp_path / "plan"
    res = replenish.plan(hist[week < cut], inv, out=out, columns=COLUMNS, negative="clip",
                         missing_demand="zero", gaps="missing", forecast=TINY, n_samples=200,
                         client=client, return_tables=True)
    assert res["repairs"]["gaps_missing"] == 3 and "gaps_filled" not in res["repairs"]
    spec = json.loads((out / "model" / "model.json").read_text())["spec"]
    assert spec["missing_indicator"] and "demand_missing" in spec["x_reals"]
    f = res["forecasts"].to_pandas()
    q = f[[c for c in f.columns if c.startswith("q")]].to_numpy()
    assert len(f) == 11 * HORIZON and np.isfinite(q).all() and (q >= 0).all()
    o = res["orders"].to_pandas()
    assert (o["review_period_days"] == 7.0).all()       # weekly data: reviewed once a week
    # the actuals: one week of one series unreported; read as unknown it is not scored
    drop = np.flatnonzero((week >= cut).to_numpy() & (hist["item_id"] == 103).to_numpy())[:1]
    now = hist.drop(index=drop)
    cols = {k: v for k, v in COLUMNS.items() if k in ("sku", "location", "date", "demand")}
    from replenish.engine.contract import ColumnMap
    cm = ColumnMap.from_mapping(cols)
    unknown = evaluate_run(out, now, columns=cm, negative="clip", missing_demand="zero",
                           gaps="missing")
    zero = evaluate_run(out, now, columns=cm, negative="clip", missing_demand="zero")
    assert unknown["periods"] == 11 * HORIZON - 1 and zero["periods"] == 11 * HORIZON
    assert unknown["rmsse"] != zero["rmsse"]

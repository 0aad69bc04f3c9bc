"""``replenish plan --network N --dc-inventory D`` on a real 2-worker LocalCluster with the
real TFT: a three-level chain (RDC -> 2 DCs -> 6 stores) for 3 SKUs, checked against an
independent rebuild of the placement (tree_placement and stockpyl from the forecasts table),
of the DCs' base stocks (interval moments of their stores) and of the echelon orders."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy.stats import norm

from replenish.engine.contract import ColumnMap, DataError
from replenish.jobs.config import PlanConfig
from replenish.jobs.plan import read_manifest, read_output, run_plan

pytestmark = pytest.mark.slow

TINY = {"horizon": 14, "encoder_length": 14, "hidden_size": 8, "attention_heads": 1,
        "max_steps": 10, "batch_size": 64, "seed": 0}
STORES = ["L0", "L1", "L2", "L3", "L4", "L5"]
SKUS = ["A", "B", "C"]


def _network() -> pa.Table:
    return pa.table({
        "node": ["RDC", "D1", "D2"] + STORES,
        "parent": [None, "RDC", "RDC", "D1", "D1", "D1", "D2", "D2", "D2"],
        "lead_time_days": [9.0, 2.0, 3.0] + [None] * 6,
        "holding_cost_per_day": [0.001, 0.002, None] + [None] * 6,
        "service_days": [None] * 3 + [0.0, 1.0, 0.0, 0.0, 0.0, 0.0]})


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("net")
    rng = np.random.default_rng(0)
    days = 50
    rows = []
    for s in SKUS:
        for loc in STORES:
            lam = rng.uniform(3, 20)
            rows.append(pd.DataFrame({"sku": s, "location": loc,
                                      "date": pd.date_range("2024-01-01", periods=days),
                                      "demand": rng.poisson(lam, days).astype(float)}))
    hist = pa.Table.from_pandas(pd.concat(rows, ignore_index=True), preserve_index=False)
    pq.write_table(hist, d / "history.parquet")
    keys = hist.select(["sku", "location"]).group_by(["sku", "location"]).aggregate([]).to_pandas()
    n = len(keys)
    inv = keys.assign(on_hand=rng.uniform(0, 60, n).round(), on_order=0.0,
                      lead_time_days=rng.integers(1, 4, n).astype(float),
                      service_level=rng.uniform(0.85, 0.98, n), unit_cost=rng.uniform(2, 5, n))
    pq.write_table(pa.Table.from_pandas(inv, preserve_index=False), d / "inventory.parquet")
    dcs = pd.DataFrame([(s, node) for s in SKUS for node in ("RDC", "D1", "D2")],
                       columns=["sku", "location"])
    dcs = dcs.assign(on_hand=rng.uniform(0, 400, len(dcs)).round(), on_order=rng.uniform(0, 100, len(dcs)).round(),
                     unit_cost=1.5, moq=np.where(dcs.location == "RDC", 200.0, 0.0),
                     case_pack=np.where(dcs.location == "D2", 12.0, 1.0))
    dcs.loc[(dcs.sku == "C") & (dcs.location == "D1"), "lead_time_days"] = 4.0   # overrides the network
    pq.write_table(_network(), d / "network.parquet")
    pq.write_table(pa.Table.from_pandas(dcs, preserve_index=False), d / "dc_inventory.parquet")
    return {"dir": d, "inventory": inv, "dcs": dcs}


def _cfg(data, out, **kw):
    base = dict(history=str(data["dir"] / "history.parquet"),
                inventory=str(data["dir"] / "inventory.parquet"), out=str(out),
                columns=ColumnMap(), forecast=dict(TINY), shards=3, n_samples=300,
                network=str(data["dir"] / "network.parquet"),
                dc_inventory=str(data["dir"] / "dc_inventory.parquet"), method="normal")
    base.update(kw)
    return PlanConfig(**base)


@pytest.fixture(scope="module")
def planned(client, data, tmp_path_factory):
    out = tmp_path_factory.mktemp("plan") / "out"
    summary = run_plan(_cfg(data, out), client=client)
    return out, summary


def _forecast_moments(out):
    from replenish.kernels import daily_moments
    f = read_output(out, "forecasts").to_pandas().sort_values(["sku", "location", "date"])
    levels = sorted(float(c[1:]) for c in f.columns if c.startswith("q"))
    moments = {}
    for (s, loc), g in f.groupby(["sku", "location"]):
        m, v = daily_moments(levels, g[[f"q{lv:g}" for lv in levels]].to_numpy()[None])
        moments[(s, loc)] = (m[0], v[0])
    return moments


def test_placement_equals_an_independent_rebuild_and_stockpyl(planned, data):
    from stockpyl.demand_source import DemandSource
    from stockpyl.gsm_tree import optimize_committed_service_times
    from stockpyl.supply_chain_network import SupplyChainNetwork
    from stockpyl.supply_chain_node import SupplyChainNode

    out, summary = planned
    assert (out / "_SUCCESS").exists()
    assert summary["network"]["networks"] == 3 and summary["network"]["stores"] == 18
    net = pq.read_table(out / "network.parquet").to_pandas()
    assert len(net) == 27 and set(net.level) == {0, 1, 2}
    moments = _forecast_moments(out)
    inv = data["inventory"].set_index(["sku", "location"])
    dcs = data["dcs"].set_index(["sku", "location"])
    netdef = _network().to_pandas().set_index("node")
    for sku in SKUS:
        tree = SupplyChainNetwork()
        nodes = ["RDC", "D1", "D2"] + STORES
        mine = net[net.sku == sku].set_index("node")
        for k, node in enumerate(nodes):
            nd = SupplyChainNode(index=k + 1)
            if node in STORES:
                r = inv.loc[(sku, node)]
                m, v = moments[(sku, node)]
                nd.processing_time = int(np.ceil(r.lead_time_days + 1))     # + daily review
                nd.local_holding_cost = r.unit_cost * 0.25 / 365
                nd.demand_bound_constant = norm.ppf(r.service_level)
                nd.external_outbound_cst = int(netdef.loc[node, "service_days"])
                nd.demand_source = DemandSource(type="N", mean=float(m.mean()),
                                                standard_deviation=float(np.sqrt(v.mean())))
            else:
                lt = dcs.loc[(sku, node), "lead_time_days"]
                nd.processing_time = int((netdef.loc[node, "lead_time_days"] if np.isnan(lt) else lt) + 1)
                h = netdef.loc[node, "holding_cost_per_day"]
                nd.local_holding_cost = 1.5 * 0.25 / 365 if np.isnan(h) else h
                below = STORES[:3] if node == "D1" else STORES[3:] if node == "D2" else STORES
                nd.demand_bound_constant = norm.ppf(np.mean([inv.loc[(sku, x), "service_level"] for x in below]))
                nd.demand_source = DemandSource(type=None)
                nd.external_inbound_cst = 0 if node == "RDC" else None
            tree.add_node(nd)
        for k, node in enumerate(nodes):
            par = netdef.loc[node, "parent"]
            if par is not None:
                tree.add_edge(nodes.index(par) + 1, k + 1)
        cst, cost = optimize_committed_service_times(tree)
        got = float((mine.holding_cost_per_day * mine.safety_stock).sum())
        assert got == pytest.approx(cost, rel=1e-5), sku
        assert mine.loc["D1", "replenishment_days"] == (5.0 if sku == "C" else 3.0)
        # a child is quoted its parent's service time
        for node in nodes[1:]:
            assert mine.loc[node, "inbound_service_days"] == mine.loc[netdef.loc[node, "parent"], "service_days"]


def test_store_orders_wait_for_their_dc_and_dc_orders_are_echelon(planned, data):
    out, _ = planned
    net = pq.read_table(out / "network.parquet").to_pandas().set_index(["sku", "node"])
    orders = read_output(out, "orders").to_pandas().set_index(["sku", "location"])
    assert len(orders) == 18
    for (sku, loc), r in orders.iterrows():
        nr = net.loc[(sku, loc)]
        assert r.dc_service_days == nr.inbound_service_days - nr.service_days
    dc = read_output(out, "dc_orders").to_pandas().set_index(["sku", "location"])
    assert len(dc) == 9 and set(dc.level) == {1, 2}
    assert read_output(out, "dc_orders").schema.field("location").type == pa.string()
    for col in read_output(out, "orders").column_names:
        assert col in dc.columns or col in dc.index.names, col   # the store orders' schema, plus more
    moments = _forecast_moments(out)
    from replenish.kernels import interval_demand_moments
    dcs = data["dcs"].set_index(["sku", "location"])
    below = {"D1": STORES[:3], "D2": STORES[3:], "RDC": STORES}
    for (sku, node), r in dc.iterrows():
        # base stock: the stores' demand over the node's net lead time (moments, independent)
        nlt = net.loc[(sku, node), "net_lead_time_days"]
        mu = sd2 = 0.0
        for x in below[node]:
            m, v = moments[(sku, x)]
            a, b = interval_demand_moments(m[None], v[None], np.array([nlt]))
            mu, sd2 = mu + a[0], sd2 + b[0] ** 2
        z = max(norm.ppf(r.service_level), 0)
        assert r.base_stock == pytest.approx(mu + z * np.sqrt(sd2), rel=1e-6), (sku, node)
        # echelon: own + the DCs and stores below
        kids = ["D1", "D2"] if node == "RDC" else []
        want_base = r.base_stock + sum(dc.loc[(sku, k), "base_stock"] for k in kids) \
            + sum(orders.loc[(sku, x), "order_up_to"] for x in below[node])
        own = dcs.loc[(sku, node)]
        want_pos = own.on_hand + own.on_order + sum(dcs.loc[(sku, k), "on_hand"] + dcs.loc[(sku, k), "on_order"]
                                                    for k in kids) \
            + sum(orders.loc[(sku, x), "inventory_position"] for x in below[node])
        assert r.order_up_to == pytest.approx(want_base, rel=1e-9)
        assert r.inventory_position == pytest.approx(want_pos, rel=1e-9)
        need = max(want_base - want_pos, 0)
        pack = own.case_pack
        q = 0.0 if need <= 0 else np.ceil(max(need, own.moq) / pack) * pack
        assert r.order_quantity == pytest.approx(q, rel=1e-9)
    assert (dc.order_quantity > 0).any()
    m = read_manifest(out)
    assert m["network"]["files"] and m["status"] == "complete"


def test_sample_paths_on_the_cli(client, data, planned, tmp_path):
    """The same chain with --method sample (DC base stocks from aggregated sample paths), as
    an optimize job on the plan's forecasts through the command line: the same placement,
    safety stocks close to the moments' ones."""
    from replenish.jobs.cli import main
    d = data["dir"]
    rc = main(["optimize", "--forecasts", str(planned[0] / "forecasts"),
               "--inventory", str(d / "inventory.parquet"),
               "--network", str(d / "network.parquet"), "--dc-inventory", str(d / "dc_inventory.parquet"),
               "--out", str(tmp_path / "s"), "--scheduler", client.scheduler.address,
               "--n-samples", "2000", "--shards", "2"])
    assert rc == 0
    a = read_output(tmp_path / "s", "dc_orders").to_pandas().set_index(["sku", "location"]).sort_index()
    b = read_output(planned[0], "dc_orders").to_pandas().set_index(["sku", "location"]).sort_index()
    np.testing.assert_allclose(a.protection_demand_mean, b.protection_demand_mean, rtol=1e-6)
    np.testing.assert_array_equal(a.service_days, b.service_days)
    held = b.safety_stock > 1
    np.testing.assert_allclose(a.safety_stock[held], b.safety_stock[held], rtol=0.25)


@pytest.mark.parametrize("bad, match", [
    (lambda t: t.set_column(1, "parent", pa.array(["D2", "RDC", "D1"] + ["D1"] * 3 + ["D2"] * 3)),
     r"rule 'no cycles \(following parents from every node reaches a root\)' broken by 9 nodes"),
    (lambda t: t.set_column(1, "parent", pa.array([None, "RDC", "X9"] + ["D1"] * 3 + ["D2"] * 3)),
     r"rule 'every parent is a node of the network' broken by 1 nodes \(e.g. 'D2 \(parent X9\)'\)"),
    (lambda t: t.set_column(1, "parent", pa.array([None, "RDC", None] + ["D1"] * 3 + ["D2"] * 3)),
     r"rule 'one root .*' broken by 2 roots \(e.g. 'D2', 'RDC'\)|broken by 2 roots \(e.g. 'RDC', 'D2'\)"),
    (lambda t: t.set_column(1, "parent", pa.array([None, "RDC", "RDC", "D1", "D1", None, "D2", "D2", "D2"])),
     r"rule 'one root"),
    (lambda t: t.slice(0, 8),
     r"rule 'every planned location is a node of the network' broken by 1 locations \(e.g. 'L5'\)"),
    (lambda t: pa.concat_tables([t, t.slice(3, 1)]),
     r"rule 'one row \(one parent\) per node' broken by 1 nodes \(e.g. 'L0'\)"),
])
def test_bad_network_tables_fail_before_any_work(client, data, tmp_path, bad, match):
    pq.write_table(bad(_network()), tmp_path / "bad.parquet")
    out = tmp_path / "o"
    with pytest.raises(DataError, match=match):
        run_plan(_cfg(data, out, network=str(tmp_path / "bad.parquet")), client=client)
    assert not (out / "model").exists()       # nothing trained


def test_store_without_a_dc_is_named(client, data, planned, tmp_path):
    # store L0 heads the chain: it orders from the supplier, no DC serves it
    t = _network().set_column(1, "parent", pa.array(["L0", "RDC", "RDC", None, "D1", "D1", "D2", "D2", "D2"]))
    pq.write_table(t, tmp_path / "bad.parquet")
    with pytest.raises(DataError, match=r"rule 'every store has a DC \(a parent\)' broken by 1 "
                                        r"locations \(e.g. 'L0'\)"):
        run_plan(_cfg(data, tmp_path / "o", network=str(tmp_path / "bad.parquet")), client=client)
    assert not (tmp_path / "o" / "model").exists()
    # a network per SKU (a sku column) that lacks some planned SKUs
    t2 = pa.table({"sku": ["A", "A"], "node": ["L0", "L1"], "parent": [None, "L0"],
                   "lead_time_days": [2.0, 1.0]})
    pq.write_table(t2, tmp_path / "bad2.parquet")
    with pytest.raises(DataError, match=r"rule 'every planned SKU has its network .*' broken by 2 SKUs"):
        run_plan(_cfg(data, tmp_path / "o2", network=str(tmp_path / "bad2.parquet"),
                      model=str(planned[0] / "model")), stages=("forecast", "optimize"), client=client)


def test_network_without_dc_inventory_places_stock_and_orders_only_for_stores(client, data, planned, tmp_path):
    """--network alone (no DC inventory): the same placement where the DC table changed
    nothing (SKUs A and B; C's D1 lead time came from it), store orders with their DCs'
    service times, and no DC orders (nothing says what the DCs hold)."""
    kw = dict(dc_inventory=None, forecasts=str(planned[0] / "forecasts"), history=None)
    # D2's holding cost came from its DC inventory row (unit cost x holding rate): now missing
    with pytest.raises(DataError, match=r"rule 'every DC has a holding cost .*' broken by 1 nodes "
                                        r"\(e\.g\. 'D2'\)"):
        run_plan(_cfg(data, tmp_path / "bad", **kw), stages=("optimize",), client=client)
    net = _network().to_pandas()
    net.loc[net.node == "D2", "holding_cost_per_day"] = 1.5 * 0.25 / 365   # what the row gave
    pq.write_table(pa.Table.from_pandas(net, preserve_index=False), tmp_path / "network.parquet")
    out = tmp_path / "net_only"
    run_plan(_cfg(data, out, network=str(tmp_path / "network.parquet"), **kw), stages=("optimize",),
             client=client)
    a = pq.read_table(out / "network.parquet").to_pandas().set_index(["sku", "node"]).sort_index()
    b = pq.read_table(planned[0] / "network.parquet").to_pandas().set_index(["sku", "node"]).sort_index()
    ab = [k for k in a.index if k[0] in ("A", "B")]
    for col in ("service_days", "net_lead_time_days", "inbound_service_days"):
        np.testing.assert_allclose(a.loc[ab, col], b.loc[ab, col], err_msg=col)
    # C's D1 lead time is the network's own now (2 days), not its DC row's (4 days)
    assert a.loc[("C", "D1"), "lead_time_days"] == 2.0 and b.loc[("C", "D1"), "lead_time_days"] == 4.0
    orders = read_output(out, "orders").to_pandas().set_index(["sku", "location"])
    assert len(orders) == 18
    for (sku, loc), r in orders.iterrows():
        nr = a.loc[(sku, loc)]
        assert r.dc_service_days == nr.inbound_service_days - nr.service_days
    assert not (out / "dc_orders").exists()
    assert read_manifest(out)["status"] == "complete"

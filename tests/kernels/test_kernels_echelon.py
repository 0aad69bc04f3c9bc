"""Two-echelon safety-stock placement against stockpyl's Graves-Willems tree DP and brute force."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm
from stockpyl.demand_source import DemandSource
from stockpyl.gsm_tree import optimize_committed_service_times
from stockpyl.supply_chain_network import SupplyChainNetwork
from stockpyl.supply_chain_node import SupplyChainNode

from replenish.kernels import two_echelon_placement


def _random_networks(rng, g, integer=True):
    sizes = rng.integers(1, 7, g)
    net = np.repeat(np.arange(g), sizes)
    n = len(net)
    draw = (lambda lo, hi, k: rng.integers(lo, hi + 1, k).astype(float)) if integer \
        else (lambda lo, hi, k: rng.uniform(lo, hi, k))
    kw = dict(store_mean=rng.uniform(1, 50, n), store_std=rng.uniform(0.5, 15, n),
              store_lead_time=draw(0, 4, n), store_holding_cost=rng.uniform(0.2, 3, n),
              store_service_level=rng.uniform(0.8, 0.995, n), store_service_time=draw(0, 1, n),
              dc_lead_time=draw(1, 10, g), dc_holding_cost=rng.uniform(0.05, 2, g),
              dc_service_level=rng.uniform(0.8, 0.995, g), dc_inbound_service=draw(0, 2, g))
    return net, kw


def _stockpyl(net, kw, j):
    """The network j as a stockpyl tree: (optimal DC service time, optimal cost)."""
    tree = SupplyChainNetwork()
    dc = SupplyChainNode(index=0)
    dc.processing_time = int(kw["dc_lead_time"][j])      # the DP needs integer times
    dc.local_holding_cost = kw["dc_holding_cost"][j]
    dc.external_inbound_cst = int(kw["dc_inbound_service"][j])
    dc.demand_bound_constant = norm.ppf(kw["dc_service_level"][j])
    dc.demand_source = DemandSource(type=None)
    tree.add_node(dc)
    for k, i in enumerate(np.flatnonzero(net == j)):
        st = SupplyChainNode(index=k + 1)
        st.processing_time = int(kw["store_lead_time"][i])
        st.local_holding_cost = kw["store_holding_cost"][i]
        st.external_outbound_cst = int(kw["store_service_time"][i])
        st.demand_bound_constant = norm.ppf(kw["store_service_level"][i])
        st.demand_source = DemandSource(type="N", mean=kw["store_mean"][i],
                                        standard_deviation=kw["store_std"][i])
        tree.add_node(st)
        tree.add_edge(0, k + 1)
    cst, cost = optimize_committed_service_times(tree)
    return cst[0], cost


def test_matches_stockpyl_graves_willems_dp():
    rng = np.random.default_rng(0)
    net, kw = _random_networks(rng, 40)
    res = two_echelon_placement(net, **kw)
    for j in range(40):
        s_ref, cost_ref = _stockpyl(net, kw, j)
        assert res["holding_cost"][j] == pytest.approx(cost_ref, rel=1e-9), j
        if abs(res["holding_cost_if_dc_holds"][j] - res["holding_cost_if_stores_only"][j]) > 1e-6:
            assert res["dc_service_time"][j] == s_ref, j
    both = res["dc_service_time"] > 0
    assert both.any() and (~both).any()   # the sample has both kinds of placement


def test_no_service_time_beats_the_chosen_end():
    """Brute force over a fine grid of DC service times (the cost is concave in it)."""
    rng = np.random.default_rng(1)
    net, kw = _random_networks(rng, 25, integer=False)
    res = two_echelon_placement(net, **kw)
    z = norm.ppf(kw["store_service_level"])
    for j in range(25):
        i = np.flatnonzero(net == j)
        lo = 0.0
        hi = kw["dc_inbound_service"][j] + kw["dc_lead_time"][j]
        sd_dc = np.sqrt(np.sum(kw["store_std"][i] ** 2))
        best = np.inf
        kinks = kw["store_service_time"][i] - kw["store_lead_time"][i]
        for s in np.concatenate([np.linspace(lo, hi, 401), kinks[(kinks > lo) & (kinks < hi)]]):
            nlt = np.maximum(s + kw["store_lead_time"][i] - kw["store_service_time"][i], 0)
            c = np.sum(kw["store_holding_cost"][i] * z[i] * kw["store_std"][i] * np.sqrt(nlt)) \
                + kw["dc_holding_cost"][j] * norm.ppf(kw["dc_service_level"][j]) * sd_dc * np.sqrt(hi - s)
            best = min(best, c)
        assert res["holding_cost"][j] <= best + 1e-9
        assert res["holding_cost"][j] == pytest.approx(best, rel=1e-9)   # candidates on the grid


def test_outputs_consistent_and_monotone_in_service_level():
    rng = np.random.default_rng(2)
    net, kw = _random_networks(rng, 30, integer=False)
    res = two_echelon_placement(net, **kw)
    np.testing.assert_allclose(res["store_base_stock"],
                               kw["store_mean"] * res["store_net_lead_time"] + res["store_safety_stock"])
    np.testing.assert_allclose(res["dc_base_stock"],
                               res["dc_demand_mean"] * res["dc_net_lead_time"] + res["dc_safety_stock"])
    sums = np.bincount(net, kw["store_std"])
    assert (res["dc_demand_std"] <= sums + 1e-9).all()                     # risk pooling
    assert (res["store_net_lead_time"] >= 0).all() and (res["dc_net_lead_time"] >= 0).all()
    # a higher service level everywhere never lowers the network's safety-stock cost
    up = dict(kw, store_service_level=np.minimum(kw["store_service_level"] + 0.004, 0.999),
              dc_service_level=np.minimum(kw["dc_service_level"] + 0.004, 0.999))
    assert (two_echelon_placement(net, **up)["holding_cost"] >= res["holding_cost"] - 1e-9).all()
    # one call for all networks equals one call per network
    for j in (0, 7, 29):
        i = np.flatnonzero(net == j)
        one = two_echelon_placement(np.zeros(len(i), np.int64),
                                    **{k: (v[i] if len(v) == len(net) else v[[j]])
                                       for k, v in kw.items()})
        assert one["holding_cost"][0] == pytest.approx(res["holding_cost"][j], rel=1e-12)
        np.testing.assert_allclose(one["store_safety_stock"], res["store_safety_stock"][i])


def test_bad_inputs_are_named():
    net = np.array([0, 0, 1])
    base = dict(store_mean=[1.0, 2, 3], store_std=[1.0, 1, 1], store_lead_time=1.0,
                store_holding_cost=1.0, store_service_level=0.95, dc_lead_time=[2.0, 2.0],
                dc_holding_cost=0.5, dc_service_level=0.95)
    with pytest.raises(ValueError, match="store_std must be >= 0"):
        two_echelon_placement(net, **{**base, "store_std": [1.0, -1, 1]})
    with pytest.raises(ValueError, match="network must be a 1-d integer array"):
        two_echelon_placement(np.array([0.0, 0, 1]), **base)

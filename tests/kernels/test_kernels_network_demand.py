"""Demand at upper nodes: moments and sample paths against per-store brute force."""
from __future__ import annotations

import numpy as np
import pytest

from replenish.kernels import daily_moments, interval_demand_moments, quantile_function
from replenish.kernels.network_demand import node_demand_moments, node_demand_samples
from replenish.kernels.simulate import uniform_hash

LEVELS = np.array([0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95])
# RDC 0 -> DCs 1, 2 -> stores 3, 4 (under 1) and 5, 6, 7 (under 2)
PARENT = np.array([-1, 0, 0, 1, 1, 2, 2, 2])


def _forecasts(rng, n, horizon):
    med = rng.uniform(1, 20, (n, horizon, 1))
    spread = rng.uniform(0.2, 1.0, (n, horizon, 1))
    return np.sort(med * np.exp(spread * np.array([-1.6, -1.3, -0.7, 0, 0.7, 1.3, 1.6])), axis=-1)


def _brute_samples(q, item_node, length, n_samples, seed, ids):
    """Per store, per period, per sample: its own uniform through its quantile function."""
    out = np.zeros((len(PARENT), n_samples))
    for i in range(q.shape[0]):
        chain, j = [], int(item_node[i])
        while j >= 0:
            chain.append(j)
            j = int(PARENT[j])
        for h in range(int(np.ceil(length.max()))):
            sid = np.uint64(ids[i]) + np.arange(n_samples, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
            u = uniform_hash(np, sid, seed, h, 5)
            x = np.array([quantile_function(LEVELS, q[i:i + 1, min(h, q.shape[1] - 1):][:, :1], uu)[0, 0]
                          for uu in u])
            for node in chain:
                out[node] += np.clip(length[node] - h, 0, 1) * x
    return out


def test_samples_equal_a_per_store_loop_and_add_over_shards():
    rng = np.random.default_rng(0)
    q = _forecasts(rng, 5, 4)
    item_node = np.array([3, 4, 5, 6, 7])
    length = np.array([5.0, 2.5, 3.0, 1.0, 2.0, 0.5, 3.0, 4.0])   # beyond the horizon: repeats
    ids = np.array([11, 902, 33, 4, 5005], np.uint64)
    got = node_demand_samples(LEVELS, q, item_node, PARENT, length, n_samples=64, seed=3, item_ids=ids)
    np.testing.assert_allclose(got, _brute_samples(q, item_node, length, 64, 3, ids), rtol=1e-10)
    # two shards of stores: their partial sums add up to the whole (draws follow the ids)
    a = node_demand_samples(LEVELS, q[:2], item_node[:2], PARENT, length, n_samples=64, seed=3,
                            item_ids=ids[:2])
    b = node_demand_samples(LEVELS, q[2:], item_node[2:], PARENT, length, n_samples=64, seed=3,
                            item_ids=ids[2:], chunk_size=2)
    np.testing.assert_allclose(a + b, got, rtol=1e-12)
    sub = node_demand_samples(LEVELS, q, item_node, PARENT, length, n_samples=64, seed=3,
                              item_ids=ids, nodes=[2, 0])
    np.testing.assert_allclose(sub, got[[2, 0]])


def test_moments_equal_a_per_store_loop():
    rng = np.random.default_rng(1)
    q = _forecasts(rng, 5, 6)
    item_node = np.array([3, 4, 5, 6, 7])
    length = rng.uniform(0, 8, len(PARENT))
    m, v = daily_moments(LEVELS, q)
    mean, std = node_demand_moments(m, v, item_node, PARENT, length)
    for node in range(len(PARENT)):
        below = [i for i in range(5) if node in _chain(item_node[i])]
        mu, sd = interval_demand_moments(m[below], v[below], np.full(len(below), length[node]))
        assert mean[node] == pytest.approx(mu.sum(), rel=1e-12)
        assert std[node] == pytest.approx(np.sqrt((sd ** 2).sum()), rel=1e-12)


def _chain(j):
    out = []
    while j >= 0:
        out.append(int(j))
        j = PARENT[j]
    return out


def test_samples_are_independent_across_stores_not_added_quantiles():
    """Twenty identical stores under one DC: the DC's spread is sqrt(20) store spreads (the
    moments), not 20 (adding quantiles); mean and variance match the moments, and the DC's
    95% safety stock is about 1/sqrt(20) of the stores' added."""
    parent = np.array([-1] + [0] * 20)
    rng = np.random.default_rng(2)
    q = np.repeat(_forecasts(rng, 1, 7), 20, axis=0)
    item_node = np.arange(1, 21)
    length = np.full(21, 7.0)
    s = node_demand_samples(LEVELS, q, item_node, parent, length, n_samples=4000, seed=0)
    m, v = daily_moments(LEVELS, q)
    mean, std = node_demand_moments(m, v, item_node, parent, length)
    assert s[0].mean() == pytest.approx(mean[0], rel=0.01)
    assert s[0].std() == pytest.approx(std[0], rel=0.05)
    assert s[1].std() == pytest.approx(std[1], rel=0.05)
    # safety stock (95% quantile minus mean): about 1/sqrt(20) of twenty stores' added up
    dc_ss = np.quantile(s[0], 0.95) - s[0].mean()
    store_ss = np.quantile(s[1:], 0.95, axis=1) - s[1:].mean(1)
    assert 0.15 < dc_ss / store_ss.sum() < 0.3
    # correlation between two stores' paths is nil; the DC's path is their sum
    assert abs(np.corrcoef(s[1], s[2])[0, 1]) < 0.06
    np.testing.assert_allclose(s[0], s[1:].sum(0), rtol=1e-10)

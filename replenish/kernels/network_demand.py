"""Demand at the upper nodes of a network from the stores' quantile forecasts.

A DC's demand over an interval is the sum, over the stores below it and the periods of the
interval, of the stores' period demands. Quantiles are never added (that would make every
store and period perfectly dependent, the worst case, and overstate the spread); two routes:

* **moments** (:func:`node_demand_moments`): stores independent of each other and periods
  independent of each other, so means and variances add; for the normal approximation;
* **sample paths** (:func:`node_demand_samples`): every store's demand in every period is
  drawn from its own quantile function (:mod:`replenish.kernels.period_demand`) with its own
  uniform (a counter-based hash of seed, store id, period and sample), and the draws are
  summed over each node's stores and interval. Stores and periods are independent, as
  above, but the distribution of the sum is kept (intermittent or skewed demand at a DC
  with few stores is not normal). Draws depend on the store's id only, so partial sums over
  groups of stores (shards of a job) add up to the sums over all of them.

Nodes are given as one forest (``parent``, -1 for roots) over all networks; each item (a
store's forecast) enters at one node (``item_node``, usually a leaf) and counts for that
node and every node above it. An interval of ``length`` periods starts at the first
forecast period; a fractional last period counts by its fraction, periods past the horizon
repeat the last one. Units: demand in units per period (of the forecasts), lengths in
periods.
"""
from __future__ import annotations

import math

import numpy as np

from ._backend import asarray, get_xp, to_numpy
from ._tree import tree_structure
from ._validate import check_finite
from .lead_time import interval_demand_moments
from .period_demand import knots, prepare_quantiles
from .simulate import uniform_hash

__all__ = ["node_demand_moments", "node_demand_samples"]

_SAMPLE_ID_STEP = 0x9E3779B97F4A7C15   # sample s of an item: id + s * step (hashed after)
_CHUNK_ELEMENTS = 1 << 22


def _pairs(item_node, parent, nodes):
    """(item, node) pairs: each item with its own node and every node above it, restricted
    to ``nodes``; returns item rows, positions in ``nodes`` (host int64)."""
    st = tree_structure(parent)
    item_node = np.asarray(to_numpy(item_node), np.int64)
    if item_node.ndim != 1:
        raise ValueError(f"item_node must have shape (n,), got {item_node.shape}")
    bad = int(((item_node < 0) | (item_node >= st.n_nodes)).sum())
    if bad:
        raise ValueError(f"item_node must be node indices in [0, {st.n_nodes}); {bad} are not")
    anc = st.ancestors[item_node]                      # (n, depth + 1), -1 above the root
    where = np.full(st.n_nodes, -1, np.int64)
    sel = np.arange(st.n_nodes) if nodes is None else np.asarray(to_numpy(nodes), np.int64)
    where[sel] = np.arange(sel.size)
    pos = np.where(anc >= 0, where[np.maximum(anc, 0)], -1)
    item, col = np.nonzero(pos >= 0)
    return item, pos[item, col], sel.size


def _lengths(length, n_nodes, xp, dtype):
    a = asarray(length, xp, dtype=dtype)
    a = xp.broadcast_to(a, (n_nodes,)) if a.ndim == 0 else a
    if a.shape != (n_nodes,):
        raise ValueError(f"length must be a scalar or have shape ({n_nodes},), got {a.shape}")
    check_finite("length", a, xp)
    if bool(xp.any(a < 0)):
        raise ValueError("length must be >= 0 periods")
    return a


def node_demand_moments(daily_mean, daily_var, item_node, parent, length, nodes=None):
    """Mean and standard deviation of each node's demand over its interval.

    Parameters
    ----------
    daily_mean, daily_var : ndarray, shape (n, H)
        Per item and period: demand mean (units) and variance (units squared), e.g. from
        :func:`replenish.kernels.daily_moments`.
    item_node : array_like of int, shape (n,)
        Node at which each item's demand enters.
    parent : array_like of int, shape (N,)
        The forest of nodes (-1: root).
    length : float or ndarray, shape (N,)
        Periods summed for each node (its net lead time, say), >= 0.
    nodes : array_like of int, optional
        Only these nodes (default all), in this order.

    Returns
    -------
    mean, std : ndarray, shape (N,) or (len(nodes),)
        Units over the interval; items independent of each other, periods of each other.
    """
    xp = get_xp(daily_mean, daily_var)
    m = asarray(daily_mean, xp)
    v = asarray(daily_var, xp)
    n_nodes = len(np.asarray(to_numpy(parent)))
    item, at, k = _pairs(item_node, parent, nodes)
    lens = _lengths(length, n_nodes, xp, m.dtype)
    sel = np.arange(n_nodes) if nodes is None else np.asarray(to_numpy(nodes), np.int64)
    node_len = lens[asarray(sel, xp)]
    mean = xp.zeros(k, xp.float64)
    var = xp.zeros(k, xp.float64)
    step = max(1, _CHUNK_ELEMENTS // max(1, m.shape[1]))
    for a in range(0, item.size, step):
        it, ps = item[a:a + step], at[a:a + step]
        mu, sd = interval_demand_moments(m[asarray(it, xp)], v[asarray(it, xp)], node_len[asarray(ps, xp)])
        ps_x = asarray(ps, xp)
        mean += xp.bincount(ps_x, weights=mu.astype(xp.float64), minlength=k)
        var += xp.bincount(ps_x, weights=(sd.astype(xp.float64) ** 2), minlength=k)
    return mean, xp.sqrt(var)


def _draw(levels, kn, u):
    """Quantile-function values of one period for per-element uniforms.

    ``kn`` (n, Q + 2) knots (see :func:`replenish.kernels.period_demand.knots`), ``u`` (n, S)
    in (0, 1); returns (n, S) units: linear between the knots, exponential tail above the
    last level (the same distribution the other kernels use).
    """
    xp = get_xp(kn)
    n_q = levels.shape[0]
    p = np.concatenate([[0.0], levels])
    pk = asarray(p, xp, dtype=xp.float64)
    k = xp.clip(xp.searchsorted(pk, u, side="right") - 1, 0, n_q - 1)
    inner = u <= levels[-1]
    frac = (u - pk[k]) / (pk[k + 1] - pk[k])
    lo = xp.take_along_axis(kn, k, axis=1)
    hi = xp.take_along_axis(kn, k + 1, axis=1)
    body = lo + (hi - lo) * frac
    tail = kn[:, n_q:n_q + 1] + kn[:, n_q + 1:n_q + 2] * xp.log((1.0 - levels[-1]) / (1.0 - u))
    return xp.where(inner, body, tail)


def node_demand_samples(levels, quantiles, item_node, parent, length, *, n_samples=1000, seed=0,
                        item_ids=None, nodes=None, chunk_size=None):
    """Sample paths of each node's demand over its interval, stores and periods independent.

    Parameters
    ----------
    levels : array_like, shape (Q,)
    quantiles : array_like, shape (n, H, Q)
        The items' (stores') quantile forecasts, units per period.
    item_node, parent, length, nodes
        As :func:`node_demand_moments`.
    n_samples : int
        Samples per node.
    seed : int
    item_ids : array_like of int, shape (n,), optional
        Stable ids of the items for their random streams (default ``0..n-1``); with stable
        ids an item draws the same numbers in every call, whatever else is in it.
    chunk_size : int, optional
        Items drawn together.

    Returns
    -------
    ndarray, shape (N, n_samples) or (len(nodes), n_samples), float64
        Units over each node's interval; sample ``s`` of every node is one joint path (the
        same draws of each store count for all nodes above it).
    """
    p, q = prepare_quantiles(levels, quantiles)
    xp = get_xp(q)
    n, horizon, _ = q.shape
    n_nodes = len(np.asarray(to_numpy(parent)))
    item, at, k = _pairs(item_node, parent, nodes)
    if item.size and item.max() >= n:
        raise ValueError(f"item_node has {item.max() + 1} items or more, quantiles {n}")
    lens = to_numpy(_lengths(length, n_nodes, np, np.float64))
    sel = np.arange(n_nodes) if nodes is None else np.asarray(to_numpy(nodes), np.int64)
    pair_len = lens[sel][at]
    n_s = int(n_samples)
    ids = (np.arange(n, dtype=np.uint64) if item_ids is None
           else np.asarray(to_numpy(item_ids)).astype(np.uint64).reshape(n))
    offs = (np.arange(n_s, dtype=np.uint64) * np.uint64(_SAMPLE_ID_STEP))
    out = xp.zeros(k * n_s, xp.float64)
    step = int(chunk_size) if chunk_size else max(1, _CHUNK_ELEMENTS // max(1, n_s))
    order = np.argsort(item, kind="stable")
    item, at, pair_len = item[order], at[order], pair_len[order]
    bounds = np.searchsorted(item, np.arange(0, n + step, step))
    for c, a in enumerate(range(0, n, step)):
        lo_p, hi_p = bounds[c], bounds[min(c + 1, len(bounds) - 1)]
        if lo_p == hi_p:
            continue
        rows = np.arange(a, min(n, a + step))
        kn = knots(p, q[asarray(rows, xp)])                     # (c, H, Q + 2)
        pid = asarray(item[lo_p:hi_p] - a, xp)
        pat = asarray(at[lo_p:hi_p], xp)
        plen = asarray(pair_len[lo_p:hi_p], xp, dtype=xp.float64)
        sample_ids = asarray(ids[rows][:, None] + offs[None, :], xp)   # wraps: a hash input
        cols = (pat[:, None] * n_s + xp.arange(n_s)[None, :]).ravel()
        for h in range(int(math.ceil(float(plen.max())))):
            w = xp.clip(plen - h, 0.0, 1.0)
            if not bool(xp.any(w > 0)):
                continue
            u = uniform_hash(xp, sample_ids, int(seed), h, 5)
            x = _draw(p, kn[:, min(h, horizon - 1), :].astype(xp.float64), u)   # (c, S)
            out += xp.bincount(cols, weights=(x[pid] * w[:, None]).ravel(), minlength=k * n_s)
    return out.reshape(k, n_s)

"""Safety-stock placement on distribution trees of any depth, many SKU networks at once.

The guaranteed-service model (Graves and Willems, MSOM 2(1), 2000; erratum 5(2), 2003) on
a tree (supplier -> regional DC -> DC -> store, any depth and branching). Node ``j`` is
supplied by its parent (a root by an outside supplier), quotes its own customers (its child
nodes, or the shoppers of a store) a service time ``S_j`` and is quoted
``SI_j = S_parent(j)`` (a root: ``inbound_service_time``). It holds safety stock for its
*net lead time* ``SI_j + T_j - S_j`` with ``T_j`` its replenishment time, against the demand
of all customers below it:

    safety stock ``z_j * sigma_j * sqrt(SI_j + T_j - S_j)``, base stock adds
    ``mu_j * (SI_j + T_j - S_j)``,

with ``mu_j``, ``sigma_j`` the mean and standard deviation of the node's daily demand (its
own external demand plus that of every node below it; demands of different nodes are
independent, so variances add) and ``z_j`` the standard-normal quantile of its service level
(at least 0). Constraints: ``0 <= S_j <= SI_j + T_j`` and ``S_j <= max_service_time[j]``
(the service time promised to a customer-facing node's shoppers; 0: off the shelf). The
service times minimising the holding cost ``sum_j h_j * safety stock_j`` are found by the
dynamic program of Graves and Willems on integer times, bottom-up over the levels:

    f_j(SI) = min over S of [ h_j z_j sigma_j sqrt(SI + T_j - S) + sum over children c of f_c(S) ]

Every step is an array operation over all SKU networks of the shape at once (and all nodes of
a level): a store (leaf) has the closed form ``f(SI) = k sqrt(max(SI + T - S_max, 0))``, and
all leaves below one parent enter its function through one histogram of their offsets
``T - S_max`` times a table of square roots; an inner node's minimum over ``S`` is a loop
over the ``D`` possible net lead times (``D`` = the longest supplier-to-node time + 1), each
step vectorized over networks, nodes and service times. Work ``O(G * (leaves + inner nodes *
D^2))``, no loop over networks or nodes, on NumPy or CuPy.

Times are whole periods (days): the dynamic program works on that grid (callers with
fractional lead times round them up first). Units: demand in units per day, times in days,
holding costs in currency per unit per day; safety and base stock in units.
"""
from __future__ import annotations

import numpy as np

from ._backend import asarray, compute_dtype, get_xp, special
from ._tree import segment_sum, tree_structure

__all__ = ["tree_placement", "subtree_sums"]

_CHUNK_ELEMENTS = 1 << 23   # elements of the largest per-chunk temporary


def _node_array(name, x, g, n, xp, dtype, *, low=None, high=None, allow_inf=False):
    """Broadcast a scalar, (N,) or (G, N) input to (G, N) and check its values."""
    a = asarray(x, xp, dtype=dtype)
    if a.ndim > 2 or (a.ndim >= 1 and a.shape[-1] not in (1, n)) or (a.ndim == 2 and a.shape[0] not in (1, g)):
        raise ValueError(f"{name} must be a scalar or have shape ({n},) or ({g}, {n}), got {a.shape}")
    bad_nan = int(xp.count_nonzero(xp.isnan(a)))
    bad_inf = 0 if allow_inf else int(xp.count_nonzero(xp.isinf(a)))
    if bad_nan or bad_inf:
        raise ValueError(f"{name} has {bad_nan + bad_inf} non-finite entries (NaN"
                         f"{'' if allow_inf else ' or infinite'}); inputs must be numbers")
    for bound, op, fails in ((low, ">=", lambda v: a < v), (high, "<=", lambda v: a > v)):
        if bound is not None:
            bad = int(xp.count_nonzero(fails(bound)))
            if bad:
                raise ValueError(f"{name} must be {op} {bound}; {bad} entries are not")
    return xp.broadcast_to(a, (g, n))


def _whole(name, a, xp):
    fin = xp.isfinite(a)
    bad = int(xp.count_nonzero(fin & (a != xp.floor(xp.where(fin, a, 0)))))
    if bad:
        raise ValueError(f"{name} must be whole periods (the dynamic program works on a grid of "
                         f"periods; round up lead times first); {bad} entries are not")


def subtree_sums(parent, values, structure=None):
    """Sum of ``values`` over each node's subtree (the node and every node below it).

    Parameters
    ----------
    parent : array_like of int, shape (N,)
        The network shape (-1: root).
    values : ndarray, shape (G, N) or (N,)
        Per network and node (e.g. daily demand mean or variance).

    Returns
    -------
    ndarray, same shape as ``values``.
    """
    st = structure if structure is not None else tree_structure(parent)
    xp = get_xp(values)
    v = asarray(values, xp)
    flat = v.ndim == 1
    acc = (v[None, :] if flat else v).astype(v.dtype if v.dtype.kind == "f" else xp.float64, copy=True)
    for d in range(len(st.by_depth) - 1, 0, -1):
        nodes = st.by_depth[d]
        sums, ids = segment_sum(xp, acc[:, nodes], st.parent[nodes])
        acc[:, ids] += sums
    return acc[0] if flat else acc


def tree_placement(parent, *, demand_mean, demand_std, lead_time, holding_cost, service_level,
                   max_service_time=None, inbound_service_time=0.0, n_networks=None,
                   chunk_size=None) -> dict:
    """Guaranteed-service safety-stock placement for many networks of one tree shape.

    Parameters
    ----------
    parent : array_like of int, shape (N,)
        The shape: ``parent[j]`` is the node supplying node ``j``, -1 for a root (supplied
        by an outside supplier). Several roots make a forest of independent trees.
    demand_mean, demand_std : array_like, shape (G, N), (N,) or scalar
        External (customer) demand at each node, units per day: the stores'; 0 at nodes
        without customers of their own. Independent across nodes.
    lead_time : array_like, shape (G, N), (N,) or scalar
        Replenishment time ``T_j``, whole days >= 0: from the node's order (at its parent,
        or a root's at the supplier) to the goods being available (include the review
        period for periodic review).
    holding_cost : array_like, shape (G, N), (N,) or scalar
        Currency per unit held per day at the node (>= 0).
    service_level : array_like, shape (G, N), (N,) or scalar
        Probability that the node's demand over its net lead time stays within its base
        stock, in [0, 1] (clipped to (0, 1); below 0.5 no safety stock).
    max_service_time : array_like, shape (G, N), (N,) or scalar, optional
        Longest service time the node may quote, whole days or ``inf`` (no limit). Default:
        0 at the leaves (stores serve off the shelf), no limit elsewhere.
    inbound_service_time : array_like, shape (G, N), (N,) or scalar
        Days the outside supplier takes to ship to a root beyond its lead time (read at the
        roots only; whole days >= 0).
    n_networks : int, optional
        G when every input is a scalar or (N,).
    chunk_size : int, optional
        Networks computed together (bounds the memory of the temporaries).

    Returns
    -------
    dict
        Shape (G, N): ``service_time`` (S, days quoted to the node's customers),
        ``inbound_service_time`` (SI, days the node is quoted), ``net_lead_time`` (days),
        ``demand_mean``, ``demand_std`` (units per day of the node and all below it),
        ``safety_stock``, ``base_stock`` (units). Shape (G,): ``holding_cost`` (currency per
        day of all safety stock of the network, the optimum) and
        ``holding_cost_if_every_node_holds`` (every node quoting 0: each level planned as if
        alone); ``_dp_cost`` (G,): the dynamic program's own minimum, equal to
        ``holding_cost`` (kept for checks).
    """
    st = tree_structure(parent)
    n = st.n_nodes
    xp = get_xp(demand_mean, demand_std, lead_time, holding_cost, service_level)
    dt = compute_dtype(xp, demand_std if hasattr(demand_std, "dtype") else demand_mean)
    ins = [demand_mean, demand_std, lead_time, holding_cost, service_level, max_service_time,
           inbound_service_time]
    g = n_networks
    if g is None:
        g = max([int(np.shape(a)[0]) for a in ins if a is not None and np.ndim(a) == 2] or [1])
    g = int(g)
    mu = _node_array("demand_mean", demand_mean, g, n, xp, dt, low=0.0)
    sd = _node_array("demand_std", demand_std, g, n, xp, dt, low=0.0)
    lt = _node_array("lead_time", lead_time, g, n, xp, dt, low=0.0)
    _whole("lead_time", lt, xp)
    h = _node_array("holding_cost", holding_cost, g, n, xp, dt, low=0.0)
    sl = xp.clip(_node_array("service_level", service_level, g, n, xp, dt, low=0.0, high=1.0),
                 1e-6, 1 - 1e-6)
    z = xp.maximum(special(xp).ndtri(sl), 0)
    if max_service_time is None:
        smax = xp.broadcast_to(asarray(np.where(st.leaf, 0.0, np.inf), xp, dtype=dt), (g, n))
    else:
        smax = _node_array("max_service_time", max_service_time, g, n, xp, dt, low=0.0,
                           allow_inf=True)
        _whole("max_service_time", smax, xp)
    si = _node_array("inbound_service_time", inbound_service_time, g, n, xp, dt, low=0.0)
    _whole("inbound_service_time", si, xp)

    mean_sub = subtree_sums(None, mu, st)
    std_sub = xp.sqrt(subtree_sums(None, sd * sd, st))
    k = h * z * std_sub    # cost per day of one sqrt-day of net lead time
    n_inner = int((~st.leaf).sum())
    if chunk_size is None:
        chunk_size = max(1, _CHUNK_ELEMENTS // max(1, n + 64 * n_inner))
    keys = ("service_time", "inbound_service_time", "net_lead_time")
    parts = {key: [] for key in keys}
    cost = []
    for a in range(0, g, int(chunk_size)):
        b = min(g, a + int(chunk_size))
        res = _solve(xp, st, lt[a:b], k[a:b], smax[a:b], si[a:b], dt)
        for key in keys:
            parts[key].append(res[key])
        cost.append(res["cost"])
    out = {key: (xp.concatenate(v, axis=0) if v else xp.zeros((0, n), dt)) for key, v in parts.items()}
    nlt = out["net_lead_time"]
    ss = z * std_sub * xp.sqrt(nlt)
    # every node quotes 0 (a store still uses the time its shoppers allow): each level alone
    alone = lt + xp.where(asarray(st.parent < 0, xp), si, 0)
    alone = alone - xp.where(asarray(st.leaf, xp), xp.minimum(alone, smax), 0)
    out.update(demand_mean=mean_sub, demand_std=std_sub, safety_stock=ss,
               base_stock=mean_sub * nlt + ss,
               holding_cost=(h * ss).sum(axis=1),
               holding_cost_if_every_node_holds=(k * xp.sqrt(alone)).sum(axis=1))
    out["_dp_cost"] = xp.concatenate(cost) if cost else xp.zeros(0, dt)
    return out


def _solve(xp, st, lt, k, smax, si, dt):
    """The dynamic program for one chunk of networks; service times and net lead times."""
    g, n = lt.shape
    parent, leaf = st.parent, st.leaf
    roots = st.roots
    # longest supplier-to-node time: the range of every node's inbound service time
    reach = xp.zeros((g, n), dt)
    reach[:, roots] = si[:, roots] + lt[:, roots]
    for d in range(1, len(st.by_depth)):
        nodes = st.by_depth[d]
        reach[:, nodes] = reach[:, parent[nodes]] + lt[:, nodes]
    span = int(xp.max(reach)) + 1 if g else 1     # D: times 0 .. D - 1
    inner = np.flatnonzero(~leaf)
    rank = np.full(n, -1, np.int64)
    rank[inner] = np.arange(inner.size)
    # g_j(S): cost below inner node j when it quotes S, per inner node (G, inner, D)
    below = xp.zeros((g, inner.size, span), dt)
    kids = np.flatnonzero(leaf & (parent >= 0))
    if kids.size:
        fin = xp.isfinite(smax[:, kids])
        off = xp.where(fin, lt[:, kids] - xp.where(fin, smax[:, kids], 0), -span)
        off = xp.clip(off, -span, span).astype(xp.int64)
        lo, hi = int(off.min()), int(off.max())
        width = hi - lo + 1
        weight = xp.where(fin, k[:, kids], 0)
        slot = (xp.arange(g, dtype=xp.int64)[:, None] * inner.size
                + asarray(rank[parent[kids]], xp)[None, :]) * width + (off - lo)
        hist = xp.bincount(slot.ravel(), weights=weight.ravel().astype(xp.float64),
                           minlength=g * inner.size * width).astype(dt)
        offsets = np.arange(lo, hi + 1)[:, None] + np.arange(span)[None, :]
        roots_tab = asarray(np.sqrt(np.maximum(offsets, 0)), xp, dtype=dt)      # (width, D)
        below += (hist.reshape(g * inner.size, width) @ roots_tab).reshape(g, inner.size, span)
    choice = {}   # per depth: argmin S for every u = SI + T, (G, m, D)
    total = xp.zeros(g, dt)
    sq = np.sqrt(np.arange(span, dtype=np.float64))
    for d in range(len(st.by_depth) - 1, -1, -1):
        nodes = st.by_depth[d]
        nodes = nodes[~leaf[nodes]]
        if nodes.size == 0:
            continue
        r = rank[nodes]
        gj = below[:, r, :]
        kj = k[:, nodes][..., None]
        cap = smax[:, nodes][..., None]
        best = xp.full(gj.shape, xp.inf, dt)
        arg = xp.zeros(gj.shape, xp.int16 if span < 32000 else xp.int32)
        limited = bool(xp.any(xp.isfinite(cap)))
        for lag in range(span):           # lag = net lead time u - S
            s_idx = xp.arange(span - lag, dtype=arg.dtype)
            cand = kj * dt.type(sq[lag]) + gj[..., :span - lag]
            if limited:
                cand = xp.where(s_idx > cap, xp.inf, cand)
            cur = best[..., lag:]
            better = cand < cur
            best[..., lag:] = xp.where(better, cand, cur)
            arg[..., lag:] = xp.where(better, s_idx, arg[..., lag:])
        choice[d] = (nodes, arg)
        # f_j(SI) = F_j(SI + T_j), for the parent's sums
        at = xp.clip(xp.arange(span)[None, None, :] + lt[:, nodes][..., None].astype(xp.int64), 0, span - 1)
        f = xp.take_along_axis(best, at, axis=2)
        up = parent[nodes]
        is_root = up < 0
        if is_root.any():
            u_root = (si[:, nodes[is_root]] + lt[:, nodes[is_root]]).astype(xp.int64)
            total += xp.take_along_axis(best[:, is_root, :], u_root[..., None], axis=2)[..., 0].sum(axis=1)
        if (~is_root).any():
            sel = np.flatnonzero(~is_root)
            ff = f[:, sel, :].transpose(0, 2, 1).reshape(g * span, sel.size)
            sums, ids = segment_sum(xp, ff, up[sel])
            below[:, rank[ids], :] += sums.reshape(g, span, ids.size).transpose(0, 2, 1)
    lone = np.flatnonzero(leaf & (parent < 0))
    if lone.size:
        total += (k[:, lone] * xp.sqrt(xp.maximum(si[:, lone] + lt[:, lone] - smax[:, lone], 0))).sum(axis=1)
    # service times top-down: each node's SI is its parent's S
    s_in = xp.zeros((g, n), dt)
    s_out = xp.zeros((g, n), dt)
    for d, nodes in enumerate(st.by_depth):
        s_in[:, nodes] = si[:, nodes] if d == 0 else s_out[:, parent[nodes]]
        u = s_in[:, nodes] + lt[:, nodes]
        s_out[:, nodes] = xp.minimum(u, smax[:, nodes])       # leaves: as late as allowed
        if d in choice:
            inner_nodes, arg = choice[d]
            cols = np.flatnonzero(~leaf[nodes])       # where they sit in this level's order
            uu = u[:, cols].astype(xp.int64)
            s_out[:, inner_nodes] = xp.take_along_axis(arg, uu[..., None], axis=2)[..., 0].astype(dt)
    return {"service_time": s_out, "inbound_service_time": s_in,
            "net_lead_time": s_in + lt - s_out, "cost": total}

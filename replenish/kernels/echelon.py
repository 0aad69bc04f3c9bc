"""Two-echelon safety-stock placement (supplier -> DC -> stores), all networks at once.

The guaranteed-service model (Graves and Willems, MSOM 2(1), 2000): every stage quotes its customers a service time and
holds safety stock for its *net lead time* (the service time it is quoted, plus its own
lead time, minus the service time it quotes):

- the DC of a network is quoted ``dc_inbound_service`` by the supplier, needs
  ``dc_lead_time`` to receive, and quotes ``S`` to its stores; net lead time
  ``dc_inbound_service + dc_lead_time - S``;
- store ``i`` is quoted ``S``, needs ``store_lead_time[i]`` from the DC, and may take up to
  ``store_service_time[i]`` (0: off the shelf) to serve its customers; net lead time
  ``max(S + store_lead_time[i] - store_service_time[i], 0)`` (a store allowed more time than
  it needs serves sooner and holds no safety stock).

Safety stock of a stage is ``z * sigma * sqrt(net lead time)`` with ``sigma`` the standard
deviation of its daily demand (the DC's: the square root of the sum of its stores'
variances, demands independent across stores) and ``z`` the standard-normal quantile of its
service level (at least 0: a target below 0.5 holds no safety stock); the base stock adds the mean demand over the net lead time. The DC's service
time ``S`` in ``[0, dc_inbound_service + dc_lead_time]`` minimises the holding cost of all
safety stock of the network. Between the points where a store's net lead time reaches 0
(``S = store_service_time - store_lead_time``) that cost is a sum of square roots of affine
functions of ``S``, hence concave, so its minimum lies at an end of the interval or at one
of those points: either the DC holds stock and serves its stores at once (``S = 0``), or it
holds none and passes its whole replenishment time on (``S`` at the upper end), or (only
with store service times) it stops where some stores stop needing stock. Every candidate is
evaluated for every network with segment sums, one pass per candidate rank, no loop over
networks or stores, on NumPy or CuPy. The same optimum as the Graves-Willems dynamic
program for trees (checked against stockpyl's in the tests).

Units: demand in units of stock per day, times in days, holding costs in currency per unit
per day (any time unit works if used consistently; only ratios decide the placement).
A "network" is one SKU at one DC with the stores it supplies.
"""
from __future__ import annotations

from ._backend import asarray, compute_dtype, get_xp, special
from ._validate import item_array, service_level_array

__all__ = ["two_echelon_placement"]


def two_echelon_placement(network, *, store_mean, store_std, store_lead_time, store_holding_cost,
                          store_service_level, dc_lead_time, dc_holding_cost, dc_service_level,
                          dc_inbound_service=0.0, store_service_time=0.0, n_networks=None):
    """Where to hold safety stock between a DC and its stores, for many networks at once.

    Parameters
    ----------
    network : ndarray of int, shape (n,)
        Network of each store (one SKU at one DC), ``0 <= network < G``.
    store_mean, store_std : ndarray, shape (n,)
        Mean and standard deviation of a store's daily demand, units per day.
    store_lead_time : float or ndarray, shape (n,)
        Days from the DC shipping to the store receiving (>= 0).
    store_holding_cost : float or ndarray, shape (n,)
        Currency per unit held per day at the store (>= 0).
    store_service_level : float or ndarray, shape (n,)
        Probability of no stockout over a net lead time, in (0, 1) (clipped).
    dc_lead_time : float or ndarray, shape (G,)
        Days from ordering at the supplier to receiving at the DC (>= 0).
    dc_holding_cost : float or ndarray, shape (G,)
        Currency per unit held per day at the DC (>= 0).
    dc_service_level : float or ndarray, shape (G,)
        As ``store_service_level``, for the DC's own safety stock.
    dc_inbound_service : float or ndarray, shape (G,)
        Days the supplier takes to ship to the DC beyond the lead time (0: from stock).
    store_service_time : float or ndarray, shape (n,)
        Days a store may take to serve its customers (0: off the shelf).
    n_networks : int, optional
        G; ``network.max() + 1`` when None.

    Returns
    -------
    dict of arrays
        Per network (G,): ``dc_service_time`` (days, the S above), ``dc_net_lead_time``
        (days), ``dc_demand_mean``, ``dc_demand_std`` (units per day), ``dc_safety_stock``,
        ``dc_base_stock`` (units), ``holding_cost`` (currency per day, of all safety stock of
        the network) and ``holding_cost_if_stores_only`` / ``holding_cost_if_dc_holds``
        (the two candidates). Per store (n,): ``store_net_lead_time`` (days),
        ``store_safety_stock``, ``store_base_stock`` (units).
    """
    xp = get_xp(network, store_mean, store_std)
    dt = compute_dtype(xp, store_mean)
    grp = asarray(network, xp)
    if grp.ndim != 1 or grp.dtype.kind not in "iu":
        raise ValueError(f"network must be a 1-d integer array, got {grp.dtype} shape {grp.shape}")
    n = grp.shape[0]
    if n and int(grp.min()) < 0:
        raise ValueError("network ids must be >= 0")
    g = int(n_networks) if n_networks is not None else (int(grp.max()) + 1 if n else 0)
    if n and int(grp.max()) >= g:
        raise ValueError(f"network ids must be < n_networks={g}")
    mu = item_array("store_mean", store_mean, n, xp, dt, low=0.0)
    sd = item_array("store_std", store_std, n, xp, dt, low=0.0)
    lt = item_array("store_lead_time", store_lead_time, n, xp, dt, low=0.0)
    h = item_array("store_holding_cost", store_holding_cost, n, xp, dt, low=0.0)
    s_out = item_array("store_service_time", store_service_time, n, xp, dt, low=0.0)
    z = xp.maximum(special(xp).ndtri(
        service_level_array("store_service_level", store_service_level, n, xp, dt)), 0)
    dlt = item_array("dc_lead_time", dc_lead_time, g, xp, dt, low=0.0)
    dh = item_array("dc_holding_cost", dc_holding_cost, g, xp, dt, low=0.0)
    dsi = item_array("dc_inbound_service", dc_inbound_service, g, xp, dt, low=0.0)
    dz = xp.maximum(special(xp).ndtri(
        service_level_array("dc_service_level", dc_service_level, g, xp, dt)), 0)

    def seg(w):
        return xp.bincount(grp, weights=w.astype(xp.float64), minlength=g).astype(dt)

    dc_mean = seg(mu)
    dc_std = xp.sqrt(seg(sd * sd))
    lo, hi = xp.zeros(g, dt), (dsi + dlt).astype(dt)

    def cost(s):
        """Holding cost of the network's safety stock per day when the DC quotes ``s``."""
        nlt = xp.maximum(s[grp] + lt - s_out, 0.0)
        stores = seg(h * z * sd * xp.sqrt(nlt))
        return stores + dh * dz * dc_std * xp.sqrt(xp.maximum(hi - s, 0.0))

    c_lo, c_hi = cost(lo), cost(hi)
    s = xp.where(c_hi < c_lo, hi, lo)
    best = xp.minimum(c_lo, c_hi)
    # Interior candidates: where a store's net lead time reaches 0, taken rank by rank.
    kink = s_out - lt
    inner = (kink > 0) & (kink < hi[grp]) if n else xp.zeros(0, bool)
    if bool(xp.any(inner)):
        idx = xp.flatnonzero(inner)
        order = xp.lexsort(xp.stack([kink[idx], grp[idx]]))
        idx = idx[order]
        kg = grp[idx]
        first = xp.concatenate([xp.ones(1, bool), kg[1:] != kg[:-1]])
        starts = xp.flatnonzero(first)
        rank = xp.arange(len(idx)) - starts[xp.cumsum(first) - 1]
        for r in range(int(rank.max()) + 1):
            at = rank == r
            cand = lo.copy()
            cand[kg[at]] = kink[idx[at]]
            c = cost(cand)
            better = c < best
            s, best = xp.where(better, cand, s), xp.where(better, c, best)
    dc_nlt = hi - s
    store_nlt = xp.maximum(s[grp] + lt - s_out, 0.0)
    store_ss = z * sd * xp.sqrt(store_nlt)
    dc_ss = dz * dc_std * xp.sqrt(dc_nlt)
    return {
        "dc_service_time": s, "dc_net_lead_time": dc_nlt, "dc_demand_mean": dc_mean,
        "dc_demand_std": dc_std, "dc_safety_stock": dc_ss, "dc_base_stock": dc_mean * dc_nlt + dc_ss,
        "holding_cost": best, "holding_cost_if_dc_holds": c_lo,
        "holding_cost_if_stores_only": c_hi,
        "store_net_lead_time": store_nlt, "store_safety_stock": store_ss,
        "store_base_stock": mu * store_nlt + store_ss,
    }

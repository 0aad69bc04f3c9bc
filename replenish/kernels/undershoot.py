"""How far below the reorder point the position is when an order goes out, under rounded orders.

Under an (R, s, S) policy an order is placed at the first review at which the inventory
position is at or below ``s``; the cycle that order's arrival ends runs out of stock when
the demand over the lead time exceeds the position at that review, ``s - O``. ``O >= 0``
is the *undershoot*: how far the position fell below ``s`` by the review. Planning for
the demand over ``R + L`` (:func:`replenish.kernels.plan_orders` without order
constraints) takes ``O`` as one whole review period's demand, which is exact for a
base-stock policy that orders up to ``s`` at every review. Rounded orders change that:
an order rounded up to the case pack, raised to the MOQ, or spaced by the EOQ leaves the
position above ``S = s`` after ordering, by a gap ``G``, and the next trigger comes when
the demand since has used the gap up: ``O = (demand since) - G``, smaller than a review
period's demand. Planned for ``R + L`` regardless, such items are over-served (with an
MOQ of 12 and a case pack of 6 on Poisson demand of about 24 units a day, an 80% cycle
service target realises about 89%).

:func:`trigger_undershoot` draws ``O`` from the stationary order-to-order chain: each
chain places an order by the rule of :func:`replenish.kernels.orders.order_quantity`
(``need = S - s + O``, at least the MOQ, up to the case pack, at most the maximum
order), walks the position down by review-period demand drawn from the item's own
samples until it is at or below ``s`` again, and repeats; the undershoots of the last
cycle are the samples. A chain still above ``s`` after ``max_steps`` reviews (a gap of
many periods' demand) takes the far-start limit instead: renewal theory's equilibrium
residual of one review period's demand (a size-biased draw times a uniform). Pure
arrays, NumPy or CuPy.
"""
from __future__ import annotations

import functools

import numpy as np

from . import _cpu
from ._backend import asarray
from .orders import _order_quantity

__all__ = ["trigger_demand", "trigger_undershoot", "needs_undershoot"]

_FAR_TRIES = 16   # rejection tries for a size-biased draw


def needs_undershoot(xp, gap, moq, case_pack):
    """Items whose orders can leave the position above ``s``: a gap, an MOQ or a case pack."""
    return (gap > 0) | (moq > 0) | (case_pack > 0)


def trigger_demand(xp, lead_demand, protect_demand, *, gap, moq, case_pack, max_order, seed: int = 0):
    """Samples of the demand a cycle-service reorder point protects (units, (c, S)).

    ``lead_demand`` and ``protect_demand`` are samples of demand over ``L`` and ``R + L``
    on the same paths (:mod:`replenish.kernels._sampling`). For items whose orders are
    rounded (a ``gap`` ``S - s``, an MOQ or a case pack; shape (c,), units) the result is
    the lead time's demand from the review that places the order plus how far the
    position had fallen below ``s`` by then (:func:`trigger_undershoot`, the review
    period's demand taken as the difference of the two); for the others it is
    ``protect_demand`` as it is.
    """
    d_l, d_pi = lead_demand, protect_demand
    live = needs_undershoot(xp, gap, moq, case_pack)
    if bool(live.all()):   # the usual case (the default case pack is 1 unit): no row selection
        return d_l + trigger_undershoot(xp, d_pi - d_l, gap=gap, moq=moq, case_pack=case_pack,
                                        max_order=max_order, seed=seed)
    if not bool(live.any()):
        return d_pi
    rows = xp.nonzero(live)[0]
    out = d_pi.copy()
    out[rows] = d_l[rows] + trigger_undershoot(xp, d_pi[rows] - d_l[rows], gap=gap[rows], moq=moq[rows],
                                               case_pack=case_pack[rows], max_order=max_order[rows], seed=seed)
    return out


def trigger_undershoot(xp, review_demand, *, gap, moq, case_pack, max_order, seed: int = 0,
                       cycles: int = 2, max_steps: int = 32):
    """Samples of the undershoot ``O`` (units) at the reviews that place orders.

    One chain per sample column. Each review's draws are a permutation of the item's
    samples (every sample used once per review), so the chains' draws are as stratified as
    the samples are: with the same permutations for every item (common random numbers) a
    random subset would shift every item's reorder point the same way.

    Parameters
    ----------
    review_demand : array, shape (c, S)
        Samples of one review period's demand per item, units (>= 0).
    gap : array, shape (c,)
        ``S - s``, units (0 for a base-stock policy; the EOQ with a fixed order cost).
    moq, case_pack, max_order : array, shape (c,)
        The order rule's constraints, units (0 = none; ``max_order`` inf = none).
    seed : int
        The permutations (host PCG64, the same for every chunk of items: an item's result
        does not depend on the others).
    cycles, max_steps : int
        Order cycles each chain runs; reviews per cycle before the far-start limit.

    Returns
    -------
    array, shape (c, S)
        Undershoot samples in units, independent of column ``j`` of the samples they came
        from. For a base-stock item without constraints ``O`` is one review period's demand
        (then :func:`replenish.kernels.plan_orders` does not call this).
    """
    r = review_demand
    c, s = r.shape
    host = _draws(int(seed), s, cycles, max_steps, np.dtype(r.dtype).str)
    if xp is np and _cpu.enabled():   # the compiled per-chain loop, the same arithmetic
        from . import _undershoot_cpu  # noqa: PLC0415
        return _undershoot_cpu.run(r, *(np.ascontiguousarray(a, dtype=r.dtype) for a in
                                        (gap, moq, case_pack, max_order)), *host, max_steps)
    perm, far_cols, far_acc, frac = (asarray(a, xp) for a in host)
    g0, m, p, cap = (a.astype(r.dtype, copy=False)[:, None] for a in (gap, moq, case_pack, max_order))
    zero = xp.zeros_like(g0)
    under = r[:, perm[0]]   # the first trigger: as if the previous order left no gap
    for cyc in range(cycles):
        base = 1 + cyc * max_steps   # this cycle's rows of ``perm``
        # the order rule with positions relative to s: at -under, order up to the gap;
        # left: the position above s after the order, less the next review's demand
        left = _order_quantity(xp, -under, zero, g0, m, p, cap) - under - r[:, perm[base]]
        hit = left <= 0
        under = xp.where(hit, -left, 0).astype(r.dtype, copy=False)
        # most chains order again at the next review; the others walk on, as (item, chain) pairs
        pr, pc = xp.nonzero(~hit)
        lp = left[pr, pc]
        for k in range(1, max_steps):
            if not lp.size:
                break
            lp = lp - r[pr, perm[base + k][pc]]
            h = lp <= 0
            under[pr[h], pc[h]] = -lp[h]
            pr, pc, lp = pr[~h], pc[~h], lp[~h]
        if lp.size:   # still above s after max_steps reviews: the far-start limit
            under[pr, pc] = _residual(xp, r, pr, pc, far_cols[cyc], far_acc[cyc], frac[cyc])
    return under


@functools.lru_cache(maxsize=8)
def _draws(seed: int, s: int, cycles: int, max_steps: int, dtype: str):
    """The chains' draws, on the host: a permutation of the S sample columns per review,
    and the far-start limit's candidate columns, acceptance uniforms and fractions."""
    rng = np.random.default_rng([seed & 0xFFFFFFFF, 0x0D3E])
    perm = np.stack([rng.permutation(s) for _ in range(1 + cycles * max_steps)])
    far_cols = rng.integers(0, s, size=(cycles, _FAR_TRIES, s))
    far_acc = rng.random((cycles, _FAR_TRIES, s)).astype(dtype)
    frac = rng.random((cycles, s)).astype(dtype)
    for a in (perm, far_cols, far_acc, frac):
        a.flags.writeable = False
    return perm, far_cols, far_acc, frac


def _residual(xp, r, pr, pc, cand, acc, frac):
    """Draws of the equilibrium residual of one review period's demand, ``U * D~`` with
    ``D~`` size-biased (drawn with probability proportional to its value, by rejection
    from the item's samples: ``_FAR_TRIES`` tries, then the last candidate) and ``U``
    uniform, for the (item ``pr``, chain ``pc``) pairs: the undershoot of a walk that
    starts far above s. Units."""
    top = r.max(axis=1)[pr]
    pick = r[pr, cand[-1][pc]]
    done = xp.zeros(pick.shape, dtype=bool)
    for k in range(cand.shape[0]):
        x = r[pr, cand[k][pc]]
        take = ~done & (acc[k][pc] * top < x)
        pick = xp.where(take, x, pick)
        done |= take
    return pick * frac[pc]

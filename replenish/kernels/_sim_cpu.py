"""Compiled host loop of :func:`replenish.kernels.simulate.simulate_inventory` (Numba).

One loop per item over the periods, items spread over the cores (``prange``). Each step
does what the vectorized period loop of ``simulate.py`` does for one item, operation for
operation and in float64, so the two agree to the last bit (up to the last ulp of
``log``/``cos``/``exp`` in lognormal lead-time draws, which only matters when a draw lands
exactly on a whole period). Compiled on first use and cached on disk by Numba.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from . import _cpu
from ._sim_common import ACC as _ACC, C_ITEM as _C_ITEM, C_SEED as _C_SEED, C_STREAM as _C_STREAM
from ._sim_common import C_T as _C_T, DAILY_KEYS, MASK as _MASK

__all__ = ["run"]


@functools.lru_cache(maxsize=1)
def _compiled():
    nb = _cpu._numba()
    c_item, c_seed, c_t, c_stream = (np.uint64(c) for c in (_C_ITEM, _C_SEED, _C_T, _C_STREAM))
    m1, m2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
    s30, s27, s31, s11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
    two_pi = 2.0 * math.pi

    @nb.njit(inline="always")
    def uniform(item, seed, t, stream):  # pragma: no cover - compiled
        base = seed * c_seed + np.uint64(t) * c_t + np.uint64(stream) * c_stream
        z = item * c_item + base
        z = (z ^ (z >> s30)) * m1
        z = (z ^ (z >> s27)) * m2
        z = z ^ (z >> s31)
        return (np.float64(z >> s11) + 0.5) * (1.0 / 9007199254740992.0)

    @nb.njit(inline="always")
    def store(acc, k, i, dem, sold, short, lost, rec, ordered, orders, expired, out, oh, bl):  # pragma: no cover
        # the segment's sums, in the rows of simulate._ACC (cycles, rows 8-9, go in directly)
        for row, v in ((0, dem), (1, sold), (2, short), (3, lost), (4, rec), (5, ordered), (6, orders),
                       (7, expired), (10, out), (11, oh), (12, bl)):
            acc[row, k, i] += v

    @nb.njit(parallel=True, cache=True, nogil=True)
    def kernel(demand, seg, s_lvl, big_s, review, offset, moq, pack, cap, cdf, lmean, lmu, lsig, lcap,
               crossing, lost, life, ids, seed, t0, record, on_hand, backlog, pipe, events, pipe_total, age, ages,
               last, cyc_len, flag, acc, daily):  # pragma: no cover - compiled
        n, horizon = demand.shape
        n_seg = seg.shape[0]
        width = pipe.shape[0]
        has_cdf = cdf.shape[1] > 0
        lmax = cdf.shape[1] - 1
        for i in nb.prange(n):
            oh = on_hand[i]
            bl = backlog[i]
            pt = pipe_total[i]
            la = last[i]
            cl = cyc_len[i]
            fl = flag[i]
            item = ids[i]
            # the item's pipeline and age rings, local for the loop (the (width, n) arrays
            # put an item's slots n * 8 bytes apart: a cache line and a TLB entry per slot)
            lp = np.empty(width)
            le = np.empty(width)
            for j in range(width):
                lp[j] = pipe[j, i]
                le[j] = events[j, i]
            lag = np.empty(max(ages, 1))
            for j in range(ages):
                lag[j] = age[j, i]
            k = 0
            # ring positions and the review calendar as counters (a 64-bit division per
            # period would cost more than the rest of the step)
            slot_t = 0                   # t % width
            phase = (t0 - offset[0, i]) % review[0, i]   # (t + t0 - offset) % R at t = 0
            a_dem = a_sold = a_short = a_lost = a_rec = a_ord = a_n = a_exp = 0.0
            a_out = a_oh = a_bl = 0.0
            for t in range(horizon):
                while k + 1 < n_seg and t >= seg[k + 1]:
                    store(acc, k, i, a_dem, a_sold, a_short, a_lost, a_rec, a_ord, a_n, a_exp, a_out,
                          a_oh, a_bl)
                    a_dem = a_sold = a_short = a_lost = a_rec = a_ord = a_n = a_exp = 0.0
                    a_out = a_oh = a_bl = 0.0
                    k += 1
                    phase = (t + t0 - offset[k, i]) % review[k, i]
                if ages > 0:
                    slot = (t - life[i]) % ages
                    x = lag[slot]
                    lag[slot] = 0.0
                    oh -= x
                    a_exp += x
                    if record:
                        daily[5, t, i] += x
                got = lp[slot_t]
                lp[slot_t] = 0.0
                pt -= got
                received = le[slot_t] > 0
                le[slot_t] = 0.0
                fill = min(got, bl)
                bl -= fill
                rest = got - fill
                oh += rest
                if ages > 0:
                    lag[t % ages] += rest
                a_rec += got
                if record:
                    daily[2, t, i] += got
                # review
                if phase == 0:
                    pos = (oh + pt) - bl
                    need = big_s[k, i] - pos if pos <= s_lvl[k, i] else 0.0
                    need = max(need, 0.0)
                    pk = pack[i]
                    safe = pk if pk > 0 else 1.0
                    q = max(need, moq[i]) if need > 0 else 0.0
                    if pk > 0:
                        q = np.ceil(q / safe) * safe
                        top = np.floor(cap[i] / safe) * safe
                    else:
                        top = cap[i]
                    q = min(q, top)
                    if q < moq[i]:
                        q = 0.0
                    if pos <= s_lvl[k, i]:   # an order is due (maybe of zero units)
                        u0 = uniform(item, seed, t + t0, 0)
                        if has_cdf:
                            lt = 0
                            for j in range(lmax + 1):
                                if cdf[i, j] <= u0:
                                    lt += 1
                            lt = min(lt, lmax)
                        else:
                            u2 = uniform(item, seed, t + t0, 2)
                            value = lmean[i]
                            if lsig[i] > 0:
                                u1 = uniform(item, seed, t + t0, 1)
                                z = math.sqrt(-2.0 * math.log(u0)) * math.cos(two_pi * u1)
                                value = min(math.exp(lmu[i] + lsig[i] * z), lcap[i])
                            whole = np.floor(value)
                            lt = int(whole) + (1 if u2 < value - whole else 0)
                        arrival = t + lt
                        if not crossing:
                            arrival = max(arrival, la)
                        la = arrival
                        if arrival == t:
                            fill = min(q, bl)
                            bl -= fill
                            rest = q - fill
                            oh += rest
                            if ages > 0:
                                lag[t % ages] += rest
                            received = True
                            a_rec += q
                            if record:
                                daily[2, t, i] += q
                        else:
                            at = slot_t + (arrival - t)   # arrival - t < width
                            if at >= width:
                                at -= width
                            lp[at] += q
                            le[at] += 1.0
                            pt += q
                        if q > 0:
                            a_n += 1.0
                        a_ord += q
                        if record:
                            daily[6, t, i] += q
                if received and cl > 0:
                    acc[8, k, i] += 1.0
                    if fl:
                        acc[9, k, i] += 1.0
                    fl = False
                    cl = 0
                dem = np.float64(demand[i, t])
                sold = min(dem, max(oh, 0.0))
                if ages > 0:
                    left = sold
                    for j in range(ages - 1, -1, -1):
                        if left <= 0:
                            break
                        slot = (t - j) % ages
                        take = min(left, lag[slot])
                        lag[slot] -= take
                        left -= take
                oh -= sold
                short = dem - sold
                if lost:
                    a_lost += short
                else:
                    bl += short
                out = short > 0 or bl > 0
                if out:
                    fl = True
                    a_out += 1.0
                a_dem += dem
                a_sold += sold
                a_short += short
                a_oh += oh
                a_bl += bl
                cl += 1
                slot_t += 1
                if slot_t == width:
                    slot_t = 0
                phase += 1
                if phase == review[k, i]:
                    phase = 0
                if record:
                    daily[0, t, i] = oh
                    daily[1, t, i] = bl
                    daily[3, t, i] = sold
                    daily[4, t, i] = short
            store(acc, k, i, a_dem, a_sold, a_short, a_lost, a_rec, a_ord, a_n, a_exp, a_out, a_oh, a_bl)
            for j in range(width):
                pipe[j, i] = lp[j]
                events[j, i] = le[j]
            for j in range(ages):
                age[j, i] = lag[j]
            on_hand[i] = oh
            backlog[i] = bl
            pipe_total[i] = pt
            last[i] = la
            cyc_len[i] = cl
            flag[i] = fl

    return kernel


def run(demand, st, a):
    """Run the compiled loop on NumPy inputs prepared by ``simulate_inventory``; the state
    arrays in ``st`` are updated in place. Returns ``(acc, daily)`` shaped as the
    vectorized loop's: (13, S, n) sums and a dict of (T, n) paths."""
    n, horizon = demand.shape
    n_seg = len(a["seg"])
    acc = np.zeros((len(_ACC), n_seg, n))
    daily = np.zeros((len(DAILY_KEYS), horizon if a["record"] else 0, n))
    lead = a["lead"]
    cdf = lead["cdf"] if lead["cdf"] is not None else np.zeros((n, 0))
    life = a["life"]
    ages = st["age"].shape[0] if (n and int(life.max()) > 0) else 0
    kernel = _compiled()
    c = np.ascontiguousarray
    kernel(c(demand), c(a["seg"]), c(a["s"]), c(a["big_s"]), c(a["review"]), c(a["offset"]),
           c(a["moq"]), c(a["pack"]), c(a["cap"]), c(cdf), c(lead["mean"]), c(lead["mu"]),
           c(lead["sigma"]), c(lead["cap"]), a["crossing"], a["lost"], c(life), c(a["ids"]),
           np.uint64(a["seed"] & _MASK), a["t0"], a["record"], st["on_hand"], st["backlog"], st["pipe"],
           st["events"], st["pipe_total"], st["age"], ages, st["last_arrival"], st["cycle_len"], st["cycle_flag"],
           acc, daily)
    rec = {k: daily[j] for j, k in enumerate(DAILY_KEYS)} if a["record"] else {}
    return acc, rec

"""Compiled host loop of :func:`replenish.kernels.undershoot.trigger_undershoot` (Numba).

One loop per item and chain: the same order rule, walk and far-start draw as the vectorized
code, operation for operation in the samples' dtype, so the two agree to the last bit
(checked in ``tests/kernels/test_kernels_undershoot.py``). The vectorized code walks every
chain of a chunk in step, which costs a pass over all of them per review while any is
still above the reorder point; here each chain stops when it orders. No ``prange``: the
sampling path already runs chunks on a thread each (the loop releases the GIL).
Compiled on first use and cached on disk by Numba.
"""
from __future__ import annotations

import functools

import numpy as np

from . import _cpu

__all__ = ["run"]


@functools.lru_cache(maxsize=1)
def _compiled():
    nb = _cpu._numba()

    @nb.njit(nogil=True, cache=True)
    def kernel(r, g0, moq, pack, cap, perm, far_cols, far_acc, frac, max_steps, zero, one, out):  # pragma: no cover
        c, s = r.shape
        cycles = frac.shape[0]
        tries = far_cols.shape[1]
        for i in range(c):
            top = r[i, 0]
            for j in range(1, s):
                if r[i, j] > top:
                    top = r[i, j]
            has_p = pack[i] > zero
            safe = pack[i] if has_p else one
            top_q = np.floor(cap[i] / safe) * safe if has_p else cap[i]
            for j in range(s):
                under = r[i, perm[0, j]]
                for cyc in range(cycles):
                    base = 1 + cyc * max_steps
                    need = g0[i] + under   # the order rule at -under below s, up to the gap
                    if need < zero:
                        need = zero
                    q = zero
                    if need > zero:
                        q = need if need > moq[i] else moq[i]
                    if has_p:
                        q = np.ceil(q / safe) * safe
                    if q > top_q:
                        q = top_q
                    if q < moq[i]:
                        q = zero
                    left = q - under - r[i, perm[base, j]]
                    k = 1
                    while left > zero and k < max_steps:
                        left = left - r[i, perm[base + k, j]]
                        k += 1
                    if left <= zero:
                        under = -left
                    else:   # the far-start limit: a size-biased draw times a uniform
                        pick = r[i, far_cols[cyc, tries - 1, j]]
                        for t in range(tries):
                            x = r[i, far_cols[cyc, t, j]]
                            if far_acc[cyc, t, j] * top < x:
                                pick = x
                                break
                        under = pick * frac[cyc, j]
                out[i, j] = under

    return kernel


def run(r, g0, moq, pack, cap, perm, far_cols, far_acc, frac, max_steps: int) -> np.ndarray:
    """Undershoot samples (c, S) in the dtype of ``r`` (units); arguments as prepared by
    :func:`replenish.kernels.undershoot.trigger_undershoot`, on the host."""
    dt = r.dtype.type
    out = np.empty_like(r)
    _compiled()(np.ascontiguousarray(r), g0, moq, pack, cap, perm, far_cols, far_acc, frac,
                int(max_steps), dt(0), dt(1), out)
    return out

"""Fused CuPy kernels for the hot, memory-bound paths (imported only with CuPy inputs).

Separate CuPy operations each read and write whole arrays: z, safety stock,
reorder point, order-up-to and order quantity cost about a dozen passes over
memory.  One ElementwiseKernel reads each input once and writes each output
once, which is what a bandwidth-bound kernel can do best.

The device code mirrors the NumPy code in :mod:`policies` and :mod:`orders`
operation for operation; products and sums use round-to-nearest intrinsics so
the compiler cannot contract them into fused multiply-adds, which keeps host and
device within float rounding of the inverse normal CDF (CUDA's ``normcdfinv``
versus SciPy's ``ndtri``).
"""
from __future__ import annotations

import functools

from ._backend import cupy_module

__all__ = ["ELEMENTWISE", "PREAMBLE", "normal_policy", "order_quantity", "normal_plan"]

_PREAMBLE = r"""
__device__ __forceinline__ float rp_ndtri(float p) { return normcdfinvf(p); }
__device__ __forceinline__ double rp_ndtri(double p) { return normcdfinv(p); }
__device__ __forceinline__ float rp_mul(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ double rp_mul(double a, double b) { return __dmul_rn(a, b); }
__device__ __forceinline__ float rp_add(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ double rp_add(double a, double b) { return __dadd_rn(a, b); }
__device__ __forceinline__ float rp_div(float a, float b) { return __fdiv_rn(a, b); }
__device__ __forceinline__ double rp_div(double a, double b) { return __ddiv_rn(a, b); }
"""

POLICY_SNIPPET = r"""
    const T zero = (T)0;
    T z = rp_ndtri(level);
    T r = rp_add(mu_l, rp_mul(z, sd_l));
    r = r > zero ? r : zero;
    T s = rp_add(mu_p, rp_mul(z, sd_p));
    s = s > zero ? s : zero;
    T lo = rp_add(r, lot);
    s = s > lo ? s : lo;
"""

ORDER_SNIPPET = r"""
    T need = pos <= r ? rp_add(s, -pos) : zero;
    need = need > zero ? need : zero;
    T q = need > zero ? (need > moq ? need : moq) : zero;
    T top = cap;
    if (pack > zero) {
        q = rp_mul(ceil(rp_div(q, pack)), pack);
        top = rp_mul(floor(rp_div(cap, pack)), pack);
    }
    q = q < top ? q : top;
    q = q < moq ? zero : q;
"""


#: The fused elementwise kernels: name -> (inputs, outputs, body), in CuPy's
#: ``ElementwiseKernel`` notation (``T`` is the float type of the call: float or double).
#: ``tests/kernels/test_kernels_cuda_source.py`` compiles each, in both float types, for
#: an explicit GPU architecture without a device (nvcc, or NVRTC).
ELEMENTWISE = {
    "replenish_normal_policy": (
        "T mu_l, T sd_l, T mu_p, T sd_p, T level, T lot",
        "T ss, T rop, T out",
        POLICY_SNIPPET + "ss = rp_add(r, -mu_l); rop = r; out = s;"),
    "replenish_order_quantity": (
        "T pos, T r, T s, T moq, T pack, T cap",
        "T qty",
        "const T zero = (T)0;" + ORDER_SNIPPET + "qty = q;"),
    "replenish_normal_plan": (
        "T mu_l, T sd_l, T mu_p, T sd_p, T level, T lot, T pos, T moq, T pack, T cap",
        "T ss, T rop, T out, T qty",
        POLICY_SNIPPET + ORDER_SNIPPET + "ss = rp_add(r, -mu_l); rop = r; out = s; qty = q;"),
}

#: Shared device functions of the kernels above.
PREAMBLE = _PREAMBLE


@functools.lru_cache(maxsize=None)
def _kernels():
    cp = cupy_module()
    return tuple(cp.ElementwiseKernel(inputs, outputs, body, name, preamble=PREAMBLE)
                 for name, (inputs, outputs, body) in ELEMENTWISE.items())


def _cast(dtype, *arrays):
    cp = cupy_module()
    return [cp.asarray(a, dtype=dtype) for a in arrays]


def normal_policy(mu_l, sd_l, mu_p, sd_p, level, lot):
    """Fused safety stock, reorder point, order-up-to (see :func:`policies.normal_policy`)."""
    dt = mu_l.dtype
    return _kernels()[0](*_cast(dt, mu_l, sd_l, mu_p, sd_p, level, lot))


def order_quantity(pos, rop, out, moq, pack, cap):
    """Fused order rule (see :func:`orders.order_quantity`)."""
    return _kernels()[1](*_cast(pos.dtype, pos, rop, out, moq, pack, cap))


def normal_plan(mu_l, sd_l, mu_p, sd_p, level, lot, pos, moq, pack, cap):
    """Policy and order quantity in one pass over memory.

    Parameters
    ----------
    mu_l, sd_l : cupy.ndarray, shape (n,)
        Lead-time demand mean and standard deviation, units.
    mu_p, sd_p : cupy.ndarray, shape (n,)
        Review-plus-lead-time demand mean and standard deviation, units.
    level : cupy.ndarray, shape (n,) or ()
        Cycle service level, already clipped to (0, 1).
    lot : cupy.ndarray, shape (n,) or ()
        Minimum gap from reorder point to order-up-to level, units.
    pos : cupy.ndarray, shape (n,)
        Inventory position, units.
    moq, pack, cap : cupy.ndarray, shape (n,) or ()
        MOQ, case pack (0: none) and maximum order (``inf``: none), units.

    Returns
    -------
    safety_stock, reorder_point, order_up_to, order_quantity : cupy.ndarray, shape (n,)
        Units.
    """
    dt = mu_l.dtype
    return _kernels()[2](*_cast(dt, mu_l, sd_l, mu_p, sd_p, level, lot, pos, moq, pack, cap))

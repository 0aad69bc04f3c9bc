"""Array backend: the one module that decides between NumPy and CuPy.

Every kernel calls :func:`get_xp` on its inputs and then writes ``xp.`` instead of
``np.``, so one code path serves host and device arrays.  CuPy is imported lazily,
only when a CuPy array is actually passed in, so the CPU path never imports it.
"""
from __future__ import annotations

import numpy as np

__all__ = ["get_xp", "asarray", "is_cupy", "to_numpy", "compute_dtype", "special", "cupy_module",
           "from_dlpack", "backend_name"]


def _is_cupy_array(a) -> bool:
    # Checking the defining module avoids importing cupy just to run isinstance.
    return type(a).__module__.split(".", 1)[0] == "cupy"


def cupy_module():
    """Return the ``cupy`` module (imported here and nowhere else)."""
    import cupy  # noqa: PLC0415  -- lazy on purpose: CPU-only installs have no cupy

    return cupy


def get_xp(*arrays):
    """Array module (``numpy`` or ``cupy``) of the inputs.

    Parameters
    ----------
    *arrays : array_like or None
        Any mix of arrays, scalars and ``None``.  A single CuPy array makes the
        result ``cupy``; otherwise ``numpy``.

    Returns
    -------
    module
        ``numpy`` or ``cupy``.
    """
    for a in arrays:
        if _is_cupy_array(a):
            return cupy_module()
    return np


def is_cupy(xp) -> bool:
    """True when ``xp`` is the CuPy module."""
    return getattr(xp, "__name__", "") == "cupy"


def asarray(x, xp, dtype=None):
    """Convert ``x`` to an array of module ``xp`` (host to device copy if needed).

    Parameters
    ----------
    x : array_like
        Scalar, list, NumPy or CuPy array.
    xp : module
        Target array module.
    dtype : dtype, optional
        Target dtype; ``None`` keeps the input's.

    Returns
    -------
    ndarray
        Array of module ``xp``.
    """
    if is_cupy(xp):
        return xp.asarray(x, dtype=dtype)
    if _is_cupy_array(x):
        x = x.get()
    return np.asarray(x, dtype=dtype)


def to_numpy(x):
    """Host (NumPy) copy of ``x``; NumPy arrays and scalars pass through."""
    if _is_cupy_array(x):
        return x.get()
    return np.asarray(x)


# DLPack device types (dlpack.h): host memory, CUDA device memory, pinned host memory
_DLPACK_CPU, _DLPACK_CUDA, _DLPACK_CUDA_HOST = 1, 2, 3


def from_dlpack(x):
    """The kernels' array for ``x`` (a torch tensor, or anything with ``__dlpack__``), without a copy.

    Memory on a CUDA device becomes a CuPy array on that device, host memory a NumPy
    array: the data stays where it is (DLPack shares the buffer), so forecasts a GPU model
    produced go to the CuPy kernels without a round trip through the host.

    Parameters
    ----------
    x : object with ``__dlpack__`` and ``__dlpack_device__``
        For example a ``torch.Tensor`` (not requiring grad), a NumPy or CuPy array.

    Returns
    -------
    numpy.ndarray or cupy.ndarray
        A view of the same memory.
    """
    if isinstance(x, np.ndarray) or _is_cupy_array(x):
        return x
    device_type = int(x.__dlpack_device__()[0])
    if device_type in (_DLPACK_CPU, _DLPACK_CUDA_HOST):
        return np.from_dlpack(x)
    if device_type == _DLPACK_CUDA:
        return cupy_module().from_dlpack(x)
    raise ValueError(f"from_dlpack: device type {device_type} is neither host memory nor CUDA")


def backend_name(a) -> str:
    """``"cupy"`` or ``"numpy"``: the backend the kernels use for array ``a``."""
    return "cupy" if _is_cupy_array(a) else "numpy"


def compute_dtype(xp, ref):
    """Floating dtype to compute in: the reference array's float dtype.

    Float32 and float64 inputs keep their dtype.  Anything else (integers,
    lists) becomes float32 on the device, where bandwidth is what counts, and
    float64 on the host.
    """
    dt = getattr(ref, "dtype", None)
    if dt is not None and dt in (np.float32, np.float64):
        return np.dtype(dt)
    return np.dtype(np.float32) if is_cupy(xp) else np.dtype(np.float64)


class _Special:
    """The few special functions the kernels need, for one backend."""

    def __init__(self, ndtr, ndtri):
        self.ndtr = ndtr  # standard normal CDF
        self.ndtri = ndtri  # its inverse


def special(xp) -> _Special:
    """Normal CDF and inverse CDF for backend ``xp`` (SciPy or cupyx.scipy)."""
    if is_cupy(xp):
        from cupyx.scipy import special as sp  # noqa: PLC0415
    else:
        from scipy import special as sp  # noqa: PLC0415
    return _Special(sp.ndtr, sp.ndtri)

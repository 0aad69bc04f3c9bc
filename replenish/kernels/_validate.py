"""Input checks shared by the kernels: finite values, bounds, broadcasting to items."""
from __future__ import annotations

from ._backend import asarray

SERVICE_LEVEL_MIN = 1e-6
SERVICE_LEVEL_MAX = 1.0 - 1e-6


def check_finite(name, x, xp):
    """Raise ``ValueError`` naming ``name`` if ``x`` holds NaN or infinite entries."""
    if x.dtype.kind not in "fc":
        return
    # A finite sum proves every entry finite (NaN and inf propagate); count the
    # bad entries, an extra pass, only when it is not (or when the sum overflowed).
    if x.size == 0 or bool(xp.isfinite(x.sum())):
        return
    bad = int(xp.count_nonzero(~xp.isfinite(x)))
    if bad:
        raise ValueError(
            f"{name} has {bad} non-finite entr{'y' if bad == 1 else 'ies'} (NaN or infinite) "
            f"out of {x.size}; replenishment inputs must be finite"
        )


def item_array(name, x, n, xp, dtype, *, low=None, strict=False, high=None):
    """Broadcast a scalar or (n,) input to an (n,) array and check its values.

    Parameters
    ----------
    name : str
        Argument name used in error messages.
    x : scalar or array_like, shape (n,) or ()
        The value(s).
    n : int
        Number of items.
    xp : module
        Array module.
    dtype : dtype
        Compute dtype.
    low, high : float, optional
        Bounds; ``strict`` makes ``low`` exclusive.

    Returns
    -------
    ndarray, shape (n,)
    """
    a = asarray(x, xp, dtype=dtype)
    if a.ndim > 1 or (a.ndim == 1 and a.shape[0] not in (1, n)):
        raise ValueError(f"{name} must be a scalar or have shape ({n},), got shape {a.shape}")
    check_finite(name, a, xp)
    if low is not None:
        bad = int(xp.count_nonzero(a <= low if strict else a < low))
        if bad:
            op = ">" if strict else ">="
            raise ValueError(f"{name} must be {op} {low}; {bad} entr{'y is' if bad == 1 else 'ies are'} not")
    if high is not None:
        bad = int(xp.count_nonzero(a > high))
        if bad:
            raise ValueError(f"{name} must be <= {high}; {bad} entr{'y is' if bad == 1 else 'ies are'} not")
    return xp.broadcast_to(a, (n,)) if a.ndim == 0 or a.shape[0] == 1 else a


def service_level_array(name, x, n, xp, dtype):
    """(n,) service levels, finite, inside [0, 1], clipped to the open interval.

    Exactly 0 or 1 would put the reorder point at minus or plus infinity, so they
    are clipped to ``[1e-6, 1 - 1e-6]``.
    """
    a = item_array(name, x, n, xp, dtype, low=0.0, high=1.0)
    return xp.clip(a, SERVICE_LEVEL_MIN, SERVICE_LEVEL_MAX)


def lead_time_pmf_array(pmf, n, xp, dtype):
    """Validated lead-time probabilities, shape (1, Lmax+1) or (n, Lmax+1), rows sum to 1."""
    a = asarray(pmf, xp, dtype=dtype)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2 or a.shape[0] not in (1, n):
        raise ValueError(f"lead_time_pmf must have shape (Lmax+1,) or ({n}, Lmax+1), got {a.shape}")
    check_finite("lead_time_pmf", a, xp)
    if bool(xp.any(a < 0)):
        raise ValueError("lead_time_pmf must be non-negative")
    bad = int(xp.count_nonzero(xp.abs(a.sum(axis=1) - 1) > 1e-4))
    if bad:
        raise ValueError(f"lead_time_pmf rows must sum to 1; {bad} row(s) do not")
    return a / a.sum(axis=1, keepdims=True)

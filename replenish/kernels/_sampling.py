"""Chunked Monte-Carlo sampling of demand over the lead time and the protection interval.

Scheme (inverse-CDF sampling, periods independent):

* Each period's demand is ``Q_h(U_h)`` with ``Q_h`` the period's quantile function
  (see :mod:`replenish.kernels.period_demand`) and ``U_h`` uniform.  ``Q_h(u)`` is a
  linear combination of the period's knots with weights depending only on ``u``
  (two non-zero weights), so for a whole chunk of items the sum over periods
  becomes one matrix product ``knots[c, days*K] @ weights[days*K, S]``: this is
  what makes 1M items x 1000 samples x 28 days feasible on two CPU cores.
* Items in a chunk share the uniforms (common random numbers).  Each item's
  samples are still exact draws from its own distribution; only the Monte-Carlo
  errors of items in the same chunk are correlated.  Per period the uniforms are
  Latin-hypercube stratified over the samples (each of the S strata of [0, 1)
  gets exactly one draw), which reduces the sampling error of sums.
* A deterministic lead time enters as per-item period weights folded into the
  knots.  A random lead time (lognormal with the given mean and standard
  deviation, or a discrete pmf over 0..Lmax periods) is drawn per sample,
  stratified (sorted over the samples) and independent of the demand draws.
  The samples are cut into 16 blocks of consecutive lead-time strata; in each
  block the periods that every sample covers are one matrix product, and the
  few uncertain periods are accumulated period by period and read off at each
  sample's (fractional) lead time.
* Items are processed in order of lead time so a chunk spans few periods.
  Memory per chunk is a few ``chunk_size x S`` arrays (plus
  ``chunk_size x S/16 x uncertain periods`` with random lead times); nothing of
  size ``n x S x H`` is ever built.
* Random numbers come from NumPy's PCG64 seeded with ``(seed, period)`` for the
  demand uniforms of each period and ``(seed, lead-time stream)`` for the
  lead-time strata, generated on the host, so the NumPy and CuPy paths draw the
  same numbers.  Every chunk uses the same numbers (common random numbers across
  all items): an item's result depends on its own inputs and the seed only, not
  on the other items of the batch, the chunk size, or how a job shards the items.
  So the weight table and the lead-time strata are built once per problem and
  moved to the device once (a table for more periods holds the one for fewer as
  its first rows), and the chunk order and each chunk's period range are worked
  out on the host from one copy of the lead times: on a GPU a chunk waits for the
  host at most once (random lead times: the range of its draws).
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field

import numpy as np

from ._backend import asarray, get_xp, is_cupy, special, to_numpy
from ._validate import item_array, lead_time_pmf_array
from .period_demand import basis_weights, knots, prepare_quantiles

__all__ = ["SamplingProblem"]

_CHUNK_CPU = 2048
_CHUNK_GPU = 32768


@dataclass
class SamplingProblem:
    """Everything needed to draw lead-time demand samples chunk by chunk."""

    levels: np.ndarray
    quantiles: object
    lead_time: object
    lead_time_std: object
    lead_time_pmf: object
    review: object
    n_samples: int
    seed: int
    chunk_size: int
    xp: object
    dtype: object
    _cache: dict = field(default_factory=dict, repr=False, compare=False)
    _lock: object = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def n(self) -> int:
        return int(self.quantiles.shape[0])

    @classmethod
    def build(cls, levels, quantiles, lead_time, *, lead_time_std=None, lead_time_pmf=None,
              review_period=0.0, n_samples=1000, seed=0, chunk_size=None):
        """Validate inputs (see :func:`replenish.kernels.lead_time.sample_lead_time_demand`)."""
        p, q = prepare_quantiles(levels, quantiles)
        xp = get_xp(q)
        n = q.shape[0]
        dt = q.dtype
        pmf = lt = lt_sd = None
        if lead_time_pmf is not None:
            pmf = lead_time_pmf_array(lead_time_pmf, n, xp, dt)
        else:
            lt = item_array("lead_time", lead_time, n, xp, dt, low=0.0)
            if lead_time_std is not None:
                lt_sd = item_array("lead_time_std", lead_time_std, n, xp, dt, low=0.0)
        review = item_array("review_period", review_period, n, xp, dt, low=0.0)
        return cls.from_arrays(p, q, lt, lt_sd, pmf, review, n_samples=n_samples, seed=seed,
                               chunk_size=chunk_size)

    @classmethod
    def from_arrays(cls, levels, quantiles, lead_time, lead_time_std, lead_time_pmf, review, *,
                    n_samples, seed, chunk_size):
        """Build from already validated arrays (levels host float64; the rest (n,) or pmf)."""
        xp = get_xp(quantiles)
        n_samples = int(n_samples)
        if n_samples < 1:
            raise ValueError("n_samples must be >= 1")
        if lead_time_std is not None and not bool(xp.any(lead_time_std > 0)):
            lead_time_std = None
        if chunk_size is None:
            chunk_size = _CHUNK_GPU if is_cupy(xp) else _CHUNK_CPU
        return cls(levels, quantiles, lead_time, lead_time_std, lead_time_pmf, review, n_samples,
                   int(seed), max(int(chunk_size), 1), xp, quantiles.dtype)

    # -- random numbers (host) -------------------------------------------------
    def _uniforms(self, rng, n_days):
        # One generator per period, so period h draws the same numbers whatever the
        # chunk's number of periods (chunk- and shard-invariant results).
        s = self.n_samples
        rows = []
        for h in range(n_days):
            g = np.random.default_rng([self.seed, 1, h])
            rows.append((g.permutation(s) + g.random(s)) / s)
        return np.stack(rows)

    def _weights(self, rng, n_days):
        """(n_days*K, S) weights mapping each period's knots to its sampled demand.

        Built on the host once for the most periods asked so far (at least 32) and kept
        on the device; fewer periods are its first rows (each period's draws do not
        depend on how many periods there are). Thread-safe.
        """
        n_k = self.levels.shape[0] + 2
        with self._lock:
            w = self._cache.get("weights")
            if w is None or w.shape[0] < n_days * n_k:
                days = max(n_days, 32, 0 if w is None else 2 * (w.shape[0] // n_k))
                u = self._uniforms(rng, days)
                h = basis_weights(self.levels, u.reshape(-1)).reshape(days, self.n_samples, n_k)
                h = np.ascontiguousarray(h.transpose(0, 2, 1)).reshape(days * n_k, self.n_samples)
                w = self._cache["weights"] = asarray(h, self.xp, dtype=self.dtype)
        return w[:n_days * n_k]

    def _strata(self):
        """Lead-time strata ``v`` (S,), sorted, one draw per stratum, and their normal scores
        ``z``; on the problem's backend, built once."""
        with self._lock:
            got = self._cache.get("strata")
            if got is None:
                s = self.n_samples
                g = np.random.default_rng([self.seed, 2])
                v = (np.arange(s) + g.random(s)) / s
                got = self._cache["strata"] = (asarray(v, self.xp, dtype=self.dtype),
                                               asarray(special(np).ndtri(v), self.xp,
                                                       dtype=self.dtype))
        return got

    # -- lead-time draws ---------------------------------------------------------
    @property
    def random_lead(self) -> bool:
        return self.lead_time_pmf is not None or self.lead_time_std is not None

    def _lead_samples(self, rng, idx):
        """(c, S) lead times in periods, stratified over samples, per item."""
        xp, dt = self.xp, self.dtype
        s = self.n_samples
        v, z = self._strata()  # sorted, one draw per stratum
        if self.lead_time_pmf is not None:
            pmf = self.lead_time_pmf if self.lead_time_pmf.shape[0] == 1 else self.lead_time_pmf[idx]
            cdf = xp.cumsum(pmf, axis=1)[:, :-1]
            # L = #{l : cdf[l] < v}; with v sorted, cdf[l] < v[s] iff s >= first[l].
            first = xp.searchsorted(v, cdf, side="right")
            rows = cdf.shape[0]
            flat = (xp.arange(rows)[:, None] * (s + 1) + first).reshape(-1)
            counts = xp.bincount(flat, minlength=rows * (s + 1)).reshape(rows, s + 1)
            lags = xp.cumsum(counts[:, :s], axis=1).astype(dt)
            return xp.broadcast_to(lags, (idx.shape[0], s)) if rows == 1 else lags
        mean = self.lead_time[idx]
        sd = self.lead_time_std[idx]
        # Lognormal matched to mean and sd: non-negative, right-skewed (late
        # deliveries), and E[L], Var(L) agree with the normal-approximation path.
        cv2 = xp.where(mean > 0, (sd / xp.maximum(mean, dt.type(1e-30))) ** 2, 0)
        sig = xp.sqrt(xp.log1p(cv2))
        mu = xp.log(xp.maximum(mean, dt.type(1e-30))) - sig * sig / 2
        lags = xp.exp(mu[:, None] + sig[:, None] * z[None, :])
        return xp.where(mean[:, None] > 0, lags, 0)

    # -- main loop ---------------------------------------------------------------
    def chunk_jobs(self):
        """``[(j, idx), ...]``: chunk number and (c,) item indices, in lead-time order.

        The order (and, for fixed lead times, each chunk's range of periods) is worked out
        on a host copy of the lead times, and the indices go to the device in one copy.
        """
        xp = self.xp
        n = self.n
        review = to_numpy(self.review)
        if self.lead_time_pmf is not None and self.lead_time_pmf.shape[0] == n:
            key = to_numpy(self.lead_time_pmf @ xp.arange(self.lead_time_pmf.shape[1], dtype=self.dtype))
        elif self.lead_time_pmf is not None:
            key = np.zeros((n,), dtype=self.dtype)
        else:
            lead = to_numpy(self.lead_time)
            key = lead + (to_numpy(self.lead_time_std) if self.lead_time_std is not None else 0)
        order = np.lexsort(np.stack([np.broadcast_to(review, (n,)), np.broadcast_to(key, (n,))]))
        size = self.chunk_size
        starts = range(0, n, size)
        with self._lock:
            bounds = self._cache.setdefault("fixed_bounds", {})
            if not self.random_lead and n:
                # (ceil max L, floor min L, ceil max (L + R)) per chunk, as _chunk_fixed needs them
                lt = np.broadcast_to(lead, (n,))[order]   # the problem's dtype, as on the device
                pi = lt + np.broadcast_to(review, (n,))[order]
                at = np.asarray(list(starts))
                for j, (hi, lo, top) in enumerate(zip(np.maximum.reduceat(lt, at),
                                                      np.minimum.reduceat(lt, at),
                                                      np.maximum.reduceat(pi, at))):
                    bounds[j] = (int(math.ceil(hi)), int(math.floor(lo)), int(math.ceil(top)))
        order = asarray(order, xp)
        return [(j, order[start:start + size]) for j, start in enumerate(starts)]

    def sample(self, j, idx):
        """Samples of chunk ``j``: ``(d_lead, d_protect, knots)``.

        ``d_lead`` and ``d_protect`` (c, S) are demand over ``L`` and over
        ``R + L`` in units, drawn on the same paths (so ``d_protect >= d_lead``
        sample by sample); ``knots`` (c, H, K).  Thread-safe.
        """
        rng = None  # draws are per period / per stream, see _uniforms and _lead_samples
        kn = knots(self.levels, self.quantiles[idx], copy=False)
        if self.random_lead:
            d_l, d_pi = self._chunk_random(rng, idx, kn)
        else:
            d_l, d_pi = self._chunk_fixed(j, idx, kn)
        return d_l, d_pi, kn

    def chunks(self):
        """Yield ``(idx, d_lead, d_protect, knots)`` per chunk (see :meth:`sample`)."""
        for j, idx in self.chunk_jobs():
            yield (idx, *self.sample(j, idx))

    def _fold(self, kn, weights, day0, day1, share=None):
        """Sum over periods [day0, day1) of sampled demand, optionally weighted per item."""
        xp = self.xp
        c = kn.shape[0]
        n_k = kn.shape[2]
        if day1 <= day0:
            return xp.zeros((c, weights.shape[1]), dtype=self.dtype)
        part = kn[:, day0:day1]
        if share is not None:
            part = part * share[:, :, None]
        part = part.reshape(c, (day1 - day0) * n_k)
        return part @ weights[day0 * n_k:day1 * n_k]

    def _extend(self, kn, n_days):
        xp = self.xp
        horizon = kn.shape[1]
        if n_days <= horizon:
            return kn
        return kn[:, xp.minimum(xp.arange(n_days), horizon - 1)]

    def _period_range(self, j, lt, pi):
        """(ceil max L, floor min L, ceil max (L + R)) of a chunk: from chunk_jobs, or measured."""
        got = self._cache.get("fixed_bounds", {}).get(j)
        if got is not None:
            return got
        xp = self.xp
        hi, lo, top = (float(v) for v in to_numpy(xp.stack([xp.max(lt), xp.min(lt), xp.max(pi)])))
        return int(math.ceil(hi)), int(math.floor(lo)), int(math.ceil(top))

    def _chunk_fixed(self, j, idx, kn):
        xp = self.xp
        rng = None
        lt = self.lead_time[idx]
        pi = lt + self.review[idx]
        d_lead, d0, d1 = self._period_range(j, lt, pi)
        d1 = max(d1, d0)
        n_days = max(d_lead, d1, 1)
        weights = self._weights(rng, n_days)
        kn = self._extend(kn, n_days)
        h = xp.arange(n_days, dtype=self.dtype)
        share_l = xp.clip(lt[:, None] - h[None, :d_lead], 0, 1)
        d_l = self._fold(kn, weights, 0, d_lead, share_l)
        hx = h[d0:d1]
        share_x = xp.clip(pi[:, None] - hx[None, :], 0, 1) - xp.clip(lt[:, None] - hx[None, :], 0, 1)
        d_pi = d_l + self._fold(kn, weights, d0, d1, share_x)
        return d_l, d_pi

    def _chunk_random(self, rng, idx, kn):
        xp = self.xp
        c = idx.shape[0]
        s = self.n_samples
        lags = self._lead_samples(rng, idx)
        ends = lags + self.review[idx][:, None]
        # Lead-time draws rise with the sample index (stratified, sorted), so a
        # block of consecutive samples spans only a few periods of uncertain
        # coverage; everything below is one matrix product per block.
        n_blocks = max(1, min(16, s // 64))
        bounds = np.linspace(0, s, n_blocks + 1).astype(int)
        # each item's draws rise with the sample index, so a block's range is its first
        # column's minimum and its last column's maximum: all of them in one copy to the host
        first, last = bounds[:-1], bounds[1:] - 1
        ranges = to_numpy(xp.stack([lags[:, first].min(axis=0), lags[:, last].max(axis=0),
                                    ends[:, first].min(axis=0), ends[:, last].max(axis=0)]))
        n_days = max(int(math.ceil(float(ranges[3].max()))), 1)
        weights = self._weights(rng, n_days)
        kn = self._extend(kn, n_days)
        d_l = xp.empty((c, s), dtype=self.dtype)
        d_pi = xp.empty((c, s), dtype=self.dtype)
        # per-period (c, K) operands in column-major layout: OpenBLAS's sgemm is
        # ~100x slower on row-major operands with K ~ 9 columns
        kn_t = xp.ascontiguousarray(kn.transpose(1, 2, 0))
        for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
            cols = slice(int(a), int(b))
            w = weights[:, cols]
            d_l[:, cols] = self._partial_sum(kn, kn_t, w, lags[:, cols], ranges[0, i], ranges[1, i])
            d_pi[:, cols] = self._partial_sum(kn, kn_t, w, ends[:, cols], ranges[2, i], ranges[3, i])
        return d_l, d_pi

    def _partial_sum(self, kn, kn_t, weights, t, t_min, t_max):
        """Sampled demand over the first ``t[i, s]`` periods (fractional), shape (c, m);
        ``t_min``, ``t_max``: the smallest and largest entry of ``t``."""
        xp = self.xp
        c, m = t.shape
        n_k = kn.shape[2]
        d0 = int(math.floor(float(t_min)))
        d1 = max(int(math.ceil(float(t_max))), d0)
        base = self._fold(kn, weights, 0, d0)
        nd = d1 - d0
        if nd == 0:
            return base
        # cum[j] = demand of periods d0 .. d0+j-1 (explicit adds: numpy's cumsum
        # along the first axis is an order of magnitude slower)
        cum = xp.empty((nd + 1, c, m), dtype=self.dtype)
        cum[0] = 0
        for j in range(nd):
            h = d0 + j
            xp.matmul(kn_t[h].T, weights[h * n_k:(h + 1) * n_k], out=cum[j + 1])
            cum[j + 1] += cum[j]
        # linear interpolation at the fractional period t - d0
        rel = t - d0
        f = xp.clip(xp.floor(rel), 0, nd - 1)
        frac = rel - f
        pos = f.astype(xp.int64) * (c * m) + (xp.arange(c)[:, None] * m + xp.arange(m)[None, :])
        flat = cum.reshape(-1)
        lo = xp.take(flat, pos)
        hi = xp.take(flat, pos + c * m)
        return base + lo + frac * (hi - lo)

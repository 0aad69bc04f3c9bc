"""Window sampler: TFT batches cut straight from a Panel by vectorized gathers.

A window of series ``s`` is ``enc_len`` encoder periods ending just before period
``dec_start`` of the series, followed by ``horizon`` decoder periods starting there. Encoders
shorter than the batch's encoder width are right-padded with zeros (as pytorch-forecasting's
collate does). Decoder periods past the end of the series take their known covariates from
``Panel.future_known`` and have zero (unknown) demand. Encoder periods before the start of
a series (only for 1-period series, see ``WindowPlan.prediction``) have zero demand and the
covariates of the first period: the item was not sold before it appeared. A period of
unknown demand (NaN in the panel, ``gaps="missing"``) is fed as zero with ``target_known``
False: it is left out of the window's normalisation and of the loss, and the model sees it
flagged (the ``demand_missing`` input, when the model was trained with unknown periods).

The batch is exactly what ``TimeSeriesDataSet`` + its collate function would give for the
same windows (``tests/engine/test_sampler.py``): the same categorical codes, the same
StandardScaler scalings, the same ``EncoderNormalizer`` fitted per window on the encoder
demand, the same ``relative_time_idx``, ``encoder_length`` and target-scale features.
``TimeSeriesDataSet`` is built once, on a small sample, only to fit those encoders and to
build the model with ``from_dataset`` (``_features``).

Gathering (:meth:`WindowSampler.gather`) runs where the panel arrays live (the model's device
for training, host memory for prediction); assembling (:func:`assemble`) runs on the model's
device.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ._features import (MISSING_INPUT, TARGET, FeatureSpec, _key_strings, _series_days, calendar,
                        category_luts)
from .panel import Panel

__all__ = ["WindowSampler", "WindowPlan", "assemble", "to_device"]


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy a host tensor to ``device`` without waiting for the device's queued work.

    CUDA copies go through pinned memory, asynchronously, so the training loop never blocks
    on the GPU (a plain ``.to("cuda")`` from pageable memory synchronises the stream).
    """
    if t.device == device:
        return t
    if device.type == "cuda" and t.device.type == "cpu":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


class WindowSampler:
    """A panel's arrays as torch tensors, and the gather of raw windows from them.

    Parameters
    ----------
    spec : FeatureSpec
        Fitted input layout (from :func:`fit_dataset` or a saved model).
    panel : Panel
        The series. Unknown category values map to code 0 (the model's "unknown").
    device : str or torch.device
        Where the arrays live and the gathers run: the model's device for training, "cpu"
        for prediction (host arrays are wrapped without copying).
    """

    def __init__(self, spec: FeatureSpec, panel: Panel, device: str | torch.device = "cpu"):
        self.spec, self.panel, self.device = spec, panel, torch.device(device)
        dev = self.device
        as_t = (lambda a: torch.as_tensor(a, device=dev)) if dev.type != "cpu" \
            else (lambda a: torch.from_numpy(np.ascontiguousarray(a)))
        self.demand = as_t(panel.demand.astype(np.float32, copy=False))
        # known and observed stay separate arrays: no copy of the panel on the host
        self.known = as_t(panel.known.astype(np.float32, copy=False))
        self.observed = as_t(panel.observed.astype(np.float32, copy=False))
        self.indptr = as_t(panel.indptr.astype(np.int64))
        self.lengths = as_t(panel.lengths.astype(np.int64))
        self.start_day = as_t(_series_days(panel))
        codes = []
        static_values = {"sku": panel.sku, "location": panel.location,
                         **{f"static__{n}": panel.static[n] for n in spec.static_cats}}
        self.static_cat_names = [n for n in spec.x_categoricals if n in static_values]
        for n in self.static_cat_names:
            idx = pd.Index(spec.classes[n]).get_indexer(_key_strings(static_values[n]))
            codes.append(np.where(idx < 0, 0, idx))
        self.n_unknown_keys = int(sum((c == 0).sum() for c in codes[:2]))
        self.static_codes = as_t(np.stack(codes, 1).astype(np.int64) if codes
                                 else np.zeros((panel.n_series, 0), np.int64))
        reals = [np.asarray(panel.static[n], np.float32) for n in spec.static_reals]
        self.static_reals = as_t(np.stack(reals, 1) if reals
                                 else np.zeros((panel.n_series, 0), np.float32))
        fk = panel.future_known
        self.future = None if fk is None else as_t(np.ascontiguousarray(fk, np.float32))
        # Categorical covariates: the panel's codes -> the model's class codes (0: unknown).
        self.cov_luts = []
        for j, name in enumerate((*spec.known, *spec.observed)):
            if name in spec.categorical:
                prefix = "known__" if j < len(spec.known) else "observed__"
                idx = pd.Index(spec.classes[prefix + name]).get_indexer(
                    np.asarray(panel.categories[name]).astype(str))
                self.cov_luts.append((j, as_t(np.where(idx < 0, 0, idx).astype(np.float32))))

    def gather(self, series: torch.Tensor, dec_start: torch.Tensor, enc_len: torch.Tensor,
               enc_width: int) -> dict[str, torch.Tensor]:
        """Raw values of windows, on the sampler's device.

        Parameters
        ----------
        series, dec_start, enc_len : LongTensor, shape (B,)
            Series index, first decoder period (position in the series) and encoder length.
        enc_width : int
            Encoder width of the batch, >= max(enc_len) (the model's encoder length for
            fixed-length batches).

        Returns
        -------
        dict with ``demand`` (B, T) units per period (0 where unknown), ``target_known``
        (B, T) bool (False for padding and unknown periods), ``covs`` (B, T, k + m) raw covariates
        (categorical ones as the model's class codes),
        ``day`` (B, T) day numbers, ``enc_len`` (B,), ``time_start`` (B,) time index of the
        first encoder period, ``static_codes`` (B, c), ``static_reals`` (B, r); T = enc_width
        + horizon.
        """
        dev = self.device
        series, dec_start, enc_len = (to_device(t, dev) for t in (series, dec_start, enc_len))
        h, step = self.spec.horizon, self.spec.step
        t = torch.arange(enc_width + h, device=dev)
        is_dec = t >= enc_width
        pos = torch.where(is_dec, dec_start[:, None] + (t - enc_width),
                          dec_start[:, None] - enc_len[:, None] + t)    # position in series
        length = self.lengths[series][:, None]
        in_enc = ~is_dec & (t < enc_len[:, None])
        in_hist = (pos >= 0) & (pos < length) & (in_enc | is_dec)
        row = self.indptr[series][:, None] + pos.clamp(min=0).minimum(length - 1)
        value = self.demand[row]
        known_target = in_hist & ~torch.isnan(value)
        demand = torch.where(known_target, value, 0.0)
        known = self.known[row]
        if self.future is not None and self.future.shape[1] > 0 and known.shape[-1] > 0:
            fpos = (pos - length).clamp(0, self.future.shape[1] - 1)
            known = torch.where((pos >= length)[..., None],
                                self.future[series[:, None], fpos], known)
        covs = torch.cat([known, self.observed[row]], -1)
        for j, lut in self.cov_luts:
            covs[..., j] = lut[covs[..., j].long()]
        covs = covs * (in_enc | is_dec)[..., None]
        return {"demand": demand, "target_known": known_target, "covs": covs,
                "day": self.start_day[series][:, None] + pos * step, "enc_len": enc_len,
                "time_start": (self.start_day[series] + (dec_start - enc_len) * step) // step,
                "static_codes": self.static_codes[series],
                "static_reals": self.static_reals[series]}

    def windows(self, series: torch.Tensor, dec_start: torch.Tensor, enc_len: torch.Tensor,
                enc_width: int, device: str | torch.device | None = None,
                luts: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Model batch of windows: :meth:`gather`, move to ``device``, :func:`assemble`."""
        raw = self.gather(series, dec_start, enc_len, enc_width)
        if device is not None:
            raw = {k: to_device(v, torch.device(device)) for k, v in raw.items()}
        return assemble(self.spec, raw, enc_width, luts)


def assemble(spec: FeatureSpec, raw: dict[str, torch.Tensor], enc_width: int,
             luts: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Encode, scale and normalise raw windows into the TFT's input dict.

    Parameters
    ----------
    spec : FeatureSpec
    raw : dict
        Output of :meth:`WindowSampler.gather` (any device; the result stays there).
    enc_width : int
        Encoder width W of the batch.

    Returns
    -------
    dict with ``encoder_cat`` (B, W, C), ``encoder_cont`` (B, W, R), ``encoder_target``
    (B, W), ``encoder_lengths`` (B,), ``decoder_cat`` (B, H, C), ``decoder_cont`` (B, H, R),
    ``decoder_target`` (B, H), ``decoder_lengths`` (B,), ``decoder_time_idx`` (B, H),
    ``groups`` (B, 2), ``target_scale`` (B, 2) (center and scale of the window), as
    pytorch-forecasting's collate function returns them, plus ``decoder_target_known`` (B, H)
    bool (False where the actual is unknown: not a target). Targets in units per period.
    """
    from pytorch_forecasting.data.encoders import TorchNormalizer

    demand, enc_len = raw["demand"], raw["enc_len"]
    b, t_all = demand.shape
    dev = demand.device
    h = t_all - enc_width
    luts = luts if luts is not None else category_luts(spec, dev)
    t = torch.arange(t_all, device=dev)
    enc_mask = t[None, :] < enc_len[:, None]
    valid = enc_mask | (t >= enc_width)[None, :]
    # periods of known demand (all of the encoder unless some are unknown): the window's
    # center and scale come from these only (an encoder with fewer than 2: a flat scale)
    known = raw["target_known"] if "target_known" in raw else valid
    enc_known = enc_mask & known

    fwd = TorchNormalizer.get_transform(spec.target_transform)["forward"] \
        if spec.target_transform else (lambda x: x)
    y = fwd(demand)
    n = enc_known.sum(1, keepdim=True).to(y.dtype)
    center = (y * enc_known).sum(1, keepdim=True) / n.clamp(min=1)
    var = (((y - center) * enc_known) ** 2).sum(1, keepdim=True) / (n - 1).clamp(min=1)
    scale = var.sqrt() + torch.finfo(torch.float32).eps
    y_norm = torch.where(enc_known | ~enc_mask, (y - center) / scale, 0.0)

    cal = calendar(raw["day"])
    k = len(spec.known)
    cont: dict[str, torch.Tensor] = {}
    for j, name in enumerate(spec.known):
        cont[f"known__{name}"] = raw["covs"][..., j]
    for j, name in enumerate(spec.observed):
        cont[f"observed__{name}"] = raw["covs"][..., k + j]
    for j, name in enumerate(spec.static_reals):
        cont[f"static__{name}"] = raw["static_reals"][:, j, None].expand(b, t_all)
    for name in spec.cal_reals:
        cont[name] = cal[name].to(torch.float32)
    cols = []
    for name in spec.x_reals:
        if name == TARGET:
            col = y_norm
        elif name == "relative_time_idx":
            col = torch.where(t >= enc_width, t - enc_width, t[None, :] - enc_len[:, None]) \
                .to(torch.float32) / spec.encoder_length
        elif name == MISSING_INPUT:
            col = (enc_mask & ~known).to(torch.float32)
            m, s = spec.scalers[name]
            col = (col - m) / s
        elif name == "encoder_length":
            col = ((enc_len.to(torch.float32) - 0.5 * spec.encoder_length)
                   / spec.encoder_length * 2.0)[:, None].expand(b, t_all)
        elif name in (f"{TARGET}_center", f"{TARGET}_scale"):
            m, s = spec.scalers[name]
            v = center if name.endswith("_center") else scale
            col = ((v - m) / s).expand(b, t_all)
        else:
            m, s = spec.scalers[name]
            col = (cont[name] - m) / s
        cols.append(col)
    x_cont = torch.stack(cols, -1) * valid[..., None] if cols \
        else torch.zeros(b, t_all, 0, device=dev)

    cov_index = {f"{'known' if j < k else 'observed'}__{n}": j
                 for j, n in enumerate((*spec.known, *spec.observed)) if n in spec.categorical}
    static_names = [n for n in spec.x_categoricals if n not in spec.cal_cats and n not in cov_index]
    cats = []
    for name in spec.x_categoricals:
        if name in luts:
            cats.append(luts[name][cal[name]])
        elif name in cov_index:
            cats.append(raw["covs"][..., cov_index[name]].long())
        else:
            cats.append(raw["static_codes"][:, static_names.index(name), None].expand(b, t_all))
    x_cat = torch.stack(cats, -1) * valid[..., None] if cats \
        else torch.zeros(b, t_all, 0, dtype=torch.long, device=dev)

    target = demand * valid
    dec_time = (raw["time_start"] + enc_len)[:, None] + torch.arange(h, device=dev)
    out_known = {"decoder_target_known": (known & valid)[:, enc_width:]}
    return {
        "encoder_cat": x_cat[:, :enc_width], "encoder_cont": x_cont[:, :enc_width],
        "encoder_target": target[:, :enc_width], "encoder_lengths": enc_len,
        "decoder_cat": x_cat[:, enc_width:], "decoder_cont": x_cont[:, enc_width:],
        "decoder_target": target[:, enc_width:],
        "decoder_lengths": torch.full((b,), h, dtype=torch.long, device=dev),
        "decoder_time_idx": dec_time,
        "groups": raw["static_codes"][:, :2],
        "target_scale": torch.cat([center, scale], 1), **out_known,
    }


class WindowPlan:
    """Where training, validation and prediction windows of a panel lie (host, NumPy).

    Training windows end (decoder included) at least ``holdout`` periods before each
    series' end; the validation window of a series is its last ``horizon`` periods (when
    ``holdout`` > 0). "Full" windows have ``encoder_length`` encoder periods; "short" ones
    2 to ``encoder_length`` (at least 2: the per-window EncoderNormalizer needs a std).

    Parameters
    ----------
    lengths : ndarray of int, shape (n_series,)
        Periods per series.
    encoder_length, horizon, holdout : int
        Periods.
    """

    def __init__(self, lengths: np.ndarray, encoder_length: int, horizon: int, holdout: int):
        self.lengths = np.asarray(lengths, np.int64)
        self.L, self.H, self.holdout = int(encoder_length), int(horizon), int(holdout)
        last_start = self.lengths - self.holdout - self.H        # last decoder start
        self.n_full = np.clip(last_start - self.L + 1, 0, None)
        self.n_short = np.clip(last_start - 1, 0, None)          # decoder starts 2..last
        self.cum_full = np.cumsum(self.n_full)
        self.cum_short = np.cumsum(self.n_short)

    @property
    def n_windows(self) -> int:
        return int(self.cum_short[-1]) if len(self.cum_short) else 0

    def draw(self, rng: np.random.Generator, batch: int, short: bool
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """Random training windows, uniform over windows: (series, dec_start, enc_len, width)."""
        if not short and self.cum_full[-1] > 0:
            k = rng.integers(0, self.cum_full[-1], batch)
            s = np.searchsorted(self.cum_full, k, side="right")
            off = k - (self.cum_full[s] - self.n_full[s])
            return s, self.L + off, np.full(batch, self.L), self.L
        k = rng.integers(0, self.cum_short[-1], batch)
        s = np.searchsorted(self.cum_short, k, side="right")
        dec = 2 + k - (self.cum_short[s] - self.n_short[s])
        top = np.minimum(dec, self.L)
        enc = 2 + (rng.random(batch) * (top - 1)).astype(np.int64).clip(0, top - 2)
        return s, dec, enc, int(enc.max())

    def validation(self, rng: np.random.Generator, max_series: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Validation windows (series, dec_start, enc_len): the last horizon of each series."""
        if self.holdout == 0:
            return (np.zeros(0, np.int64),) * 3
        s = np.flatnonzero(self.lengths - self.H >= 2)
        if len(s) > max_series:
            s = np.sort(rng.choice(s, max_series, replace=False))
        dec = self.lengths[s] - self.H
        return s, dec, np.minimum(dec, self.L)

    def prediction(self) -> tuple[np.ndarray, np.ndarray]:
        """Forecast windows after each series' end: (dec_start, enc_len).

        A 1-period series gets a 2-period encoder whose first period (before its start) has
        zero demand: the EncoderNormalizer needs two values, and the item did not sell before
        it appeared.
        """
        dec = self.lengths.copy()
        return dec, np.clip(dec, 2, self.L)

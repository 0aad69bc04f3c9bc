"""Variable importances of the trained TFT, aggregated over a sample of series.

The TFT's variable selection networks weigh each input per window (static inputs) and per
period (encoder and decoder inputs). pytorch-forecasting's ``interpret_output`` sums those
weights over a batch; summed over the windows of a sample of series and normalised to 1
per group, they say which inputs the model leans on (Lim et al. 2021, sec. 7.1). The
windows are each sampled series' last ``horizon`` periods of history (with their
encoder before), so no future covariates are needed; the model's stock forward is used
(the fast forward does not return the selection weights).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from . import _sampler
from .panel import Panel

__all__ = ["variable_importance", "display_name"]

_CAL = {"cal_day_of_week": "day of week", "cal_month": "month", "cal_day_of_month": "day of month",
        "cal_day_of_year": "day of year", "cal_week_of_year": "week of year"}
_OTHER = {"encoder_length": "encoder length", "demand_center": "demand level (window mean)",
          "demand_scale": "demand scale (window std)", "relative_time_idx": "relative time",
          "demand": "demand (past)"}


def display_name(feature: str) -> str:
    """The user's name of a model input: ``known__promo`` -> ``promo``; calendar inputs
    as words."""
    if feature in _CAL:
        return f"calendar: {_CAL[feature]}"
    if feature in _OTHER:
        return _OTHER[feature]
    for prefix in ("known__", "observed__", "static__"):
        if feature.startswith(prefix):
            return feature[len(prefix):]
    return feature


@torch.no_grad()
def variable_importance(forecaster, panel: Panel, n_series: int = 256, seed: int = 0,
                        batch_size: int = 256) -> dict[str, Any] | None:
    """Static, encoder and decoder variable importances over up to ``n_series`` series.

    Returns
    -------
    dict or None
        ``{"static": {name: share}, "encoder": {...}, "decoder": {...}, "series": n}``
        (shares sum to 1 per group, names as the user wrote them); None when no series is
        long enough for a window (``horizon + 2`` periods).
    """
    from ._features import category_luts
    model, spec = forecaster.model, forecaster.spec
    device = next(model.parameters()).device
    plan = _sampler.WindowPlan(panel.lengths, spec.encoder_length, spec.horizon, spec.horizon)
    series, dec, enc = plan.validation(np.random.default_rng(seed), n_series)
    if not len(series):
        return None
    sampler = _sampler.WindowSampler(spec, panel, device)
    luts = category_luts(spec, device)
    order = np.argsort(enc, kind="stable")
    series, dec, enc = series[order], dec[order], enc[order]
    sums: dict[str, torch.Tensor] = {}
    was_training = model.training
    model.eval()
    try:
        for i in range(0, len(series), batch_size):
            sl = slice(i, i + batch_size)
            x = sampler.windows(torch.as_tensor(series[sl]), torch.as_tensor(dec[sl]),
                                torch.as_tensor(enc[sl]), int(enc[sl].max()), device=device,
                                luts=luts)
            it = model.interpret_output(model(x), reduction="sum")
            for k in ("static_variables", "encoder_variables", "decoder_variables"):
                v = it[k].detach().float().cpu()
                sums[k] = v if k not in sums else sums[k] + v
    finally:
        model.train(was_training)
    out: dict[str, Any] = {"series": int(len(series))}
    for key, names in (("static", model.static_variables), ("encoder", model.encoder_variables),
                       ("decoder", model.decoder_variables)):
        v = sums[f"{key}_variables"].numpy().astype(np.float64)
        total = v.sum()
        share = v / total if total > 0 else v
        out[key] = {display_name(n): round(float(s), 6) for n, s in zip(names, share)}
    return out

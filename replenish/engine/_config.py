"""The forecaster's settings (:class:`ForecastConfig`), importable without torch (the jobs
check a configuration before they start any work)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

__all__ = ["ForecastConfig", "GBMConfig"]


@dataclass
class GBMConfig:
    """Settings of the LightGBM member (JSON-serialisable).

    ``max_rows`` (series, origin, step) training rows are sampled at most: 600,000 by
    default (was 200,000), chosen on validation windows: on the bakery the larger sample
    lowered the blend's SPL by 1.6% and its RMSSE by 0.2% (mean of three runs: two seeds of
    the March 2019 window and the Easter 2018 one, where the RMSSE went from 0.459 to 0.452:
    rare holidays and closed days are in 3x as many rows); on the orange juice it was level
    (five runs); it costs about 2.5x the member's training time (benchmarks/RESULTS.md).
    ``threads`` 0: every core. ``refit``: after the ensemble weight is fitted on the
    held-out last horizon, train the member again on the whole history with the rounds early
    stopping found (so it learns from the most recent periods too; on by default: chosen on
    the validation windows of the bakery and orange-juice benchmarks, 3 seeds, where it
    lowered the mean RMSSE, 0.393 to 0.391 and 0.445 to 0.424, and left the SPL equal or
    lower; benchmarks/RESULTS.md).
    """

    learning_rate: float = 0.1
    num_leaves: int = 31
    min_data_in_leaf: int = 100
    feature_fraction: float = 0.8
    bagging_fraction: float = 0.8
    max_rounds: int = 400
    early_stopping: int = 30
    max_rows: int = 600_000
    refit: bool = True
    threads: int = 0
    seed: int = 0


#: Settings of the LightGBM member a config may give (``GBMConfig``'s fields but its seed and
#: threads, which follow the forecaster's).
MEMBER_OPTIONS = tuple(f.name for f in fields(GBMConfig) if f.name not in ("seed", "threads"))


@dataclass
class ForecastConfig:
    """Settings of the forecaster (JSON-serialisable).

    Attributes
    ----------
    horizon : int
        Periods forecast after each series' last period.
    encoder_length : int
        Periods of history the model looks at.
    quantiles : tuple of float
        Quantile levels in (0, 1), increasing; the default reaches the 1% and 99% tails.
    hidden_size, hidden_continuous_size, attention_heads, lstm_layers, dropout
        TFT architecture.
    target_transform : {None, "log1p", "softplus", "relu"}
        Transformation inside the per-window EncoderNormalizer.
    learning_rate, batch_size, max_steps
        Adam learning rate (cosine decay to 10%), windows per step, steps. The plan job trains
        daily data for 1,400 steps where its config sets none (``panel.FREQ_DEFAULTS``).
    time_budget_s : float or None
        Training wall-clock limit, seconds (stopping on it is not reproducible).
    val_every, patience
        Validate every ``val_every`` steps; stop after ``patience`` validations without
        improvement. The validation windows are the last ``horizon`` periods of each series
        (``validation=True``), held out from training.
    validation : bool
        Hold out the last horizon for validation and early stopping.
    calibrate : bool
        After training, recalibrate the quantile levels on the held-out last horizon (see
        :mod:`replenish.engine._calibration`): forecasts are read at the levels where they
        were right as often as their nominal level says. Needs ``validation``. Off by
        default: on the bakery validation window the trained model was already calibrated
        (90.6% of actuals inside its 90% interval) and recalibration did not lower the SPL.
    short_fraction : float
        Share of training batches with random encoder lengths (teaches short histories).
    grad_clip : float
        Gradient norm clip (0: off).
    loss_floor : float or None
        None: pinball loss in units of demand; a number f: each window's loss divided by its
        mean absolute demand + f (scale-free, so large series do not dominate).
    seed : int
        Seed of window sampling, initialisation and dropout.
    device : {"auto", "cpu", "cuda"}
    compile : {"auto", True, False}
        ``torch.compile`` the fixed-length forward (the parts before and after the LSTMs).
        "auto": on CUDA only, and there for training only from 400,000 samples
        (``max_steps * batch_size``), where the speed-up repays the cold compilation.
    precision : {"auto", "32", "bf16"}
        "auto": bf16 autocast on CUDA, float32 on CPU.
    predict_batch_size : int
        Series per prediction batch (0: 256 on CPU, where a batch's activations then stay in
        the caches (1.5x the series/s of 1024 on the 2-core dev machine); 8192 on CUDA).
    fit_sample_series, val_series : int
        Series in the dataset used to fit encoders; maximum validation series.
    ensemble : {"lightgbm", None}
        "lightgbm": a LightGBM quantile member (:mod:`replenish.engine.gbm`) is trained
        beside the TFT, on the same history with the same held-out last horizon, and the
        forecasts are the quantile average ``w * TFT + (1 - w) * LightGBM`` with the weight
        ``w`` fitted on those held-out periods (their scaled pinball loss, SPL). None: the
        TFT alone (also "none", for TOML). Needs ``validation``.
    ensemble_options : dict
        Settings of the LightGBM member (fields of :class:`replenish.engine.gbm.GBMConfig`:
        ``learning_rate``, ``num_leaves``, ``max_rounds``, ``max_rows``, ...; TOML
        ``[forecast.ensemble_options]``); empty: its defaults.
    closed_days : bool
        Daily data: forecast zero demand (every quantile) on the days a location was closed
        in the latest two earlier years that tell, by date or by day of the Easter cycle
        (:mod:`replenish.engine.closed`; counted in ``panel.report``). Chosen on the
        bakery's validation windows: on 29 of them no closed day it found had a sale, and
        on the one with Good Friday 2018 it lowered the forecast's RMSSE by 1.8% and its
        SPL by 6% (benchmarks/RESULTS.md).
    """

    horizon: int = 28
    encoder_length: int = 112
    quantiles: tuple[float, ...] = (0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99)
    hidden_size: int = 32
    hidden_continuous_size: int = 16
    attention_heads: int = 4
    lstm_layers: int = 1
    dropout: float = 0.1
    target_transform: str | None = None
    learning_rate: float = 3e-3
    batch_size: int = 128
    max_steps: int = 700
    time_budget_s: float | None = None
    val_every: int = 100
    patience: int = 4
    validation: bool = True
    calibrate: bool = False
    short_fraction: float = 0.1
    grad_clip: float = 1.0
    loss_floor: float | None = None
    seed: int = 0
    device: str = "auto"
    compile: Any = "auto"
    precision: str = "auto"
    predict_batch_size: int = 0
    fit_sample_series: int = 256
    val_series: int = 4096
    ensemble: str | None = "lightgbm"
    ensemble_options: dict = field(default_factory=dict)
    closed_days: bool = True

    def __post_init__(self) -> None:
        self.quantiles = tuple(float(q) for q in self.quantiles)
        q = np.asarray(self.quantiles)
        if len(q) == 0 or np.any((q <= 0) | (q >= 1)) or np.any(np.diff(q) <= 0):
            raise ValueError(f"quantiles must be increasing levels in (0, 1), got {self.quantiles}")
        if self.horizon < 1 or self.encoder_length < 2:
            raise ValueError("horizon must be >= 1 and encoder_length >= 2 periods")
        if self.target_transform not in (None, "log1p", "softplus", "relu"):
            raise ValueError(f"target_transform {self.target_transform!r} not supported")
        if self.ensemble in ("none", "", False):   # TOML has no null
            self.ensemble = None
        if self.ensemble not in (None, "lightgbm"):
            raise ValueError(f"ensemble must be 'lightgbm' or None, got {self.ensemble!r}")
        bad = sorted(set(self.ensemble_options or {}) - set(MEMBER_OPTIONS))
        if bad:
            raise ValueError(f"ensemble_options: unknown key(s) {bad}; known: {list(MEMBER_OPTIONS)}")
        self.ensemble_options = dict(self.ensemble_options or {})

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["quantiles"] = list(self.quantiles)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ForecastConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

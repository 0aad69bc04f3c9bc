"""Quantile demand forecasts of many series with one global Temporal Fusion Transformer.

The model is pytorch-forecasting's ``TemporalFusionTransformer``; what is ours is the way it
is fed and trained: windows are cut straight from the :class:`~replenish.engine.panel.Panel`
by vectorized gathers (``_sampler``), with exactly the encodings and scalings of a
``TimeSeriesDataSet`` fitted once on a small sample, and trained by a lean loop (``_tft``).

Inputs of the model, per series and period:

- demand (target; also an encoder input), normalised per window by an ``EncoderNormalizer``
  fitted on the encoder demand; the window's center and scale are static inputs too;
- calendar from the dates, known ahead: day of week and month (categories), day of month and
  day of year (numbers) for daily panels; week of year ((day_of_year - 1) // 7 + 1) and month
  (categories) and day of year for weekly panels;
- ``Panel.known`` columns: known-future numbers (price, promotions, holidays, weather
  forecasts); their horizon values come from ``Panel.future_known`` at prediction time;
- ``Panel.observed`` columns: numbers known only in the past (encoder only);
- categorical known/observed columns (``Panel.categories``: event or holiday names): categories
  of the model, one class per label seen in training; labels first seen later map to the
  "unknown" class;
- ``Panel.static``: per-series categories (int/str) and numbers (float); the SKU and the
  location are static categories too. Categories never seen in training map to the model's
  "unknown" category (code 0);
- encoder length and position relative to the forecast start (pytorch-forecasting's
  ``add_encoder_length`` and ``add_relative_time_idx``).

Missing covariate values are filled by ``build_panel`` (forward, backward, else 0) before
they get here. Periods of unknown demand (NaN, ``gaps="missing"``) are never targets nor in a
window's normalisation; a model trained on a panel with some reads them flagged (encoder
input ``demand_missing``). A series shorter than the encoder is forecast from the history it has
(encoder padded, with its length given to the model); a 1-period series gets one extra
zero-demand period before its start. Every series gets a forecast.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import _calibration, _features, _sampler, _tft
from ._config import ForecastConfig
from .panel import Panel

__all__ = ["ForecastConfig", "TFTForecaster"]

log = logging.getLogger("replenish")

#: ``compile="auto"`` compiles a training run on CUDA only from this many samples
#: (``max_steps * batch_size``) on. On one H200 (ANCHORS.md) the compiled bf16 forward trains
#: at ~20,000 samples/s against ~3,500 eager, after ~90 s of cold compilation: it pays off
#: from about 90 / (1/3,500 - 1/20,000) = 390,000 samples. The default training (700 x 128 =
#: 90,000 samples) therefore stays eager; prediction compiles on CUDA (a worker predicts
#: every shard it is given with the same compiled graphs).
COMPILE_MIN_SAMPLES = 400_000

#: Fields that define the model (taken from the checkpoint when fine-tuning).
_MODEL_FIELDS = ("horizon", "encoder_length", "quantiles", "hidden_size",
                 "hidden_continuous_size", "attention_heads", "dropout", "lstm_layers",
                 "target_transform")


class TFTForecaster:
    """Global TFT quantile forecaster over the series of a Panel.

    Parameters
    ----------
    config : ForecastConfig, optional

    Attributes
    ----------
    levels : ndarray, shape (Q,)
        Quantile levels of the forecasts.
    history : dict
        Training curve, validation losses, samples per second, stop reason, timings.
    """

    def __init__(self, config: ForecastConfig | None = None):
        self.config = config or ForecastConfig()
        self.levels = np.asarray(self.config.quantiles, dtype=np.float64)
        self.history: dict[str, Any] = {}
        self.model = None
        self.spec: _features.FeatureSpec | None = None
        self.arch: dict[str, Any] | None = None
        #: Recalibrated levels (one per quantile level), or None: forecasts as trained.
        self.calibrated_levels: np.ndarray | None = None
        #: The LightGBM member of the ensemble (``config.ensemble``) and the TFT's weight in
        #: the quantile average, or None / 1.0: the TFT alone.
        self.member = None
        self.tft_weight = 1.0
        self._device = _device(self.config.device)

    # ---- training ----------------------------------------------------------------------
    def fit(self, panel: Panel, init_from: str | Path | None = None,
            progress=None) -> "TFTForecaster":
        """Train on all series of ``panel``.

        Parameters
        ----------
        panel : Panel
            History; demand in units per period. Series need ``horizon + 2`` periods to give
            training windows (``2 * horizon + 2`` with the validation holdout; without any such
            series training runs without validation); shorter ones are still forecast.
        init_from : path, optional
            A saved model folder to fine-tune (continuous learning): its architecture,
            encodings and weights are kept; training settings come from this config.
        progress : callable, optional
            Called after each training step (see :func:`replenish.engine._tft.train`), and
            with the ensemble after each of the member's quantile models, as
            ``progress(done, total, None, None, elapsed, None, validated=True,
            stage="member", note=...)`` (``jobs._progress.training_reporter`` takes both).
        """
        cfg = self.config
        t0 = time.perf_counter()
        torch.manual_seed(cfg.seed)
        if init_from is not None:
            state, meta = _tft.load_checkpoint(init_from)
            self._restore(meta, state)
            _check_schema(self.spec, panel)
        else:
            spec = _features.make_spec(panel, cfg.encoder_length, cfg.horizon,
                                      cfg.target_transform)
            dataset, self.spec = _features.fit_dataset(panel, spec, cfg.fit_sample_series,
                                                      seed=cfg.seed)
            torch.manual_seed(cfg.seed)
            self.model = _tft.build_model(dataset, cfg.quantiles, cfg.hidden_size,
                                          cfg.attention_heads, cfg.dropout,
                                          cfg.hidden_continuous_size, cfg.lstm_layers)
            self.arch = _tft.architecture(self.model)
        spec = self.spec
        self.model.to(self._device)
        holdout = spec.horizon if cfg.validation else 0
        plan = _sampler.WindowPlan(panel.lengths, spec.encoder_length, spec.horizon, holdout)
        if plan.n_windows == 0 and holdout:
            log.warning("fit: no series is long enough to hold out its last %d periods for "
                        "validation; training without validation or early stopping", holdout)
            plan = _sampler.WindowPlan(panel.lengths, spec.encoder_length, spec.horizon, 0)
        if plan.n_windows == 0:
            raise ValueError(f"fit: no series has the {spec.horizon + 2} periods a training "
                             f"window needs (2 encoder periods + the horizon); shorten the "
                             f"horizon or provide longer history")
        sampler = _sampler.WindowSampler(spec, panel, self._device)
        runner = self._runner(training=True)
        floor = None if cfg.loss_floor is None else float(cfg.loss_floor)
        prep = time.perf_counter() - t0
        hist = _tft.train(
            runner, sampler, plan, self._levels_t(), steps=cfg.max_steps,
            batch_size=cfg.batch_size, learning_rate=cfg.learning_rate,
            time_budget_s=cfg.time_budget_s, val_every=cfg.val_every, patience=cfg.patience,
            short_fraction=cfg.short_fraction, grad_clip=cfg.grad_clip, loss_floor=floor,
            seed=cfg.seed, val_series=cfg.val_series,
            predict_batch_size=self._predict_batch(), luts=self._luts(), progress=progress)
        self.calibrated_levels = None
        if cfg.calibrate and holdout and plan.holdout:
            self.calibrated_levels = self._calibrate(runner, sampler, plan)
            hist["calibrated_levels"] = self.calibrated_levels.tolist()
        self.member, self.tft_weight = None, 1.0
        if cfg.ensemble and holdout and plan.holdout:
            hist["ensemble"] = self._fit_member(panel, progress)
        hist.update(prepare_seconds=prep, fit_seconds=time.perf_counter() - t0,
                    device=str(self._device), series=panel.n_series,
                    unknown_keys=sampler.n_unknown_keys,
                    parameters=sum(p.numel() for p in self.model.parameters()),
                    init_from=None if init_from is None else str(init_from))
        self.history = hist
        log.info("forecaster trained: %d steps, %.0f samples/s, stopped by %s", hist["steps"],
                 hist["samples_per_s"], hist["stopped"])
        return self

    @torch.no_grad()
    def _calibrate(self, runner, sampler, plan) -> np.ndarray:
        """Recalibrated levels from the held-out last horizon of the training series."""
        cfg = self.config
        windows = plan.validation(np.random.default_rng(cfg.seed + 1), cfg.val_series)
        qs, ys = [], []
        self.model.eval()
        for p, x, pred in runner.predict(sampler, *windows, self._predict_batch(), self._luts()):
            n = len(p)
            pred = torch.sort(pred[:n], dim=-1).values.clamp_(min=0)
            known = x["decoder_target_known"][:n].reshape(-1)
            qs.append(pred.reshape(-1, pred.shape[-1])[known].cpu().numpy())
            ys.append(x["decoder_target"][:n].reshape(-1)[known].float().cpu().numpy())
        if not qs:
            return np.asarray(self.levels, dtype=np.float64)
        new = _calibration.fit_levels(self.levels, np.concatenate(qs), np.concatenate(ys),
                                      seed=cfg.seed)
        log.info("quantile levels recalibrated on the held-out periods: %s -> %s",
                 np.round(self.levels, 3).tolist(), np.round(new, 4).tolist())
        return new

    def _fit_member(self, panel: Panel, progress=None) -> dict[str, Any]:
        """Train the LightGBM member on ``panel`` (its last horizon held out, as the TFT's)
        and fit the TFT's weight in the quantile average on those held-out periods.
        ``progress`` (the training's, see :meth:`fit`) is called after each level's model
        with ``stage="member"``: models done of all (the refit's too), seconds so far; once
        with 0 done before the training rows are built."""
        from . import metrics
        from .gbm import GBMConfig, GBMForecaster
        cfg, h = self.config, self.config.horizon
        t0 = time.perf_counter()
        member = GBMForecaster(self.levels, h, GBMConfig(**cfg.ensemble_options, seed=cfg.seed,
                                                         threads=torch.get_num_threads()))
        total = len(self.levels) * (2 if member.config.refit else 1)

        def report(offset: int, what: str):
            if progress is None:
                return None
            return lambda done, _, level, rounds: progress(
                offset + done, total, None, None, time.perf_counter() - t0, None,
                validated=True, stage="member",
                note=f"level {level:g}, {rounds} rounds, {what}")
        if progress is not None:   # the member's rows take a while before its first model
            progress(0, total, None, None, 0.0, None, validated=True, stage="member",
                     note=f"building up to {member.config.max_rows:,} training rows")
        member.fit(panel, holdout=h, progress=report(0, "early stopping on the held-out periods"))
        # forecasts of the held-out periods from the history before them, by both members
        long = np.flatnonzero(panel.lengths > h + 2)
        rng = np.random.default_rng(cfg.seed + 2)
        if len(long) > cfg.val_series:
            long = np.sort(rng.choice(long, cfg.val_series, replace=False))
        before, actual = panel.take(long).split_last(h)
        q_tft = self._predict_tft(before, calibrated=True)
        q_gbm = member.predict(before)
        grid = np.round(np.arange(0.0, 1.0001, 0.05), 2)
        losses = [metrics.spl(actual, w * q_tft + (1 - w) * q_gbm, self.levels,
                              before.demand, before.indptr) for w in grid]
        best = int(np.nanargmin(losses))
        if member.config.refit:   # the weight stands; the member learns the held-out periods too
            full = GBMForecaster(self.levels, h, member.config)
            member = full.fit(panel, rounds=member.history["rounds"],
                              progress=report(len(self.levels), "refit on the whole history"))
        self.member, self.tft_weight = member, float(grid[best])
        info = {"member": "lightgbm", "tft_weight": self.tft_weight,
                "spl_tft": float(losses[-1]), "spl_lightgbm": float(losses[0]),
                "spl_blend": float(losses[best]), "rounds": member.history["rounds"],
                "seconds": time.perf_counter() - t0}
        log.info("ensemble: TFT weight %.2f (held-out SPL: TFT %.4f, LightGBM %.4f, blend "
                 "%.4f)", self.tft_weight, losses[-1], losses[0], losses[best])
        return info

    # ---- prediction --------------------------------------------------------------------
    def predict(self, panel: Panel, calibrated: bool = True,
                as_tensor: bool = False) -> np.ndarray | torch.Tensor:
        """Quantile forecasts of the ``horizon`` periods after each series' end.

        Parameters
        ----------
        panel : Panel
            History of the series to forecast (any series; unseen SKUs/locations use the
            model's "unknown" category). ``panel.future_known`` (n_series, >= horizon, k)
            must hold the known covariates of the horizon when the model uses any.

        calibrated : bool
            Read the TFT's forecasts at the recalibrated levels (when the model has them,
            see ``ForecastConfig.calibrate``); False gives the network's raw quantiles.
        as_tensor : bool
            Return a torch tensor on the model's device instead of a NumPy array: on a GPU
            the forecasts then stay there (the plan job hands them to the CuPy kernels
            through DLPack, without a copy to the host).

        Returns
        -------
        ndarray or Tensor of float32, shape (n_series, horizon, Q)
            Demand quantiles, units per period, >= 0 and non-decreasing along Q: the TFT's,
            or with an ensemble member the weighted average of both members' quantiles
            (the LightGBM member runs on the host).

        Notes
        -----
        On a GPU the panel's arrays are copied to the device once and every batch is
        gathered there; the TFT's forecasts are sorted, clipped and (re)calibrated there too.
        """
        q = self._predict_tft(panel, calibrated, as_tensor)
        if self.member is not None and self.tft_weight < 1.0:
            gbm = self.member.predict(panel)
            if as_tensor:
                g = torch.as_tensor(gbm, device=q.device)
                q = torch.sort((self.tft_weight * q + (1.0 - self.tft_weight) * g).clamp_(min=0),
                               dim=-1).values
            else:
                q = self.tft_weight * q + (1.0 - self.tft_weight) * gbm
                q = np.sort(np.clip(q, 0, None), -1).astype(np.float32)
        if self.config.closed_days and panel.freq == "D":
            q = self._zero_closed_days(panel, q)
        return q

    def _zero_closed_days(self, panel: Panel, q):
        """Every quantile 0 on the days the series' location is closed every year
        (:func:`replenish.engine.closed.closed_days`), counted in ``panel.report``."""
        from .closed import closed_days
        mask, info = closed_days(panel, int(q.shape[1]))
        if not info["series_days"]:
            return q
        if isinstance(q, torch.Tensor):
            q = q.masked_fill(torch.as_tensor(mask, device=q.device)[..., None], 0.0)
        else:
            q = np.where(mask[..., None], np.float32(0), q)
        panel.report["closed_days_zeroed"] = panel.report.get("closed_days_zeroed", 0) + \
            info["series_days"]
        panel.report.setdefault("closed_days_examples", []).extend(info["dates"])
        log.info("closed days: %d forecast periods set to zero demand (%d locations; %s)",
                 info["series_days"], info["locations"], ", ".join(info["dates"][:5]))
        return q

    @torch.no_grad()
    def _predict_tft(self, panel: Panel, calibrated: bool = True,
                     as_tensor: bool = False) -> np.ndarray | torch.Tensor:
        """The TFT's own quantile forecasts (see :meth:`predict`)."""
        if self.model is None:
            raise RuntimeError("predict: the forecaster is not trained; call fit() or load()")
        spec = self.spec
        _check_schema(spec, panel)
        if spec.known:
            fk = panel.future_known
            if fk is None:
                raise ValueError(
                    f"predict: the model uses known covariates {spec.known} but "
                    f"panel.future_known is None; build the panel with "
                    f"build_panel(..., future=<table of their future values>, horizon="
                    f"{spec.horizon}) or set panel.future_known to an array of shape "
                    f"(n_series, {spec.horizon}, {len(spec.known)})")
            if fk.shape[1] < spec.horizon or fk.shape[2] != len(spec.known):
                raise ValueError(f"predict: panel.future_known has shape {fk.shape}; needs "
                                 f"(n_series, >= {spec.horizon}, {len(spec.known)})")
        plan = _sampler.WindowPlan(panel.lengths, spec.encoder_length, spec.horizon, 0)
        dec, enc = plan.prediction()
        dev = self._device
        # batches are gathered where the panel's arrays are: on the GPU they are copied
        # there once (a shard's panel is small next to device memory)
        sampler = _sampler.WindowSampler(spec, panel, dev)
        if sampler.n_unknown_keys:
            log.info("predict: %d SKU/location keys not seen in training use the unknown "
                     "category", sampler.n_unknown_keys)
        runner = self._runner()
        self.model.eval()
        series = np.arange(panel.n_series)
        rows, preds = [], []
        for pos, _, pred in runner.predict(sampler, series, dec, enc, self._predict_batch(),
                                           self._luts()):
            rows.append(pos)
            preds.append(torch.sort(pred, dim=-1).values.clamp_(min=0))
        out = torch.empty((panel.n_series, spec.horizon, len(self.levels)), dtype=torch.float32,
                          device=dev)
        if preds:
            out[torch.as_tensor(np.concatenate(rows), device=dev)] = torch.cat(preds)
        if calibrated and self.calibrated_levels is not None:
            out = _calibration.quantiles_at(self.levels, out, self.calibrated_levels)
        return out if as_tensor else out.cpu().numpy()

    # ---- persistence -------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write the model to the folder ``path``: ``weights.pt`` (tensors, read back with
        ``torch.load(weights_only=True)``) and ``model.json`` (config, input encodings and
        scalers, architecture, training history)."""
        if self.model is None:
            raise RuntimeError("save: the forecaster is not trained")
        meta = {"config": self.config.to_dict(), "spec": self.spec.to_dict(),
                "arch": self.arch, "history": _jsonable(self.history),
                "calibrated_levels": None if self.calibrated_levels is None
                else [float(v) for v in self.calibrated_levels],
                "ensemble": None if self.member is None
                else {"member": "lightgbm", "tft_weight": self.tft_weight, "folder": "gbm"}}
        if self.member is not None:   # written before model.json, which names it
            self.member.save(Path(path) / "gbm")
        _tft.save_checkpoint(path, self.model.state_dict(), meta)

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> "TFTForecaster":
        """A forecaster saved with :meth:`save`, ready to predict or fine-tune."""
        state, meta = _tft.load_checkpoint(path)
        cfg = ForecastConfig.from_dict({**meta["config"], "device": device})
        self = cls(cfg)
        self._restore(meta, state)
        self.history = meta.get("history", {})
        cal = meta.get("calibrated_levels")
        self.calibrated_levels = None if cal is None else np.asarray(cal, dtype=np.float64)
        ens = meta.get("ensemble")
        if ens:
            from .gbm import GBMForecaster
            self.member = GBMForecaster.load(Path(path) / ens["folder"])
            self.tft_weight = float(ens["tft_weight"])
        return self

    # ---- internals ---------------------------------------------------------------------
    def _restore(self, meta: dict[str, Any], state: dict[str, torch.Tensor]) -> None:
        saved = meta["config"]
        changed = [k for k in _MODEL_FIELDS
                   if json.dumps(saved.get(k)) != json.dumps(getattr(self.config, k)
                                                             if k != "quantiles"
                                                             else list(self.config.quantiles))]
        if changed:
            log.warning("model settings %s come from the checkpoint", changed)
            self.config = ForecastConfig.from_dict(
                {**self.config.to_dict(), **{k: saved[k] for k in _MODEL_FIELDS}})
            self.levels = np.asarray(self.config.quantiles, dtype=np.float64)
        self.spec = _features.FeatureSpec.from_dict(meta["spec"])
        self.arch = meta["arch"]
        self.model = _tft.model_from_hparams(self.arch, list(self.config.quantiles),
                                             self.spec.target_transform)
        self.model.load_state_dict(state)
        self.model.to(self._device).eval()

    def _runner(self, training: bool = False) -> _tft.Runner:
        cfg, dev = self.config, self._device
        bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and dev.type == "cuda")
        if isinstance(cfg.compile, bool):
            comp = cfg.compile
        else:   # "auto": on CUDA, where it pays for its compile time (see COMPILE_MIN_SAMPLES)
            comp = dev.type == "cuda" and (not training
                                           or cfg.max_steps * cfg.batch_size >= COMPILE_MIN_SAMPLES)
        key = (id(self.model), bf16, comp)
        if getattr(self, "_runner_key", None) != key:
            self._runner_obj = _tft.Runner(self.model, self.spec.target_transform, dev,
                                           torch.bfloat16 if bf16 else None, comp)
            self._runner_key = key
        return self._runner_obj

    def _luts(self):
        return _features.category_luts(self.spec, self._device)

    def _levels_t(self) -> torch.Tensor:
        return torch.as_tensor(self.levels, dtype=torch.float32, device=self._device)

    def _predict_batch(self) -> int:
        return self.config.predict_batch_size or (8192 if self._device.type == "cuda" else 256)


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but torch sees no CUDA device")
    return torch.device(name)


def _check_schema(spec: _features.FeatureSpec, panel: Panel) -> None:
    """The panel must have the covariates and frequency the model was trained with."""
    problems = []
    if panel.freq != spec.freq:
        problems.append(f"frequency {panel.freq!r} (model: {spec.freq!r})")
    if list(panel.known_names) != spec.known:
        problems.append(f"known covariates {list(panel.known_names)} (model: {spec.known})")
    if list(panel.observed_names) != spec.observed:
        problems.append(f"observed covariates {list(panel.observed_names)} "
                        f"(model: {spec.observed})")
    cats = [n for n in (*panel.known_names, *panel.observed_names) if n in panel.categories]
    if cats != spec.categorical:
        problems.append(f"categorical covariates {cats} (model: {spec.categorical})")
    missing = [n for n in spec.static_cats + spec.static_reals if n not in panel.static]
    if missing:
        problems.append(f"static attributes {missing} missing")
    if problems:
        raise ValueError("panel does not match the model: " + "; ".join(problems))


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(d, default=lambda o: o.item() if hasattr(o, "item") else str(o)))

"""The gradient-boosted member of the forecast ensemble: a global LightGBM quantile model.

One LightGBM model per quantile level, over all series at once, forecasting the ``horizon``
periods after a forecast origin directly (the step ahead is a feature). Per (series, origin,
step) the features are, from the Panel's arrays:

- the step ahead (1 ... horizon) and the series' level (log of its mean known demand over
  the last season, plus 1 unit);
- demand at the origin and the periods before it, and one season (7 days / 52 weeks) before
  the target period, divided by the level; rolling means (several windows), the rolling
  standard deviation and maximum up to the origin, divided by the level; the share of
  unknown periods so far;
- the known covariates of the target period and of the periods just before and after it
  (promotion lags and leads), each numeric one relative to its own mean over the last season
  at the origin (difference and ratio: relative price, discount depth);
- the observed covariates at the origin; the calendar of the target period; the static
  attributes, and the SKU and location, as LightGBM categories.

The target is demand divided by the level at the origin (one model for series of any size,
weighed as the scaled metrics weigh them); forecasts are multiplied back, clipped at zero
and sorted across levels. Periods of unknown demand (NaN) are never targets and are NaN
(LightGBM's missing) in the features. Training stops early on the last ``holdout`` periods
of every series, held out as the TFT's validation is.

Units: demand in units of stock per period; covariates in their own units.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ._config import GBMConfig
from ._features import calendar
from .panel import FREQ_STEP_DAYS, Panel

__all__ = ["GBMConfig", "GBMForecaster"]




def _on_grid(panel: Panel) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Demand, known and observed covariates on an (n_series, T) grid aligned at the series'
    ends (NaN before a series' start)."""
    lengths = panel.lengths
    t_max = int(lengths.max())
    col = np.repeat(t_max - lengths, lengths) + (np.arange(panel.n_rows)
                                                 - np.repeat(panel.indptr[:-1], lengths))
    row = panel.series_of_row

    def put(values: np.ndarray) -> np.ndarray:
        g = np.full((panel.n_series, t_max) + values.shape[1:], np.nan, np.float32)
        g[row, col] = values
        return g
    return put(panel.demand), put(panel.known), put(panel.observed)


def _rolling_mean(y: np.ndarray, w: int, square: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Mean of the known values of each row over the last ``w`` periods up to each period
    (and the count of those values), shape (n, T)."""
    known = np.isfinite(y)
    v = np.where(known, y, 0.0).astype(np.float64)
    if square:
        v = v * v
    zero = np.zeros((y.shape[0], 1))
    c = np.concatenate([zero, np.cumsum(v, 1)], 1)
    k = np.concatenate([zero, np.cumsum(known, 1)], 1)
    hi = np.arange(1, y.shape[1] + 1)
    lo = np.clip(hi - w, 0, None)
    cnt = k[:, hi] - k[:, lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt > 0, (c[:, hi] - c[:, lo]) / cnt, np.nan), cnt


def _rolling_max(y: np.ndarray, w: int) -> np.ndarray:
    """Maximum known value over the last ``w`` periods (NaN if none), by doubling windows."""
    out = np.where(np.isfinite(y), y, -np.inf).astype(np.float64)
    span = 1
    while span < w:
        step = min(span, w - span)
        shifted = np.concatenate([np.full((y.shape[0], step), -np.inf), out[:, :-step]], 1)
        out = np.maximum(out, shifted)
        span += step
    return np.where(np.isinf(out), np.nan, out)


class GBMForecaster:
    """Global LightGBM quantile forecaster over the series of a Panel.

    Parameters
    ----------
    levels : sequence of float
        Quantile levels in (0, 1), increasing: one model each.
    horizon : int
        Periods forecast after each series' end.
    config : GBMConfig, optional
    """

    def __init__(self, levels, horizon: int, config: GBMConfig | None = None):
        self.levels = np.asarray(levels, np.float64)
        self.horizon = int(horizon)
        self.config = config or GBMConfig()
        self.boosters: list[Any] = []
        self.history: dict[str, Any] = {}
        self.schema: dict[str, Any] = {}

    # ---- features ----------------------------------------------------------------------
    def _label_codes(self, panel: Panel, fit: bool) -> Panel:
        """The panel with its categorical covariates numbered by label in the member's own
        class lists (fitted on the training panel; an unseen label is NaN: missing)."""
        import pandas as pd
        from dataclasses import replace
        if fit:
            self.schema["labels"] = {n: [str(v) for v in labels]
                                     for n, labels in panel.categories.items()}
        if not panel.categories:
            return panel
        known, observed = panel.known.copy(), panel.observed.copy()
        fk = None if panel.future_known is None else panel.future_known.copy()
        for name, labels in panel.categories.items():
            lut = pd.Index(self.schema["labels"].get(name, [])).get_indexer(
                np.asarray(labels).astype(str)).astype(np.float32)
            lut[lut < 0] = np.nan
            if name in panel.known_names:
                j = panel.known_names.index(name)
                known[:, j] = lut[known[:, j].astype(np.int64)]
                if fk is not None and fk.shape[1]:
                    fk[..., j] = lut[fk[..., j].astype(np.int64)]
            else:
                j = panel.observed_names.index(name)
                observed[:, j] = lut[observed[:, j].astype(np.int64)]
        return replace(panel, known=known, observed=observed, future_known=fk)

    def _arrays(self, panel: Panel, last_only: bool = False) -> dict[str, Any]:
        """Per-(series, period) arrays the features are read from. ``last_only``: for
        forecasts from the last period alone, only the periods the features of that origin
        read (the longest rolling window; the share of unknown periods still counts the
        whole history), so a forecast of a long history costs what one of 113 days does."""
        freq = panel.freq
        season = 7 if freq == "D" else 52
        windows = (7, 14, 28, 56, 112) if freq == "D" else (4, 8, 13, 26, 52)
        y, known, observed = _on_grid(panel)
        unknown_share = np.cumsum(~np.isfinite(y), 1) / np.arange(1, y.shape[1] + 1)
        keep = max(windows + (season,)) + 1
        if last_only and y.shape[1] > keep:
            y, known, observed = y[:, -keep:], known[:, -keep:], observed[:, -keep:]
            unknown_share = unknown_share[:, -keep:]
        n, t = y.shape
        h = self.horizon
        fk = panel.future_known
        if known.shape[2] and fk is not None and fk.shape[1] >= h:
            known = np.concatenate([known, np.asarray(fk[:, :h], np.float32)], 1)
        else:   # no future values: the last known ones (only used for observed-only schemas)
            known = np.concatenate([known, np.repeat(known[:, -1:], h, 1)], 1)
        level, _ = _rolling_mean(y, season)
        roll = {f"mean_{w}": _rolling_mean(y, w)[0] for w in windows}
        m, cnt = _rolling_mean(y, season)
        m2, _ = _rolling_mean(y, season, square=True)
        with np.errstate(invalid="ignore"):
            roll["std"] = np.sqrt(np.clip((m2 - m * m) * cnt / np.maximum(cnt - 1, 1), 0, None))
        roll["max"] = _rolling_max(y, windows[1])
        numeric = [j for j, c in enumerate(panel.known_names) if c not in panel.categories]
        step_days = FREQ_STEP_DAYS[freq]
        first_day = panel.end.astype("datetime64[D]").astype(np.int64) - (t - 1) * step_days
        # one calendar row per distinct first day (series ending on the same day share it)
        first, cal_row = np.unique(first_day, return_inverse=True)
        cal = calendar(first[:, None] + np.arange(t + h) * step_days)
        cal_names = ("cal_day_of_week", "cal_day_of_month", "cal_month", "cal_day_of_year") \
            if freq == "D" else ("cal_week_of_year", "cal_month")
        return {"y": y, "known": known, "observed": observed, "level": level + 1.0,
                "roll": roll, "known_mean": [_rolling_mean(known[:, :t, j], season)[0]
                                             for j in numeric], "numeric": numeric,
                "unknown_share": unknown_share,
                "cal": {k: cal[k] for k in cal_names}, "cal_row": cal_row.ravel(),
                "season": season,
                "lags": (0, 1, 2, 3, 6, 13, 27) if freq == "D" else tuple(range(8))}

    def _static_codes(self, panel: Panel, fit: bool) -> dict[str, np.ndarray]:
        """Category codes of the SKU, location and static categories (-1: unseen)."""
        import pandas as pd
        values = {"sku": panel.sku, "location": panel.location,
                  **{f"static_{k}": v for k, v in panel.static.items()
                     if np.asarray(v).dtype.kind not in "fc"}}
        if fit:
            self.schema["classes"] = {k: sorted(set(np.asarray(v).astype(str)))
                                      for k, v in values.items()}
        return {k: pd.Index(self.schema["classes"][k]).get_indexer(np.asarray(v).astype(str))
                for k, v in values.items()}

    def _features(self, a: dict[str, Any], panel: Panel, codes: dict[str, np.ndarray],
                  s: np.ndarray, o: np.ndarray, step: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, list[str], list[int]]:
        """Feature matrix (rows, F) of series ``s``, origin period ``o`` (grid column) and
        ``step`` ahead; the level of each row; feature names; categorical columns."""
        y, known = a["y"], a["known"]
        lvl = a["level"][s, o]
        tgt = o + step
        cols: list[np.ndarray] = [step.astype(np.float32), np.log(lvl)]
        names = ["step", "log_level"]
        for k in a["lags"]:
            cols.append(np.where(o >= k, y[s, np.clip(o - k, 0, None)], np.nan) / lvl)
            names.append(f"lag_{k}")
        back = tgt - a["season"] * np.ceil(step / a["season"]).astype(np.int64)
        cols.append(np.where(back >= 0, y[s, np.clip(back, 0, None)], np.nan) / lvl)
        names.append("last_season")
        for name, r in a["roll"].items():
            cols.append(r[s, o] / lvl)
            names.append(f"roll_{name}")
        cols.append(a["unknown_share"][s, o])
        names.append("unknown_share")
        width = known.shape[1]
        cats: list[int] = []
        for j, c in enumerate(panel.known_names):
            for d, tag in ((0, ""), (-1, "_prev"), (1, "_next")):
                if c in panel.categories:
                    cats.append(len(cols))
                cols.append(known[s, np.clip(tgt + d, 0, width - 1), j])
                names.append(f"known_{c}{tag}")
        for i, j in enumerate(a["numeric"]):
            mean = a["known_mean"][i][s, o]
            now = known[s, tgt, j]
            cols.append(now - mean)
            with np.errstate(invalid="ignore", divide="ignore"):
                cols.append(np.where(np.abs(mean) > 0, now / mean, np.nan))
            names += [f"known_{panel.known_names[j]}_minus_mean",
                      f"known_{panel.known_names[j]}_over_mean"]
        for j, c in enumerate(panel.observed_names):
            if c in panel.categories:
                cats.append(len(cols))
            cols.append(a["observed"][s, o, j])
            names.append(f"observed_{c}")
        for k, v in a["cal"].items():
            cols.append(v[a["cal_row"][s], tgt])
            names.append(k)
        for k, v in panel.static.items():
            if np.asarray(v).dtype.kind in "fc":
                cols.append(np.asarray(v, np.float64)[s])
                names.append(f"static_{k}")
        for k, v in codes.items():
            cats.append(len(cols))
            cols.append(np.where(v[s] < 0, np.nan, v[s]))
            names.append(f"id_{k}")
        return np.column_stack(cols).astype(np.float32), lvl, names, cats

    # ---- training ----------------------------------------------------------------------
    def fit(self, panel: Panel, holdout: int | None = None,
            rounds: list[int] | None = None, progress=None) -> "GBMForecaster":
        """Train one model per level on every series of ``panel``.

        Parameters
        ----------
        panel : Panel
            History (NaN demand: unknown periods).
        holdout : int, optional
            Periods at the end of every series kept out of the training targets and used for
            early stopping (default: ``horizon``; 0: no early stopping).
        rounds : list of int, optional
            Boosting rounds per level, fixed (a refit on the whole history with the rounds
            early stopping found): no holdout, no early stopping.
        progress : callable, optional
            Called as ``progress(done, levels, level, rounds)`` after each level's model.
        """
        import lightgbm as lgb
        cfg = self.config
        t0 = time.perf_counter()
        holdout = 0 if rounds is not None else self.horizon if holdout is None else int(holdout)
        panel = self._label_codes(panel, fit=True)
        a = self._arrays(panel)
        codes = self._static_codes(panel, fit=True)
        y = a["y"]
        n, t = y.shape
        h = self.horizon
        rng = np.random.default_rng(cfg.seed)
        # training rows: (series, origin) pairs, all of them or a uniform sample when there
        # are many more than max_rows (never the whole grid at once), times every step
        pairs = n * (t - 1)
        if pairs * h > 2 * cfg.max_rows:
            pick = rng.choice(pairs, min(pairs, 2 * cfg.max_rows // h + 1), replace=False)
        else:
            pick = np.arange(pairs)
        s, o = pick // (t - 1), pick % (t - 1)
        s, o = np.repeat(s, h), np.repeat(o, h)
        step = np.tile(np.arange(1, h + 1), len(pick))
        if holdout:   # the validation rows: every series from its origin before the holdout
            s = np.concatenate([s, np.repeat(np.arange(n), h)])
            o = np.concatenate([o, np.full(n * h, t - 1 - holdout)])
            step = np.concatenate([step, np.tile(np.arange(1, h + 1), n)])
        tgt = o + step
        ok = (tgt < t) & (o >= 0) & np.isfinite(y[s, np.clip(tgt, 0, t - 1)]) \
            & np.isfinite(a["level"][s, np.clip(o, 0, None)])
        s, o, step, tgt = s[ok], o[ok], step[ok], tgt[ok]
        train = np.flatnonzero(tgt < t - holdout)
        if len(train) == 0:
            raise ValueError(f"fit: no series has a known demand after {h} periods of history "
                             f"before its last {holdout} periods")
        if len(train) > cfg.max_rows:
            train = np.sort(rng.choice(train, cfg.max_rows, replace=False))
        val = np.flatnonzero((o == t - 1 - holdout) & (tgt >= t - holdout)) if holdout \
            else np.zeros(0, np.int64)
        Xtr, ltr, names, cats = self._features(a, panel, codes, s[train], o[train], step[train])
        params = {"objective": "quantile", "learning_rate": cfg.learning_rate,
                  "num_leaves": cfg.num_leaves, "min_data_in_leaf": cfg.min_data_in_leaf,
                  "feature_fraction": cfg.feature_fraction,
                  "bagging_fraction": cfg.bagging_fraction, "bagging_freq": 1,
                  "num_threads": cfg.threads, "seed": cfg.seed, "verbose": -1,
                  "deterministic": True, "force_row_wise": True}
        dtr = lgb.Dataset(Xtr, y[s[train], tgt[train]] / ltr, feature_name=names,
                          categorical_feature=cats, free_raw_data=False)
        sets = []
        if len(val):
            Xva, lva, _, _ = self._features(a, panel, codes, s[val], o[val], step[val])
            sets = [lgb.Dataset(Xva, y[s[val], tgt[val]] / lva, reference=dtr)]
        fixed, rounds = rounds, []
        self.boosters = []
        for i, lv in enumerate(self.levels):
            b = lgb.train({**params, "alpha": float(lv)}, dtr,
                          num_boost_round=cfg.max_rounds if fixed is None else max(int(fixed[i]), 1),
                          valid_sets=sets or None,
                          callbacks=[lgb.early_stopping(cfg.early_stopping, verbose=False)]
                          if sets else None)
            self.boosters.append(b)
            rounds.append(int(b.best_iteration or b.current_iteration()))
            if progress is not None:
                progress(i + 1, len(self.levels), float(lv), rounds[-1])
        self.schema.update(freq=panel.freq, known=list(panel.known_names),
                           observed=list(panel.observed_names), features=names)
        self.history = {"rows": int(len(train)), "validation_rows": int(len(val)),
                        "rounds": rounds, "fit_seconds": time.perf_counter() - t0}
        return self

    def predict(self, panel: Panel) -> np.ndarray:
        """Quantile forecasts of the ``horizon`` periods after each series' end.

        Returns
        -------
        ndarray of float32, shape (n_series, horizon, Q)
            Units per period, >= 0, non-decreasing along Q.
        """
        if not self.boosters:
            raise RuntimeError("predict: the LightGBM member is not trained")
        if list(panel.known_names) != self.schema["known"] or \
                list(panel.observed_names) != self.schema["observed"]:
            raise ValueError(f"panel does not match the LightGBM member: covariates "
                             f"{list(panel.known_names)} / {list(panel.observed_names)} "
                             f"(model: {self.schema['known']} / {self.schema['observed']})")
        panel = self._label_codes(panel, fit=False)
        a = self._arrays(panel, last_only=True)
        codes = self._static_codes(panel, fit=False)
        n, t = a["y"].shape
        h = self.horizon
        s = np.repeat(np.arange(n), h)
        step = np.tile(np.arange(1, h + 1), n)
        X, lvl, _, _ = self._features(a, panel, codes, s, np.full(len(s), t - 1), step)
        threads = self.config.threads
        q = np.stack([b.predict(X, num_threads=threads) for b in self.boosters], -1)
        # a series without any known demand in its last season has no level: 1 unit
        q = q * np.where(np.isfinite(lvl), lvl, 1.0)[:, None]
        q = np.sort(np.clip(np.nan_to_num(q), 0, None), -1)
        return q.reshape(n, h, len(self.levels)).astype(np.float32)

    # ---- persistence -------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write the folder ``path``: ``gbm.json`` (settings, schema) and one LightGBM text
        model per level (``level_<i>.txt``)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        for i, b in enumerate(self.boosters):
            b.save_model(str(path / f"level_{i}.txt"))
        meta = {"levels": self.levels.tolist(), "horizon": self.horizon,
                "config": asdict(self.config), "schema": self.schema, "history": self.history}
        (path / "gbm.json").write_text(json.dumps(meta, indent=1))

    @classmethod
    def load(cls, path: str | Path) -> "GBMForecaster":
        import lightgbm as lgb
        path = Path(path)
        meta = json.loads((path / "gbm.json").read_text())
        self = cls(meta["levels"], meta["horizon"], GBMConfig(**meta["config"]))
        self.schema, self.history = meta["schema"], meta["history"]
        self.boosters = [lgb.Booster(model_file=str(path / f"level_{i}.txt"))
                         for i in range(len(self.levels))]
        return self

"""The strong practical peer of the accuracy benchmark: a global LightGBM quantile model.

In the style of the M5 winners (Makridakis et al. 2022: LightGBM models over all series, on
lags, rolling statistics, calendar, prices and promotions): one LightGBM model per quantile
level, trained on every series at once, forecasting the ``horizon`` periods after each
series' end directly (the step ahead is a feature; no recursion). Per (series, origin, step)
the features are

- the step ahead ``h`` (1 ... horizon);
- demand at the origin and the periods before it (``lags``), and in the same period one
  season before the target (7 days / 52 weeks), all divided by the series' level;
- rolling means (several windows), a rolling standard deviation and maximum of the demand up to
  the origin, divided by the level; the share of unknown periods in the last season;
- the known covariates (price, promotions, holidays, weather...) of the target period, of the
  periods just before and after it (promotion leads and lags), and each numeric one relative
  to its rolling mean at the origin (relative price, discount depth);
- the observed covariates at the origin;
- the calendar of the target period (day of week, day of month, month, week of year);
- the static attributes (numbers as they are, categories and the SKU and location ids as
  LightGBM categories).

The target is the demand of the target period divided by the series' level at the origin
(the mean known demand over the last season, plus 1), so that one model serves series of any
size and its loss weighs them as the scaled metrics do; forecasts are multiplied back.
Unknown periods (NaN demand) are never targets; in features they are NaN, which LightGBM
treats as missing. Early stopping on the last ``horizon`` periods of every series, held out
(as our model's validation). Quantiles are sorted across levels (LightGBM fits each level
alone, so they may cross) and clipped at zero.

This module knows nothing of ``replenish``'s model: it reads the Panel's arrays only.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

__all__ = ["LGBMPeer", "PeerConfig"]


@dataclass
class PeerConfig:
    """Settings of the peer (the same for every data set; none chosen on a test window)."""

    learning_rate: float = 0.05
    num_leaves: int = 63
    min_data_in_leaf: int = 50
    feature_fraction: float = 0.8
    bagging_fraction: float = 0.8
    max_rounds: int = 1000
    early_stopping: int = 50
    max_rows: int = 600_000
    threads: int = 2
    seed: int = 0


def _grid(panel):
    """Demand and covariates on an (n_series, T) grid aligned at the series' ends (NaN before
    a series' start)."""
    n, lengths = panel.n_series, panel.lengths
    t_max = int(lengths.max())
    pad = t_max - lengths
    col = np.repeat(pad, lengths) + (np.arange(panel.n_rows) - np.repeat(panel.indptr[:-1], lengths))
    row = panel.series_of_row

    def put(values):
        g = np.full((n, t_max) + values.shape[1:], np.nan, np.float32)
        g[row, col] = values
        return g
    return put(panel.demand), put(panel.known), put(panel.observed), pad


def _rolling(y: np.ndarray, w: int, fn: str) -> np.ndarray:
    """Per-row rolling statistic over the last ``w`` periods up to each period (NaN-aware)."""
    known = np.isfinite(y)
    v = np.where(known, y, 0.0).astype(np.float64)
    if fn in ("mean", "std"):
        c = np.concatenate([np.zeros((y.shape[0], 1)), np.cumsum(v, 1)], 1)
        k = np.concatenate([np.zeros((y.shape[0], 1)), np.cumsum(known, 1)], 1)
        lo = np.clip(np.arange(1, y.shape[1] + 1) - w, 0, None)
        hi = np.arange(1, y.shape[1] + 1)
        cnt = k[:, hi] - k[:, lo]
        s = c[:, hi] - c[:, lo]
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(cnt > 0, s / cnt, np.nan)
            if fn == "mean":
                return mean
            c2 = np.concatenate([np.zeros((y.shape[0], 1)), np.cumsum(v * v, 1)], 1)
            s2 = c2[:, hi] - c2[:, lo]
            var = np.where(cnt > 1, (s2 - cnt * mean ** 2) / np.maximum(cnt - 1, 1), np.nan)
            return np.sqrt(np.clip(var, 0, None))
    out = np.full(y.shape, np.nan)
    for j in range(y.shape[1]):     # max: a loop over periods, vectorized over series
        block = y[:, max(0, j - w + 1):j + 1]
        with np.errstate(all="ignore"):
            out[:, j] = np.where(np.isfinite(block).any(1), np.nanmax(np.where(
                np.isfinite(block), block, -np.inf), 1), np.nan)
    return out


class LGBMPeer:
    """Global LightGBM quantile forecaster (see the module docstring).

    Parameters
    ----------
    levels : sequence of float
        Quantile levels, one model each.
    horizon : int
        Periods forecast after each series' end.
    config : PeerConfig, optional
    """

    def __init__(self, levels, horizon: int, config: PeerConfig | None = None):
        self.levels = np.asarray(levels, np.float64)
        self.horizon = int(horizon)
        self.config = config or PeerConfig()
        self.models: list = []
        self.history: dict = {}

    # ---- features ----------------------------------------------------------------------
    def _prepare(self, panel):
        from replenish.engine._features import calendar
        self.freq = panel.freq
        self.season = 7 if panel.freq == "D" else 52
        self.lags = (0, 1, 2, 3, 6, 13, 27) if panel.freq == "D" else tuple(range(8))
        self.windows = (7, 14, 28, 56, 112) if panel.freq == "D" else (4, 8, 13, 26, 52)
        y, known, observed, pad = _grid(panel)
        n, t = y.shape
        h = self.horizon
        fk = panel.future_known
        if fk is not None and fk.shape[1] >= h and known.shape[2]:
            known = np.concatenate([known, fk[:, :h].astype(np.float32)], 1)
        else:
            known = np.concatenate([known, np.repeat(known[:, -1:], h, 1)], 1)
        self._y, self._known, self._observed = y, known, observed
        self._level = _rolling(y, self.season, "mean") + 1.0          # (n, t)
        self._roll = {f"mean_{w}": _rolling(y, w, "mean") for w in self.windows}
        self._roll["std"] = _rolling(y, self.season, "std")
        self._roll["max"] = _rolling(y, self.windows[1], "max")
        self._roll["unknown_share"] = 1.0 - np.isfinite(y).astype(np.float64).cumsum(1) / \
            np.arange(1, t + 1)
        kn = panel.known_names
        self._numeric_known = [j for j, c in enumerate(kn) if c not in panel.categories]
        self._known_mean = [_rolling(known[:, :t, j], self.season, "mean")
                            for j in self._numeric_known]
        day0 = panel.end.astype("datetime64[D]").astype(np.int64) - (t - 1) * (
            7 if panel.freq == "W" else 1)
        days = day0[:, None] + np.arange(t + h) * (7 if panel.freq == "W" else 1)
        cal = calendar(days)
        self._cal = {k: cal[k] for k in (("cal_day_of_week", "cal_day_of_month", "cal_month",
                                          "cal_day_of_year") if panel.freq == "D" else
                                         ("cal_week_of_year", "cal_month"))}
        codes = {}
        for name, v in {"sku": panel.sku, "location": panel.location,
                        **{k: v for k, v in panel.static.items()
                           if np.asarray(v).dtype.kind not in "fc"}}.items():
            codes[name] = np.unique(np.asarray(v).astype(str), return_inverse=True)[1]
        self._static_cat = codes
        self._static_num = {k: np.asarray(v, np.float64) for k, v in panel.static.items()
                            if np.asarray(v).dtype.kind in "fc"}
        self._cat_known = [j for j, c in enumerate(kn) if c in panel.categories]
        self.known_names, self.observed_names = kn, panel.observed_names

    def _features(self, s: np.ndarray, o: np.ndarray, step: np.ndarray):
        """Feature matrix (rows, F) for series ``s``, origin column ``o`` and step ``step``."""
        y, known = self._y, self._known
        lvl = self._level[s, o]
        tgt = o + step
        cols, names = [step.astype(np.float64)], ["step"]
        for k in self.lags:
            v = np.where(o - k >= 0, y[s, np.clip(o - k, 0, None)], np.nan)
            cols.append(v / lvl)
            names.append(f"lag_{k}")
        sl = tgt - self.season * np.ceil(step / self.season).astype(np.int64)
        cols.append(np.where(sl >= 0, y[s, np.clip(sl, 0, None)], np.nan) / lvl)
        names.append("same_period_last_season")
        for name, r in self._roll.items():
            cols.append(r[s, o] / (1.0 if name == "unknown_share" else lvl))
            names.append(f"roll_{name}")
        cols.append(np.log(lvl))
        names.append("log_level")
        width = known.shape[1]
        for j, c in enumerate(self.known_names):
            for d, tag in ((0, ""), (-1, "_prev"), (1, "_next")):
                cols.append(known[s, np.clip(tgt + d, 0, width - 1), j].astype(np.float64))
                names.append(f"known_{c}{tag}")
        for i, j in enumerate(self._numeric_known):
            m = self._known_mean[i][s, o]
            cols.append(known[s, tgt, j] - m)
            names.append(f"known_{self.known_names[j]}_vs_mean")
            with np.errstate(invalid="ignore", divide="ignore"):
                cols.append(np.where(np.abs(m) > 0, known[s, tgt, j] / m, np.nan))
            names.append(f"known_{self.known_names[j]}_ratio")
        for j, c in enumerate(self.observed_names):
            cols.append(self._observed[s, o, j].astype(np.float64))
            names.append(f"observed_{c}")
        for k, v in self._cal.items():
            cols.append(v[s, tgt].astype(np.float64))
            names.append(k)
        for k, v in self._static_num.items():
            cols.append(v[s])
            names.append(f"static_{k}")
        cat_start = len(cols)
        for k, v in self._static_cat.items():
            cols.append(v[s].astype(np.float64))
            names.append(f"id_{k}")
        X = np.column_stack(cols).astype(np.float32)
        self.feature_names = names
        self.categorical = list(range(cat_start, len(cols))) + [
            names.index(f"known_{self.known_names[j]}{tag}") for j in self._cat_known
            for tag in ("", "_prev", "_next")]
        return X, lvl

    # ---- training ----------------------------------------------------------------------
    def fit(self, panel) -> "LGBMPeer":
        """Train one model per level on every series of ``panel`` (history; NaN = unknown)."""
        import lightgbm as lgb
        cfg = self.config
        t0 = time.perf_counter()
        self._prepare(panel)
        y = self._y
        n, t = y.shape
        h = self.horizon
        rng = np.random.default_rng(cfg.seed)
        # (series, origin, step) with a known target; validation: targets in the last h periods
        first = self.windows[0]
        s, o = np.meshgrid(np.arange(n), np.arange(first, t - 1), indexing="ij")
        s, o = s.ravel(), o.ravel()
        s = np.repeat(s, h)
        o = np.repeat(o, h)
        step = np.tile(np.arange(1, h + 1), len(s) // h)
        tgt = o + step
        ok = (tgt < t) & np.isfinite(y[s, np.clip(tgt, 0, t - 1)]) & np.isfinite(self._level[s, o])
        s, o, step, tgt = s[ok], o[ok], step[ok], tgt[ok]
        val = o == t - 1 - h                       # the last horizon, from its own origin
        train = tgt < t - h
        tr = np.flatnonzero(train)
        if len(tr) > cfg.max_rows:
            tr = np.sort(rng.choice(tr, cfg.max_rows, replace=False))
        va = np.flatnonzero(val)
        Xtr, ltr = self._features(s[tr], o[tr], step[tr])
        ytr = y[s[tr], tgt[tr]] / ltr
        Xva, lva = self._features(s[va], o[va], step[va])
        yva = y[s[va], tgt[va]] / lva
        params = dict(objective="quantile", learning_rate=cfg.learning_rate,
                      num_leaves=cfg.num_leaves, min_data_in_leaf=cfg.min_data_in_leaf,
                      feature_fraction=cfg.feature_fraction, bagging_fraction=cfg.bagging_fraction,
                      bagging_freq=1, num_threads=cfg.threads, seed=cfg.seed, verbose=-1)
        dtr = lgb.Dataset(Xtr, ytr, categorical_feature=self.categorical, free_raw_data=False)
        dva = lgb.Dataset(Xva, yva, reference=dtr, categorical_feature=self.categorical)
        self.models, rounds = [], []
        for lv in self.levels:
            m = lgb.train({**params, "alpha": float(lv)}, dtr, num_boost_round=cfg.max_rounds,
                          valid_sets=[dva] if len(va) else None,
                          callbacks=[lgb.early_stopping(cfg.early_stopping, verbose=False)]
                          if len(va) else None)
            self.models.append(m)
            rounds.append(int(m.best_iteration or cfg.max_rounds))
        self.history = {"rows": int(len(tr)), "validation_rows": int(len(va)),
                        "features": len(self.feature_names), "rounds": rounds,
                        "fit_seconds": time.perf_counter() - t0}
        return self

    def predict(self, panel) -> np.ndarray:
        """Quantiles of the ``horizon`` periods after each series' end, (n, H, Q), units per
        period, sorted along Q and >= 0. ``panel`` must be the one given to :meth:`fit`
        (its ``future_known`` holds the horizon's known covariates)."""
        self._prepare(panel)
        n, t = self._y.shape
        h = self.horizon
        s = np.repeat(np.arange(n), h)
        o = np.full(len(s), t - 1)
        step = np.tile(np.arange(1, h + 1), n)
        X, lvl = self._features(s, o, step)
        q = np.stack([m.predict(X, num_threads=self.config.threads) for m in self.models], -1)
        q = q * np.nan_to_num(lvl, nan=1.0)[:, None]
        return np.sort(np.clip(q, 0, None), -1).reshape(n, h, len(self.levels)).astype(np.float32)

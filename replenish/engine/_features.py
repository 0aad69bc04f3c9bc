"""Model inputs of a Panel: names, calendar, categorical encodings and scalers.

The model's inputs are fitted once per model: category classes from the whole training panel
(code 0 is "unknown" and padding), StandardScalers of the covariates from a random sample of
rows, and a pytorch-forecasting ``TimeSeriesDataSet`` over a small sample of series that
the model is built from (``from_dataset``) and that fits the target-scale scalers. The result
is a JSON-serialisable :class:`FeatureSpec` that the window sampler reproduces exactly.
Day numbers are days since 1970-01-01.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from .panel import FREQ_STEP_DAYS, Panel

__all__ = ["FeatureSpec", "calendar", "category_luts", "fit_dataset", "make_spec", "panel_frame",
           "TARGET", "KEYS", "MISSING_INPUT"]

TARGET = "demand"
#: Encoder input flagging the periods of unknown demand (1) of a model trained with some.
MISSING_INPUT = "demand_missing"
KEYS = ("sku", "location")
CAL_CATS = {"D": ("cal_day_of_week", "cal_month"), "W": ("cal_week_of_year", "cal_month")}
CAL_REALS = {"D": ("cal_day_of_month", "cal_day_of_year"), "W": ("cal_day_of_year",)}
CAL_RANGE = {"cal_day_of_week": (0, 6), "cal_month": (1, 12), "cal_week_of_year": (1, 53)}


def calendar(days: Any) -> dict[str, Any]:
    """Calendar of day numbers (NumPy or torch integers, any shape), same type and shape out.

    Keys: ``cal_day_of_week`` (0 = Monday), ``cal_month`` (1-12), ``cal_day_of_month``
    (1-31), ``cal_day_of_year`` (1-366), ``cal_week_of_year`` ((day_of_year - 1) // 7 + 1,
    1-53). Proleptic Gregorian civil-from-days arithmetic, integer ops only, so it runs on
    any device without host round trips.
    """
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy_march = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy_march + 2) // 153
    dom = doy_march - (153 * mp + 2) // 5 + 1
    month = mp + 3 - 12 * (mp >= 10)
    # Day of year: day number minus that of 1 January of the civil year (the year before,
    # counted from March, as the algorithm counts years from 1 March).
    y0 = yoe + era * 400 + (mp >= 10) - 1
    era0 = y0 // 400
    yoe0 = y0 - era0 * 400
    jan1 = era0 * 146097 + yoe0 * 365 + yoe0 // 4 - yoe0 // 100 + 306 - 719468
    doy = days - jan1 + 1
    return {"cal_day_of_week": (days + 3) % 7, "cal_month": month, "cal_day_of_month": dom,
            "cal_day_of_year": doy, "cal_week_of_year": (doy - 1) // 7 + 1}


@dataclass
class FeatureSpec:
    """Names, encodings and scalings of the model's inputs (JSON-serialisable).

    Internal names: keys ``sku`` and ``location``, target ``demand``, panel covariates
    ``known__<name>``, ``observed__<name>``, ``static__<name>``, calendar ``cal_*``.
    ``categorical`` lists the known/observed covariates that are categories (their classes
    are the labels seen in training; other labels map to code 0, "unknown").
    ``missing_indicator``: the training panel had periods of unknown demand, so the model
    reads the encoder input ``demand_missing`` (1 where the demand is unknown).
    """

    freq: str
    encoder_length: int
    horizon: int
    known: list[str]
    observed: list[str]
    static_cats: list[str]
    static_reals: list[str]
    target_transform: str | None = None
    categorical: list[str] = field(default_factory=list)
    x_categoricals: list[str] = field(default_factory=list)
    x_reals: list[str] = field(default_factory=list)
    classes: dict[str, list[str]] = field(default_factory=dict)
    scalers: dict[str, list[float]] = field(default_factory=dict)
    missing_indicator: bool = False

    @property
    def step(self) -> int:
        return FREQ_STEP_DAYS[self.freq]

    @property
    def cal_cats(self) -> tuple[str, ...]:
        return CAL_CATS[self.freq]

    @property
    def cal_reals(self) -> tuple[str, ...]:
        return CAL_REALS[self.freq]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FeatureSpec":
        return cls(**d)


def make_spec(panel: Panel, encoder_length: int, horizon: int,
              target_transform: str | None) -> FeatureSpec:
    """The input layout for a panel's schema (encodings and scalings are fitted later)."""
    cats = [n for n, v in panel.static.items() if np.asarray(v).dtype.kind not in "fc"]
    reals = [n for n, v in panel.static.items() if np.asarray(v).dtype.kind in "fc"]
    return FeatureSpec(freq=panel.freq, encoder_length=int(encoder_length), horizon=int(horizon),
                       known=list(panel.known_names), observed=list(panel.observed_names),
                       static_cats=cats, static_reals=reals, target_transform=target_transform,
                       categorical=[n for n in (*panel.known_names, *panel.observed_names)
                                    if n in panel.categories],
                       missing_indicator=bool(panel.missing.any()))


def _key_strings(values: np.ndarray) -> np.ndarray:
    return np.asarray(values).astype(str).astype(object)


def _series_days(panel: Panel) -> np.ndarray:
    return panel.start.astype("datetime64[D]").astype(np.int64)


def panel_frame(panel: Panel, spec: FeatureSpec, series: np.ndarray | None = None,
                last: int | None = None) -> pd.DataFrame:
    """Long DataFrame of (the last ``last`` rows of) some series, in the dataset's columns.

    Used to fit ``TimeSeriesDataSet`` once on a sample, and by the tests to build the
    reference dataset. Categoricals are strings, as pytorch-forecasting requires.
    """
    idx = np.arange(panel.n_series) if series is None else np.asarray(series, np.int64)
    lengths = panel.lengths[idx]
    keep = lengths if last is None else np.minimum(lengths, last)
    first = panel.indptr[idx] + lengths - keep
    rows = np.repeat(first - np.concatenate([[0], np.cumsum(keep)[:-1]]), keep) \
        + np.arange(int(keep.sum()))
    sid = np.repeat(idx, keep)
    pos = rows - panel.indptr[sid]
    day = _series_days(panel)[sid] + pos * spec.step
    demand = panel.demand[rows].astype(np.float32)
    unknown = np.isnan(demand)
    if unknown.any():   # the dataset takes no NaN target: the series' previous known value
        demand = pd.Series(demand).groupby(sid).transform(
            lambda v: v.ffill().bfill().fillna(0.0)).to_numpy(np.float32)
    cols: dict[str, Any] = {
        "sku": _key_strings(panel.sku)[sid], "location": _key_strings(panel.location)[sid],
        "time_idx": day // spec.step, TARGET: demand}
    if spec.missing_indicator:
        cols[MISSING_INPUT] = unknown.astype(np.float32)
    for j, n in enumerate(spec.known):
        cols[f"known__{n}"] = _covariate(panel, spec, n, panel.known[rows, j])
    for j, n in enumerate(spec.observed):
        cols[f"observed__{n}"] = _covariate(panel, spec, n, panel.observed[rows, j])
    for n in spec.static_cats:
        cols[f"static__{n}"] = _key_strings(panel.static[n])[sid]
    for n in spec.static_reals:
        cols[f"static__{n}"] = np.asarray(panel.static[n], np.float32)[sid]
    cal = calendar(day)
    for n in spec.cal_cats:
        cols[n] = cal[n].astype(str).astype(object)
    for n in spec.cal_reals:
        cols[n] = cal[n].astype(np.float32)
    return pd.DataFrame(cols)


def _covariate(panel: Panel, spec: FeatureSpec, name: str, col: np.ndarray) -> np.ndarray:
    """A covariate column for the dataset frame: labels (str) for a categorical one."""
    if name in spec.categorical:
        return panel.categories[name][col.astype(np.int64)].astype(str).astype(object)
    return col


def covariate_names(spec: FeatureSpec) -> tuple[list[str], list[str], list[str], list[str]]:
    """Dataset names of the covariates: (known reals, known categoricals, observed reals,
    observed categoricals)."""
    kr = [f"known__{n}" for n in spec.known if n not in spec.categorical]
    kc = [f"known__{n}" for n in spec.known if n in spec.categorical]
    orl = [f"observed__{n}" for n in spec.observed if n not in spec.categorical]
    oc = [f"observed__{n}" for n in spec.observed if n in spec.categorical]
    return kr, kc, orl, oc


def fit_dataset(panel: Panel, spec: FeatureSpec, sample_series: int = 256,
                scaler_rows: int = 200_000, seed: int = 0):
    """Fit encoders and scalers; build the TimeSeriesDataSet the model is made from.

    Category classes come from the whole panel (plus index 0 for unknown/padding), covariate
    scalers from up to ``scaler_rows`` random rows of it; the dataset itself holds only the
    last ``encoder_length + horizon`` periods of up to ``sample_series`` series.

    Returns
    -------
    dataset : pytorch_forecasting.TimeSeriesDataSet
    spec : FeatureSpec
        ``spec`` completed with ``x_categoricals``, ``x_reals``, ``classes`` and ``scalers``.
    """
    from pytorch_forecasting import TimeSeriesDataSet
    from pytorch_forecasting.data.encoders import EncoderNormalizer, NaNLabelEncoder
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(seed)
    need = spec.horizon + 2
    eligible = np.flatnonzero(panel.lengths >= need)
    if len(eligible) == 0:
        raise ValueError(f"fit: no series has the {need} periods (horizon + 2) a training "
                         f"window needs; lower the horizon or provide longer history")
    sample = np.sort(rng.choice(eligible, min(sample_series, len(eligible)), replace=False))

    encoders: dict[str, Any] = {}
    values = {"sku": panel.sku, "location": panel.location,
              **{f"static__{n}": panel.static[n] for n in spec.static_cats}}
    for name, v in values.items():
        enc = NaNLabelEncoder(add_nan=True, warn=False).fit(pd.Series(np.unique(_key_strings(v))))
        encoders[name] = enc
        if name in KEYS:
            encoders[f"__group_id__{name}"] = enc
    for name in spec.cal_cats:
        lo, hi = CAL_RANGE[name]
        encoders[name] = NaNLabelEncoder(add_nan=True, warn=False).fit(
            pd.Series([str(i) for i in range(lo, hi + 1)]))
    for name in spec.categorical:   # classes: the labels of the history (not future-only ones)
        if name in spec.known:
            prefix, col = "known__", panel.known[:, spec.known.index(name)]
        else:
            prefix, col = "observed__", panel.observed[:, spec.observed.index(name)]
        used = np.unique(col.astype(np.int64))
        encoders[prefix + name] = NaNLabelEncoder(add_nan=True, warn=False).fit(
            pd.Series(np.asarray(panel.categories[name])[used].astype(str)))

    rows = rng.choice(panel.n_rows, min(scaler_rows, panel.n_rows), replace=False)
    sid = np.searchsorted(panel.indptr, rows, side="right") - 1
    day = _series_days(panel)[sid] + (rows - panel.indptr[sid]) * spec.step
    cal = calendar(day)
    columns: dict[str, np.ndarray] = {n: cal[n].astype(np.float32) for n in spec.cal_reals}
    columns.update({f"known__{n}": panel.known[rows, j] for j, n in enumerate(spec.known)
                    if n not in spec.categorical})
    columns.update({f"observed__{n}": panel.observed[rows, j]
                    for j, n in enumerate(spec.observed) if n not in spec.categorical})
    columns.update({f"static__{n}": np.asarray(panel.static[n], np.float32)
                    for n in spec.static_reals})
    if spec.missing_indicator:
        columns[MISSING_INPUT] = np.isnan(panel.demand[rows]).astype(np.float32)
    scalers = {n: StandardScaler().fit(pd.DataFrame({n: v})) for n, v in columns.items()}

    frame = panel_frame(panel, spec, sample, last=spec.encoder_length + spec.horizon)
    known_reals, known_cats, observed_reals, observed_cats = covariate_names(spec)
    dataset = TimeSeriesDataSet(
        frame, time_idx="time_idx", target=TARGET, group_ids=list(KEYS),
        max_encoder_length=spec.encoder_length, min_encoder_length=2,
        max_prediction_length=spec.horizon, min_prediction_length=spec.horizon,
        static_categoricals=list(KEYS) + [f"static__{n}" for n in spec.static_cats],
        static_reals=[f"static__{n}" for n in spec.static_reals],
        time_varying_known_categoricals=list(spec.cal_cats) + known_cats,
        time_varying_known_reals=list(spec.cal_reals) + known_reals,
        time_varying_unknown_categoricals=observed_cats,
        time_varying_unknown_reals=observed_reals + [TARGET]
        + ([MISSING_INPUT] if spec.missing_indicator else []),
        target_normalizer=EncoderNormalizer(method="standard",
                                            transformation=spec.target_transform),
        categorical_encoders=encoders, scalers=scalers, add_relative_time_idx=True,
        add_target_scales=True, add_encoder_length=True)

    spec.x_categoricals = list(dataset.flat_categoricals)
    spec.x_reals = list(dataset.reals)
    spec.classes = {n: [str(c) for c in encoders[n].classes_vector_] for n in spec.x_categoricals}
    for n in spec.x_reals:
        sc = dataset._scalers.get(n)
        if sc is not None and hasattr(sc, "mean_"):
            spec.scalers[n] = [float(sc.mean_[0]), float(sc.scale_[0])]
    return dataset, spec


def category_luts(spec: FeatureSpec, device: str | torch.device) -> dict[str, torch.Tensor]:
    """Lookup tables calendar value -> category code, one LongTensor per calendar category."""
    luts = {}
    for n in spec.cal_cats:
        lo, hi = CAL_RANGE[n]
        codes = {c: i for i, c in enumerate(spec.classes[n])}
        luts[n] = torch.tensor([codes.get(str(v), 0) for v in range(hi + 1)], device=device)
    return luts

"""RMSSE and SPL against brute-force loops over series."""
import numpy as np

from replenish.engine.metrics import history_scales, interpolate_quantiles, rmsse, spl


def _data(seed=0):
    rng = np.random.default_rng(seed)
    lengths = np.array([30, 1, 12, 50, 5])
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    values = rng.poisson(10, indptr[-1]).astype(float)
    values[indptr[4]:indptr[5]] = 3.0                         # constant history: scale 0
    actual = rng.poisson(10, (5, 7)).astype(float)
    levels = np.array([0.1, 0.5, 0.9])
    q = np.sort(rng.gamma(5, 2, (5, 7, 3)), axis=-1)
    return values, indptr, actual, q, levels


def test_rmsse_and_spl_match_loops():
    values, indptr, actual, q, levels = _data()
    r_series, s_series = [], []
    for i in range(len(indptr) - 1):
        hist = values[indptr[i]:indptr[i + 1]]
        if len(hist) < 2 or np.all(np.diff(hist) == 0):
            continue
        msd = np.mean(np.diff(hist) ** 2)
        mad = np.mean(np.abs(np.diff(hist)))
        r_series.append(np.sqrt(np.mean((actual[i] - q[i, :, 1]) ** 2) / msd))
        loss = 0.0
        for h in range(actual.shape[1]):
            for k, lv in enumerate(levels):
                y, f = actual[i, h], q[i, h, k]
                loss += lv * (y - f) if y >= f else (1 - lv) * (f - y)
        s_series.append(loss / (actual.shape[1] * len(levels)) / mad)
    r, per, excluded = rmsse(actual, q[..., 1], values, indptr, return_per_series=True)
    assert excluded == 2 and np.isnan(per[1]) and np.isnan(per[4])
    np.testing.assert_allclose(r, np.mean(r_series), rtol=1e-12)
    np.testing.assert_allclose(spl(actual, q, levels, values, indptr), np.mean(s_series),
                               rtol=1e-12)


def test_history_scales_ignore_series_edges():
    values = np.array([0.0, 10.0, 100.0, 100.0, 101.0])
    msd, mad = history_scales(values, np.array([0, 2, 5]))
    np.testing.assert_allclose(msd, [100.0, 0.5])
    np.testing.assert_allclose(mad, [10.0, 0.5])


def test_interpolate_quantiles():
    q = np.array([[10.0, 20.0, 40.0]])
    lv = np.array([0.1, 0.5, 0.9])
    out = interpolate_quantiles(q, lv, np.array([0.05, 0.1, 0.3, 0.5, 0.7, 0.95]))
    np.testing.assert_allclose(out, [[8.75, 10.0, 15.0, 20.0, 30.0, 42.5]])
    low = interpolate_quantiles(np.array([[1.0, 2.0, 3.0]]), lv, np.array([0.001]))
    assert low[0, 0] >= 0


def test_history_scales_without_history():
    msd, mad = history_scales(np.zeros(0), np.zeros(3, np.int64))
    assert msd.shape == mad.shape == (2,) and np.isnan(msd).all() and np.isnan(mad).all()


def test_unknown_periods_are_neither_in_the_scales_nor_scored():
    values, indptr, actual, q, levels = _data(1)
    values[[3, 4, 40, 41, 60]] = np.nan            # unknown history periods
    actual[0, [1, 5]] = np.nan                     # unknown actuals
    actual[2, :] = np.nan                          # a series without any known actual
    r_series, s_series = [], []
    for i in range(len(indptr) - 1):
        hist = values[indptr[i]:indptr[i + 1]]
        d = np.array([b - a for a, b in zip(hist[:-1], hist[1:])
                      if np.isfinite(a) and np.isfinite(b)])
        known = np.flatnonzero(np.isfinite(actual[i]))
        if len(d) == 0 or np.all(d == 0) or len(known) == 0:
            continue
        r_series.append(np.sqrt(np.mean((actual[i, known] - q[i, known, 1]) ** 2)
                                / np.mean(d ** 2)))
        loss = [lv * (actual[i, h] - q[i, h, k]) if actual[i, h] >= q[i, h, k]
                else (1 - lv) * (q[i, h, k] - actual[i, h])
                for h in known for k, lv in enumerate(levels)]
        s_series.append(np.mean(loss) / np.mean(np.abs(d)))
    r, per, excluded = rmsse(actual, q[..., 1], values, indptr, return_per_series=True)
    assert excluded == 3 and np.isnan(per[2])
    np.testing.assert_allclose(r, np.mean(r_series), rtol=1e-12)
    np.testing.assert_allclose(spl(actual, q, levels, values, indptr), np.mean(s_series),
                               rtol=1e-12)

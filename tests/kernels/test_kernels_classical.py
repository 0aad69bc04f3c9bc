"""The classical (ERP) forecast and policy against plain loops and scipy."""
import numpy as np
import pytest
from scipy import stats

from replenish.kernels.classical import classical_policy, forecast_error_std, moving_average_forecast


def _history(rng, n=7, t=60):
    x = rng.poisson(rng.uniform(1, 9, (n, 1)) * (1 + 0.5 * (np.arange(t) % 7 == 5)), (n, t)).astype(float)
    starts = rng.integers(0, 30, n)
    for i, s in enumerate(starts):
        x[i, :s] = np.nan          # series that started later
    x[0, 40] = np.nan              # and a hole
    return x


def _loop_forecast(row, window, season):
    vals = row
    if season is None:
        w = vals[-window:]
        w = w[np.isfinite(w)]
        return w.mean() if len(w) else np.nan
    k = max(1, window // season)
    pts = [vals[len(vals) - j * season] for j in range(1, k + 1) if len(vals) - j * season >= 0]
    pts = [p for p in pts if np.isfinite(p)]
    return np.mean(pts) if pts else np.nan


@pytest.mark.parametrize("window,season", [(28, None), (5, None), (7, 7), (28, 7)])
def test_forecast_and_error_std_equal_a_loop(window, season):
    rng = np.random.default_rng(window + (season or 0))
    x = _history(rng)
    n, t = x.shape
    got = moving_average_forecast(x, 10, window=window, season=season)
    for i in range(n):
        for h in range(10):
            if season is None:
                want = _loop_forecast(x[i], window, None)
            else:   # period t + h: the same phase, k seasons back
                p = h % season
                ext = x[i, :t]
                k = max(1, window // season)
                pts = [ext[t + p - j * season] for j in range(1, k + 1) if 0 <= t + p - j * season < t]
                pts = [v for v in pts if np.isfinite(v)]
                want = np.mean(pts) if pts else np.nan
            np.testing.assert_allclose(got[i, h], want, equal_nan=True)
    sd = forecast_error_std(x, window=window, season=season, errors=20)
    for i in range(n):
        errs = []
        for u in range(max(t - 20, 0), t):
            f = _loop_forecast(x[i, :u], window, season) if u > 0 else np.nan
            if np.isfinite(f) and np.isfinite(x[i, u]):
                errs.append(x[i, u] - f)
        want = np.std(errs, ddof=1) if len(errs) >= 2 else np.nanstd(x[i], ddof=1)
        np.testing.assert_allclose(sd[i], want, rtol=1e-10)


def test_policy_is_the_textbook_formula():
    rng = np.random.default_rng(0)
    n = 50
    f = rng.uniform(1, 10, (n, 12))
    sigma = rng.uniform(0.5, 3, n)
    prot = rng.uniform(1, 9, n)
    level = rng.uniform(0.6, 0.99, n)
    got = classical_policy(f, sigma, protection=prot, service_level=level)
    for i in range(n):
        whole = int(prot[i])
        mu = f[i, :whole].sum() + (prot[i] - whole) * f[i, whole]
        sp = sigma[i] * np.sqrt(prot[i])
        assert got["protection_demand_mean"][i] == pytest.approx(mu)
        assert got["reorder_point"][i] == pytest.approx(max(mu + stats.norm.ppf(level[i]) * sp, 0))
    # with a fixed order cost the order-up-to level adds the EOQ; fill-rate targets use the loss function
    k = classical_policy(f, sigma, protection=prot, service_level=level, order_cost=30.0, holding_cost=0.01)
    eoq = np.sqrt(2 * 30.0 * f.mean(1) / 0.01)
    np.testing.assert_allclose(k["order_up_to"] - k["reorder_point"], eoq)
    fr = classical_policy(f, sigma, protection=prot, service_level=0.98, target="fill_rate",
                          review_period=1.0)
    mu, sp = fr["protection_demand_mean"], fr["protection_demand_std"]
    z = (fr["reorder_point"] - mu) / sp
    loss = sp * (stats.norm.pdf(z) - z * stats.norm.sf(z))
    np.testing.assert_allclose(loss, 0.02 * f.mean(1), rtol=1e-4)

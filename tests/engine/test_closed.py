"""Days a location is closed every year: the vectorized rule against a loop over days, and the
cases it must (Christmas, Good Friday on another date each year) and must not (one year, an
open year, an intermittent seller, a shop closed on that weekday anyway, weekly data) catch."""
import datetime as dt

import numpy as np
import pytest
from dateutil.easter import easter

from replenish.engine._easter import easter_offset
from replenish.engine.closed import closed_days
from replenish.engine.panel import Panel

START = np.datetime64("2016-01-01")
END = np.datetime64("2019-04-10")      # the horizon: 11 April ... 30 April 2019 (+ 28 days)
H = 28


def _panel(demand_by_loc: dict[str, np.ndarray], per_loc: int = 3, freq: str = "D") -> Panel:
    sku, loc, rows = [], [], []
    for name, d in demand_by_loc.items():
        for j in range(per_loc):
            sku.append(f"S{j}")
            loc.append(name)
            rows.append(d)
    lengths = np.array([len(r) for r in rows])
    step = 7 if freq == "W" else 1
    return Panel(sku=np.array(sku), location=np.array(loc),
                 start=np.array([START] * len(rows), dtype="datetime64[D]"),
                 indptr=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                 demand=np.concatenate(rows).astype(np.float32), freq=freq)


def _daily(seed: int, closed: list[np.datetime64] = (), weekday_closed: int | None = None,
           p_zero: float = 0.0) -> np.ndarray:
    days = np.arange(START, END + 1)
    rng = np.random.default_rng(seed)
    y = rng.poisson(20, len(days)).astype(float) + 1
    if p_zero:
        y[rng.random(len(days)) < p_zero] = 0
    if weekday_closed is not None:
        y[(days.astype(np.int64) + 3) % 7 == weekday_closed] = 0
    for d in closed:
        y[days == d] = 0
    return y


def _good_fridays(years):
    return [np.datetime64(easter(y) - dt.timedelta(days=2)) for y in years]


def _loop_reference(panel: Panel, horizon: int, min_years=2, min_open_around=7,
                    max_zero_share=0.1) -> np.ndarray:
    """The rule of the module docstring, day by day, in plain Python."""
    totals: dict[tuple[str, np.datetime64], list] = {}
    dates = panel.row_dates().astype("datetime64[D]")
    for r in range(panel.n_rows):
        key = (str(panel.location[panel.series_of_row[r]]), dates[r])
        totals.setdefault(key, []).append(float(panel.demand[r]))

    def total(loc, d):
        v = totals.get((loc, d))
        return None if v is None else (None if any(np.isnan(v)) else sum(v))

    locs = sorted({str(x) for x in panel.location})
    all_days = sorted({d for (_, d) in totals})
    share = {}
    for loc in locs:
        for wd in range(7):
            vals = [total(loc, d) for d in all_days if (d.astype(np.int64) + 3) % 7 == wd
                    and (loc, d) in totals]
            share[loc, wd] = np.mean([v == 0 for v in vals]) if vals else 1.0

    def evidence(loc, d):     # 'closed', 'open' or None
        t = total(loc, d)
        if t is None:
            return None
        if t > 0:
            return "open"
        around = sum(1 for k in (-4, -3, -2, -1, 1, 2, 3, 4)
                     if (total(loc, d + 7 * k) or 0) > 0)
        ok = around >= min_open_around and share[loc, int((d.astype(np.int64) + 3) % 7)] \
            <= max_zero_share
        return "closed" if ok else None

    out = np.zeros((panel.n_series, horizon), bool)
    for i in range(panel.n_series):
        loc = str(panel.location[i])
        for h in range(horizon):
            day = (panel.end[i] + h + 1).astype("datetime64[D]").item()
            offs = []
            for back in range(1, 6):
                try:
                    offs.append(np.datetime64(day.replace(year=day.year - back)))
                except ValueError:                      # 29 February
                    pass
            rules = [offs]
            e = (day - easter(day.year)).days
            if -49 <= e <= 63:
                rules.append([np.datetime64(easter(day.year - b) + dt.timedelta(days=e))
                              for b in range(1, 6)])
            for occ in rules:                            # latest year first
                ev = [e for e in (evidence(loc, o) for o in occ) if e is not None]
                if len(ev) >= min_years and all(e == "closed" for e in ev[:min_years]):
                    out[i, h] = True
    return out


def test_easter_offset_against_dateutil():
    """The computus against dateutil's (an independent implementation), 1583-2400: offset 0 on
    Easter Sunday, -2 on Good Friday, NaN outside [-49, 63]; weekly: whole weeks."""
    days = np.arange(np.datetime64("1583-01-01"), np.datetime64("2401-01-01")).astype(np.int64)
    off = easter_offset(days)
    sunday = np.array([np.datetime64(easter(y), "D") for y in range(1583, 2401)]).astype(np.int64)
    pos = np.searchsorted(days, sunday)
    np.testing.assert_array_equal(off[pos], 0)
    np.testing.assert_array_equal(off[pos - 2], -2)
    np.testing.assert_array_equal(off[pos + 63], 63)
    assert np.isnan(off[pos - 50]).all() and np.isnan(off[pos + 64]).all()
    assert np.isfinite(off).sum() == 113 * len(sunday)          # the cycle, nothing else
    week = easter_offset(sunday[:, None] + np.array([-8, -1, 0, 6, 7]), 7)
    np.testing.assert_array_equal(week, np.tile([-2, -1, 0, 0, 1], (len(sunday), 1)))


def test_christmas_and_good_friday_against_a_loop():
    closed = [np.datetime64(f"{y}-12-25") for y in (2016, 2017, 2018)] + \
        _good_fridays((2016, 2017, 2018))
    p = _panel({"shop": _daily(0, closed), "sunday_shut": _daily(1, closed, weekday_closed=6),
                "sparse": _daily(2, closed, p_zero=0.4), "open": _daily(3)})
    mask, info = closed_days(p, H)
    np.testing.assert_array_equal(mask, _loop_reference(p, H))
    days = p.end[0] + np.arange(1, H + 1)
    gf = np.datetime64(easter(2019) - dt.timedelta(days=2))           # 19 April 2019
    want = np.zeros(H, bool)
    want[days == gf] = True
    loc = p.location
    for i in range(p.n_series):
        # the regular shops: Good Friday (a new date); the intermittent seller and the open
        # one: nothing
        expect = want if loc[i] in ("shop", "sunday_shut") else np.zeros(H, bool)
        np.testing.assert_array_equal(mask[i], expect, err_msg=str(loc[i]))
    assert info == {"series_days": 6, "locations": 2, "dates": [str(gf)]}


def test_one_year_or_an_open_year_is_not_enough_but_a_change_of_policy_is_followed():
    one = _good_fridays((2018,))
    open_once = _good_fridays((2016, 2018))       # 2017's Good Friday sold
    p = _panel({"one": _daily(0, one), "open_once": _daily(1, open_once)})
    mask, info = closed_days(p, H)
    assert not mask.any() and info["series_days"] == 0
    np.testing.assert_array_equal(mask, _loop_reference(p, H))
    changed = _panel({"changed": _daily(2, _good_fridays((2017, 2018)))})   # open in 2016 only
    mask = closed_days(changed, H)[0]
    assert mask.sum() == 3 and mask.any(0).sum() == 1
    np.testing.assert_array_equal(mask, _loop_reference(changed, H))


def test_unknown_days_are_no_evidence_and_weekly_data_has_none():
    closed = _good_fridays((2016, 2017, 2018))
    y = _daily(0, closed)
    days = np.arange(START, END + 1)
    y_unknown = y.copy()
    y_unknown[days == closed[1]] = np.nan         # 2017 unknown: 2016 and 2018 still say closed
    p = _panel({"a": y_unknown})
    assert closed_days(p, H)[0].any()
    y_unknown[days == closed[0]] = np.nan         # only 2018 left
    assert not closed_days(_panel({"a": y_unknown}), H)[0].any()
    weekly = _panel({"a": y[: len(y) // 7]}, freq="W")
    assert not closed_days(weekly, 12)[0].any()


def test_the_forecaster_zeroes_closed_days_and_counts_them():
    """predict() on a panel with a closed day: every quantile 0 there, the count in the
    report; closed_days=False keeps the forecasts."""
    import torch

    from replenish.engine.forecast import ForecastConfig, TFTForecaster
    closed = _good_fridays((2016, 2017, 2018))
    p = _panel({"shop": _daily(0, closed), "other": _daily(1)}, per_loc=2)
    f = TFTForecaster(ForecastConfig(horizon=H, encoder_length=28, max_steps=4, val_every=2,
                                     hidden_size=8, hidden_continuous_size=4, attention_heads=1,
                                     ensemble=None, batch_size=16))
    f.fit(p)
    q = f.predict(p)
    gf = int(np.flatnonzero(p.end[0] + np.arange(1, H + 1)
                            == np.datetime64(easter(2019) - dt.timedelta(days=2)))[0])
    shop = p.location == "shop"
    assert (q[shop, gf] == 0).all() and (q[shop][:, np.arange(H) != gf] > 0).any()
    assert (q[~shop, gf] > 0).any()
    assert p.report["closed_days_zeroed"] == 2 and p.report["closed_days_examples"] == ["2019-04-19"]
    t = f.predict(p, as_tensor=True)
    assert isinstance(t, torch.Tensor) and (t[torch.as_tensor(shop), gf] == 0).all()
    f.config.closed_days = False
    assert (f.predict(p)[shop, gf] > 0).any()
    with pytest.raises(AssertionError):
        np.testing.assert_array_equal(f.predict(p), q)


def test_a_saved_model_takes_the_jobs_closed_days_setting(tmp_path):
    """The plan job's closed_days applies to a model loaded with --model (a run-time setting)."""
    from replenish.engine.forecast import ForecastConfig, TFTForecaster
    from replenish.jobs._tasks import _get_model
    closed = _good_fridays((2016, 2017, 2018))
    p = _panel({"shop": _daily(0, closed)}, per_loc=2)
    f = TFTForecaster(ForecastConfig(horizon=H, encoder_length=28, max_steps=2, val_every=2,
                                     hidden_size=8, hidden_continuous_size=4, attention_heads=1,
                                     ensemble=None, batch_size=16)).fit(p)
    f.save(tmp_path / "m")
    gf = p.end[0] + np.arange(1, H + 1) == np.datetime64("2019-04-19")
    assert (_get_model(str(tmp_path / "m"), "cpu", {}).predict(p)[:, gf] == 0).all()
    off = _get_model(str(tmp_path / "m"), "cpu", {"closed_days": False})
    assert off.config.closed_days is False and (off.predict(p)[:, gf] > 0).any()

"""Exception reasons: each raised by a crafted item and not by a neutral one, with its money
against scipy's normal loss; the top reason; days without demand against a loop."""
import numpy as np
import pytest
from scipy import stats

from replenish.kernels import (BINDING_RULES, EXCEPTION_CODES, exception_values,
                               periods_since_demand, top_exception)

NEUTRAL = dict(on_hand=60.0, position=60.0, order_quantity=0.0, need=0.0, binding=0,
               lead_time_demand_mean=20.0, lead_time_demand_std=4.0,
               protection_demand_mean=25.0, protection_demand_std=5.0, order_up_to=55.0,
               demand_rate=5.0, unit_cost=3.0, stockout_cost=np.nan, periods_since_demand=0.0,
               history_periods=400.0, forecast_bias=0.05)

SETTINGS = dict(excess_periods=90.0, excess_ratio=0.5, no_demand_periods=56.0,
                inflation_ratio=0.5, bias_threshold=0.25, new_item_periods=56.0)


def _loss(x, mu, sd):
    """E[(D - x)^+] for normal D, by scipy."""
    z = (x - mu) / sd
    return sd * (stats.norm.pdf(z) - z * stats.norm.sf(z))


# code -> (changes to the neutral item, money at stake by an independent formula)
CRAFTED = {
    "expedite": (dict(position=12.0, on_hand=12.0, order_quantity=0.0),
                 lambda it: _loss(12.0, 20.0, 4.0) * 3.0),
    "order_today": (dict(position=20.0, on_hand=20.0, order_quantity=35.0, need=35.0, stockout_cost=8.0,
                         lead_time_demand_mean=15.0),
                    lambda it: (_loss(20.0, 25.0, 5.0) - _loss(55.0, 25.0, 5.0)) * 8.0),
    "excess": (dict(position=150.0, on_hand=150.0), lambda it: (150.0 - 55.0) * 3.0),
    "no_demand": (dict(periods_since_demand=60.0), lambda it: 60.0 * 3.0),
    "moq_inflated": (dict(position=50.0, on_hand=50.0, order_quantity=24.0, need=5.0, binding=1,
                          lead_time_demand_mean=15.0),
                     lambda it: (24.0 - 5.0) * 3.0),
    "case_pack_inflated": (dict(position=50.0, on_hand=50.0, order_quantity=12.0, need=5.0,
                                binding=2, lead_time_demand_mean=15.0),
                           lambda it: (12.0 - 5.0) * 3.0),
    "capped_max_order": (dict(position=10.0, on_hand=10.0, order_quantity=10.0, need=45.0,
                              binding=3, lead_time_demand_mean=8.0),
                         lambda it: (_loss(20.0, 25.0, 5.0) - _loss(55.0, 25.0, 5.0)) * 3.0),
    "capped_budget": (dict(position=10.0, on_hand=10.0, order_quantity=20.0, need=45.0, binding=4,
                           lead_time_demand_mean=8.0),
                      lambda it: (_loss(30.0, 25.0, 5.0) - _loss(55.0, 25.0, 5.0)) * 3.0),
    "forecast_bias": (dict(forecast_bias=0.6), lambda it: 0.6 / 1.6 * 25.0 * 3.0),
    "new_item": (dict(history_periods=30.0), lambda it: 55.0 * 3.0),
}


def _run(items, **settings):
    cols = {k: np.array([it[k] for it in items], dtype=float) for k in NEUTRAL}
    cols["binding"] = cols["binding"].astype(np.int8)
    return exception_values(**cols, **{**SETTINGS, **settings})


def test_every_code_is_listed_and_crafted():
    assert set(CRAFTED) == set(EXCEPTION_CODES)
    assert BINDING_RULES == ("none", "moq", "case_pack", "max_order", "budget")


def test_neutral_item_raises_nothing_and_each_crafted_item_its_code_with_its_money():
    items = [NEUTRAL] + [{**NEUTRAL, **change} for change, _ in CRAFTED.values()]
    val = _run(items)
    assert not np.isfinite(val[0]).any(), dict(zip(EXCEPTION_CODES, val[0]))
    for row, (code, (_, money)) in enumerate(CRAFTED.items(), start=1):
        j = EXCEPTION_CODES.index(code)
        assert np.isfinite(val[row, j]), code
        assert val[row, j] == pytest.approx(money(items[row]), rel=1e-6), code
        assert (val[np.isfinite(val)] >= 0).all()


def test_thresholds_move_the_boundaries():
    excess = {**NEUTRAL, "position": 90.0, "on_hand": 90.0}   # 1.64 x S, 18 periods of supply
    assert np.isfinite(_run([excess])[0, EXCEPTION_CODES.index("excess")])
    assert not np.isfinite(_run([excess], excess_ratio=1.0)[0, EXCEPTION_CODES.index("excess")])
    long = {**NEUTRAL, "position": 60.0, "on_hand": 60.0, "demand_rate": 0.5}    # 120 periods
    assert np.isfinite(_run([long], excess_ratio=1.0)[0, EXCEPTION_CODES.index("excess")])
    idle = {**NEUTRAL, "periods_since_demand": 30.0}
    assert not np.isfinite(_run([idle])[0, EXCEPTION_CODES.index("no_demand")])
    assert np.isfinite(_run([idle], no_demand_periods=28.0)[0, EXCEPTION_CODES.index("no_demand")])
    biased = {**NEUTRAL, "forecast_bias": -0.3}
    assert np.isfinite(_run([biased])[0, EXCEPTION_CODES.index("forecast_bias")])
    assert not np.isfinite(_run([biased], bias_threshold=0.4)[0, EXCEPTION_CODES.index("forecast_bias")])
    unknown = {**NEUTRAL, "forecast_bias": np.nan, "history_periods": np.nan,
               "periods_since_demand": np.nan}
    assert not np.isfinite(_run([unknown])).any()
    # min_value drops the small ones
    small = {**NEUTRAL, **CRAFTED["no_demand"][0], "on_hand": 1.0}
    assert np.isfinite(_run([small])[0]).any()
    assert not np.isfinite(_run([small], min_value=10.0)[0]).any()


def test_top_exception_is_the_most_valuable():
    rng = np.random.default_rng(0)
    val = np.where(rng.random((200, 10)) < 0.3, rng.uniform(0, 100, (200, 10)), np.nan)
    code, value = top_exception(val)
    for i in range(200):
        if np.isfinite(val[i]).any():
            assert code[i] == np.nanargmax(val[i]) and value[i] == np.nanmax(val[i])
        else:
            assert code[i] == -1 and np.isnan(value[i])


def test_periods_since_demand_against_a_loop():
    rng = np.random.default_rng(4)
    lengths = rng.integers(1, 40, 300)
    demand = np.where(rng.random(lengths.sum()) < 0.2, rng.integers(1, 5, lengths.sum()), 0).astype(float)
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    got = periods_since_demand(demand, indptr)
    for i in range(len(lengths)):
        d = demand[indptr[i]:indptr[i + 1]]
        pos = np.flatnonzero(d > 0)
        want = len(d) if not len(pos) else len(d) - 1 - pos[-1]
        assert got[i] == want

"""Order quantities (MOQ, case pack, cap) and order timing."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from replenish.kernels import inventory_position, order_quantity, periods_until_order

FAST = settings(max_examples=60, deadline=None)
units = st.floats(0.0, 500.0)


@FAST
@given(st.lists(st.tuples(st.floats(-50, 500), units, units, st.floats(0, 60), st.integers(1, 24),
                          st.one_of(st.none(), st.floats(0, 400))), min_size=1, max_size=30),
       st.sampled_from([np.float32, np.float64]))
def test_orders_respect_moq_case_pack_and_cap(rows, dtype):
    pos, rop, gap, moq, pack, cap = zip(*rows)
    pos, rop = np.array(pos, dtype), np.array(rop, dtype)
    out = rop + np.array(gap, dtype)
    moq, pack = np.array(moq, dtype), np.array(pack, dtype)
    cap = np.array([np.inf if c is None else c for c in cap], dtype)
    q = order_quantity(pos, rop, out, moq=moq, case_pack=pack, max_order=cap)
    assert q.dtype == dtype
    assert np.all(q >= 0)
    positive = q > 0
    assert np.all(np.mod(q, pack) == 0)  # whole case packs
    assert np.all(q[positive] >= moq[positive])
    assert np.all(q <= cap)
    assert np.all(q[pos > rop] == 0)  # only at or below the reorder point
    # when an order is feasible it covers the gap to the order-up-to level
    cap_packs = np.floor(cap / pack) * pack
    need = out - pos
    feasible = (pos <= rop) & (need > 0) & (cap_packs >= np.maximum(np.ceil(need / pack) * pack, moq))
    assert np.all(q[feasible] >= need[feasible] - 1e-3)
    assert np.all(q[feasible] <= np.maximum(need[feasible], moq[feasible]) + pack[feasible])


def test_order_quantity_examples():
    q = order_quantity(np.array([10.0, 10.0, 30.0, 10.0, 10.0]), np.array([20.0] * 5),
                       np.array([33.0, 33.0, 50.0, 33.0, 33.0]),
                       moq=np.array([0.0, 40.0, 0.0, 0.0, 50.0]), case_pack=np.array([6.0, 6.0, 6.0, 6.0, 6.0]),
                       max_order=np.array([np.inf, np.inf, np.inf, 10.0, 45.0]))
    # need 23 -> 24; moq 40 -> 42; above rop -> 0; cap 10 -> 6; cap 45 -> 42 < moq 50 -> 0
    np.testing.assert_array_equal(q, [24.0, 42.0, 0.0, 6.0, 0.0])
    assert order_quantity(5.0, 5.0, 12.5) == 7.5  # no case pack: no rounding


@FAST
@given(st.lists(st.tuples(st.integers(-20, 300), st.integers(0, 100)), min_size=1, max_size=15),
       st.integers(1, 20), st.integers(0, 2**31 - 1))
def test_periods_until_order_matches_loop(items, horizon, seed):
    # whole units keep the arithmetic exact, so the loop is an exact reference
    rng = np.random.default_rng(seed)
    pos, rop = (np.array(c, dtype=float) for c in zip(*items))
    demand = np.round(rng.gamma(1.0, 8.0, (pos.size, horizon)))
    got = periods_until_order(pos, rop, demand)
    for i in range(pos.size):
        expected, level = np.nan, pos[i]
        for t in range(horizon):
            if level <= rop[i]:
                expected = t
                break
            level -= demand[i, t]
        if np.isnan(expected):
            assert np.isnan(got[i])
        else:
            assert got[i] == expected


def test_periods_until_order_sentinel_and_today():
    # 0 = order today; NaN = not within the 5-period horizon; 26 - 4 * 4 = 10 at period 4
    got = periods_until_order(np.array([5.0, 100.0, 26.0, 30.0]), np.array([10.0, 0.0, 10.0, 10.0]),
                              np.full((4, 5), 4.0))
    np.testing.assert_equal(got, [0.0, np.nan, 4.0, np.nan])


def test_inventory_position():
    np.testing.assert_array_equal(inventory_position(np.array([5.0, 0.0]), np.array([2.0, 3.0]),
                                                     np.array([1.0, 7.0])), [6.0, -4.0])

"""Coupled network simulation: against a per-node loop, the single-stage simulator, and
conservation of units."""
from __future__ import annotations

import numpy as np
import pytest

from replenish.kernels import simulate_inventory, simulation_totals
from replenish.kernels.simulate_network import NETWORK_SIM_KEYS, simulate_network


def _reference(demand, parent, s, big_s, lead, review, offset, moq, pack, on_hand, lost):
    """Plain loops, one node at a time, written from the module's rules."""
    n, horizon = demand.shape
    kids = {j: [c for c in range(n) if parent[c] == j] for j in range(n)}
    depth = np.zeros(n, int)
    for j in range(n):
        k, dd = j, 0
        while parent[k] >= 0:
            k, dd = parent[k], dd + 1
        depth[j] = dd
    order = sorted(range(n), key=lambda j: depth[j])
    leaf = [not kids[j] for j in range(n)]
    stock = list(map(float, on_hand))
    back = [0.0] * n
    owed = [0.0] * n
    transit = [dict() for _ in range(n)]       # arrival period -> units
    events = [dict() for _ in range(n)]
    cyc = [0] * n
    flag = [False] * n
    out = {k: np.zeros(n) for k in NETWORK_SIM_KEYS}

    def arrive(j, qty):
        if leaf[j]:
            f = min(qty, back[j])
            back[j] -= f
            qty -= f
        stock[j] += qty

    for t in range(horizon):
        due = [False] * n
        for j in range(n):
            got = transit[j].pop(t, 0.0)
            arrive(j, got)
            out["received"][j] += got
            if events[j].pop(t, 0):
                due[j] = True
        q = [0.0] * n
        for j in range(n):
            owes = back[j] if leaf[j] else sum(owed[c] for c in kids[j])
            pos = stock[j] + sum(transit[j].values()) + owed[j] - owes
            if (t - offset[j]) % review[j] == 0 and pos <= s[j]:
                need = max(big_s[j] - pos, 0.0)          # the order rule of order_quantity
                want = max(need, moq[j]) if need > 0 else 0.0
                if pack[j] > 0:
                    want = np.ceil(want / pack[j]) * pack[j]
                q[j] = 0.0 if want < moq[j] else want
                out["orders"][j] += q[j] > 0
                out["ordered"][j] += q[j]
                if lead[j] == 0:
                    due[j] = True
                else:
                    events[j][t + lead[j]] = events[j].get(t + lead[j], 0) + 1
                if parent[j] < 0:
                    if lead[j] == 0:
                        arrive(j, q[j])
                        out["received"][j] += q[j]
                    else:
                        transit[j][t + lead[j]] = transit[j].get(t + lead[j], 0.0) + q[j]
                else:
                    owed[j] += q[j]
        for j in range(n):
            if due[j] and cyc[j] > 0:
                out["cycles"][j] += 1
                out["stockout_cycles"][j] += flag[j]
                flag[j] = False
                cyc[j] = 0
        for j in order:
            if leaf[j]:
                continue
            want = sum(owed[c] for c in kids[j])
            give = min(stock[j], want)
            ratio = give / want if want > 0 else 0.0
            stock[j] -= give
            new = sum(q[c] for c in kids[j])
            out["demand"][j] += new
            out["sold"][j] += sum(q[c] * ratio for c in kids[j])
            out["short"][j] += new - sum(q[c] * ratio for c in kids[j])
            for c in kids[j]:
                ship = owed[c] * ratio
                owed[c] -= ship
                if lead[c] == 0:
                    arrive(c, ship)
                    out["received"][c] += ship
                else:
                    transit[c][t + lead[c]] = transit[c].get(t + lead[c], 0.0) + ship
        for j in range(n):
            if leaf[j]:
                dem = demand[j, t]
                sold = min(dem, max(stock[j], 0.0))
                stock[j] -= sold
                short = dem - sold
                if lost:
                    out["lost"][j] += short
                else:
                    back[j] += short
                bad = short > 0 or back[j] > 0
                out["demand"][j] += dem
                out["sold"][j] += sold
                out["short"][j] += short
                owes = back[j]
            else:
                owes = sum(owed[c] for c in kids[j])
                bad = owes > 0
            flag[j] = flag[j] or bad
            out["stockout_periods"][j] += bad
            out["on_hand_sum"][j] += stock[j]
            out["backorder_sum"][j] += owes
            out["delay_sum"][j] += owed[j]
            cyc[j] += 1
    return out


def _case(rng, parent, horizon):
    n = len(parent)
    leaf = np.ones(n, bool)
    leaf[parent[parent >= 0]] = False
    demand = np.where(leaf[:, None], rng.poisson(rng.uniform(1, 6, (n, 1)), (n, horizon)), 0).astype(float)
    lead = rng.integers(0, 4, n)
    big_s = np.where(leaf, rng.uniform(5, 30, n), rng.uniform(5, 60, n)).round()
    s = big_s - rng.integers(0, 8, n)
    return dict(demand=demand, s=s, big_s=big_s, lead=lead, review=rng.integers(1, 4, n),
                offset=rng.integers(0, 3, n), moq=np.where(rng.random(n) < 0.3, 6.0, 0.0),
                pack=rng.choice([0.0, 1.0, 4.0], n), on_hand=rng.uniform(0, 30, n).round())


@pytest.mark.parametrize("lost", [False, True])
def test_equal_to_a_per_node_loop(lost):
    """Random forests (a DC short of stock at times: its children wait), policies with MOQ,
    case packs, review periods and offsets, lead times 0 to 3."""
    rng = np.random.default_rng(4 + lost)
    parent = np.array([-1, 0, 0, 1, 1, 1, 2, 2, -1, 8, 8, -1])
    c = _case(rng, parent, 60)
    got = simulate_network(c["demand"], parent, reorder_point=c["s"], order_up_to=c["big_s"],
                           lead_time=c["lead"], review_period=c["review"], review_offset=c["offset"],
                           moq=c["moq"], case_pack=c["pack"], on_hand=c["on_hand"], lost_sales=lost)
    ref = _reference(c["demand"], parent, c["s"], c["big_s"], c["lead"], c["review"], c["offset"],
                     c["moq"], c["pack"], c["on_hand"], lost)
    for k in NETWORK_SIM_KEYS:
        if k not in ("periods", "expired", "holding_cost", "stockout_cost", "ordering_cost", "waste_cost"):
            np.testing.assert_allclose(got[k][:, 0], ref[k], rtol=1e-9, atol=1e-9, err_msg=k)
    assert got["delay_sum"][1:8].sum() > 0      # the DCs did run short: the coupling was exercised


def test_stores_under_an_ample_dc_equal_the_single_stage_simulator():
    """A DC that never runs short: every store is simulate_inventory with its own policy."""
    rng = np.random.default_rng(8)
    stores = 12
    parent = np.array([-1] + [0] * stores)
    demand = np.vstack([np.zeros(200), rng.poisson(rng.uniform(1, 9, (stores, 1)), (stores, 200))]).astype(float)
    big_s = rng.uniform(10, 60, stores).round()
    s = big_s - rng.integers(0, 10, stores)
    lead = rng.integers(0, 5, stores)
    review = rng.integers(1, 4, stores)
    pack = rng.choice([1.0, 6.0], stores)
    kw = dict(review_period=np.append(1, review), case_pack=np.append(0, pack))
    got = simulate_network(demand, parent, reorder_point=np.append(-1, s), order_up_to=np.append(0, big_s),
                           lead_time=np.append(0, lead), on_hand=np.append(1e9, np.full(stores, 20.0)),
                           unit_cost=2.0, **kw)
    one = simulate_inventory(demand[1:], reorder_point=s, order_up_to=big_s, lead_time=lead.astype(float),
                             review_period=review, case_pack=pack, on_hand=20.0, unit_cost=2.0, engine="xp")
    for k in ("demand", "sold", "short", "received", "ordered", "orders", "cycles", "stockout_cycles",
              "stockout_periods", "on_hand_sum", "backorder_sum", "holding_cost"):
        np.testing.assert_allclose(got[k][1:], one[k], rtol=1e-12, err_msg=k)
    assert got["delay_sum"].sum() == 0
    tot = simulation_totals({k: got[k][1:] for k in NETWORK_SIM_KEYS if k in got} | {"periods": got["periods"][1:]})
    assert 0 < tot["fill_rate"] <= 1


def test_units_are_conserved_and_a_short_dc_delays_its_stores():
    rng = np.random.default_rng(9)
    parent = np.array([-1, 0, 1, 1, 1, 0, 5, 5])     # supplier -> RDC -> 2 DCs -> 5 stores
    c = _case(rng, parent, 120)
    leaf = np.array([False, False, True, True, True, False, True, True])
    c["big_s"][~leaf], c["s"][~leaf], c["lead"][~leaf] = 12.0, 6.0, 3   # lean DCs: they run out
    res = simulate_network(c["demand"], parent, reorder_point=c["s"], order_up_to=c["big_s"],
                           lead_time=c["lead"], case_pack=c["pack"], on_hand=c["on_hand"], record=True)
    day = res["daily"]
    # stock in the whole network: start + supplier receipts = end + in transit + owed... + sold
    supplied = res["received"][0, 0]
    sold = res["sold"][leaf, 0].sum()
    backorders_met = res["received"][leaf, 0].sum()   # every unit a store receives was shipped
    shipped = day["shipped"].sum()
    in_transit = shipped - res["received"][1:, 0].sum()
    assert in_transit >= -1e-9
    end_stock = day["on_hand"][:, -1].sum()
    start = c["on_hand"].sum()
    # shoppers served late come out of stock too: units out = sold + backorders filled later
    served = sold + (res["short"][leaf, 0].sum() - day["backorders"][leaf, -1].sum())
    assert start + supplied == pytest.approx(end_stock + in_transit + served, rel=1e-12)
    assert backorders_met > 0
    # stores wait when their DC is out: unit-periods owed to them by their DC
    assert res["delay_sum"][leaf, 0].sum() > 0

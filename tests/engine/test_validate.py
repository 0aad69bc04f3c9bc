"""Each validation rule gets a bad input, and the error names column, rule and count."""
from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from replenish.engine.contract import ColumnMap, DataError
from replenish.engine.panel import union_categories
from replenish.engine.validate import (build_panel, check_inventory_rows, check_rows,
                                       to_categories, to_dates, to_numeric, validate_inventory)
from tests.conftest import make_history

COLS = ColumnMap(known=("price", "promo"), static=("category",))


def _set(table: pa.Table, name: str, values) -> pa.Table:
    return table.set_column(table.column_names.index(name), name, pa.array(values))


def test_missing_required_column(history):
    with pytest.raises(DataError, match=r"required column\(s\) \['demand'\] missing"):
        build_panel(history.drop_columns(["demand"]), COLS)


def test_custom_names_are_used_not_assumed():
    t = make_history().rename_columns(["item", "store", "day", "units", "price", "promo", "category"])
    cols = ColumnMap(sku="item", location="store", date="day", demand="units", known=("price",))
    p = build_panel(t, cols)
    assert p.n_series == 4 and p.known_names == ("price",)
    with pytest.raises(DataError, match="missing"):
        build_panel(t, ColumnMap())


def test_empty_input(history):
    with pytest.raises(DataError, match="empty"):
        build_panel(history.slice(0, 0), COLS)


def test_unparseable_dates(history):
    dates = [str(d) for d in history.column("date").to_pylist()]
    dates[3] = "not a date"
    dates[7] = "2024-13-45"
    with pytest.raises(DataError, match=r"column 'date': rule 'must be a valid date' broken by 2 rows"):
        build_panel(_set(history, "date", dates), COLS)


def test_string_dates_parse(history):
    dates = [str(d) for d in history.column("date").to_pylist()]
    p = build_panel(_set(history, "date", dates), COLS)
    assert p.start[0] == np.datetime64("2024-01-01")


def test_non_numeric_demand(history):
    d = [str(x) for x in history.column("demand").to_pylist()]
    d[0] = "lots"
    with pytest.raises(DataError, match=r"column 'demand': rule 'must be numeric' broken by 1 rows"):
        build_panel(_set(history, "demand", d), COLS)


def test_nan_demand_error_and_repair(history):
    d = history.column("demand").to_numpy().copy()
    d[[1, 5, 9]] = np.nan
    bad = _set(history, "demand", d)
    with pytest.raises(DataError, match=r"'demand must be a finite number' broken by 3 rows"):
        build_panel(bad, COLS)
    p = build_panel(bad, COLS, missing_demand="zero")
    assert p.report["missing_demand_zeroed"] == 3
    d[5] = np.inf      # no repair applies to an infinite demand, and the message says so
    for repair in ("error", "zero"):
        with pytest.raises(DataError, match=r"'demand must be a finite number' broken by 1 rows "
                                            r"of infinite demand \(no option repairs those"):
            build_panel(_set(history, "demand", d), COLS, missing_demand=repair)


def test_negative_demand_error_and_clip(history):
    d = history.column("demand").to_numpy().copy()
    d[[2, 4]] = -3.0
    bad = _set(history, "demand", d)
    with pytest.raises(DataError, match=r"'demand must not be negative' broken by 2 rows"):
        build_panel(bad, COLS)
    p = build_panel(bad, COLS, negative="clip")
    assert p.report["negative_clipped"] == 2 and p.demand.min() >= 0


def test_duplicates_error_and_sum(history):
    dup = pa.concat_tables([history, history.slice(0, 3)])
    with pytest.raises(DataError, match=r"'one row per series and date' broken by 3 duplicate rows"):
        build_panel(dup, COLS)
    p = build_panel(dup, COLS, duplicates="sum")
    ref = build_panel(history, COLS)
    assert p.report["duplicates_summed"] == 3
    np.testing.assert_allclose(p.demand[:3], 2 * ref.demand[:3])
    np.testing.assert_allclose(p.demand[3:], ref.demand[3:])


def test_short_series(history):
    short = history.filter(pc.invert(pc.and_(pc.equal(history.column("sku"), "S0"),
                                             pc.greater(history.column("date"),
                                                        pa.scalar(__import__("datetime").date(2024, 1, 3), pa.date32())))))
    with pytest.raises(DataError, match=r"at least 10 periods of history per series' broken by 2 series"):
        build_panel(short, COLS, min_history=10)


def test_gaps_filled_with_zero_and_counted(history):
    mask = np.ones(history.num_rows, bool)
    mask[[5, 6, 40]] = False
    p = build_panel(history.filter(pa.array(mask)), COLS)
    assert p.report["gaps_filled"] == 3
    assert p.n_rows == history.num_rows
    assert p.demand[5] == 0 and p.demand[6] == 0
    # in the gap: a number (price) on the line between the periods around it, a 0/1 flag 0
    price = history.column("price").to_numpy()
    np.testing.assert_allclose(p.known[5:7, 0], price[4] + (price[7] - price[4]) * np.array([1, 2]) / 3,
                               rtol=1e-6)
    assert (p.known[[5, 6, 40], 1] == 0).all()
    assert p.report["gap_fill"] == {"price": 3, "promo": 3}
    assert p.report["gap_fill_rules"] == {"price": "interpolate", "promo": "0"}


def test_gaps_missing_are_unknown_and_counted(history):
    mask = np.ones(history.num_rows, bool)
    mask[[5, 6, 40]] = False
    mask[4 * 30 - 2:] = False                      # the last 2 days of series 3: no rows
    t = history.filter(pa.array(mask))
    p = build_panel(t, COLS, gaps="missing", end="2024-01-30")
    assert p.report["gaps_missing"] == 3 and p.report["trailing_missing"] == 2
    assert "gaps_filled" not in p.report and "trailing_filled" not in p.report
    assert p.n_rows == history.num_rows
    np.testing.assert_array_equal(np.flatnonzero(p.missing), [5, 6, 40, 118, 119])
    kept = history.column("demand").to_numpy()[mask]
    np.testing.assert_array_equal(p.demand[~p.missing], kept.astype(np.float32))
    # zero, the default, as before
    z = build_panel(t, COLS, end="2024-01-30")
    assert z.report["gaps_filled"] == 3 and not z.missing.any() and z.demand[5] == 0
    with pytest.raises(ValueError, match="gaps must be one of"):
        build_panel(t, COLS, gaps="interpolate")


def test_series_without_recent_rows_extend_to_the_common_end(history, caplog):
    # history: 4 series x 30 days from 2024-01-01; drop the last 5 rows of series 1 and the
    # last 12 of series 3 (no sales reported since), plus one row inside series 0 (a gap)
    n_days = 30
    mask = np.ones(history.num_rows, bool)
    mask[n_days + 25: 2 * n_days] = False
    mask[4 * n_days - 12:] = False
    mask[3] = False
    t = history.filter(pa.array(mask))
    own = build_panel(t, COLS)
    assert own.lengths.tolist() == [30, 25, 30, 18] and "trailing_filled" not in own.report
    p = build_panel(t, COLS, end="2024-01-30")
    assert p.lengths.tolist() == [30] * 4
    assert (p.end == np.datetime64("2024-01-30")).all()
    assert p.report["trailing_filled"] == 5 + 12 and p.report["gaps_filled"] == 1
    # location L1 (series 1 and 3) has no row in its last 5 days: a late feed? named
    assert p.report["locations_without_recent_rows"] == 1
    assert "1 location(s) have no row in the last period(s) of the history (e.g. 'L1': 5 " \
           "periods)" in caplog.text
    np.testing.assert_array_equal(p.demand[p.indptr[1] + 25: p.indptr[2]], 0)
    np.testing.assert_array_equal(p.demand[p.indptr[3] + 18:], 0)
    np.testing.assert_array_equal(p.demand[p.indptr[1]: p.indptr[1] + 25], own.demand[own.indptr[1]: own.indptr[2]])
    # in the added periods a number keeps the last reported value (nothing follows to
    # interpolate to), a 0/1 flag is 0
    assert (p.known[p.indptr[3] + 18:, 0] == p.known[p.indptr[3] + 17, 0]).all()
    assert (p.known[p.indptr[3] + 18:, 1] == 0).all()
    with pytest.raises(DataError, match=r"rule 'no date after the history's end 2024-01-20' broken by 25 rows"):  # 10 + 5 + 10 + 0
        build_panel(t, COLS, end="2024-01-20")


def test_weekly_series_extend_on_their_own_weekday():
    t = make_history(n_series=2, n_days=10, freq_days=7)   # Mondays from 2024-01-01
    p = build_panel(t, ColumnMap(known=("price", "promo")), end="2024-03-20")  # a Wednesday
    assert p.freq == "W" and (p.end == np.datetime64("2024-03-18")).all()   # the last Monday
    assert p.report["trailing_filled"] == 2 * 2


def test_missing_covariates_filled(history):
    price = history.column("price").to_numpy().copy()
    price[[0, 1, 10]] = np.nan
    p = build_panel(_set(history, "price", price), COLS)
    assert p.report["covariates_filled"] == {"price": 3}
    assert p.known[0, 0] == pytest.approx(price[2])  # backward at the series start
    assert p.known[10, 0] == pytest.approx(price[9])  # forward inside


def test_static_must_be_constant(history):
    cat = history.column("category").to_pylist()
    cat[3] = "other"
    with pytest.raises(DataError, match=r"'static attribute is constant within a series' broken by 1 series"):
        build_panel(_set(history, "category", cat), COLS)


def test_weekly_inferred_and_offgrid_rejected():
    w = make_history(n_days=20, freq_days=7)
    p = build_panel(w, COLS)
    assert p.freq == "W" and p.lengths.tolist() == [20] * 4
    d = w.column("date").to_numpy().copy()
    d[3] = d[3] + np.timedelta64(2, "D")
    with pytest.raises(DataError, match=r"same weekday.*broken by 1 rows"):
        build_panel(_set(w, "date", d), COLS, freq="W")


def test_weekly_data_declared_daily_is_refused():
    # weekly rows declared daily would become six invented zero days after every week
    w = make_history(n_days=20, freq_days=7)
    with pytest.raises(DataError, match=r"rule 'daily periods \(freq D\)' broken: all 76 steps .* "
                                        r"whole weeks.*--freq W"):
        build_panel(w, COLS, freq="D")
    # a few weekly-spaced rows are too little evidence (sparse daily sales): filled, warned
    few = make_history(n_series=1, n_days=4, freq_days=7)
    p = build_panel(few, ColumnMap(known=("price", "promo")), freq="D")
    assert p.freq == "D" and p.report["gaps_filled"] == 18 and p.lengths.tolist() == [22]
    # real daily data with gaps of whole weeks plus one ordinary day step is daily
    d = make_history(n_days=20, freq_days=7).column("date").to_numpy().copy()
    d[1] = d[0] + np.timedelta64(1, "D")
    assert build_panel(_set(w, "date", d), COLS, freq="D").freq == "D"


def test_monthly_data_are_refused_with_a_reason():
    months = np.array([f"2022-{m:02d}-01" for m in range(1, 13)] + [f"2023-{m:02d}-01" for m in range(1, 13)],
                      dtype="datetime64[D]")
    t = pa.table({"sku": ["A"] * 24, "location": ["L"] * 24, "date": months,
                  "demand": np.arange(24.0)})
    with pytest.raises(DataError, match=r"28 days or more apart and not whole weeks \(monthly data\?\)"):
        build_panel(t)
    with pytest.raises(DataError, match=r"'daily periods \(freq D\)' broken: all 23 steps .* 28 days "
                                        r"or more \(monthly data\?\)"):
        build_panel(t, freq="D")


def test_odd_frequency_must_be_declared():
    with pytest.raises(DataError, match="smallest step between dates is 3 days"):
        build_panel(make_history(n_days=10, freq_days=3), COLS)


def test_weekly_dates_off_their_weekday_are_named_as_such_in_the_users_column():
    """One weekly date moved by a day (a 6-day and an 8-day step among whole weeks): the
    message names the user's date column, counts the odd steps and points to --freq W."""
    weeks = np.datetime64("2024-01-01") + 7 * np.arange(30)
    weeks[10] += 1
    t = pa.table({"sku": ["A"] * 30, "location": ["L"] * 30, "week": weeks,
                  "demand": np.arange(30.0)})
    cols = ColumnMap(date="week")
    with pytest.raises(DataError, match=r"column 'week': rule 'daily or weekly periods' broken: 2 "
                                        r"of 29 steps .* not whole weeks \(the smallest 6 days\).*"
                                        r"Declare --freq W"):
        build_panel(t, cols)
    with pytest.raises(DataError, match=r"column 'week': rule 'weekly dates fall on the same "
                                        r"weekday within a series' broken by 1 rows"):
        build_panel(t, cols, freq="W")


def test_missing_static_category_is_its_own_category(history):
    cat = history.column("category").to_pylist()
    n_days = 30
    cat[:n_days] = [None] * n_days           # the first series has no category
    p = build_panel(_set(history, "category", cat), COLS)
    assert p.static["category"].tolist()[0] == "" and p.report["static_missing"] == {"category": n_days}
    assert set(p.static["category"].tolist()[1:]) <= {"C0", "C1", "C2"}
    # an int category with a missing value: labels as text, the missing one ""
    ints = [None] * n_days + [i // n_days % 3 for i in range(n_days, history.num_rows)]
    p = build_panel(_set(history, "category", pa.array(ints, pa.int64())), COLS)
    assert p.static["category"].tolist() == ["", "1", "2", "0"]
    # a missing static number is not invented
    size = [1.5] * history.num_rows
    size[5] = None
    t = history.append_column("size", pa.array(size, pa.float64()))
    with pytest.raises(DataError, match=r"column 'size': rule 'a numeric static attribute must "
                                        r"not be missing' broken by 1 series \(e.g. \('S0', 'L0'\)\)"):
        build_panel(t, ColumnMap(known=("price", "promo"), static=("category", "size")))


def test_key_nulls(history):
    sku = history.column("sku").to_pylist()
    sku[0] = None
    with pytest.raises(DataError, match=r"column 'sku': rule 'key must not be missing' broken by 1 rows"):
        build_panel(_set(history, "sku", sku), COLS)


def _inventory(p, **over):
    n = p.n_series
    cols = {"sku": p.sku, "location": p.location, "on_hand": np.full(n, 10.0),
            "on_order": np.zeros(n), "lead_time_days": np.full(n, 3.0)}
    cols.update(over)
    return pa.table(cols)


def test_inventory_defaults_and_alignment(history):
    p = build_panel(history, COLS)
    inv = _inventory(p)
    inv = inv.take(pa.array(np.arange(p.n_series)[::-1]))  # any row order
    out = validate_inventory(inv, p)
    assert out["service_level"].tolist() == [0.95] * 4
    assert out["case_pack"].tolist() == [1.0] * 4
    out2 = validate_inventory(_inventory(p, on_hand=np.arange(4.0)), p)
    assert out2["on_hand"].tolist() == [0.0, 1.0, 2.0, 3.0]


def test_inventory_unknown_and_missing_rows(history):
    p = build_panel(history, COLS)
    inv = _inventory(p)
    extra = pa.concat_tables([inv, pa.table({"sku": ["ZZ"], "location": ["L0"], "on_hand": [1.0],
                                             "on_order": [0.0], "lead_time_days": [1.0]})])
    with pytest.raises(DataError, match=r"every row is a SKU-location of the history' broken by 1 rows "
                                        r"\(e.g. \('ZZ', 'L0'\)\)"):
        validate_inventory(extra, p)
    missing = ", ".join(f"({s!r}, {l!r})" for s, l in zip(p.sku[2:], p.location[2:]))
    with pytest.raises(DataError, match=r"has an inventory row' broken by 2 SKU-locations "
                                        rf"\(e.g. {re.escape(missing)}\)"):
        validate_inventory(inv.slice(0, 2), p)


def test_inventory_missing_optional_values_get_the_default_counted(history):
    p = build_panel(history, COLS)
    cost = np.array([2.0, np.nan, 3.0, np.nan])
    report: dict = {}
    out = validate_inventory(_inventory(p, unit_cost=cost, stockout_cost=np.full(4, np.nan)), p,
                             report=report)
    assert out["unit_cost"].tolist() == [2.0, 1.0, 3.0, 1.0]
    # NaN is stockout_cost's own default ("not used"): nothing was repaired there
    assert report == {"inventory_defaulted": {"unit_cost": 2}}


@pytest.mark.parametrize("col,value,rule", [
    ("lead_time_days", -1.0, "lead time must be >= 0 days"),
    ("service_level", 1.0, r"service level must be in \(0, 1\)"),
    ("service_level", 0.0, r"service level must be in \(0, 1\)"),
    ("case_pack", 0.0, "must be > 0"),
    ("on_order", -5.0, "must be >= 0"),
])
def test_inventory_impossible_values(history, col, value, rule):
    p = build_panel(history, COLS)
    vals = np.full(p.n_series, 1.0 if col != "service_level" else 0.9)
    vals[1] = value
    inv = _inventory(p, **{col: vals})
    with pytest.raises(DataError, match=rf"inventory column '{col}': rule '{rule}' broken by 1 rows"):
        validate_inventory(inv, p)
    # the row rules need no history: the jobs check them while staging, before training
    with pytest.raises(DataError, match=rf"inventory column '{col}': rule '{rule}' broken by 1 rows"):
        check_inventory_rows(inv)


def test_inventory_names_every_broken_rule_with_keys(history):
    """Several bad columns: one error naming each rule, its count and some keys; an infinite
    on_order breaks 'must be a finite number', not a bound it satisfies."""
    p = build_panel(history, COLS)
    inv = _inventory(p, on_order=np.array([0.0, np.inf, 0.0, 0.0]),
                     lead_time_days=np.array([-1.0, 2.0, -3.0, 1.0]),
                     case_pack=np.array([1.0, 1.0, 1.0, 0.0]))
    keys = list(zip(p.sku.tolist(), p.location.tolist()))
    for check in (lambda: check_inventory_rows(inv), lambda: validate_inventory(inv, p)):
        with pytest.raises(DataError) as e:
            check()
        lines = str(e.value).splitlines()
        assert len(lines) == 3
        assert lines[0].startswith(f"inventory column 'on_order': rule 'must be a finite number' "
                                   f"broken by 1 rows (e.g. ({keys[1][0]!r}, {keys[1][1]!r}))")
        assert lines[1].startswith("inventory column 'lead_time_days': rule 'lead time must be "
                                   ">= 0 days' broken by 2 rows (e.g. ")
        assert repr(keys[0][0]) in lines[1] and repr(keys[2][0]) in lines[1]
        assert lines[2].startswith("inventory column 'case_pack': rule 'must be > 0' broken by 1 rows")
    # a required column with missing values is named beside the others, not instead of them
    gaps = inv.set_column(inv.column_names.index("on_hand"), "on_hand",
                          pa.array([1.0, None, 2.0, 3.0]))
    with pytest.raises(DataError) as e:
        check_inventory_rows(gaps)
    lines = str(e.value).splitlines()
    assert len(lines) == 4 and lines[0].startswith(
        f"inventory column 'on_hand': rule 'must not be missing' broken by 1 rows (e.g. "
        f"({keys[1][0]!r}, {keys[1][1]!r}))")


def test_negative_on_hand_is_counted_as_owed_units(history):
    p = build_panel(history, COLS)
    report: dict = {}
    out = validate_inventory(_inventory(p, on_hand=np.array([5.0, -2.0, -1.0, 0.0]),
                                        backorders=np.array([0.0, 0.0, 3.0, 0.0])), p,
                             report=report)
    assert out["on_hand"].tolist() == [5.0, -2.0, -1.0, 0.0]   # used as given
    assert report == {"negative_on_hand": 2, "negative_on_hand_with_backorders": 1}
    alone: dict = {}
    validate_inventory(_inventory(p, on_hand=np.array([5.0, -2.0, 1.0, 0.0])), p, report=alone)
    assert alone == {"negative_on_hand": 1}        # no zero count for the report's table
    from replenish.jobs._messages import merge_reports, repair_lines
    lines = repair_lines(merge_reports([report, {"negative_on_hand": 1,
                                                 "negative_on_hand_with_backorders": 0}]))
    assert lines == ["warning: inventory: 3 SKU-locations with negative on_hand, read as units "
                     "owed to customers (the inventory position counts them as it counts "
                     "backorders); 1 of them also have backorders: if those are the same units, "
                     "they count twice"]
    assert repair_lines({"negative_on_hand": 2})[0].startswith("inventory: 2 SKU-locations")


def test_service_level_in_percent_gets_a_hint(history):
    p = build_panel(history, COLS)
    with pytest.raises(DataError, match=r"rule 'service level must be in \(0, 1\)' broken by 4 rows "
                                        r"\(a fraction: 0.95 for 95%\)"):
        check_inventory_rows(_inventory(p, service_level=np.full(p.n_series, 95.0)))


def test_inventory_row_checks_without_history(history):
    p = build_panel(history, COLS)
    good = _inventory(p, unit_cost=np.array([2.0, None, 3.0, 4.0], dtype=float))
    check_inventory_rows(good)  # a missing optional value takes its default
    with pytest.raises(DataError, match=r"required column\(s\) \['on_order'\] missing"):
        check_inventory_rows(good.drop_columns(["on_order"]))
    with pytest.raises(DataError, match=r"inventory column 'on_hand': rule 'must not be missing' broken by 2 rows"):
        check_inventory_rows(_inventory(p, on_hand=np.array([1.0, np.nan, np.nan, 2.0])))
    keys = good.column("sku").to_pylist()
    keys[0] = None
    with pytest.raises(DataError, match=r"inventory column 'sku': rule 'key must not be missing' broken by 1 rows"):
        check_inventory_rows(good.set_column(0, "sku", pa.array(keys)))
    renamed = good.rename_columns(["item", "store", *good.column_names[2:]])
    check_inventory_rows(renamed, ColumnMap(sku="item", location="store"))


def test_date_strings_in_a_given_format(history):
    got = to_dates(pa.array(["01.02.2024", "13.01.2024", "31.12.2023"]), "day", "%d.%m.%Y")
    assert got.tolist() == np.array(["2024-02-01", "2024-01-13", "2023-12-31"], dtype="datetime64[D]").tolist()
    ints = to_dates(pa.array([20240131, 20231201]), "day", "%Y%m%d")
    assert ints.tolist() == np.array(["2024-01-31", "2023-12-01"], dtype="datetime64[D]").tolist()
    with pytest.raises(DataError, match=r"type int64\) \(integers such as 20240131: give --date-format"):
        to_dates(pa.array([20240131]), "day")
    with pytest.raises(DataError, match=r"column 'day': rule 'must be a date in the format '%d.%m.%Y'' "
                                        r"broken by 1 rows \(e.g. '2024-01-13'\)"):
        to_dates(pa.array(["01.02.2024", "2024-01-13"]), "day", "%d.%m.%Y")
    # through build_panel: the same panel as with real dates
    days = history.column("date").to_numpy().astype("datetime64[D]")
    text = pa.array([f"{d.item().day:02d}.{d.item().month:02d}.{d.item().year}" for d in days])
    p1 = build_panel(history, COLS)
    p2 = build_panel(history.set_column(history.column_names.index("date"), "date", text),
                     ColumnMap(**{**COLS.__dict__, "date_format": "%d.%m.%Y"}))
    np.testing.assert_array_equal(p1.start, p2.start)
    np.testing.assert_array_equal(p1.demand, p2.demand)


def test_day_first_date_strings_are_refused_with_an_example():
    with pytest.raises(DataError, match=r"column 'day': rule 'must be a valid date' broken by 1 rows "
                                        r"\(e.g. '13.01.2024'\); write dates as YYYY-MM-DD"):
        to_dates(pa.array(["01.01.2024", "13.01.2024"]), "day")


def test_inventory_int_keys_match_string_keys():
    t = make_history(str_keys=False)
    p = build_panel(t, ColumnMap())
    inv = _inventory(p)
    out = validate_inventory(inv, p)
    assert len(out["on_hand"]) == p.n_series


def test_dictionary_columns_accepted(history):
    t = history
    for name in ("sku", "location", "category"):
        t = t.set_column(t.column_names.index(name), name, t.column(name).dictionary_encode())
    p = build_panel(t, COLS)
    ref = build_panel(history, COLS)
    assert p.sku.tolist() == ref.sku.tolist()
    np.testing.assert_array_equal(p.demand, ref.demand)


def test_inventory_keys_match_across_types():
    t = make_history(str_keys=False)
    p = build_panel(t, ColumnMap())
    inv = _inventory(p, sku=p.sku.astype(str), location=p.location.astype(str), on_hand=np.arange(4.0))
    out = validate_inventory(inv, p)
    assert out["on_hand"].tolist() == [0.0, 1.0, 2.0, 3.0]


@pytest.mark.parametrize("str_keys", [True, False])
def test_row_order_and_chunking_do_not_matter(str_keys):
    hist = make_history(n_series=12, n_days=20, str_keys=str_keys)
    ref = build_panel(hist, COLS)
    # keys sort as values (not as first-seen order): strings lexicographically, ints numerically
    pairs = list(zip(ref.sku.tolist(), ref.location.tolist()))
    assert pairs == sorted(set(zip(hist.column("sku").to_pylist(), hist.column("location").to_pylist())))
    perm = np.random.default_rng(3).permutation(hist.num_rows)
    shuffled = hist.take(pa.array(perm))
    chunked = pa.Table.from_batches(shuffled.to_batches(max_chunksize=37))
    p = build_panel(chunked, COLS)
    np.testing.assert_array_equal(p.sku, ref.sku)
    np.testing.assert_array_equal(p.location, ref.location)
    np.testing.assert_array_equal(p.indptr, ref.indptr)
    np.testing.assert_array_equal(p.demand, ref.demand)
    np.testing.assert_array_equal(p.known, ref.known)
    np.testing.assert_array_equal(p.static["category"], ref.static["category"])
    # the demand of each (series, date) is the input row's
    d = {(s, l, t): v for s, l, t, v in zip(*(hist.column(c).to_pylist() for c in
                                               ("sku", "location", "date", "demand")))}
    i = 5
    t0 = ref.start[i]
    assert p.demand[p.indptr[i] + 3] == d[(ref.sku[i], ref.location[i], (t0 + 3).astype(object))]


def test_covariate_flags_written_as_words(history):
    got = to_numeric(pa.array(["1", "Yes", "no", None, "TRUE", "2.5", "f"]), "promo", flags=True)
    np.testing.assert_array_equal(got, [1, 1, 0, np.nan, 1, 2.5, 0])
    with pytest.raises(DataError, match=r"column 'demand': rule 'must be numeric' broken by 1 rows \(e.g. 'yes'\)"):
        to_numeric(pa.array(["1", "yes"]), "demand")  # not for demand or stock
    with pytest.raises(DataError, match=r"column 'event': rule 'must be numeric' broken by 2 rows "
                                        r"\(e.g. 'Christmas'\); .* --categorical-cols"):
        to_numeric(pa.array(["Christmas", "0", "Easter"]), "event", flags=True)
    words = np.where(history.column("promo").to_numpy() == 1, "True", "False")
    p1 = build_panel(history, COLS)
    p2 = build_panel(history.set_column(history.column_names.index("promo"), "promo", pa.array(words)), COLS)
    np.testing.assert_array_equal(p1.known, p2.known)


def test_categorical_covariate_labels_codes_and_missing():
    codes, labels = to_categories(pa.array(["Easter", None, "Christmas", "Easter", ""]))
    assert list(labels) == ["", "Christmas", "Easter"]        # missing first, then sorted
    np.testing.assert_array_equal(labels[codes.astype(int)], ["Easter", "", "Christmas", "Easter", ""])
    # a known list keeps its codes; new labels are appended
    codes2, labels2 = to_categories(pa.array(["Fair", "Easter", None]), labels)
    assert list(labels2) == ["", "Christmas", "Easter", "Fair"]
    np.testing.assert_array_equal(codes2, [3, 2, 0])
    # integer labels (and floats holding integers) are labels, compared as text
    _, lab_i = to_categories(pa.array([3, 7, None]))
    _, lab_f = to_categories(pa.array([3.0, 7.0, None]))
    assert list(lab_i) == list(lab_f) == ["", "3", "7"]


def _with_event(history, events):
    return history.append_column("event", pa.array(events, pa.string()))


def test_categorical_covariate_in_the_panel(history):
    n = history.num_rows
    events = np.where(np.arange(n) % 7 == 0, "market", None).astype(object)
    events[3] = "Christmas"
    table = _with_event(history, events)
    cols = ColumnMap(known=("price", "promo", "event"), static=("category",), categorical=("event",))
    # text in a categorical column passes the row checks; in a numeric column it does not
    check_rows(table, cols)
    with pytest.raises(DataError, match=r"column 'event': rule 'must be numeric' broken by"):
        check_rows(table, ColumnMap(known=("price", "promo", "event"), static=("category",)))
    mask = np.ones(n, bool)
    mask[[5, 7]] = False     # a gap where the event was 'market' (row 7)
    p = build_panel(table.filter(pa.array(mask)), cols)
    assert list(p.categories["event"]) == ["", "Christmas", "market"]
    ev = p.categories["event"][p.known[:, 2].astype(int)]
    assert ev[3] == "Christmas" and ev[0] == "market" and ev[1] == ""
    assert ev[7] == "" and ev[5] == ""     # gap periods: the missing category, not carried
    assert "event" not in p.report.get("covariates_filled", {})
    # the long table gives the labels back
    back = p.to_arrow().column("event").to_numpy(zero_copy_only=False)
    np.testing.assert_array_equal(back, ev)


def test_categorical_future_labels_extend_the_list(history):
    n = history.num_rows
    table = _with_event(history, np.where(np.arange(n) % 5 == 0, "promo_day", None))
    cols = ColumnMap(known=("price", "event"), categorical=("event",))
    p0 = build_panel(table, cols)
    last = p0.end[0] + np.timedelta64(1, "D")
    fut = pa.table({"sku": [p0.sku[0], p0.sku[0]], "location": [p0.location[0]] * 2,
                    "date": np.array([last, last + np.timedelta64(1, "D")]),
                    "price": [1.5, 1.5], "event": ["Grand opening", None]})
    p = build_panel(table, cols, future=fut, horizon=3)
    assert list(p.categories["event"]) == ["", "promo_day", "Grand opening"]
    got = p.categories["event"][p.future_known[0, :, 1].astype(int)]
    assert list(got) == ["Grand opening", "", ""]     # no row for day 3: missing category
    assert list(p.categories["event"][p.future_known[1, :, 1].astype(int)]) == ["", "", ""]


def test_categorical_must_be_a_covariate(history):
    with pytest.raises(DataError, match=r"categorical columns \['category'\] must also be known"):
        build_panel(history, ColumnMap(known=("price",), static=("category",),
                                       categorical=("category",)))


def test_category_lists_of_two_panels_unified(history):
    n = history.num_rows
    cols = ColumnMap(known=("event",), categorical=("event",))
    a = build_panel(_with_event(history, np.where(np.arange(n) % 3 == 0, "b", "a")), cols)
    b = build_panel(_with_event(history, np.where(np.arange(n) % 4 == 0, "c", None)), cols)
    cats = union_categories([a, b])
    assert list(cats["event"]) == ["", "a", "b", "c"]
    for p in (a, b):
        r = p.recode(cats)
        np.testing.assert_array_equal(r.categories["event"][r.known[:, 0].astype(int)],
                                      p.categories["event"][p.known[:, 0].astype(int)])


def test_ids_in_messages_read_as_the_user_wrote_them():
    import numpy as np

    from replenish.engine.validate import examples_text
    assert examples_text([(np.int64(9), np.str_("L1")), (3.5, "x")], 4) == \
        " (e.g. (9, 'L1'), (3.5, 'x'), ...)"


# ---- real feeds: one key, missing static numbers, what fills a gap -------------------------

def test_history_with_one_key_gets_the_constant_for_the_other():
    t = make_history(n_series=4, n_days=10, str_keys=False).drop_columns(["sku"])
    t = t.rename_columns([c if c != "location" else "store" for c in t.column_names])
    t = t.slice(0, 20)   # the first two series: stores 0 and 1, ten days each
    p = build_panel(t, ColumnMap(location="store", known=("price",)))
    assert p.sku.tolist() == ["all", "all"] and p.location.tolist() == [0, 1]
    assert p.location.dtype == np.int64
    # product totals: no location column
    q = build_panel(t.rename_columns([c if c != "store" else "sku" for c in t.column_names]),
                    ColumnMap(known=("price",)))
    assert q.location.tolist() == ["all", "all"] and q.sku.tolist() == [0, 1]
    # a key mapped to a name the table lacks is a typo, not one-key data
    with pytest.raises(DataError, match=r"required column\(s\) \['item'\] missing.*leave "
                                        r"--sku-col out"):
        build_panel(t, ColumnMap(sku="item", location="store"))
    with pytest.raises(DataError, match=r"\['sku', 'location'\] missing.*at least one key column"):
        build_panel(t.drop_columns(["store"]), ColumnMap())


def _with_size(history: pa.Table, missing_series: list[int], n_days: int = 30) -> pa.Table:
    # a static number per series (series i: 10 * (i + 1)); missing for the series listed
    sid = np.repeat(np.arange(history.num_rows // n_days), n_days)
    size = (10.0 * (sid + 1)).tolist()
    for i, s in enumerate(sid):
        if s in missing_series:
            size[i] = None
    return history.append_column("size", pa.array(size, pa.float64()))


def test_static_number_missing_for_three_series_named_or_imputed():
    full = make_history(n_series=8, n_days=30)
    # series 7 has 10 rows, the others 30: the median is over series, not over rows
    short = pa.array(~((np.arange(240) // 30 == 7) & (np.arange(240) % 30 < 20)))
    t = _with_size(full, [1, 4, 6]).filter(short)
    cols = ColumnMap(known=("price",), static=("category", "size"))
    with pytest.raises(DataError, match=r"column 'size': rule 'a numeric static attribute must "
                                        r"not be missing' broken by 3 series \(e.g. \('S0', 'L1'\), "
                                        r"\('S2', 'L0'\), \('S3', 'L0'\)\) \(use --missing-static "
                                        r"impute"):
        build_panel(t, cols)
    p = build_panel(t, cols, missing_static="impute")
    known = [10.0 * (s + 1) for s in range(8) if s not in (1, 4, 6)]  # 10 30 40 60 80
    assert np.median(known) == 40.0   # (over the rows it would be 30: series 7 is short)
    np.testing.assert_array_equal(p.static["size"], [10, 40, 30, 40, 40, 60, 40, 80])
    np.testing.assert_array_equal(p.static["size_missing"], [0, 1, 0, 0, 1, 0, 1, 0])
    assert p.report["static_imputed"] == {"size": 3}
    # the jobs' value (the median over the whole history) wins, and its indicator is there
    # even in a panel with nothing missing
    q = build_panel(t, cols, missing_static="impute", static_fill={"size": 55.0})
    assert set(q.static["size"][[1, 4, 6]]) == {55.0}
    r = build_panel(_with_size(full, []), cols, missing_static="impute", static_fill={"size": 55.0})
    assert (r.static["size_missing"] == 0).all() and "static_imputed" not in r.report
    assert "size_missing" not in build_panel(_with_size(full, []), cols).static
    # a static column read as integers in one file is a number when the job says so
    ints = _with_size(full, [])
    ints = ints.set_column(7, "size", pa.array(np.asarray(ints.column("size")).astype(np.int64)))
    assert build_panel(ints, cols).static["size"].dtype.kind != "f"          # a category
    assert build_panel(ints, cols, static_numbers=["size"]).static["size"].dtype.kind == "f"


def test_a_six_month_gap_gets_the_gap_rules_not_the_values_before_it():
    """A store closed for six months: no rows for 184 days. The gap's periods are not 'open,
    on promotion, at the last price, with zero sales'."""
    import pandas as pd
    days = pd.date_range("2023-01-01", "2023-12-31", freq="D")
    rng = np.random.default_rng(4)
    n = len(days)
    frame = pd.DataFrame({
        "sku": "all", "store": 7, "date": days, "sales": rng.poisson(50, n).astype(float),
        "Open": np.where(days.dayofweek == 6, 0, 1), "Promo": (days.day < 15).astype(int),
        "price": np.round(2 + np.arange(n) / 100, 2),
        "temp": 10 + 10 * np.sin(np.arange(n) / 58.0),
        "event": np.where(days.day == 1, "first", None)})
    closed = (days >= "2023-03-01") & (days < "2023-09-01")
    t = pa.Table.from_pandas(frame[~closed], preserve_index=False)
    cols = ColumnMap(location="store", demand="sales", known=("Open", "Promo", "price", "event"),
                     observed=("temp",), categorical=("event",))
    p = build_panel(t, cols)
    gap = np.flatnonzero(closed)
    assert p.report["gaps_filled"] == closed.sum() == 184
    assert (p.demand[gap] == 0).all()
    k = list(p.known_names)
    assert (p.known[gap, k.index("Open")] == 0).all() and (p.known[gap, k.index("Promo")] == 0).all()
    assert (p.categories["event"][p.known[gap, k.index("event")].astype(int)] == "").all()
    # numbers on the straight line between the days around the gap (pandas' linear
    # interpolation of the reindexed series is the reference)
    ref = frame.assign(price=frame["price"].where(~closed), temp=frame["temp"].where(~closed))
    np.testing.assert_allclose(p.known[gap, k.index("price")], ref["price"].interpolate()[closed],
                               rtol=1e-5)
    np.testing.assert_allclose(p.observed[gap, 0], ref["temp"].interpolate()[closed], rtol=1e-5)
    assert p.report["gap_fill"] == {c: 184 for c in ("Open", "Promo", "price", "event", "temp")}
    # given per column: a value, a new label, the value before the gap
    q = build_panel(t, cols, gap_fill={"Open": 0, "Promo": "previous", "event": "closed",
                                       "price": 9.5})
    assert (q.known[gap, k.index("Promo")] == frame["Promo"].iloc[gap[0] - 1]).all()
    assert (q.categories["event"][q.known[gap, k.index("event")].astype(int)] == "closed").all()
    assert (q.known[gap, k.index("price")] == 9.5).all()
    assert q.report["gap_fill_rules"] == {"Open": "0", "Promo": "previous", "price": "9.5",
                                          "event": "closed", "temp": "interpolate"}
    # rows that are there keep their values; a missing value in a row comes from the
    # series' own rows (the day before), not from the gap
    assert (q.known[~closed, k.index("Open")] == frame["Open"][~closed]).all()
    with pytest.raises(DataError, match=r"gap fill: \['sales'\] are not known or observed"):
        build_panel(t, cols, gap_fill={"sales": 0})
    with pytest.raises(DataError, match=r"'price=cheap': a number, or one of"):
        build_panel(t, cols, gap_fill={"price": "cheap"})
    # flags given by the job (all shards): 'Open' alone is a flag, so Promo is interpolated
    r = build_panel(t, cols, flags=["Open"])
    assert r.report["gap_fill_rules"]["Promo"] == "interpolate"

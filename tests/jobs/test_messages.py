"""The message layer: prefixed lines, repairs added up over shards and said once."""
from __future__ import annotations

import logging

import pytest

from replenish.jobs._messages import Formatter, merge_reports, repair_lines, say, sum_reports


def test_every_line_is_prefixed(capsys):
    say("2 of 3 shards failed:\n  shard 0: x\n  shard 2: y")
    err = capsys.readouterr().err.splitlines()
    assert err == ["[replenish] 2 of 3 shards failed:", "[replenish]   shard 0: x",
                   "[replenish]   shard 2: y"]
    rec = logging.LogRecord("replenish", logging.WARNING, __file__, 1, "a %d\nb", (1,), None)
    assert Formatter().format(rec) == "[replenish] warning: a 1\n[replenish] b"
    rec = logging.LogRecord("distributed.nanny", logging.INFO, __file__, 1, "started", (), None)
    assert Formatter().format(rec) == "[replenish] started"


def test_shard_reports_are_added_up_and_said_once():
    # three shards, as the workers report them
    reports = [
        {"input_rows": 100, "gaps_filled": 5, "gap_fill": {"Open": 5, "price": 5},
         "gap_fill_rules": {"Open": "0", "price": "interpolate"},
         "static_missing": {"fmt": 40}, "static_missing_series": {"fmt": 2},
         "locations_without_recent_rows": 1, "locations_without_recent_rows_examples": ["9: 3 periods"]},
        {"input_rows": 50, "gaps_filled": 2, "gap_fill": {"Open": 2, "price": 2},
         "static_missing": {"fmt": 20}, "static_missing_series": {"fmt": 1},
         "covariates_filled": {"price": 4}},
        {"input_rows": 10},
    ]
    repairs = merge_reports(reports)
    assert repairs == {"gaps_filled": 7, "gap_fill:Open": 7, "gap_fill:price": 7,
                       "static_missing:fmt": 60, "locations_without_recent_rows": 1,
                       "filled:price": 4}
    lines = repair_lines(repairs, reports, reports[0]["gap_fill_rules"])
    assert len(lines) == len(set(lines))
    assert "7 missing periods inside series filled with zero demand" in lines
    assert "covariates in the 7 filled periods: Open=0, price interpolated (set with --gap-fill " \
           "COLUMN=VALUE)" in lines
    assert "column 'fmt': 3 series (60 rows) without a static attribute get the missing category" \
        in lines
    assert any(line.startswith("warning: 1 location(s)") and "e.g. 9: 3 periods" in line
               for line in lines)
    # one report for several panels (the train job's) gives the same repairs
    assert merge_reports([sum_reports(reports)]) == repairs


def test_lines_say_what_was_done_under_the_chosen_gaps_and_warn_of_a_future_off_its_dates():
    ex = {"locations_without_recent_rows": 1, "locations_without_recent_rows_examples": ["9: 3 periods"]}
    zero = repair_lines({"locations_without_recent_rows": 1, "trailing_filled": 3}, [ex])
    unknown = repair_lines({"locations_without_recent_rows": 1, "trailing_missing": 3}, [ex])
    assert any("extended with zero demand" in x for x in zero)
    assert any("extended with unknown periods" in x for x in unknown)
    assert not any("zero demand" in x for x in unknown), unknown
    # rows past the horizon beside a complete horizon: said; beside a horizon left without
    # values (every row's date off): a warning
    later = repair_lines({"future_rows_outside_horizon": 40})
    off = repair_lines({"future_rows_outside_horizon": 240, "future_known_filled": 480})
    assert later == ["future: 40 rows outside the forecast horizon ignored (their dates are not "
                     "one of the periods after their series' last date)"]
    assert off[0] == ("warning: future: 240 rows outside the forecast horizon ignored (their "
                      "dates are not one of the periods after their series' last date: check "
                      "the dates)")


@pytest.mark.parametrize("command", ["report", "evaluate"])
def test_a_missing_run_folder_is_named_once_as_missing(tmp_path, capsys, command):
    from replenish.jobs.cli import main
    missing = tmp_path / "no_such_run"
    args = ([command, "--run", str(missing), "--history", str(tmp_path / "h.parquet"), "--out", str(tmp_path / "ev"),
             "--quiet"]   # a nightly script's flags: --quiet as for plan
            if command == "evaluate" else [command, str(missing)])
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"[replenish] {command}: error: {missing} does not exist" in err
    assert f"{command}: error: {command}:" not in err


def test_closed_days_line_names_the_distinct_dates_of_every_shard():
    reports = [{"closed_days_examples": ["2019-04-22", "2019-04-19"]},
               {"closed_days_examples": ["2019-04-19", "2019-12-25", "2019-12-26", "2019-04-21"]}]
    line = [x for x in repair_lines({"closed_days_zeroed": 1234}, reports) if "closed days" in x]
    assert len(line) == 1 and line[0].startswith("closed days: 1,234 forecasts")
    assert "(2019-04-19, 2019-04-21, 2019-04-22, 2019-12-25, ...)" in line[0]
    few = repair_lines({"closed_days_zeroed": 3}, [{"closed_days_examples": ["2019-04-19"]}])
    assert any("(2019-04-19);" in x for x in few)

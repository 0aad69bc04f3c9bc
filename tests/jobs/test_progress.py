"""Progress: the training reporter's lines, bars against quiet mode, --quiet on the CLI."""
from __future__ import annotations

import io
import re

import pytest

from replenish.jobs import _progress
from replenish.jobs.cli import _build_parser, _config_from_args


@pytest.fixture
def stream():
    buf = io.StringIO()
    _progress.set_mode("quiet", stream=buf)
    yield buf
    _progress.set_mode(None)


def test_training_reporter_outside_a_worker_prints_validations_and_the_end(stream):
    cb = _progress.training_reporter(every_s=3600)
    for step in range(1, 31):
        validated = step % 10 == 0
        cb(step, 100, 2.0 / step, 0.5 if step >= 10 else None, elapsed=step * 0.5,
           budget_s=None, validated=validated)
    cb(30, 100, 0.07, 0.5, elapsed=15.0, done=True)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 4, lines           # 3 validations, then the early end
    assert lines[0] == ("[replenish] training step 10/100, loss 0.2000, best validation 0.5000, "
                        "0:05 elapsed, time left 0:45")
    assert re.search(r"step 30/100, .* time left 0:00$", lines[-1]), lines[-1]


def test_time_left_is_capped_by_the_time_budget(stream):
    cb = _progress.training_reporter()
    cb(10, 1000, 1.0, 0.9, elapsed=10.0, budget_s=60.0, validated=True)
    assert stream.getvalue().rstrip().endswith("time left 0:50")


def test_quiet_flag_is_no_job_setting():
    args = _build_parser().parse_args(["plan", "--out", "o", "--quiet", "--budget", "100",
                                       "--budget-group", "buyer", "--ledger", "l.parquet",
                                       "--report"])
    cfg = _config_from_args(args)
    assert args.quiet and cfg.budget == 100 and cfg.budget_group == "buyer"
    assert cfg.ledger == "l.parquet" and cfg.report is True
    # the report flag does not change what the job computes (no other job's fingerprint)
    assert cfg.fingerprint() == _config_from_args(
        _build_parser().parse_args(["plan", "--out", "o", "--budget", "100", "--budget-group",
                                    "buyer", "--ledger", "l.parquet"])).fingerprint()


def test_bars_show_counts_and_rate():
    from distributed import Client
    buf = io.StringIO()
    _progress.set_mode("bars", stream=buf)
    try:
        with Client(processes=False, n_workers=1, threads_per_worker=1,
                    dashboard_address=None) as c:
            futs = [c.submit(lambda i: {"series": 10 * i}, i, pure=False) for i in range(5)]
            got = _progress.gather(futs, "shards", unit="shard", count=lambda r: r["series"],
                                   count_unit="series")
    finally:
        _progress.set_mode(None)
    assert [g["series"] for g in got] == [0, 10, 20, 30, 40]
    text = buf.getvalue()
    assert re.search(r"shards: 100%.*5/5 .*100 series \([\d,]+/s\)", text), text



def test_training_bars_show_the_tft_then_the_member():
    """In a Dask worker the reporter sends events; the job's process draws a bar of TFT steps
    and then one of the member's quantile models."""
    import time

    from distributed import Client

    def train(_):
        cb = _progress.training_reporter(every_s=0)
        for step in (1, 2):
            cb(step, 2, 0.5, 0.4, elapsed=step, done=step == 2)
        for k in range(1, 5):
            cb(k, 4, None, None, elapsed=k, validated=True, stage="member",
               note=f"level 0.5, {10 * k} rounds, refit on the whole history")
        return True

    buf = io.StringIO()
    _progress.set_mode("bars", stream=buf)
    try:
        with Client(processes=False, n_workers=1, threads_per_worker=1,
                    dashboard_address=None) as c:
            with _progress.TrainingProgress(c) as tp:
                assert c.submit(train, 0, pure=False).result()
                for _ in range(100):   # events arrive asynchronously
                    if tp.last is not None and tp.last.get("step") == 4:
                        break
                    time.sleep(0.05)
    finally:
        _progress.set_mode(None)
    text = buf.getvalue()
    assert re.search(r"training: 100%.*2/2", text), text
    assert re.search(r"LightGBM member: 100%.*4/4 .*40 rounds, refit on the whole history, "
                     r"left 0:00", text), text

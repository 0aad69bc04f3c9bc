"""``make demo``: the plan job end to end on the bundled bakery data, on a local Dask cluster."""
from __future__ import annotations

from pathlib import Path

from ..data import BAKERY_COLUMNS, bakery_inventory, bakery_path, load_bakery
from ..engine.io import write_parquet_atomic
from ._summary import print_summary
from .config import PlanConfig
from .plan import run_plan

__all__ = ["run_demo"]


#: The demo trains under a wall-clock budget so it finishes in a few minutes on 2 cores;
#: ``replenish plan`` without a budget trains to its step limit / early stopping. Its LightGBM
#: member samples the earlier default of 200,000 training rows (a third of today's; about
#: 3 minutes less on the bakery), and its TFT's learning-rate schedule spans the weekly
#: default of 700 steps (the budget stops it near 300; daily data's 1,400 would leave its
#: learning rate near the start's there).
DEMO_FORECAST = {"time_budget_s": 150.0, "max_steps": 700,
                 "ensemble_options": {"max_rows": 200_000}}


def _day(t):
    """A date as written (2019-04-03), also when the column held timestamps."""
    return t.date() if hasattr(t, "hour") else t


def run_demo(out: str | Path = "demo_output", n_workers: int = 2, forecast: dict | None = None) -> dict:
    """Plan on the bakery data: the last 28 days are held out as the 'future' of known covariates.

    Writes ``OUT/inputs/{history,future,inventory}.parquet`` (what the job read) and the job's
    outputs in ``OUT/plan``. Returns the job summary.
    """
    out = Path(out)
    full = load_bakery()
    c = BAKERY_COLUMNS
    # The bakery file ends on 2019-04-30; pretend today is 28 days earlier so the held-out
    # days give real 'future' covariates (holidays, promotions, weather forecasts).
    import pyarrow as pa
    import pyarrow.compute as pc
    cut = pc.max(full.column(c.date)).as_py()
    import datetime as dt
    cut = cut - dt.timedelta(days=28)
    hist = full.filter(pc.less_equal(full.column(c.date), pa.scalar(cut, full.schema.field(c.date).type)))
    fut = full.filter(pc.greater(full.column(c.date), pa.scalar(cut, full.schema.field(c.date).type)))
    fut = fut.select([c.sku, c.location, c.date, *c.known])
    inputs = out / "inputs"
    write_parquet_atomic(hist, inputs / "history.parquet")
    write_parquet_atomic(fut, inputs / "future.parquet")
    write_parquet_atomic(bakery_inventory(hist), inputs / "inventory.parquet")
    cfg = PlanConfig(history=str(inputs / "history.parquet"), future=str(inputs / "future.parquet"),
                     inventory=str(inputs / "inventory.parquet"), out=str(out / "plan"),
                     columns=c, n_workers=n_workers,
                     forecast=dict(DEMO_FORECAST if forecast is None else forecast), report=True)
    print(f"[replenish] demo: bakery data ({bakery_path().name}), {hist.num_rows} history rows, "
          f"plan as of {_day(cut + dt.timedelta(days=1))}")
    summary = run_plan(cfg, overwrite=True)
    print_summary(summary)
    print(f"[replenish] results: forecasts in {out / 'plan' / 'forecasts'}, orders in "
          f"{out / 'plan' / 'orders'}, exceptions in {out / 'plan' / 'exceptions'}; open "
          f"{out / 'plan' / 'report.html'}")
    return summary

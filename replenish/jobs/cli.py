"""The ``replenish`` command line: plan, train, forecast, optimize, evaluate, echelon, backtest,
synth, demo.

Every job option can also come from a TOML file (``--config``, see
:mod:`replenish.jobs.config`); flags given on the command line win.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any, Sequence

from ._summary import print_summary

__all__ = ["main", "print_summary"]


def _job_parser(sub, name: str, help: str, inventory: bool = True,
                model: str = "all") -> argparse.ArgumentParser:
    """The options of a job; ``model``: "all" (train or use a model), "use" (only --model,
    --horizon), "none" (no model options)."""
    p = sub.add_parser(name, help=help, description=help)
    g = p.add_argument_group("inputs and outputs")
    g.add_argument("--history", help="demand history: Parquet/CSV file, folder, hive dataset or URL")
    if inventory:
        g.add_argument("--inventory", help="inventory state per SKU-location (Parquet/CSV)")
    g.add_argument("--future", help="known covariates for the forecast horizon (same keys, later dates)")
    g.add_argument("--out", help="output folder")
    g.add_argument("--config", help="TOML config file (flags override it)")
    g.add_argument("--overwrite", action="store_true",
                   help="replace another job's results in --out instead of refusing (a "
                        "non-empty folder that holds no job is always refused)")
    c = p.add_argument_group("column mapping (defaults: sku, location, date, demand)")
    for role in ("sku", "location", "date", "demand"):
        c.add_argument(f"--{role}-col", dest=f"{role}_col", help=f"name of the {role} column")
    c.add_argument("--known-cols", dest="known_cols",
                   help="comma-separated covariates known in advance (price, promo, holiday...)")
    c.add_argument("--observed-cols", dest="observed_cols", help="comma-separated observed-only covariates")
    c.add_argument("--static-cols", dest="static_cols", help="comma-separated static attributes")
    c.add_argument("--categorical-cols", dest="categorical_cols",
                   help="comma-separated known/observed covariates that are categories "
                        "(event or holiday names), not numbers")
    c.add_argument("--date-format", dest="date_format_col", metavar="FORMAT",
                   help="strftime format of date strings, e.g. '%%d.%%m.%%Y' (default: ISO 8601)")
    d = p.add_argument_group("data rules")
    d.add_argument("--freq", choices=["D", "W"], help="period: daily or weekly (default: inferred)")
    d.add_argument("--negative", choices=["error", "clip"], help="negative demand: fail or clip to 0")
    d.add_argument("--missing-demand", dest="missing_demand", choices=["error", "zero"],
                   help="missing demand values: fail or treat as 0")
    d.add_argument("--duplicates", choices=["error", "sum"], help="duplicate rows: fail or sum them")
    d.add_argument("--gaps", choices=["zero", "missing"],
                   help="periods without a row: zero demand (default) or unknown (never a "
                        "training target, not in the scales, not scored)")
    d.add_argument("--min-history", dest="min_history", type=int, help="minimum periods per series")
    d.add_argument("--no-align-end", dest="align_end", action="store_const", const=False,
                   help="keep each series' own last date instead of extending series without "
                        "recent rows to the history's latest date with zero demand")
    d.add_argument("--missing-static", dest="missing_static", choices=["error", "impute"],
                   help="a static number missing for some series: fail naming them, or impute "
                        "the median over series plus a <column>_missing indicator")
    d.add_argument("--gap-fill", dest="gap_fill", metavar="COL=VALUE,...",
                   help="covariates in filled periods (gaps), e.g. Open=0,promo=0,"
                        "price=interpolate (default: 0 for 0/1 flags, the missing label, "
                        "else interpolated)")
    if model != "none":
        m = p.add_argument_group("model")
        m.add_argument("--horizon", type=int, help="forecast horizon, periods (default 28 for "
                       "daily, 12 for weekly data; with --model: the model's)")
        if name != "train":
            m.add_argument("--model", help="use this saved model instead of training one")
        if model == "all":
            m.add_argument("--init-from", dest="init_from",
                           help="fine-tune starting from this saved model")
            m.add_argument("--train-series", dest="train_series", type=int,
                           help="train on at most this many series (default 20000)")
    if inventory:
        o = p.add_argument_group("policy")
        o.add_argument("--target", choices=["csl", "fill_rate", "cost"],
                       help="service target: cycle service level, fill rate, or stockout cost")
        o.add_argument("--method", choices=["sample", "normal"],
                       help="lead-time demand: Monte Carlo from the quantiles, or normal approximation")
        o.add_argument("--n-samples", dest="n_samples", type=int, help="Monte Carlo samples per item")
        o.add_argument("--echelon", help="output of `replenish echelon` (its folder or "
                       "stores.parquet): each store's lead time grows by its DC's service time")
        o.add_argument("--network", help="the whole chain, one row per node (node, parent, "
                       "lead_time_days, ...): safety stock placed across all levels, stores "
                       "wait for their DC's service time, writes OUT/network.parquet")
        o.add_argument("--dc-inventory", dest="dc_inventory",
                       help="with --network: state of the DCs (sku, location, on_hand, on_order "
                            "[, lead_time_days, moq, case_pack, ...]): writes OUT/dc_orders")
        if name in ("plan", "optimize"):
            _planner_options(p)
    p.add_argument("--seed", type=int, help="seed of the training-series sample and of the "
                   "Monte Carlo draws (the network's own: [forecast] seed)")
    k = p.add_argument_group("cluster")
    k.add_argument("--scheduler", help="address of an existing Dask scheduler (default: embedded cluster)")
    k.add_argument("--n-workers", dest="n_workers", type=int, help="workers of the embedded cluster")
    k.add_argument("--shards", type=int, help="number of hash shards (default from the data size)")
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no progress bars, few lines (for batch logs)")
    return p


def _planner_options(p: argparse.ArgumentParser) -> None:
    """Budgets, exceptions and the report (jobs that optimize)."""
    b = p.add_argument_group("budgets (applied over all shards)")
    b.add_argument("--budget", type=float, help="order budget per location (or group), currency")
    b.add_argument("--capacity", type=float, help="order capacity per location (or group), units")
    b.add_argument("--budget-table", dest="budget_table",
                   help="table of limits: location (or group) and budget (or capacity)")
    b.add_argument("--budget-group", dest="budget_group",
                   help="inventory column naming each SKU-location's budget group "
                        "(default: the location)")
    r = p.add_argument_group("exceptions and report")
    r.add_argument("--ledger", help="an evaluate ledger (Parquet): per-item forecast bias of "
                   "recent runs raises forecast_bias exceptions")
    r.add_argument("--report", action="store_const", const=True,
                   help="write OUT/report.html when done (see `replenish report`)")


def _build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="replenish", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    _job_parser(sub, "plan", "train, forecast and compute order recommendations")
    _job_parser(sub, "train", "train the global forecasting model (writes OUT/model)", inventory=False)
    _job_parser(sub, "forecast", "forecast quantiles with a saved model (writes OUT/forecasts)",
                inventory=False, model="use")
    op = _job_parser(sub, "optimize", "order recommendations from a forecast job's output "
                     "(writes OUT/orders)", model="none")
    op.add_argument("--forecasts", help="forecasts dataset written by `replenish forecast`")
    bt = _job_parser(sub, "backtest", "rolling-origin backtest: the plan night after night on "
                     "past data, simulated against the classical policy (writes OUT/summary.parquet)")
    b = bt.add_argument_group("backtest")
    b.add_argument("--origins", type=int, help="number of rolling origins (default 26)")
    b.add_argument("--every", type=int,
                   help="periods between origins (default a week: 7 days, or 1 week)")
    b.add_argument("--targets", help="comma-separated service targets (default 0.8,0.9,0.95,0.98,0.99)")
    b.add_argument("--retrain", action="store_const", const=True,
                   help="train from scratch at every origin instead of fine-tuning")
    b.add_argument("--finetune-steps", dest="finetune_steps", type=int,
                   help="training steps of each fine-tune (default max_steps / 4, at least 100)")
    b.add_argument("--classical", choices=["ma", "seasonal", "ets"],
                   help="classical forecast: moving average (default), seasonal moving average, "
                        "or statsforecast's AutoETS (needs statsforecast)")
    b.add_argument("--classical-window", dest="classical_window", type=int,
                   help="periods the classical forecast averages (default 28 days / 8 weeks)")
    b.add_argument("--unmet", choices=["backorder", "lost"],
                   help="unmet demand is backordered (default) or lost")
    b.add_argument("--no-crossing", dest="crossing", action="store_const", const=False,
                   help="orders never overtake earlier ones (random lead times)")
    s = sub.add_parser("synth", help="write a synthetic data set (history/ and inventory.parquet)")
    s.add_argument("--series", type=int, required=True)
    s.add_argument("--days", type=int, default=730,
                   help="days of history per series (weekly: days // 7 weeks)")
    s.add_argument("--freq", choices=["D", "W"], default="D")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", required=True)
    ev = sub.add_parser("evaluate", help="forecast accuracy and realised service of a finished "
                        "plan, against the history as it is now (writes EVAL/summary.json)")
    ev.add_argument("--run", required=True, help="output folder of a finished plan job")
    ev.add_argument("--history", required=True,
                    help="demand history including the periods after the plan")
    ev.add_argument("--out", required=True, help="folder for series.parquet and summary.json")
    ev.add_argument("--ledger", help="Parquet file the summary is appended to (accuracy over time)")
    ev.add_argument("--config", help="TOML config file (its [data] and [columns] sections)")
    for role in ("sku", "location", "date", "demand"):
        ev.add_argument(f"--{role}-col", dest=f"{role}_col", help=f"name of the {role} column")
    ev.add_argument("--date-format", dest="date_format_col", metavar="FORMAT")
    ev.add_argument("--freq", choices=["D", "W"])
    ev.add_argument("--negative", choices=["error", "clip"])
    ev.add_argument("--missing-demand", dest="missing_demand", choices=["error", "zero"])
    ev.add_argument("--duplicates", choices=["error", "sum"])
    ev.add_argument("--gaps", choices=["zero", "missing"],
                    help="periods without a row: zero demand (default) or unknown (not scored)")
    ev.add_argument("-v", "--verbose", action="store_true")
    ev.add_argument("-q", "--quiet", action="store_true",
                    help="no progress bars (as plan's --quiet: for scripts run nightly)")
    ec = sub.add_parser("echelon", help="place safety stock between DCs and their stores for a "
                        "finished plan (writes DIR/dc.parquet and DIR/stores.parquet)")
    ec.add_argument("--run", required=True, help="output folder of a finished plan job")
    ec.add_argument("--network", required=True,
                    help="table: location, dc, dc_lead_time_days [, dc_service_level, "
                         "dc_holding_cost_rate, dc_inbound_service_days]")
    ec.add_argument("--out", required=True, help="output folder")
    ec.add_argument("-v", "--verbose", action="store_true")
    ec.add_argument("-q", "--quiet", action="store_true",
                    help="no progress bars (as plan's --quiet: for scripts run nightly)")
    rp = sub.add_parser("report", help="one self-contained HTML report of a finished plan or "
                        "optimize job (writes DIR/report.html)")
    rp.add_argument("run", help="output folder of a finished plan or optimize job")
    rp.add_argument("--ledger", help="an evaluate ledger: accuracy and realised service over time")
    rp.add_argument("--backtest", help="a backtest's output folder (summary.parquet, "
                    "backtest.json): service against inventory")
    rp.add_argument("--out", help="the HTML file (default DIR/report.html)")
    rp.add_argument("--items", type=int, default=6,
                    help="items drawn per section (top exceptions, least accurate; default 6)")
    rp.add_argument("-v", "--verbose", action="store_true")
    dm = sub.add_parser("demo", help="plan on the bundled bakery data with a local Dask cluster")
    dm.add_argument("--out", default="demo_output")
    dm.add_argument("--n-workers", dest="n_workers", type=int, default=2)
    return ap


_NOT_FLAGS = {"command", "config", "overwrite", "verbose", "quiet"}


def _config_from_args(args: argparse.Namespace):
    from .config import PlanConfig, load_toml
    flags: dict[str, Any] = {k: v for k, v in vars(args).items() if k not in _NOT_FLAGS}
    return PlanConfig.build(load_toml(args.config), **flags)


_BACKTEST_FLAGS = ("origins", "every", "targets", "retrain", "finetune_steps", "classical",
                   "classical_window", "unmet", "crossing")


def backtest_config(args: argparse.Namespace):
    """The job config and the backtest settings of parsed ``replenish backtest`` arguments
    (the TOML file's ``[backtest]`` section, overridden by the flags)."""
    from .backtest import BacktestSettings
    from .config import load_toml
    flags = {k: getattr(args, k) for k in _BACKTEST_FLAGS}
    rest = argparse.Namespace(**{k: v for k, v in vars(args).items() if k not in _BACKTEST_FLAGS})
    settings = BacktestSettings.build(load_toml(args.config).get("backtest"), **flags)
    return _config_from_args(rest), settings


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    from ._messages import Formatter, say
    handler = logging.StreamHandler()
    handler.setFormatter(Formatter())   # every line "[replenish] ...", warnings "warning: ..."
    logging.basicConfig(level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
                        handlers=[handler])
    logging.captureWarnings(True)       # Python warnings too, as log lines
    if not getattr(args, "verbose", False) and args.command != "synth":
        # Dask's cluster start-up, event-loop and shutdown chatter only with --verbose (a lost
        # worker is still said, by its nanny). distributed sets its loggers' levels when
        # imported, so it is imported first.
        import distributed  # noqa: F401
        for name in ("distributed", "dask"):
            logging.getLogger(name).setLevel(logging.ERROR)
        logging.getLogger("distributed.nanny").setLevel(logging.WARNING)
        for name in ("lightning", "lightning.pytorch"):
            logging.getLogger(name).setLevel(logging.WARNING)
    from ..engine.contract import DataError
    from . import _progress
    from .plan import JobError
    if getattr(args, "quiet", False):
        _progress.set_mode("quiet")
    try:
        if args.command == "synth":
            from ..engine.synth import write_synth
            info = write_synth(args.out, args.series, args.days, seed=args.seed, freq=args.freq)
            print(json.dumps(info, default=str))
            return 0
        if args.command == "demo":
            from .demo import run_demo
            run_demo(args.out, n_workers=args.n_workers)
            return 0
        if args.command == "echelon":
            from .echelon import place_safety_stock
            res = place_safety_stock(args.run, args.network, args.out)
            res.pop("dc_table"), res.pop("stores_table")
            print(json.dumps(res, indent=2))
            say(f"placement written to {args.out}/dc.parquet and {args.out}/stores.parquet")
            return 0
        if args.command == "report":
            from .report import write_report
            path = write_report(args.run, ledger=args.ledger, backtest=args.backtest,
                                out=args.out, items=args.items)
            say(f"report written to {path} ({path.stat().st_size / 1024:.0f} KiB)")
            return 0
        if args.command == "evaluate":
            from .evaluate import evaluate_run
            run, ledger = args.run, args.ledger
            del args.run, args.ledger
            cfg = _config_from_args(args)
            res = evaluate_run(run, cfg.history, cfg.out, columns=cfg.columns, freq=cfg.freq,
                               negative=cfg.negative, missing_demand=cfg.missing_demand,
                               duplicates=cfg.duplicates, gaps=cfg.gaps, ledger=ledger)
            res.pop("series_table")
            print(json.dumps(res, indent=2))
            say(f"evaluation written to {cfg.out}" + (f"; ledger {ledger}" if ledger else ""))
            return 0
        if args.command == "backtest":
            from .backtest import print_backtest, run_backtest
            cfg, settings = backtest_config(args)
            summary = run_backtest(cfg, settings, overwrite=args.overwrite)
            print_backtest(summary)
            print(f"[replenish]   results in {summary['out']} (summary.parquet, origins.parquet, "
                  f"series/, backtest.json)")
            return 0
        cfg = _config_from_args(args)
        from .plan import run_plan
        stages = {"plan": ("train", "forecast", "optimize"), "train": ("train",),
                  "forecast": ("forecast",), "optimize": ("optimize",)}[args.command]
        summary = run_plan(cfg, stages=stages, overwrite=args.overwrite)
        print_summary(summary)
        return 0
    except (DataError, JobError, FileNotFoundError, ValueError) as e:
        # a multi-line error (every broken rule of a file): its lines indented under the first
        say(f"{args.command}: error: " + "\n  ".join(str(e).splitlines()))
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

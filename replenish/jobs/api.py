"""Python API: the jobs for a data platform, without the command line.

Inputs may be paths/URLs, pyarrow Tables, pandas DataFrames or Dask DataFrames; results
come back as paths and, on request (or when no output folder is given), as pyarrow Tables.
"""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from ..engine.contract import ColumnMap
from ._sources import as_source as _as_source
from .config import PlanConfig
from .plan import run_plan

__all__ = ["plan", "train", "forecast"]

log = logging.getLogger("replenish")


def _run(stages, history, inventory=None, out=None, *, future=None, columns=None,
         return_tables=None, client=None, overwrite=False, **options) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="replenish-") as tmpd:
        tmp = Path(tmpd)
        if isinstance(columns, dict):
            columns = ColumnMap.from_mapping(columns)
        cfg = PlanConfig.build(None, **options)
        cfg.columns = columns or cfg.columns
        cfg.history = _as_source(history, tmp, "history")
        cfg.inventory = _as_source(inventory, tmp, "inventory")
        cfg.future = _as_source(future, tmp, "future")
        for k in ("network", "dc_inventory"):       # tables given as pandas or Dask frames
            setattr(cfg, k, _as_source(getattr(cfg, k), tmp, k))
        cfg.out = str(out) if out is not None else str(tmp / "out")
        summary = run_plan(cfg, stages=stages, overwrite=overwrite, client=client)
        if return_tables or (return_tables is None and out is None):
            from ._outputs import read_output
            for name in ("forecasts", "orders"):
                if (Path(cfg.out) / name).exists():
                    summary[name] = read_output(cfg.out, name)
            if (Path(cfg.out) / "exceptions").exists():
                from .exceptions import read_exceptions
                summary["exceptions_table"] = read_exceptions(cfg.out)   # ranked by money
        if out is None:
            summary["out"] = None
        return summary


def plan(history, inventory, out=None, **kw) -> dict[str, Any]:
    """Train, forecast and optimize: order recommendations for every SKU-location.

    Parameters
    ----------
    history, inventory, future : path, URL, pyarrow.Table, pandas or Dask DataFrame
        Demand history (long), inventory state, and optional known covariates for the horizon.
    out : path, optional
        Output folder. Without one, results are returned as tables and nothing is kept.
    columns : ColumnMap or dict, optional
        Column roles (``{"sku": "item_id", "known": ["price"]}``...).
    client : distributed.Client, optional
        Run on this cluster (default: an embedded LocalCluster).
    **kw
        Any option of :class:`~replenish.jobs.config.PlanConfig` (``forecast={...}``,
        ``target="fill_rate"``, ``n_workers=4``, ``shards=16``...).

    Returns
    -------
    dict
        The job summary; with tables, ``"forecasts"`` and ``"orders"`` as pyarrow Tables
        (columns and units as in the README).
    """
    return _run(("train", "forecast", "optimize"), history, inventory, out, **kw)


def train(history, out, **kw) -> dict[str, Any]:
    """Train the global model on ``history``; saves it in ``out/model``."""
    return _run(("train",), history, None, out, **kw)


def forecast(history, out=None, *, model, **kw) -> dict[str, Any]:
    """Quantile forecasts for every series of ``history`` with a saved ``model``."""
    return _run(("forecast",), history, None, out, model=str(model), **kw)

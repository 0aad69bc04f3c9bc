"""Reading a finished job's folder: its manifest, output datasets, period and forecasts.

Every job (plan, forecast, optimize, backtest) and every reader of their outputs (evaluate,
echelon, report, the Python API) use these; nothing here starts or runs a job.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ..engine.contract import DataError
from ..engine.validate import infer_freq, key_text
from . import _sharding

__all__ = ["JobError", "read_manifest", "write_manifest", "read_output", "run_forecasts", "run_freq"]


class JobError(RuntimeError):
    """A job failed; the message lists each failed shard and why."""


def read_manifest(out: str | Path) -> dict[str, Any]:
    p = Path(out) / "manifest.json"
    return json.loads(p.read_text()) if p.exists() else {}


def run_forecasts(out: str | Path) -> pa.Table:
    """The forecasts a finished job planned from: its own, or for an ``optimize`` job those
    it read (``--forecasts``, as recorded in its manifest)."""
    out = Path(out)
    if (out / "forecasts").exists():
        return read_output(out, "forecasts")
    src = (read_manifest(out).get("config") or {}).get("forecasts")
    if isinstance(src, str) and "://" not in src and Path(src).exists():
        p = Path(src)
        if (p / "forecasts").exists():
            return read_output(p, "forecasts")
        if p.name == "forecasts":
            return read_output(p.parent, "forecasts")
    raise DataError(f"{out} holds no forecasts, and the forecasts it was planned from "
                    f"({src}) are not a readable job output; give the plan or forecast job's "
                    f"folder")


def run_freq(out: str | Path, forecasts: pa.Table | None = None) -> str:
    """The period ("D" or "W") of a finished job's outputs: as recorded in its manifest; for
    a job that recorded none, its model's; else the smallest step between two forecast dates
    of one SKU-location (a one-period horizon without either: "D")."""
    manifest = read_manifest(out)
    freq = (manifest.get("summary") or {}).get("freq")
    if freq:
        return freq
    model = (manifest.get("config") or {}).get("model") or Path(out) / "model"
    if (Path(model) / "model.json").exists():   # runs from before the period was recorded
        return json.loads((Path(model) / "model.json").read_text())["spec"]["freq"]
    if forecasts is None:
        forecasts = read_output(out, "forecasts", columns=["sku", "location", "date"])
    import pandas as pd
    series = pd.factorize(pd.MultiIndex.from_arrays([key_text(forecasts.column("sku")),
                                                     key_text(forecasts.column("location"))]))[0]
    days = forecasts.column("date").to_numpy().astype("datetime64[D]")
    order = np.lexsort((days, series))
    return infer_freq(series[order], days[order])


def read_output(out: str | Path, name: str = "orders", columns: list[str] | None = None) -> pa.Table:
    """One output dataset of a job (``"orders"`` or ``"forecasts"``) as a pyarrow Table.

    The datasets are hive-partitioned by location; this restores the location column's
    original type (recorded in the manifest), which a plain hive read would infer from the
    folder names.
    """
    import pyarrow.dataset as pds
    key = "node" if name == "dc_orders" else "location"     # dc_orders: the network's node ids
    typ = _sharding.partition_type(read_manifest(out).get("key_types", {}).get(key))
    # the folder names parsed as the recorded type: int64 stays int64, "0042" stays text
    part = pds.partitioning(pa.schema([("location", typ)]), flavor="hive") if typ else "hive"
    d = pds.dataset(Path(out) / name, format="parquet", partitioning=part)
    t = d.to_table(columns=columns)
    if "location" in t.column_names:
        i = t.column_names.index("location")
        col = t.column(i)
        if pa.types.is_dictionary(col.type):
            col = col.cast(col.type.value_type)
        if typ:
            col = col.cast(typ)
        t = t.set_column(i, "location", col)
        names = t.column_names
        if "sku" in names:
            rest = [c for c in names if c not in ("sku", "location")]
            t = t.select(["sku", "location", *rest])
    return t


def write_manifest(out: Path, m: dict[str, Any]) -> None:
    """Replace ``OUT/manifest.json`` atomically."""
    tmp = out / ".manifest.json.tmp"
    tmp.write_text(json.dumps(m, indent=1, default=str))
    os.replace(tmp, out / "manifest.json")

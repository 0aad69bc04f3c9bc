"""Inputs as the jobs read them: a path or URL, a pyarrow Table, a pandas or Dask DataFrame."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pyarrow as pa

__all__ = ["as_source"]

log = logging.getLogger("replenish")


def _from_pandas(df: Any, name: str) -> pa.Table:
    """A pandas DataFrame as a pyarrow Table. An object column mixing Python types (ids
    that are sometimes int, sometimes str) becomes text, logged; the job's rules then read
    it (keys compare as text anyway)."""
    try:
        return pa.Table.from_pandas(df, preserve_index=False)
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        mixed = [c for c in df.columns if df[c].dtype == object
                 and df[c].dropna().map(type).nunique() > 1]
        if not mixed:
            raise
        log.warning("%s: column(s) %s mix Python types (e.g. int and str): read as text",
                    name, mixed)
        df = df.assign(**{c: df[c].astype("string") for c in mixed})
        return pa.Table.from_pandas(df, preserve_index=False)


def as_source(x: Any, tmp: Path | None = None, name: str = "input") -> Any:
    """A path/URL or pyarrow Table the job can read (``tmp``: where a Dask DataFrame is
    written; without it, one is computed in memory)."""
    if x is None or isinstance(x, (str, Path, pa.Table)):
        return str(x) if isinstance(x, Path) else x
    mod = type(x).__module__
    if mod.startswith("pandas"):
        return _from_pandas(x, name)
    if mod.startswith("dask"):
        if tmp is None:
            return _from_pandas(x.compute(), name)
        # A Dask DataFrame is written partition by partition, never collected on the client.
        path = tmp / name
        x.to_parquet(str(path), write_index=False)
        return str(path)
    raise TypeError(f"{name}: expected a path, pyarrow.Table, pandas or Dask DataFrame, got {type(x)}")

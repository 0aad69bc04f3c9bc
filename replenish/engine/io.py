"""Reading tables: a Parquet or CSV file, a folder, or a hive-partitioned dataset.

Local paths and fsspec URLs (``s3://``, ``gs://``, ``abfs://``...; the matching fsspec
package must be installed) are accepted. Nothing here knows column roles.
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Iterable, Iterator

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

__all__ = ["input_format", "open_dataset", "read_table", "iter_batches", "write_parquet_atomic"]


def _filesystem(source: str | os.PathLike):
    s = str(source)
    if "://" in s and not s.startswith("file://"):
        import fsspec  # optional; only for remote URLs
        from pyarrow.fs import FSSpecHandler, PyFileSystem
        fs, path = fsspec.core.url_to_fs(s)
        return PyFileSystem(FSSpecHandler(fs)), path
    return None, s.removeprefix("file://")


_CSV = (".csv", ".csv.gz")


def input_format(source: str | os.PathLike) -> str:
    """"csv" or "parquet": a file's by its suffix (".csv", ".csv.gz": CSV); a folder's by the
    files in it (CSV when it holds CSV files and no Parquet files)."""
    fs, path = _filesystem(source)
    if path.endswith(_CSV):
        return "csv"
    import pyarrow.fs as pafs
    fs = fs or pafs.LocalFileSystem()
    if fs.get_file_info(path).type != pafs.FileType.Directory:
        return "parquet"
    names = [f.path for f in fs.get_file_info(pafs.FileSelector(path, recursive=True))
             if f.type == pafs.FileType.File]
    csv = any(n.endswith(_CSV) for n in names)
    parquet = any(n.endswith((".parquet", ".pq", ".parq")) for n in names)
    return "csv" if csv and not parquet else "parquet"


def open_dataset(source: str | os.PathLike | pa.Table, fmt: str | None = None) -> ds.Dataset:
    """A pyarrow Dataset over a file, a folder (hive partitions detected) or a URL.

    ``fmt`` is "parquet" or "csv"; by default :func:`input_format`. A folder without a
    readable file of that format is an error (not an empty table).
    """
    if isinstance(source, pa.Table):
        return ds.dataset(source)
    fs, path = _filesystem(source)
    if fs is None and not Path(path).exists():
        raise FileNotFoundError(f"input not found: {source}")
    fmt = fmt or input_format(source)
    d = ds.dataset(path, filesystem=fs, format=fmt, partitioning="hive",
                   exclude_invalid_files=True)
    if not d.files:
        raise FileNotFoundError(f"input {source}: no readable {fmt} file in it (Parquet files, "
                                f"or CSV files ending in .csv or .csv.gz)")
    return d


def read_table(source: str | os.PathLike | pa.Table, columns: Iterable[str] | None = None,
               fmt: str | None = None) -> pa.Table:
    """The whole table (or the given columns) of a source."""
    if isinstance(source, pa.Table):
        return source.select(list(columns)) if columns is not None else source
    d = open_dataset(source, fmt)
    if columns is not None:
        columns = list(columns)
        missing = [c for c in columns if c not in d.schema.names]
        if missing:
            from .contract import DataError
            raise DataError(f"{source}: required column(s) {missing} missing; it has {d.schema.names}")
    return d.to_table(columns=columns)


def iter_batches(source, columns=None, fmt=None, batch_rows: int = 1 << 20) -> Iterator[pa.RecordBatch]:
    """Record batches of at most ``batch_rows`` rows, read with bounded memory."""
    d = open_dataset(source, fmt)
    yield from d.to_batches(columns=list(columns) if columns else None, batch_size=batch_rows)


def write_parquet_atomic(table: pa.Table, path: str | os.PathLike) -> None:
    """Write a Parquet file under a temporary name, then rename it into place.

    A reader never sees a half-written file at ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()

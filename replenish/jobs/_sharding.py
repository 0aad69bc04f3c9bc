"""Hash sharding of series, and the staging pass that splits inputs into shard folders.

A series (sku, location) belongs to shard ``hash(sku, location) % n_shards``; the hash is
pandas' SipHash with its fixed key, so it is the same on every machine, process and run.
Staging reads each input file with bounded memory (record batches) and writes, per shard,
``<stage>/<name>/shard=NNNNN/<file>-<batch>.parquet``. Only this module knows the layout.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from ..engine.io import _filesystem, open_dataset, write_parquet_atomic

__all__ = ["shard_of", "input_files", "stage_file", "stage_table", "shard_dir"]


def shard_of(sku: pa.Array | np.ndarray, location: pa.Array | np.ndarray, n_shards: int) -> np.ndarray:
    """Shard number of each (sku, location), int32 in [0, n_shards). Stable across runs."""
    from pandas.util import hash_array
    s = pc.cast(pa.array(sku) if not isinstance(sku, (pa.Array, pa.ChunkedArray)) else sku, pa.string())
    loc = pc.cast(pa.array(location) if not isinstance(location, (pa.Array, pa.ChunkedArray))
                  else location, pa.string())
    keys = pc.binary_join_element_wise(s, loc, "\x1f")
    if isinstance(keys, pa.ChunkedArray):
        keys = keys.combine_chunks()
    h = hash_array(keys.to_numpy(zero_copy_only=False).astype(object))
    return (h % np.uint64(n_shards)).astype(np.int32)


def shard_dir(stage: str | Path, name: str, shard: int) -> Path:
    return Path(stage) / name / f"shard={shard:05d}"


def input_files(source: Any, fmt: str | None = None) -> tuple[list[str], str, str | None]:
    """The files of a source, its format, and the base dir for hive partitions."""
    d = open_dataset(source, fmt)
    files = list(d.files)
    fs, path = _filesystem(source)
    fmt = fmt or ("csv" if str(path).endswith((".csv", ".csv.gz")) else "parquet")
    base = path if (fs is not None or Path(path).is_dir()) else None
    return files, fmt, base


def stage_file(source: Any, file: str, fmt: str, base: str | None, columns: Sequence[str],
               key_cols: tuple[str, str], n_shards: int, stage: str, name: str,
               batch_rows: int = 1 << 21) -> dict[int, int]:
    """Split one input file into shard folders. Returns rows written per shard."""
    fs, _ = _filesystem(source)
    d = ds.dataset([file], format=fmt, filesystem=fs, partitioning="hive",
                   partition_base_dir=base) if base else ds.dataset(file, format=fmt, filesystem=fs)
    missing = [c for c in columns if c not in d.schema.names]
    if missing:
        from ..engine.contract import DataError
        raise DataError(f"{name}: required column(s) {missing} missing in {file}; it has "
                        f"{d.schema.names}")
    tag = hashlib.sha1(file.encode()).hexdigest()[:12]
    counts: dict[int, int] = {}
    for b, batch in enumerate(d.to_batches(columns=list(columns), batch_size=batch_rows)):
        _write_split(pa.Table.from_batches([batch]), key_cols, n_shards, stage, name,
                     f"{tag}-{b:05d}", counts)
    return counts


def stage_table(table: pa.Table, columns: Sequence[str], key_cols: tuple[str, str], n_shards: int,
                stage: str, name: str) -> dict[int, int]:
    """Split an in-memory table into shard folders."""
    counts: dict[int, int] = {}
    _write_split(table.select(list(columns)), key_cols, n_shards, stage, name, "table", counts)
    return counts


def _write_split(table: pa.Table, key_cols: tuple[str, str], n_shards: int, stage: str, name: str,
                 tag: str, counts: dict[int, int]) -> None:
    if table.num_rows == 0:
        return
    from ..engine.validate import _plain
    table = _plain(table)
    for k in key_cols:
        if table.column(k).null_count:
            from ..engine.contract import DataError
            raise DataError(f"column '{k}': rule 'key must not be missing' broken by "
                            f"{table.column(k).null_count} rows")
    shard = shard_of(table.column(key_cols[0]), table.column(key_cols[1]), n_shards)
    order = np.argsort(shard, kind="stable")
    shard_sorted = shard[order]
    table = table.take(pa.array(order))
    bounds = np.flatnonzero(np.diff(shard_sorted)) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [len(order)]])
    for s, e in zip(starts, ends):
        k = int(shard_sorted[s])
        write_parquet_atomic(table.slice(s, e - s), shard_dir(stage, name, k) / f"{tag}.parquet")
        counts[k] = counts.get(k, 0) + int(e - s)


def read_shard(stage: str | Path, name: str, shard: int, columns: Sequence[str] | None = None) -> pa.Table | None:
    """All staged rows of one shard, or None when the shard has none."""
    d = shard_dir(stage, name, shard)
    if not d.exists():
        return None
    files = sorted(str(p) for p in d.glob("*.parquet"))
    if not files:
        return None
    tables = [ds.dataset(f, format="parquet").to_table(columns=list(columns) if columns else None)
              for f in files]
    return pa.concat_tables(tables, promote_options="permissive")


def file_checksum(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()

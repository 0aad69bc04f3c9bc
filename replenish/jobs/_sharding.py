"""Hash sharding of series, and the staging pass that splits inputs into shard folders.

A job first counts the rows of each location and makes a :class:`ShardPlan`: each location
goes whole into one shard when it fits a shard's share of the rows, else it is split into
buckets by the series hash; so an output partitioned by location has about one file per
location, not one per location and shard. The series hash is pandas' SipHash (fixed key) of
the text of (sku, location): the same on every machine, process and run.
Staging reads each input file with bounded memory (record batches) and writes, per shard,
``<stage>/<name>/shard=NNNNN/<file>-<batch>.parquet``. Only this module knows the layout.
"""
from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from ..engine.contract import DataError
from ..engine.io import _filesystem, input_format, open_dataset, write_parquet_atomic

__all__ = ["shard_of", "ShardPlan", "count_locations", "input_files", "stage_file", "stage_table",
           "shard_dir", "partition_type"]


def _as_text(col: pa.Array | pa.ChunkedArray | np.ndarray) -> pa.DictionaryArray:
    col = pa.array(col) if not isinstance(col, (pa.Array, pa.ChunkedArray)) else col
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    return pc.dictionary_encode(col)


def _pair_hash(sku, location) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SipHash of ``sku + "\\x1f" + location`` as text per row (uint64), with the location's
    code per row and the text of each code. Hashes each distinct pair once, not each row."""
    import pandas as pd
    from pandas.util import hash_array
    s, loc = _as_text(sku), _as_text(location)
    n_loc = len(loc.dictionary)
    loc_code = loc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    pair = s.indices.to_numpy(zero_copy_only=False).astype(np.int64) * n_loc + loc_code
    codes, uniq = pd.factorize(pair)
    s_text = pc.cast(s.dictionary, pa.string()).to_numpy(zero_copy_only=False).astype(object)
    l_text = pc.cast(loc.dictionary, pa.string()).to_numpy(zero_copy_only=False).astype(object)
    keys = s_text[uniq // n_loc] + "\x1f" + l_text[uniq % n_loc]
    return hash_array(keys.astype(object))[codes], loc_code, l_text


def shard_of(sku: pa.Array | np.ndarray, location: pa.Array | np.ndarray,
             shards: "int | ShardPlan", with_hash: bool = False):
    """Shard number of each (sku, location), int32. Stable across runs and machines.

    With an int ``n``: the hash of the text ``sku + "\\x1f" + location`` modulo ``n`` (integer
    and string ids agree). With a :class:`ShardPlan`: the plan's shard for the location and
    the pair's bucket within it. ``with_hash``: also return each row's pair hash (uint64).
    """
    if isinstance(shards, ShardPlan):
        return shards.assign(sku, location, with_hash)
    h, _, _ = _pair_hash(sku, location)
    out = (h % np.uint64(shards)).astype(np.int32)
    return (out, h) if with_hash else out


@dataclass(frozen=True)
class ShardPlan:
    """Which shards hold each location's series: whole locations where they fit.

    Sharding by series alone scatters every location over every shard, so an output
    partitioned by location would have shards x locations files. The plan keeps each location
    in one shard when it holds at most a shard's share of the rows, and splits a larger one
    into ``ceil(rows / share)`` buckets (by the series hash); buckets are packed into shards,
    largest first, each into the lightest shard so far. Locations the plan does not know
    (an inventory row for an unknown location) fall back to the plain series hash.
    """

    n_shards: int
    units: dict[str, tuple[int, ...]] = field(default_factory=dict)  # location text -> shards

    @classmethod
    def from_counts(cls, rows_by_location: dict[str, int], n_shards: int) -> "ShardPlan":
        import heapq
        total = sum(rows_by_location.values())
        share = max(1, math.ceil(total / max(n_shards, 1)))
        buckets = []
        for loc, rows in rows_by_location.items():
            b = max(1, min(math.ceil(rows / share), n_shards))
            buckets += [(-rows / b, loc, j) for j in range(b)]
        buckets.sort()
        heap = [(0.0, k) for k in range(n_shards)]
        placed: dict[str, list[int]] = {}
        for neg_rows, loc, _ in buckets:
            load, k = heapq.heappop(heap)
            placed.setdefault(loc, []).append(k)
            heapq.heappush(heap, (load - neg_rows, k))
        return cls(n_shards, {loc: tuple(v) for loc, v in sorted(placed.items())})

    def assign(self, sku, location, with_hash: bool = False):
        h, loc_code, l_text = _pair_hash(sku, location)
        # per distinct location of this chunk: its shards, flattened, with offsets and counts
        flat, start, count = [], np.zeros(len(l_text), np.int64), np.zeros(len(l_text), np.uint64)
        for i, loc in enumerate(l_text):
            shards = self.units.get(loc)
            start[i] = len(flat)
            if shards is None:
                count[i] = 0
            else:
                flat += shards
                count[i] = len(shards)
        flat_a = np.asarray(flat + [0], dtype=np.int64)
        c = count[loc_code]
        known = c > 0
        j = (h % np.maximum(c, np.uint64(1))).astype(np.int64)
        out = np.where(known, flat_a[start[loc_code] + j], (h % np.uint64(self.n_shards)).astype(np.int64))
        return (out.astype(np.int32), h) if with_hash else out.astype(np.int32)

    def to_json(self) -> dict[str, Any]:
        return {"n_shards": self.n_shards, "units": {k: list(v) for k, v in self.units.items()}}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "ShardPlan":
        return cls(int(d["n_shards"]), {k: tuple(v) for k, v in d["units"].items()})


def partition_type(alias: str | None) -> pa.DataType | None:
    """The Arrow type recorded as ``alias`` ("int64", "string", "date32[day]"), or None when
    it has no alias (a time-zone timestamp, a decimal: those partitions are inferred)."""
    try:
        return pa.type_for_alias(alias) if alias else None
    except (ValueError, KeyError):
        return None


def _file_dataset(source: Any, file: str, fmt: str | None, base: str | None,
                  part_types: dict[str, str] | None = None,
                  csv_types: dict[str, str] | None = None) -> ds.Dataset:
    """One input file of ``source`` (with its hive partition columns when under ``base``;
    ``part_types``: the types of partition columns, e.g. {"location": "int64"} for a job's
    own output, instead of types inferred from the folder names; ``csv_types``: the types of
    some CSV columns, instead of types inferred from the file's first rows)."""
    fs, _ = _filesystem(source)
    if fmt == "csv" and csv_types:
        import pyarrow.csv as pacsv
        fmt = ds.CsvFileFormat(convert_options=pacsv.ConvertOptions(
            column_types={k: pa.type_for_alias(v) for k, v in csv_types.items()}))
    if base:
        typed = [(k, partition_type(v)) for k, v in (part_types or {}).items()]
        typed = [(k, t) for k, t in typed if t is not None]
        part = ds.partitioning(pa.schema(typed), flavor="hive") if typed else "hive"
        return ds.dataset([file], format=fmt, filesystem=fs, partitioning=part,
                          partition_base_dir=base)
    return ds.dataset(file, format=fmt, filesystem=fs)


def count_locations(source: Any, file: str | None, fmt: str | None, base: str | None,
                    location: str, part_types: dict[str, str] | None = None) -> dict[str, int]:
    """Rows per location (as text) of one input file, or of a table when ``file`` is None."""
    if file is None:
        if location not in source.column_names:   # one-key data: one location, the constant
            from ..engine.validate import KEY_CONSTANT
            return {KEY_CONSTANT: source.num_rows} if source.num_rows else {}
        col = source.column(location)
    else:
        d = _file_dataset(source, file, fmt, base, part_types)
        if location not in d.schema.names:
            return {}
        col = d.to_table(columns=[location]).column(location)
    enc = _as_text(pc.drop_null(col))   # missing keys are reported by the staging checks
    rows = np.bincount(enc.indices.to_numpy(zero_copy_only=False), minlength=len(enc.dictionary))
    names = pc.cast(enc.dictionary, pa.string()).to_pylist()
    return {k: int(v) for k, v in zip(names, rows) if v}


def shard_dir(stage: str | Path, name: str, shard: int) -> Path:
    return Path(stage) / name / f"shard={shard:05d}"


def pair_examples(stage: str | Path, name: str, keys: Sequence[str], hashes: np.ndarray,
                  k: int = 3) -> list[tuple[str, str]]:
    """Up to ``k`` distinct (sku, location) pairs of the staged input ``name`` whose pair
    hashes are among ``hashes`` (to name examples in an error; reads key columns only, and
    stops once it has them)."""
    found: dict[int, tuple[str, str]] = {}
    d = Path(stage) / name
    if not d.exists():
        return []
    for batch in ds.dataset(str(d), format="parquet").to_batches(columns=list(keys)):
        h, _, _ = _pair_hash(batch.column(0), batch.column(1))
        for i in np.flatnonzero(np.isin(h, hashes))[: 16 * k]:
            found.setdefault(int(h[i]), (batch.column(0)[int(i)].as_py(),
                                         batch.column(1)[int(i)].as_py()))
        if len(found) >= k:
            break
    return list(found.values())[:k]


def input_files(source: Any, fmt: str | None = None) -> tuple[list[str], str, str | None]:
    """The files of a source, its format, and the base dir for hive partitions."""
    fmt = fmt or input_format(source)
    files = list(open_dataset(source, fmt).files)
    fs, path = _filesystem(source)
    base = path if (fs is not None or Path(path).is_dir()) else None
    return files, fmt, base


#: Rows a staging task buffers before it writes its shard pieces (about 40 bytes a row).
BUFFER_ROWS = 16 << 20


def stage_file(source: Any, file: str, fmt: str, base: str | None, columns: Sequence[str],
               key_cols: tuple[str, str], shards: "int | ShardPlan", stage: str, name: str,
               batch_rows: int = 1 << 21, order: int = 0,
               buffer_rows: int = BUFFER_ROWS,
               check: Callable[[pa.Table], Any] | None = None,
               pairs: str | None = None, fill_keys: Sequence[str] = (),
               part_types: dict[str, str] | None = None,
               csv_types: dict[str, str] | None = None) -> dict[str, Any]:
    """Split one input file into shard folders.

    Returns ``{"counts": rows written per shard, "pairs": ..., "last_date": ...}``. With
    ``pairs`` ("unique" or "all"), ``"pairs"`` holds the file's distinct (sku, location)
    pair hashes, or one per row (to count duplicates): the job compares them across inputs
    before training. ``"last_date"``: the latest date ``check`` returned for any batch.

    Record batches are split by shard and buffered; every ``buffer_rows`` rows (and at the
    end) each shard's buffered rows are written as one file, named
    ``<order>-<hash of the file name>-<flush>.parquet`` so that a shard's files read back in
    input order (sorted input stays sorted and needs no re-sorting later). ``check`` is
    called on each batch before it is written (the row rules of the history), so bad input
    fails here, before any training. ``fill_keys``: key columns that the file may lack
    (a history with one key): they are added, holding the constant ``KEY_CONSTANT``.
    ``part_types``, ``csv_types``: types of hive partition columns and of CSV columns (see
    ``_file_dataset``). A CSV value that does not fit the type pyarrow inferred from the
    file's first rows is an error naming the file, the column and the cure.
    """
    from ..engine.validate import with_constant_keys
    try:   # a CSV file's dataset reads its first rows, with the given types
        d = _file_dataset(source, file, fmt, base, part_types,
                          {k: v for k, v in (csv_types or {}).items() if k in columns} or None)
    except pa.ArrowInvalid as e:
        if fmt != "csv" or "CSV column #" not in str(e):
            raise
        # the column names: the same file with its types inferred (from its first rows only)
        names = _file_dataset(source, file, fmt, base, part_types).schema.names
        raise _csv_error(e, name, file, names) from None
    fill = [k for k in fill_keys if k not in d.schema.names]
    columns = [c for c in columns if c not in fill]
    missing = [c for c in columns if c not in d.schema.names]
    if missing:
        raise DataError(f"{name}: required column(s) {missing} missing in {file}; it has "
                        f"{d.schema.names}")
    split = _Splitter(key_cols, shards, stage, name,
                      f"{order:06d}-{hashlib.sha1(file.encode()).hexdigest()[:12]}", buffer_rows, pairs)
    last = None
    for batch in _csv_checked(d.to_batches(columns=list(columns), batch_size=batch_rows),
                              name, file, d.schema):
        table = with_constant_keys(pa.Table.from_batches([batch]), fill)
        if check is not None:
            try:
                got = check(table)
            except DataError as e:
                raise DataError(f"{name} file {file}: {e}") from e
            if got is not None:
                last = got if last is None else max(last, got)
        split.add(table)
    split.flush()
    return split.result(last)


def _csv_error(e: Exception, name: str, file: str, names: Sequence[str]) -> DataError:
    """A CSV conversion error (a value that does not fit the column's type: 'a' in a column
    of 0s, text in the demand) as a data error naming the file, the column and the cure."""
    import re
    m = re.search(r"CSV column #(\d+)", str(e))
    col = names[int(m.group(1))] if m and int(m.group(1)) < len(names) else None
    what = f"column '{col}'" if col else "a column"
    detail = str(e).split("CSV conversion error", 1)
    detail = f"CSV conversion error{detail[1]}" if len(detail) == 2 else str(e)
    row = re.search(r"Row #(\d+)", str(e))
    detail += f" (line {int(row.group(1)):,} of the file)" if row else ""
    return DataError(f"{name} file {file}: {what}: {detail}. A CSV column's type is inferred "
                     f"from the file's first rows (the demand is always a number): a column of "
                     f"labels (holiday letters, event names) is read as text when listed in "
                     f"--categorical-cols; otherwise fix the value or write the file as Parquet "
                     f"with the column's type")


def _csv_checked(batches, name: str, file: str, schema: pa.Schema):
    """``batches``, with a CSV conversion error said as a data error (:func:`_csv_error`)."""
    it = iter(batches)
    while True:
        try:
            batch = next(it)
        except StopIteration:
            return
        except pa.ArrowInvalid as e:
            raise _csv_error(e, name, file, schema.names) from None
        yield batch


def stage_table(table: pa.Table, columns: Sequence[str], key_cols: tuple[str, str],
                shards: "int | ShardPlan", stage: str, name: str,
                check: Callable[[pa.Table], Any] | None = None,
                pairs: str | None = None, fill_keys: Sequence[str] = ()) -> dict[str, Any]:
    """Split an in-memory table into shard folders (arguments and result as :func:`stage_file`)."""
    from ..engine.validate import with_constant_keys
    table = with_constant_keys(table, fill_keys)
    last = check(table) if check is not None else None
    split = _Splitter(key_cols, shards, stage, name, "table", max(table.num_rows, 1), pairs)
    split.add(table.select(list(columns) + [k for k in fill_keys if k not in columns]))
    split.flush()
    return split.result(last)


class _Splitter:
    """Buffers rows by shard and writes each shard's buffer as one file per flush."""

    def __init__(self, key_cols: tuple[str, str], shards: "int | ShardPlan", stage: str, name: str,
                 tag: str, buffer_rows: int, pairs: str | None = None):
        self.key_cols, self.shards, self.stage, self.name = key_cols, shards, stage, name
        self.tag, self.buffer_rows = tag, buffer_rows
        self.pairs = pairs          # None, "unique" or "all": collect the rows' pair hashes
        self.hashes: list[np.ndarray] = []
        self.parts: dict[int, list[pa.Table]] = {}
        self.buffered = 0
        self.flushes = 0
        self.counts: dict[int, int] = {}

    def add(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        from ..engine.validate import _plain
        table = _plain(table)
        for k in self.key_cols:
            if table.column(k).null_count:
                raise DataError(f"column '{k}': rule 'key must not be missing' broken by "
                                f"{table.column(k).null_count} rows")
        shard, h = shard_of(table.column(self.key_cols[0]), table.column(self.key_cols[1]), self.shards,
                            with_hash=True)
        if self.pairs:
            import pandas as pd
            self.hashes.append(pd.unique(h) if self.pairs == "unique" else h)  # hash-based: O(rows)
        order = np.argsort(shard, kind="stable")
        shard_sorted = shard[order]
        table = table.take(pa.array(order))
        bounds = np.flatnonzero(np.diff(shard_sorted)) + 1
        starts = np.concatenate([[0], bounds])
        ends = np.concatenate([bounds, [len(order)]])
        for s, e in zip(starts, ends):
            self.parts.setdefault(int(shard_sorted[s]), []).append(table.slice(s, e - s))
        self.buffered += table.num_rows
        if self.buffered >= self.buffer_rows:
            self.flush()

    def flush(self) -> None:
        for k, pieces in sorted(self.parts.items()):
            part = pa.concat_tables(pieces, promote_options="permissive")
            write_parquet_atomic(part, shard_dir(self.stage, self.name, k)
                                 / f"{self.tag}-{self.flushes:04d}.parquet")
            self.counts[k] = self.counts.get(k, 0) + part.num_rows
        self.parts.clear()
        self.buffered = 0
        self.flushes += 1

    def result(self, last_date=None) -> dict[str, Any]:
        h = None
        if self.pairs:
            h = np.concatenate(self.hashes) if self.hashes else np.zeros(0, np.uint64)
            h = np.unique(h) if self.pairs == "unique" else h
        return {"counts": self.counts, "pairs": h, "last_date": last_date}


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

"""One look at the whole staged history before training: what the shards must agree on.

Each shard builds its Panel on its own, so choices that depend on all the data are made here
once, after staging, and passed to every shard (and kept in the manifest for a resume):

- which static columns are numbers (a float column in any file; a saved model's own);
- the value a missing static number is imputed with: the median over all series (or, with
  ``--missing-static error``, the error naming how many series lack it, with examples);
- which numeric covariates are 0/1 flags (0 in every file), which are 0 in filled gaps.

``profile_shard`` runs per shard on a worker (no Dask here); ``resolve`` combines them.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from ..engine.contract import ColumnMap, DataError
from ..engine.validate import MISSING_SUFFIX, _plain, examples_text, to_numeric
from ._sharding import _pair_hash, read_shard

__all__ = ["profile_shard", "resolve", "spec_entries", "profile_lines"]


def profile_shard(stage: str, shard: int, columns: dict[str, Any]) -> dict[str, Any] | None:
    """What one shard's history says about its static numbers and numeric covariates.

    Returns ``{"static": {column: {"float", "values", "lacking", "examples"}}, "flags":
    {column: [has_values, all_0_or_1]}}`` (``values``: each series' value, float64, for the
    series that have one; ``lacking``: series without one; ``examples``: up to 3 of their
    (sku, location)), or None for an empty shard.
    """
    import pandas as pd
    cols = ColumnMap(**columns)
    numeric = [c for c in cols.covariates if c not in cols.categorical]
    t = read_shard(stage, "history", shard,
                   columns=[cols.sku, cols.location, *cols.static, *numeric])
    if t is None or t.num_rows == 0:
        return None
    t = _plain(t)
    out: dict[str, Any] = {"static": {}, "flags": {}}
    for c in numeric:
        v = to_numeric(t.column(c), c, flags=True)
        v = v[~np.isnan(v)]
        out["flags"][c] = [bool(len(v)), bool(np.isin(v, (0.0, 1.0)).all())]
    series = first_row = None
    for c in cols.static:
        typ = t.schema.field(c).type
        if not (pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_decimal(typ)):
            out["static"][c] = {"float": False, "values": np.zeros(0), "lacking": 0, "examples": []}
            continue
        if series is None:   # series of each row, by the shards' pair hash (no text per row)
            h, _, _ = _pair_hash(t.column(cols.sku), t.column(cols.location))
            series, uniq = pd.factorize(h)
            first_row = np.full(len(uniq), t.num_rows, np.int64)
            np.minimum.at(first_row, series, np.arange(t.num_rows))
        v = to_numeric(t.column(c), c)
        miss = np.isnan(v)
        lacking = np.bincount(series, weights=miss, minlength=len(first_row)) > 0
        ok = np.flatnonzero(~miss)
        s_ok, at = np.unique(series[ok], return_index=True)   # each series' first value
        rows = first_row[np.flatnonzero(lacking)[:3]]
        out["static"][c] = {
            "float": bool(pa.types.is_floating(typ) or pa.types.is_decimal(typ)),
            "values": v[ok[at]].astype(np.float64),
            "lacking": int(lacking.sum()),
            "examples": [(_py(t.column(cols.sku)[int(r)].as_py()),
                          _py(t.column(cols.location)[int(r)].as_py())) for r in rows]}
    return out


def _py(v: Any) -> Any:
    return v.item() if hasattr(v, "item") and not isinstance(v, (str, bytes)) else v


def resolve(parts: list[dict[str, Any] | None], columns: ColumnMap, missing_static: str,
            model_spec: dict[str, Any] | None = None) -> dict[str, Any]:
    """The job's choices from every shard's profile (JSON-serialisable, for the manifest).

    Raises :class:`DataError` for a static number missing for some series with
    ``missing_static="error"``, naming the column, how many series lack it and examples.
    ``model_spec``: a saved model's input spec: its static numbers are this job's, and a
    column it has an indicator for is imputed (indicator included) even where nothing is
    missing now.
    """
    if missing_static not in ("error", "impute"):
        raise ValueError(f"missing_static must be 'error' or 'impute', got {missing_static!r}")
    parts = [p for p in parts if p is not None]
    model_reals = set(model_spec["static_reals"]) if model_spec else None
    numbers, fill, imputed = [], {}, {}
    for c in columns.static:
        got = [p["static"][c] for p in parts if c in p["static"]]
        is_number = c in model_reals if model_reals is not None else any(g["float"] for g in got)
        if not is_number:
            continue
        numbers.append(c)
        values = np.concatenate([g["values"] for g in got]) if got else np.zeros(0)
        lacking = sum(g["lacking"] for g in got)
        examples = [e for g in got for e in g["examples"]]
        try:
            examples = sorted(examples)[:3]
        except TypeError:   # ids of mixed types
            examples = sorted(examples, key=lambda e: tuple(map(str, e)))[:3]
        median = float(np.median(values)) if len(values) else 0.0
        if lacking:
            if missing_static == "error":
                raise DataError(f"column '{c}': rule 'a numeric static attribute must not be "
                                f"missing' broken by {lacking} series"
                                f"{examples_text(examples, lacking)} (use --missing-static impute "
                                f"for the median over series plus a missing indicator)")
            fill[c] = median
            imputed[c] = {"series": lacking, "value": median, "examples": examples}
        elif model_reals is not None and c + MISSING_SUFFIX in model_reals:
            fill[c] = median     # the model reads the indicator: it is there, all 0
    flags = [c for c in (p_c for p in parts[:1] for p_c in p["flags"])
             if any(p["flags"][c][0] for p in parts)
             and all(p["flags"][c][1] for p in parts if p["flags"][c][0])]
    return {"static_numbers": numbers, "static_fill": fill, "imputed": imputed, "flags": flags}


def spec_entries(profile: dict[str, Any]) -> dict[str, Any]:
    """The worker spec's share of a resolved profile (build_panel's arguments: every shard
    imputes the same columns with the same values, and adds the same indicators)."""
    return {"static_numbers": list(profile["static_numbers"]),
            "static_fill": dict(profile["static_fill"]), "flags": list(profile["flags"])}


def profile_lines(profile: dict[str, Any]) -> list[str]:
    """What the user is told once per job about the imputed static numbers."""
    out = []
    for c, info in profile.get("imputed", {}).items():
        n = info["series"]
        out.append(f"column '{c}': {n} series without a value"
                   f"{examples_text([tuple(e) for e in info['examples']], n)} get the median "
                   f"over series, {info['value']:,.6g}, and {c}{MISSING_SUFFIX} = 1 "
                   f"(--missing-static impute)")
    return out

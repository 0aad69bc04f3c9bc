"""Running a job's shard tasks on the cluster and keeping the manifest's record of them."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from . import _progress
from ._outputs import JobError, write_manifest

__all__ = ["run_shards", "shard_files_ok", "remove_unrecorded"]

log = logging.getLogger("replenish")


def shard_files_ok(out: Path, rec: dict[str, Any]) -> bool:
    return all((out / f).exists() for f in rec.get("files", {}))


def remove_unrecorded(out: Path, manifest: dict[str, Any], todo: list[int],
                       subs: tuple[str, ...] = ("forecasts", "orders", "exceptions",
                                                "highlights")) -> None:
    """Delete output files of shards about to be (re)done: a shard whose keys moved to fewer
    locations than a crashed attempt wrote must not leave those extra files behind."""
    names = {f"part-{s:05d}.parquet" for s in todo}
    for sub in subs:
        for p in (out / sub).rglob("part-*.parquet") if (out / sub).exists() else ():
            if p.name in names:
                p.unlink()


def run_shards(cl, out: Path, manifest: dict, todo: list[int], task, before: tuple,
               after: tuple, label: str, record: str = "shards") -> None:
    """Run ``task(*before, shard, *after)`` for every shard in ``todo`` (``label`` names the
    stage in the progress display); record each in the manifest (under ``record``)."""
    futs = {cl.submit(task, *before, s, *after, pure=False, retries=2,
                      key=f"shard-{s:05d}-{os.urandom(4).hex()}"): s for s in todo}
    failed: list[str] = []
    done = 0
    for fut, s in _progress.completed(futs, label, unit="shard",
                                      count=lambda r: r["series"], count_unit="series"):
        if fut.status == "error":
            exc = fut.exception()
            msg = str(exc)
            failed.append(msg if msg.startswith(f"shard {s}") else f"shard {s}: {msg}")
            continue
        res = fut.result()
        manifest.setdefault(record, {})[str(s)] = {k: v for k, v in res.items() if k != "shard"}
        write_manifest(out, manifest)
        done += 1
        log.info("shard %d done (%d series, %.1f s) [%d/%d]", s, res["series"], res["seconds"],
                 done, len(todo))
    if failed:
        raise JobError(f"{len(failed)} of {len(todo)} shards failed:\n  " + "\n  ".join(sorted(failed)))

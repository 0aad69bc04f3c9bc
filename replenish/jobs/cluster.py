"""The Dask cluster a job runs on: an embedded LocalCluster, or an existing one.

With dask-cuda installed and GPUs visible, the embedded cluster is a LocalCUDACluster with one
worker per GPU. Otherwise a LocalCluster of single-threaded worker processes (distributed
sets OMP/MKL threads to 1 in each worker, so workers do not oversubscribe the cores).
"""
from __future__ import annotations

import importlib.util
import logging
import os
from contextlib import contextmanager
from typing import Iterator

__all__ = ["connect", "default_n_workers"]

log = logging.getLogger("replenish")


def default_n_workers() -> int:
    """One worker per core, at most 8 (each worker holds a model and one shard's panel)."""
    return max(1, min(os.cpu_count() or 1, 8))


def _n_gpus() -> int:
    if importlib.util.find_spec("dask_cuda") is None:
        return 0
    try:
        from dask_cuda.utils import get_n_gpus
        return int(get_n_gpus())
    except Exception:  # no driver, no NVML: a CPU machine with the extra installed
        return 0


@contextmanager
def connect(scheduler: str | None = None, n_workers: int | None = None,
            memory_limit: str = "auto") -> Iterator["distributed.Client"]:
    """Yield a ``distributed.Client``: to ``scheduler`` if given, else to an embedded cluster."""
    from distributed import Client, LocalCluster

    if scheduler:
        client = Client(scheduler)
        log.info("joined cluster %s (%d workers)", scheduler,
                 len(client.scheduler_info().get("workers", {})))
        try:
            yield client
        finally:
            client.close()
        return
    # The scheduler's HTTP server (health, metrics; the dashboard when bokeh is installed)
    # listens on a free port: a fixed 8787 collides with any other job running (a warning).
    web = {"dashboard_address": ":0", "scheduler_kwargs": {"dashboard": False}}
    if _n_gpus() > 0:
        from dask_cuda import LocalCUDACluster
        cluster = LocalCUDACluster(n_workers=n_workers, threads_per_worker=1, **web)
    else:
        cluster = LocalCluster(n_workers=n_workers or default_n_workers(), threads_per_worker=1,
                               processes=True, memory_limit=memory_limit, **web)
    client = Client(cluster)
    if logging.getLogger("distributed").getEffectiveLevel() >= logging.WARNING:
        # not --verbose: a failed task's error is reported once, by the job, not also as the
        # worker's "Compute Failed" log record with its traceback
        client.register_plugin(_quiet_task_errors())
    log.info("embedded cluster: %d workers", len(cluster.workers))
    try:
        yield client
    finally:
        client.close()
        _close(cluster)


#: Seconds a worker process is given to exit at the end of a job before it is killed.
CLOSE_GRACE_S = 30.0


def _close(cluster) -> None:
    """Close the workers, then the cluster. Each worker process gets ``CLOSE_GRACE_S`` to
    exit (distributed's own close allows 4 s, which a loaded machine exceeds while a worker
    unloads torch: "Worker process still alive after 4.0 seconds, killing" at a normal end)."""
    import asyncio

    async def close_workers() -> None:
        await asyncio.gather(*(w.close(timeout=CLOSE_GRACE_S) for w in list(cluster.workers.values())
                               if hasattr(w, "close")), return_exceptions=True)
    try:
        cluster.sync(close_workers)
    except Exception:   # the cluster's own close below still stops everything
        log.debug("closing the workers one by one failed", exc_info=True)
    cluster.close()


def _drop_compute_failed(record: logging.LogRecord) -> bool:
    """False for a failed task's report and for the cancellation of its sibling tasks."""
    msg = str(record.msg)
    return not (msg.startswith("Compute Failed")
                or (msg.startswith("Async instruction") and "CancelledError" in record.getMessage()))


def _quiet_task_errors():
    """A worker plugin: the worker loggers drop their "Compute Failed" records and the
    cancellations that follow (the job reports the error itself, with the shard or file it
    belongs to), and distributed's other records but critical ones (without --verbose)."""
    from distributed.diagnostics.plugin import WorkerPlugin

    class QuietTaskErrors(WorkerPlugin):
        name = "replenish-quiet-task-errors"

        def setup(self, worker) -> None:
            for name in ("distributed.worker", "distributed.worker.state_machine"):
                logger = logging.getLogger(name)
                if _drop_compute_failed not in logger.filters:
                    logger.addFilter(_drop_compute_failed)
            # nor the workers' own chatter (event loop, garbage collection, memory notes, a
            # heartbeat cut by the scheduler's shutdown): a task's error is the job's to say,
            # and a worker lost for good is said by its nanny, in the job's process
            logging.getLogger("distributed").setLevel(logging.CRITICAL)

    return QuietTaskErrors()

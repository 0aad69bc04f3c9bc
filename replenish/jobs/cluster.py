"""The Dask cluster a job runs on: an embedded one, or an existing one.

Without GPUs: a LocalCluster of single-threaded worker processes (distributed sets OMP/MKL
threads to 1 in each worker, so workers do not oversubscribe the cores).

With GPUs visible (NVML through ctypes: no extra package needed): one GPU worker process
per GPU (``CUDA_VISIBLE_DEVICES`` set to its device, a Dask resource ``GPU=1``) and CPU
worker processes beside them (GPUs hidden). The shard pipeline then runs in three tasks per
shard: read and validate the shard's panel and inventory (any worker), forecast and optimize
(a GPU worker, the only ones with the ``GPU`` resource), write the outputs (any worker), so
staging, shard preparation and writing never queue behind the GPU workers. ``--n-workers``
counts all worker processes: GPU workers first, at most one per GPU; asking for more than
the GPUs gives CPU workers for the rest, and says so. The memory limit holds per worker
process, on both kinds of cluster. :func:`cluster_shape` makes these decisions (tested with
a faked GPU count); dask-cuda is not needed.
"""
from __future__ import annotations

import ctypes
import logging
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

__all__ = ["connect", "default_n_workers", "cluster_shape", "ClusterShape", "visible_gpus",
           "gpu_resources", "GPU_RESOURCE"]

log = logging.getLogger("replenish")

#: The Dask resource a GPU worker holds (one per worker) and a GPU task asks for.
GPU_RESOURCE = "GPU"


def default_n_workers() -> int:
    """One worker per core, at most 8 (each worker holds a model and one shard's panel)."""
    return max(1, min(os.cpu_count() or 1, 8))


def _nvml_device_count() -> int:
    """GPUs the NVIDIA driver reports (0 without a driver); NVML is read through ctypes."""
    for name in ("libnvidia-ml.so.1", "libnvidia-ml.so"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        try:
            if lib.nvmlInit_v2() != 0:
                return 0
            count = ctypes.c_uint(0)
            ok = lib.nvmlDeviceGetCount_v2(ctypes.byref(count)) == 0
            lib.nvmlShutdown()
            return int(count.value) if ok else 0
        except AttributeError:
            return 0
    return 0


def visible_gpus() -> list[str]:
    """Device ids of the GPUs this process may use (``CUDA_VISIBLE_DEVICES`` applied)."""
    count = _nvml_device_count()
    if count == 0:
        return []
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is None:
        return [str(i) for i in range(count)]
    ids = []
    for part in env.split(","):
        part = part.strip()
        if not part or part == "-1":   # CUDA stops at the first invalid entry
            break
        ids.append(part)
    return ids[:count]


@dataclass(frozen=True)
class ClusterShape:
    """What the embedded cluster will be.

    Attributes
    ----------
    gpu_devices : tuple of str
        One GPU worker per entry (its ``CUDA_VISIBLE_DEVICES``); empty: a CPU cluster.
    cpu_workers : int
        Worker processes without a GPU (staging, shard preparation, writing).
    memory_limit : str or int
        Per worker process, as Dask reads it ("auto": the machine's memory shared equally).
    notes : tuple of str
        Decisions worth a log line (a request that was capped).
    """

    gpu_devices: tuple[str, ...]
    cpu_workers: int
    memory_limit: str | int = "auto"
    notes: tuple[str, ...] = field(default=())

    @property
    def n_workers(self) -> int:
        return len(self.gpu_devices) + self.cpu_workers


def cluster_shape(gpus: list[str], n_workers: int | None = None,
                  memory_limit: str | int = "auto", cpu_count: int | None = None) -> ClusterShape:
    """Decide the embedded cluster's workers.

    Parameters
    ----------
    gpus : list of str
        Visible GPU device ids (:func:`visible_gpus`).
    n_workers : int, optional
        Worker processes asked for (``--n-workers``). Default: one per core, at most 8, and
        at least one per GPU plus one CPU worker.
    memory_limit : str or int
        Per worker process ("auto", "4GB", bytes).
    cpu_count : int, optional
        Cores (default ``os.cpu_count()``).
    """
    cores = cpu_count or os.cpu_count() or 1
    if n_workers is not None and n_workers < 1:
        raise ValueError(f"n_workers must be >= 1, got {n_workers}")
    if not gpus:
        return ClusterShape((), n_workers or max(1, min(cores, 8)), memory_limit)
    notes = []
    if n_workers is None:
        n_gpu = len(gpus)
        n_cpu = max(1, min(cores, 8) - n_gpu)
    else:
        n_gpu = min(n_workers, len(gpus))
        n_cpu = n_workers - n_gpu
        if n_workers > len(gpus):
            notes.append(f"{n_workers} workers asked for and {len(gpus)} GPU"
                         f"{'s' if len(gpus) > 1 else ''} visible: {n_gpu} GPU worker"
                         f"{'s' if n_gpu > 1 else ''} (one per GPU: forecast and optimize) and "
                         f"{n_cpu} CPU worker{'s' if n_cpu > 1 else ''} (staging, shard "
                         f"preparation, writing)")
        elif n_cpu == 0:
            notes.append(f"{n_workers} worker{'s' if n_workers > 1 else ''} on "
                         f"{len(gpus)} GPUs: no CPU worker, so staging and writing share the "
                         f"GPU workers (--n-workers {n_gpu + 1} or more adds CPU workers)")
    return ClusterShape(tuple(gpus[:n_gpu]), n_cpu, memory_limit, tuple(notes))


def _per_worker_memory(memory_limit: str | int, n_workers: int) -> int | None:
    from distributed.worker_memory import parse_memory_limit
    # "auto" for one of n single-threaded workers: the machine's memory / n (as LocalCluster)
    return parse_memory_limit(memory_limit, 1, n_workers, logger=log)


#: The scheduler's HTTP server (health, metrics; the dashboard when bokeh is installed) listens
#: on a free port: a fixed 8787 collides with any other job running (a warning).
_WEB = {"dashboard_address": ":0", "scheduler_kwargs": {"dashboard": False}}


def _gpu_cluster(shape: ClusterShape):
    from distributed import Nanny, Scheduler, SpecCluster

    memory = _per_worker_memory(shape.memory_limit, shape.n_workers)
    common = dict(host="127.0.0.1", nthreads=1, memory_limit=memory, dashboard=False,
                  silence_logs=logging.WARN)
    workers = {}
    for i, dev in enumerate(shape.gpu_devices):
        workers[f"gpu-{i}"] = {"cls": Nanny, "options": dict(
            common, name=f"gpu-{i}", resources={GPU_RESOURCE: 1},
            env={"CUDA_VISIBLE_DEVICES": dev})}
    for i in range(shape.cpu_workers):
        # GPUs hidden: a CPU task never opens a CUDA context (device memory) by accident
        workers[f"cpu-{i}"] = {"cls": Nanny, "options": dict(
            common, name=f"cpu-{i}", env={"CUDA_VISIBLE_DEVICES": ""})}
    scheduler = {"cls": Scheduler, "options": dict(host="127.0.0.1", dashboard=False,
                                                   dashboard_address=_WEB["dashboard_address"])}
    return SpecCluster(workers=workers, scheduler=scheduler, silence_logs=logging.WARN)


def gpu_resources(client) -> dict[str, int] | None:
    """``{"GPU": 1}`` when some worker of the cluster holds the GPU resource, else None.

    GPU tasks are submitted with it (they then run on GPU workers only); on a cluster
    without GPU workers (a CPU cluster, or your own dask-cuda cluster, whose workers each
    have a GPU but no resource) tasks go anywhere.
    """
    workers = client.scheduler_info().get("workers", {})
    if any(w.get("resources", {}).get(GPU_RESOURCE) for w in workers.values()):
        return {GPU_RESOURCE: 1}
    return None


@contextmanager
def connect(scheduler: str | None = None, n_workers: int | None = None,
            memory_limit: str | int = "auto",
            gpus: list[str] | None = None) -> Iterator["distributed.Client"]:
    """Yield a ``distributed.Client``: to ``scheduler`` if given, else to an embedded cluster.

    ``gpus``: the GPU device ids to use (default: :func:`visible_gpus`); ``[]`` forces a CPU
    cluster.
    """
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
    shape = cluster_shape(visible_gpus() if gpus is None else list(gpus), n_workers, memory_limit)
    for note in shape.notes:
        log.warning(note)
        print(f"[replenish] {note}", file=sys.stderr, flush=True)
    if shape.gpu_devices:
        cluster = _gpu_cluster(shape)
    else:
        cluster = LocalCluster(n_workers=shape.cpu_workers, threads_per_worker=1,
                               processes=True, memory_limit=memory_limit, **_WEB)
    client = Client(cluster)
    if logging.getLogger("distributed").getEffectiveLevel() >= logging.WARNING:
        # not --verbose: a failed task's error is reported once, by the job, not also as the
        # worker's "Compute Failed" log record with its traceback
        client.register_plugin(_quiet_task_errors())
    log.info("embedded cluster: %d workers (%d with a GPU)", len(cluster.workers),
             len(shape.gpu_devices))
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

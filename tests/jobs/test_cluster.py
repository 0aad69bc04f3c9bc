"""The embedded cluster's shape on GPU machines, decided with a faked GPU count."""
import pytest

from replenish.jobs.cluster import cluster_shape, visible_gpus


def test_no_gpu_is_a_cpu_cluster():
    s = cluster_shape([], None, cpu_count=2)
    assert s.gpu_devices == () and s.cpu_workers == 2 and not s.notes
    assert cluster_shape([], 5, cpu_count=2).cpu_workers == 5
    assert cluster_shape([], None, cpu_count=64).cpu_workers == 8


def test_one_worker_per_gpu_by_default_plus_cpu_workers():
    s = cluster_shape(["0"], None, cpu_count=16)
    assert s.gpu_devices == ("0",) and s.cpu_workers == 7 and not s.notes
    s = cluster_shape(["0", "1", "2", "3"], None, cpu_count=16)
    assert s.gpu_devices == ("0", "1", "2", "3") and s.cpu_workers == 4
    s = cluster_shape(["0"], None, cpu_count=1)     # still one CPU worker for staging
    assert s.n_workers == 2


def test_more_workers_than_gpus_is_capped_with_a_note():
    # `replenish demo` asks for 2 workers; on a one-GPU machine dask-cuda refused that
    s = cluster_shape(["0"], 2, cpu_count=16)
    assert s.gpu_devices == ("0",) and s.cpu_workers == 1
    assert s.notes == ("2 workers asked for and 1 GPU visible: 1 GPU worker (one per GPU: "
                       "forecast and optimize) and 1 CPU worker (staging, shard preparation, "
                       "writing)",)
    s = cluster_shape(["0", "1"], 1, cpu_count=16)  # fewer than the GPUs: that many GPUs
    assert s.gpu_devices == ("0",) and s.cpu_workers == 0 and "no CPU worker" in s.notes[0]
    with pytest.raises(ValueError, match="n_workers"):
        cluster_shape(["0"], 0)


def test_memory_limit_is_passed_per_worker():
    assert cluster_shape(["0"], 3, memory_limit="4GB").memory_limit == "4GB"


def test_visible_gpus_follows_cuda_visible_devices(monkeypatch):
    from replenish.jobs import cluster
    monkeypatch.setattr(cluster, "_nvml_device_count", lambda: 4)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert visible_gpus() == ["0", "1", "2", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert visible_gpus() == ["2", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,-1,3")   # CUDA stops at the invalid entry
    assert visible_gpus() == ["1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert visible_gpus() == []
    monkeypatch.setattr(cluster, "_nvml_device_count", lambda: 0)   # no driver
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert visible_gpus() == []

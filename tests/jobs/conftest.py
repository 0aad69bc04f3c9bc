"""Fixtures shared by the job tests."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def client():
    """A real Dask LocalCluster (2 worker processes, 1 thread each), one per test module."""
    from distributed import Client, LocalCluster
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as c:
        yield c

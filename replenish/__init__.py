"""replenish: demand forecasting (a global TFT) and inventory optimization for millions of
SKU-locations, sharded with Dask, on GPU (CuPy, CUDA torch) or CPU (NumPy, CPU torch).

Python API: :func:`plan`, :func:`train`, :func:`forecast`. Command line: ``replenish --help``.
"""
__version__ = "0.1.0"
__all__ = ["plan", "train", "forecast", "__version__"]


def __getattr__(name):
    # Lazy, so that `import replenish` stays light (no Dask or torch until a job runs).
    if name in ("plan", "train", "forecast"):
        from .jobs import api
        return getattr(api, name)
    raise AttributeError(name)

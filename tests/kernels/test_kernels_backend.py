"""Backend selection: NumPy by default, CuPy only when given CuPy arrays, never imported on the CPU path."""
import subprocess
import sys

import numpy as np

from replenish.kernels import _backend


def test_numpy_inputs_select_numpy():
    assert _backend.get_xp(np.zeros(3), [1.0], None, 2.0) is np
    assert _backend.compute_dtype(np, np.zeros(2, np.float32)) == np.float32
    assert _backend.compute_dtype(np, np.zeros(2, np.int64)) == np.float64


def test_cpu_path_never_imports_cupy():
    code = (
        "import sys, numpy as np\n"
        "from replenish.kernels import plan_orders\n"
        "q = np.sort(np.random.default_rng(0).uniform(0, 9, (20, 7, 3)), axis=-1)\n"
        "for m in ('sample', 'normal'):\n"
        "    plan_orders(np.array([.1, .5, .9]), q, on_hand=5.0, on_order=0.0, lead_time=2.0, method=m,\n"
        "                n_samples=50)\n"
        "assert 'cupy' not in sys.modules, 'cupy imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)

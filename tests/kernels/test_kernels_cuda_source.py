"""The CUDA C of every CuPy kernel compiles for an explicit architecture (sm_90), without a GPU.

On a machine without a device CuPy never compiles its kernels, so a typo in a kernel body
or its preamble would only surface on the first GPU run. Here each kernel is compiled with
nvcc (or NVRTC) in float and double, as CuPy instantiates it for float32 and float64 inputs.
Skipped, with the reason, where neither compiler exists.
"""
import pytest

from cuda_compile import CompileError, compile_cuda, compiler, elementwise_source
from replenish.kernels import _cuda

KIND, DETAIL = compiler()
pytestmark = pytest.mark.skipif(KIND is None, reason=f"no CUDA compiler: {DETAIL}")


@pytest.mark.parametrize("ctype", ["float", "double"])
@pytest.mark.parametrize("name", sorted(_cuda.ELEMENTWISE))
def test_elementwise_kernel_compiles(name, ctype):
    inputs, outputs, body = _cuda.ELEMENTWISE[name]
    how = compile_cuda(elementwise_source(name, inputs, outputs, body, _cuda.PREAMBLE, ctype))
    assert how.endswith("sm_90")


def test_a_broken_kernel_does_not_compile():
    # the check above has teeth: an undeclared function or a type error is reported
    inputs, outputs, body = _cuda.ELEMENTWISE["replenish_normal_policy"]
    broken = body.replace("rp_ndtri", "rp_undefined")
    with pytest.raises(CompileError, match="rp_undefined|identifier"):
        compile_cuda(elementwise_source("broken", inputs, outputs, broken, _cuda.PREAMBLE, "float"))

"""Compile CUDA C for a GPU architecture without a GPU: nvcc, else NVRTC (loaded with ctypes).

Used by ``test_kernels_cuda_source.py``. ``elementwise_source`` writes out the loop CuPy's
``ElementwiseKernel`` wraps around a kernel body (the type placeholder as a typedef ahead of
the preamble, inputs read by value, outputs bound by reference, a grid-stride loop), so the
body and the preamble are compiled as CuPy would compile them on a device.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
import shutil
import site
import subprocess
import sys
import tempfile

ARCH = "sm_90"   # Hopper (the H100/H200 the GPU runs use)


def _params(decl: str) -> list[tuple[str, str]]:
    out = []
    for part in decl.split(","):
        typ, name = part.split()
        out.append((typ, name))
    return out


def elementwise_source(name: str, inputs: str, outputs: str, body: str, preamble: str,
                       ctype: str) -> str:
    """Standalone CUDA C of an ElementwiseKernel instantiated with ``T = ctype``."""
    ins, outs = _params(inputs), _params(outputs)
    args = [f"const {t}* __restrict__ _raw_{n}" for t, n in ins]
    args += [f"{t}* __restrict__ _raw_{n}" for t, n in outs]
    reads = "\n".join(f"    const {t} {n} = _raw_{n}[i];" for t, n in ins)
    binds = "\n".join(f"    {t} &{n} = _raw_{n}[i];" for t, n in outs)
    return (f"typedef {ctype} T;\n{preamble}\n"
            f'extern "C" __global__ void {name}({", ".join(args)}, long long _n) {{\n'
            f"  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < _n;\n"
            f"       i += (long long)blockDim.x * gridDim.x) {{\n{reads}\n{binds}\n"
            f"    {body};\n  }}\n}}\n")


class CompileError(RuntimeError):
    """The CUDA C did not compile; the message holds the compiler's log."""


def _nvrtc_library() -> str | None:
    names = []
    for base in [*site.getsitepackages(), site.getusersitepackages(), sys.prefix]:
        names += glob.glob(os.path.join(base, "nvidia", "*", "lib", "libnvrtc.so*"))
        names += glob.glob(os.path.join(base, "nvidia", "cu*", "lib", "libnvrtc.so*"))
    names += glob.glob("/usr/local/cuda*/lib*/libnvrtc.so*")
    found = ctypes.util.find_library("nvrtc")
    names = [n for n in names if "builtins" not in n and ".alt." not in n] + ([found] if found else [])
    return names[0] if names else None


def compiler() -> tuple[str | None, str]:
    """``(kind, detail)``: ``("nvcc", path)``, ``("nvrtc", library)`` or ``(None, why not)``."""
    nvcc = shutil.which("nvcc")
    if nvcc:
        return "nvcc", nvcc
    lib = _nvrtc_library()
    if lib:
        return "nvrtc", lib
    return None, ("neither nvcc (the CUDA toolkit) on PATH nor an NVRTC library (the "
                  "nvidia-cuda-nvrtc wheel or /usr/local/cuda/lib64) was found")


def compile_cuda(source: str, arch: str = ARCH) -> str:
    """Compile ``source`` for ``arch``; return which compiler did it. Raises CompileError."""
    kind, detail = compiler()
    if kind == "nvcc":
        with tempfile.TemporaryDirectory() as d:
            src = os.path.join(d, "kernel.cu")
            with open(src, "w") as fh:
                fh.write(source)
            p = subprocess.run([detail, f"-arch={arch}", "-cubin", "-o", os.path.join(d, "k.cubin"),
                                src], capture_output=True, text=True)
            if p.returncode:
                raise CompileError(p.stdout + p.stderr)
        return f"nvcc {arch}"
    if kind == "nvrtc":
        # NVRTC loads its builtins library by name at compile time: load it first, from the
        # same folder, so that a wheel's copy is found without LD_LIBRARY_PATH
        for builtins in sorted(glob.glob(os.path.join(os.path.dirname(detail),
                                                      "libnvrtc-builtins.so*"))):
            if ".alt." not in builtins:
                ctypes.CDLL(builtins, mode=ctypes.RTLD_GLOBAL)
        lib = ctypes.CDLL(detail)
        prog = ctypes.c_void_p()
        rc = lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), b"kernel.cu", 0, None, None)
        if rc:
            raise CompileError(f"nvrtcCreateProgram failed ({rc})")
        opts = [f"--gpu-architecture={arch}".encode()]
        arr = (ctypes.c_char_p * len(opts))(*opts)
        rc = lib.nvrtcCompileProgram(prog, len(opts), arr)
        size = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetProgramLog(prog, log)
        lib.nvrtcDestroyProgram(ctypes.byref(prog))
        if rc:
            raise CompileError(log.value.decode(errors="replace"))
        return f"nvrtc {arch}"
    raise CompileError(detail)

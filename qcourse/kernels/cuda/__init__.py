"""The CUDA C W4A16 GEMV: sources in this folder, compiled at first use on a GPU machine.

``w4a16_gemv.cu`` holds the kernel and needs only the CUDA toolkit (so it can be compiled, and
its arithmetic run on the host, without a GPU); ``torch_binding.cu`` wraps it for PyTorch.
:func:`load` compiles both with ``torch.utils.cpp_extension.load_inline`` (cached by PyTorch
under ``~/.cache/torch_extensions``; the first call takes a minute).
"""
from __future__ import annotations

import functools
import pathlib

import torch

from ..checks import PACK, check_w4a16

SOURCE_DIR = pathlib.Path(__file__).parent
KERNEL_SOURCE = SOURCE_DIR / "w4a16_gemv.cu"
BINDING_SOURCE = SOURCE_DIR / "torch_binding.cu"
_DECLARATION = ("torch::Tensor w4a16_gemv(torch::Tensor x, torch::Tensor qweight, "
                "torch::Tensor scales, torch::Tensor zeros, int64_t group_size, int64_t split_k, "
                "int64_t stream);")


def source() -> str:
    """The kernel's CUDA source, as a string (for reading, or for nvcc)."""
    return KERNEL_SOURCE.read_text()


@functools.cache
def load(verbose: bool = False):
    """Compile (first call) and import the extension; returns the module with ``w4a16_gemv``."""
    if not torch.cuda.is_available():
        raise RuntimeError("the CUDA kernel needs a CUDA GPU and a CUDA build of torch; "
                           "use qcourse.kernels.w4a16_reference on CPU")
    from torch.utils.cpp_extension import load_inline  # imports setuptools: only when needed
    return load_inline(name="qcourse_w4a16_gemv", cpp_sources=[_DECLARATION],
                       cuda_sources=[source(), BINDING_SOURCE.read_text()],
                       functions=["w4a16_gemv"], extra_cuda_cflags=["-O3"],
                       verbose=verbose)


def w4a16_gemv(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor,
               group_size: int, split_k: int | None = None) -> torch.Tensor:
    """``y = x · W'ᵀ`` with the CUDA kernel (same inputs and result as ``w4a16_matmul``).

    One thread per output column and K slice; meant for few rows (decode), correct for any M.
    ``split_k`` slices of K (default: enough blocks for 4 per SM).
    """
    k, n = check_w4a16(x, qweight, scales, zeros, group_size)
    if x.device.type != "cuda":
        raise ValueError(f"the CUDA kernel needs CUDA tensors, got {x.device}")
    lead = x.shape[:-1]
    x2 = x.reshape(-1, k).contiguous()
    m = x2.shape[0]
    if split_k is None:
        blocks = -(-n // 128) * max(m, 1)
        sms = torch.cuda.get_device_properties(x.device).multi_processor_count
        split_k = -(-4 * sms // blocks)
    split_k = max(1, min(split_k, k // PACK))
    scales, zeros = scales.to(x.dtype).contiguous(), zeros.to(x.dtype).contiguous()
    stream = torch.cuda.current_stream(x.device).cuda_stream
    y = load().w4a16_gemv(x2, qweight.contiguous(), scales, zeros, group_size, split_k, stream)
    return y.to(x.dtype).reshape(*lead, n)

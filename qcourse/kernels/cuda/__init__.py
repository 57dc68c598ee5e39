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

from ..checks import check_group_size, check_w4a16

CHUNK = 32         # inputs per 128-bit load in the kernel: a group must hold whole chunks
WARPS_PER_BLOCK, ROWS = 4, 8

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

    One warp per output and K slice, up to 8 rows of x per warp: meant for decoding (few rows),
    correct for any M. float16 or bfloat16 activations; the group size a multiple of 32.
    ``split_k`` slices of K (default: about 8 blocks of 4 warps per SM).
    """
    k, n = check_w4a16(x, qweight, scales, zeros, group_size)
    check_group_size(group_size, CHUNK, " for the CUDA kernel (one 128-bit load = 32 inputs "
                     "that share one scale)")
    if x.dtype not in (torch.float16, torch.bfloat16):
        raise TypeError(f"the CUDA kernel computes in half2/bfloat162: x must be float16 or "
                        f"bfloat16, got {x.dtype}")
    if x.device.type != "cuda":
        raise ValueError(f"the CUDA kernel needs CUDA tensors, got {x.device}")
    lead = x.shape[:-1]
    x2 = _aligned(x.reshape(-1, k))
    m = x2.shape[0]
    chunks = k // CHUNK
    if split_k is None:
        blocks = -(-n // WARPS_PER_BLOCK) * -(-max(m, 1) // ROWS)
        sms = torch.cuda.get_device_properties(x.device).multi_processor_count
        split_k = -(-8 * sms // blocks)
    split_k = max(1, min(split_k, chunks))
    scales, zeros = scales.to(x.dtype).contiguous(), zeros.to(x.dtype).contiguous()
    stream = torch.cuda.current_stream(x.device).cuda_stream
    y = load().w4a16_gemv(x2, _aligned(qweight), scales, zeros, group_size, split_k, stream)
    return y.to(x.dtype).reshape(*lead, n)


def _aligned(t: torch.Tensor) -> torch.Tensor:
    """Contiguous and 16-byte aligned (the kernel's 128-bit loads need both)."""
    t = t.contiguous()
    return t if t.data_ptr() % 16 == 0 else t.clone()

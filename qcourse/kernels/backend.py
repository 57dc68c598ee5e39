"""Where the course's kernels run: one decision, made here, for the package and every notebook.

    CUDA available  ->  the Triton kernels are compiled for the GPU, the CUDA C kernel can be built,
                        tensors go to "cuda" and timings mean something
    no CUDA         ->  the Triton kernels run in Triton's CPU interpreter (numpy executing the
                        tiles: exact, slow, timings meaningless); tensors stay on "cpu"

Triton reads ``TRITON_INTERPRET`` when a kernel is *defined* (at import), so on a CPU the
variable must be set before triton is first imported. :func:`device` sets it; call it before
anything imports triton (``import qcourse`` and ``import qcourse.kernels`` do not).
A ``TRITON_INTERPRET=1`` already set by the user wins, on a GPU machine too.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import sys

import torch

_interpreting_twins = 0  # > 0 while qcourse.kernels.traffic runs compiled kernels interpreted


@dataclasses.dataclass(frozen=True)
class Backend:
    device: str          # "cuda" or "cpu": where the kernels' tensors live
    interpreted: bool    # True: Triton kernels run in its CPU interpreter
    description: str     # one line for a notebook: the GPU's name, or the interpreter

    @property
    def gpu(self) -> bool:
        """Kernels run (and can be timed) on a GPU."""
        return self.device == "cuda"


def interpret_env() -> bool:
    """Whether ``TRITON_INTERPRET`` asks for Triton's interpreter."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def interpreting() -> bool:
    """Whether Triton kernels launched now run in the interpreter: ``TRITON_INTERPRET`` is set,
    or :mod:`qcourse.kernels.traffic` is counting (it interprets compiled kernels on CPU)."""
    return interpret_env() or _interpreting_twins > 0


@contextlib.contextmanager
def interpreting_twins():
    """Within the block, :func:`interpreting` is True (used by the byte counter only)."""
    global _interpreting_twins
    _interpreting_twins += 1
    try:
        yield
    finally:
        _interpreting_twins -= 1


def device(cuda_available: bool | None = None) -> Backend:
    """Decide where the kernels run (``cuda_available``: None asks torch) and prepare for it.

    On a CPU this sets ``TRITON_INTERPRET=1``; if triton was already imported without it, its
    kernels are compiled-mode objects that cannot run here, and a RuntimeError says to restart
    and call this first."""
    if cuda_available is None:
        cuda_available = torch.cuda.is_available()
    if interpret_env():
        return Backend("cpu", True, "the CPU (Triton interpreter, TRITON_INTERPRET=1 was set)")
    if cuda_available:
        return Backend("cuda", False, torch.cuda.get_device_name())
    if "triton" in sys.modules:
        raise RuntimeError("triton was imported before qcourse.kernels.device() could set "
                           "TRITON_INTERPRET=1, so its kernels cannot run on this CPU: restart "
                           "the Python kernel and call qcourse.kernels.device() before anything "
                           "imports triton")
    os.environ["TRITON_INTERPRET"] = "1"
    return Backend("cpu", True, "the CPU (Triton interpreter)")

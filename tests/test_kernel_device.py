"""qcourse.kernels.device(): the one place that decides whether the kernels run on the GPU or in
Triton's CPU interpreter (notebook 07 and the package ask it), tested without a GPU."""
import os
import subprocess
import sys

import pytest
import torch

from qcourse.kernels import backend, device


@pytest.fixture
def fresh(monkeypatch):
    """No TRITON_INTERPRET and no triton imported yet, as in a fresh notebook kernel (setenv
    first, so that the variable device() sets is undone after the test)."""
    monkeypatch.setenv("TRITON_INTERPRET", "")
    monkeypatch.delenv("TRITON_INTERPRET")
    monkeypatch.delitem(sys.modules, "triton", raising=False)
    return monkeypatch


def test_with_cuda_the_kernels_are_compiled_for_the_gpu(fresh):
    fresh.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA Tesla T4")
    chosen = device(cuda_available=True)
    assert chosen == backend.Backend("cuda", False, "NVIDIA Tesla T4") and chosen.gpu
    assert "TRITON_INTERPRET" not in os.environ


def test_without_cuda_the_interpreter_is_switched_on(fresh):
    chosen = device(cuda_available=False)
    assert (chosen.device, chosen.interpreted, chosen.gpu) == ("cpu", True, False)
    assert os.environ["TRITON_INTERPRET"] == "1" and backend.interpreting()


def test_torch_is_asked_when_not_told(fresh):
    fresh.setattr(torch.cuda, "is_available", lambda: False)
    assert device().interpreted


def test_too_late_on_a_cpu_says_to_restart(fresh):
    fresh.setitem(sys.modules, "triton", object())
    with pytest.raises(RuntimeError, match="restart"):
        device(cuda_available=False)
    assert "TRITON_INTERPRET" not in os.environ


def test_an_explicit_interpret_request_wins_on_a_gpu_machine(fresh):
    fresh.setenv("TRITON_INTERPRET", "1")
    chosen = device(cuda_available=True)
    assert chosen.device == "cpu" and chosen.interpreted


def test_a_fresh_process_on_this_cpu_runs_the_kernels_interpreted():
    code = ("import torch; from qcourse import kernels; b = kernels.device(); "
            "from triton.runtime.interpreter import InterpretedFunction as I; "
            "assert isinstance(kernels.triton_w4a16.w4a16_gemv_kernel, I); "
            "x, w = torch.randn(1, 64), torch.randn(16, 64); p = kernels.prepare_w4a16(w, 32); "
            "y = kernels.w4a16_matmul(x, *p, group_size=32); "
            "assert torch.allclose(y, kernels.w4a16_reference(x, *p, group_size=32), atol=1e-4);"
            "print(b.description)")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["CUDA_VISIBLE_DEVICES"] = ""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.stdout.strip() == "the CPU (Triton interpreter)", result.stderr[-2000:]

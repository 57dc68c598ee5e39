"""The byte counter (qcourse.kernels.traffic): exact on hand-written kernels whose traffic is known,
sampling equal to counting every program, and the W4A16 kernels' requested bytes (the redesign
asks for each weight, scale and zero once; the first kernels did not)."""
import os

os.environ["TRITON_INTERPRET"] = "1"  # before anything imports triton

import subprocess
import sys
import textwrap

import pytest
import torch

from qcourse.kernels import traffic
from qcourse.kernels.w4a16_traffic import random_operands, requested_bytes

triton = pytest.importorskip("triton")
tl = pytest.importorskip("triton.language")


@triton.jit
def scale_kernel(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
    """y[i] = 2 x[i] for i < n: loads and stores each element once, masked past n."""
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(y_ptr + i, 2 * tl.load(x_ptr + i, mask=i < n), mask=i < n)


@triton.jit
def repeat_kernel(x_ptr, y_ptr, BLOCK: tl.constexpr, REPEAT: tl.constexpr):
    """Every element of y reads x[i // REPEAT]: each x address is asked for REPEAT times."""
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(y_ptr + i, tl.load(x_ptr + i // REPEAT))


@triton.jit
def sum_kernel(x_ptr, total_ptr, BLOCK: tl.constexpr):
    """Adds a block of x into one float with an atomic: a read and a write per program."""
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.atomic_add(total_ptr, tl.sum(tl.load(x_ptr + i), axis=0))
    scale = tl.load(total_ptr + 1)                                      # one scalar load
    tl.store(total_ptr + 2, scale)


def launch_scale(x, block=64):
    y = torch.empty_like(x)
    scale_kernel[(triton.cdiv(x.numel(), block),)](x, y, x.numel(), BLOCK=block)
    return y


@pytest.mark.parametrize("dtype,n", [(torch.float32, 100), (torch.float16, 64), (torch.int8, 1)])
def test_a_masked_copy_asks_for_each_element_once(dtype, n):
    x = torch.arange(n).to(dtype)
    counted = traffic.measure(launch_scale, x)
    size = n * x.element_size()                                        # the masked tail is free
    assert counted.loaded == counted.loaded_from(x) == size
    assert counted.stored == counted.stored_to(counted.result) == size
    assert counted.stored_to(x) == counted.loaded_from(counted.result) == 0
    assert torch.equal(counted.result, 2 * x)
    (launch,) = counted.launches
    assert (launch.kernel, launch.grid, launch.programs_run) == \
        ("scale_kernel", (triton.cdiv(n, 64), 1, 1), triton.cdiv(n, 64))


def test_repeated_addresses_count_each_time():
    x, y = torch.arange(32, dtype=torch.float32), torch.empty(256)
    counted = traffic.measure(lambda: repeat_kernel[(4,)](x, y, BLOCK=64, REPEAT=8))
    assert counted.loaded_from(x) == 8 * x.nbytes and counted.stored_to(y) == y.nbytes


def test_atomics_count_as_a_read_and_a_write():
    x, total = torch.ones(256), torch.zeros(3)
    counted = traffic.measure(lambda: sum_kernel[(4,)](x, total, BLOCK=64))
    assert total[0] == 256
    assert counted.loaded_from(x) == x.nbytes
    assert counted.loaded_from(total) == 4 * (4 + 4) and counted.stored_to(total) == 4 * (4 + 4)


def test_sampled_programs_stand_for_the_rest():
    assert traffic.program_weight((0, 0, 0), (1, 1, 1)) == 1
    assert [traffic.program_weight((i,), (5,)) for i in range(5)] == [1, 3, 0, 0, 1]
    assert [traffic.program_weight((i,), (2,)) for i in range(2)] == [1, 1]
    assert sum(traffic.program_weight((i, j), (7, 3)) for i in range(7) for j in range(3)) == 21
    x = torch.arange(1000, dtype=torch.float32)
    full, sampled = traffic.measure(launch_scale, x), traffic.estimate(launch_scale, x)
    assert (sampled.loaded, sampled.stored) == (full.loaded, full.stored) == (4000, 4000)
    assert sampled.result is None and sampled.launches[0].programs_run == 3


def test_attribution_refuses_part_of_a_tensor():
    x = torch.arange(100, dtype=torch.float32)
    counted = traffic.measure(launch_scale, x)
    with pytest.raises(ValueError, match="partly covers"):
        counted.loaded_from(x[:50])
    assert counted.loaded_from(torch.zeros(3)) == 0                    # untouched memory
    with pytest.raises(TypeError):
        counted.loaded_from(x.numpy())


def test_measurements_do_not_nest_and_leave_triton_as_it_was():
    from triton.runtime import interpreter
    x = torch.ones(8)
    with pytest.raises(RuntimeError, match="do not nest"):
        traffic.measure(lambda: traffic.measure(launch_scale, x))
    assert "create_masked_load" not in vars(interpreter.interpreter_builder)
    assert torch.equal(launch_scale(x), 2 * x)                          # runs uncounted again


def test_counts_compiled_kernels_too():
    """On a GPU machine triton is imported without the interpreter: kernels are compiled-mode
    objects. The counter runs an interpreted twin of each, on CPU tensors."""
    code = textwrap.dedent("""
        import os, torch
        os.environ.pop("TRITON_INTERPRET", None)
        from qcourse.kernels import traffic, triton_w4a16
        from qcourse.kernels.w4a16_traffic import random_operands
        from triton.runtime.jit import JITFunction
        assert isinstance(triton_w4a16.w4a16_gemv_kernel, JITFunction)
        qweight, scales, zeros, x = random_operands(1, 96, 256, 64)
        counted = traffic.measure(triton_w4a16.w4a16_matmul, x, qweight, scales, zeros, 64)
        assert counted.loaded_from(qweight) == qweight.nbytes
        assert counted.result.shape == (1, 96)
        print("ok")
    """)
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.stdout.strip() == "ok", result.stderr[-2000:]


# -- the W4A16 kernels ------------------------------------------------------------------------------

@pytest.mark.parametrize("kernel", ["old", "new"])
@pytest.mark.parametrize("m,n,k,g", [(1, 200, 1024, 64), (3, 72, 512, 32), (16, 136, 768, 128),
                                     (40, 72, 512, 128)])
def test_sampling_equals_counting_every_program(kernel, m, n, k, g):
    """Mid-size shapes with partial tiles and uneven K slices: the estimate is exact."""
    full = requested_bytes(kernel, m, n, k, g, sms=4, sample=False)
    sampled = requested_bytes(kernel, m, n, k, g, sms=4, sample=True)
    assert sampled.parts == full.parts
    assert "programs run" in sampled.launches[0]


@pytest.mark.parametrize("m", [1, 2, 7, 16])
@pytest.mark.parametrize("g", [32, 64, 128])
def test_the_new_kernels_ask_for_each_weight_byte_once(m, g):
    from qcourse.kernels import triton_w4a16
    n, k = 72, 4 * g
    qweight, scales, zeros, x = random_operands(m, n, k, g)
    configs = triton_w4a16.candidate_configs(m, n, k, g, sms=4)
    for config in {(c.block_n, c.split_k): c for c in configs}.values():  # tiles and grid
        counted = traffic.measure(triton_w4a16.w4a16_matmul, x, qweight, scales, zeros, g,
                                  config=config)
        for t in (qweight, scales, zeros):
            assert counted.loaded_from(t) == t.nbytes, config
        blocks = triton.cdiv(n, config.block_n)
        assert counted.loaded_from(x) == blocks * x.nbytes          # once per block of outputs


def test_the_old_kernels_redundancy_as_the_issue_describes_it():
    gemv = requested_bytes("old", 1, 256, 1024, 128, sms=4, sample=False).parts
    assert gemv["qweight"] == (131072, 131072)                         # each word once...
    assert gemv["scales"][0] == 16 * gemv["scales"][1]                 # ...a scale per word
    gemm = requested_bytes("old", 16, 256, 1024, 128, sms=4, sample=False).parts
    assert gemm["qweight"][0] == 8 * gemm["qweight"][1]                # a word per nibble row
    assert gemm["zeros"][0] == 128 * gemm["zeros"][1]                  # a zero per weight
    bytes_per_weight = sum(gemm[p][0] for p in ("qweight", "scales", "zeros")) / (256 * 1024)
    assert bytes_per_weight == 8                                       # "about 8 bytes"


def test_requested_bytes_rejects_unknown_kernels():
    with pytest.raises(ValueError, match="old"):
        requested_bytes("fast", 1, 8, 64, 32)

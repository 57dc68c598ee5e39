"""Tests of qcourse.kernels: the Triton kernels run in Triton's CPU interpreter and must match
the PyTorch references; the CUDA source compiles with nvcc and its arithmetic, run on the host,
matches too; bad input fails before any launch; a 4-bit qcourse-tiny runs through the kernels."""
import os

os.environ["TRITON_INTERPRET"] = "1"  # before anything imports triton (qcourse imports it lazily)

import pathlib
import shutil
import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qcourse import kernels
from qcourse.kernels import cuda as kernels_cuda
from qcourse.pack import pack_int32
from qcourse.quant import dequantize, quantize

triton = pytest.importorskip("triton")

from qcourse.kernels import w4a16_matmul, w8a8_matmul  # noqa: E402  (after TRITON_INTERPRET)

DTYPES = (torch.float16, torch.bfloat16, torch.float32)
EPS = {torch.float16: 2**-10, torch.bfloat16: 2**-7, torch.float32: 2**-20}


def assert_matches(got: torch.Tensor, expected: torch.Tensor, bound: torch.Tensor) -> None:
    """Equal up to summation order: a couple of output-dtype roundings of the largest sum."""
    assert got.dtype == expected.dtype and got.shape == expected.shape
    tol = 2 * EPS[expected.dtype] * bound.max().item() + 1e-5
    err = (got.float() - expected.float()).abs().max().item()
    assert err <= tol, f"max error {err} > {tol}"


def w4_case(m, n, k, g, dtype, seed=0, scale_dtype=torch.float16):
    gen = torch.Generator().manual_seed(seed)
    weight = torch.randn(n, k, generator=gen)
    x = torch.randn(m, k, generator=gen).to(dtype)
    return x, kernels.prepare_w4a16(weight, g, dtype=scale_dtype), weight


# -- the packed layout ----------------------------------------------------------------------------

def test_prepare_w4a16_layout_against_quant_and_pack():
    weight = torch.randn(24, 64, generator=torch.Generator().manual_seed(1))
    qweight, scales, zeros = kernels.prepare_w4a16(weight, 32)
    assert (qweight.dtype, tuple(qweight.shape)) == (torch.int32, (24, 8))
    assert scales.dtype == zeros.dtype == torch.float16 and tuple(scales.shape) == (2, 24)
    q, scale, zero = quantize(weight, 4, symmetric=False, granularity="group", group_size=32)
    # word i of row n holds q[n, 8i + j] in nibble j: check one word by hand
    word = int(qweight[5, 3]) & 0xFFFFFFFF
    assert [(word >> (4 * j)) & 0xF for j in range(8)] == q[5, 24:32].tolist()
    expected = dequantize(q, scale, zero, group_size=32)
    assert torch.allclose(kernels.dequantize_w4a16(qweight, scales, zeros, 32), expected,
                          atol=scale.max().item() * 2**-10 * 16)  # fp16 scales round slightly
    assert torch.equal(zeros.float(), zero.t())


# -- Triton W4A16 against the reference -----------------------------------------------------------

# N not a multiple of the tiles (BLOCK_N 64/128), K not a multiple of the largest step (128) nor
# of the K slices (the interpreter's default launch splits K unevenly); M on both paths (the
# GEMV at M = 1, the GEMM above, odd M, M across the 16- and 32-row tiles).
W4_SHAPES = [(m, n, k, g) for m in (1, 3, 16, 17, 33)
             for (n, k, g) in ((96, 160, 32), (72, 192, 64), (136, 384, 128), (40, 640, 64))]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("m,n,k,g", W4_SHAPES)
def test_w4a16_matches_reference(m, n, k, g, dtype):
    x, (qweight, scales, zeros), _ = w4_case(m, n, k, g, dtype, seed=m * 1000 + n)
    y = w4a16_matmul(x, qweight, scales, zeros, g)
    expected = kernels.w4a16_reference(x, qweight, scales, zeros, g)
    bound = x.float().abs() @ kernels.dequantize_w4a16(qweight, scales, zeros, g).abs().t()
    assert_matches(y, expected, bound)


def test_w4a16_approximates_the_float_matmul():
    """End to end: the kernel's output is x·Wᵀ up to the 4-bit quantization error, and the
    reference really is x·dequantize(quantize(W))ᵀ (independent of the packed layout)."""
    x, (qweight, scales, zeros), weight = w4_case(5, 64, 256, 64, torch.float32, seed=3)
    q, scale, zero = quantize(weight, 4, symmetric=False, granularity="group", group_size=64)
    w_hat = dequantize(q, scale.half().float(), zero, group_size=64)
    y = w4a16_matmul(x, qweight, scales, zeros, 64)
    assert torch.allclose(y, x @ w_hat.t(), atol=1e-4, rtol=1e-4)
    rel = (y - x @ weight.t()).norm() / (x @ weight.t()).norm()
    assert 0.02 < rel < 0.2  # 4-bit error: present, but small


@pytest.mark.parametrize("m", [1, 2, 20], ids=["gemv", "gemm16", "gemm32"])
@pytest.mark.parametrize("split_k", [1, 2, 3, 5])
def test_w4a16_split_k_gives_the_same_result(m, split_k):
    x, (qweight, scales, zeros), _ = w4_case(m, 40, 640, 64, torch.float32, seed=7)
    expected = kernels.w4a16_reference(x, qweight, scales, zeros, 64)
    y = w4a16_matmul(x, qweight, scales, zeros, 64, split_k=split_k)
    assert torch.allclose(y, expected, atol=1e-4, rtol=1e-5)


def test_w4a16_scales_in_activation_dtype_and_batched_input():
    x, (qweight, scales, zeros), _ = w4_case(6, 48, 128, 32, torch.bfloat16, seed=4,
                                             scale_dtype=torch.bfloat16)
    x3 = x.reshape(2, 3, 128)
    y = w4a16_matmul(x3, qweight, scales, zeros, 32)
    assert y.shape == (2, 3, 48) and y.dtype == torch.bfloat16
    expected = kernels.w4a16_reference(x, qweight, scales, zeros, 32)
    assert_matches(y.reshape(6, 48), expected, expected.float().abs() + 1)


def test_w4a16_extreme_codes_and_zero_points():
    """All-0 and all-15 codes, zero points at both ends: the sign bit of the int32 word is set
    when the top nibble is >= 8, so a signed shift without the mask would go wrong."""
    k, n, g = 64, 16, 32
    q = torch.tensor([0, 15, 8, 7] * (k * n // 4), dtype=torch.uint8).reshape(n, k)
    qweight = pack_int32(q, 4, dim=1)
    scales = torch.full((k // g, n), 0.5, dtype=torch.float16)
    zeros = torch.tensor([[0.0] * (n // 2) + [15.0] * (n // 2)] * (k // g), dtype=torch.float16)
    expected = ((q.float() - zeros.float().t().repeat_interleave(g, 1)) * 0.5).sum(1)
    for m in (1, 2):                                                   # GEMV and GEMM
        y = w4a16_matmul(torch.ones(m, k), qweight, scales, zeros, g)
        assert torch.equal(y, expected.expand(m, n))


@settings(max_examples=8, deadline=None)
@given(m=st.integers(1, 20), n_blocks=st.integers(1, 6), groups=st.integers(1, 4),
       g=st.sampled_from([32, 64]), dtype=st.sampled_from(DTYPES), seed=st.integers(0, 99))
def test_w4a16_property(m, n_blocks, groups, g, dtype, seed):
    n, k = 8 * n_blocks, g * groups
    x, (qweight, scales, zeros), _ = w4_case(m, n, k, g, dtype, seed=seed)
    y = w4a16_matmul(x, qweight, scales, zeros, g)
    expected = kernels.w4a16_reference(x, qweight, scales, zeros, g)
    bound = x.float().abs() @ kernels.dequantize_w4a16(qweight, scales, zeros, g).abs().t()
    assert_matches(y, expected, bound)


def distinct_launches(configs):
    """One config per grid and tiles: num_warps and num_stages change nothing in the
    interpreter (they are the compiler's business)."""
    return list({(c.block_m, c.block_n, c.block_k, c.split_k): c for c in configs}.values())


@pytest.mark.parametrize("m,g", [(1, 32), (1, 128), (5, 64), (16, 128), (40, 32)])
def test_every_autotuning_candidate_is_correct(m, g):
    """benchmarks/kernels.py times the candidates and keeps the fastest: each must be right."""
    from qcourse.kernels.triton_w4a16 import candidate_configs
    x, (qweight, scales, zeros), _ = w4_case(m, 72, 4 * g, g, torch.float32, seed=m + g)
    expected = kernels.w4a16_reference(x, qweight, scales, zeros, g)
    configs = candidate_configs(m, 72, 4 * g, g, sms=2)
    assert len(configs) > 4 and len(set(configs)) == len(configs)
    for config in distinct_launches(configs):
        y = w4a16_matmul(x, qweight, scales, zeros, g, config=config)
        assert torch.allclose(y, expected, atol=1e-4, rtol=1e-5), config


def test_default_config_fills_the_gpu_with_k_slices():
    from qcourse.kernels.triton_w4a16 import default_config
    decode = default_config(1, 4096, 4096, 128, sms=132)          # 32 blocks of 128 outputs
    assert (decode.block_m, decode.split_k) == (1, 17)            # ~4 programs per SM
    assert default_config(16, 4096, 4096, 128, sms=132).block_m == 16
    assert default_config(1, 4096, 256, 128, sms=132).split_k == 2  # at most one slice per step
    assert default_config(64, 14336, 4096, 128, sms=132).split_k == 5   # 112 tiles
    assert default_config(4096, 4096, 4096, 128, sms=132).split_k == 1  # 2048 tiles


@pytest.mark.parametrize("m", [1, 16])
@pytest.mark.parametrize("n,k", [(4096, 4096), (14336, 4096), (4096, 14336)])
@pytest.mark.slow
def test_w4a16_on_the_benchmark_shapes(m, n, k, dtype=torch.float16):
    """The Llama-8B-sized layers benchmarks/kernels.py times, with its group size and dtype, as
    an H100 would launch them (132 SMs): right before any GPU time is spent on them (about a
    minute each in the interpreter)."""
    from qcourse.kernels.triton_w4a16 import default_config
    x, (qweight, scales, zeros), _ = w4_case(m, n, k, 128, dtype, seed=n + k)
    y = w4a16_matmul(x, qweight, scales, zeros, 128,
                     config=default_config(m, n, k, 128, sms=132))
    expected = kernels.w4a16_reference(x, qweight, scales, zeros, 128)
    bound = x.float().abs() @ kernels.dequantize_w4a16(qweight, scales, zeros, 128).abs().t()
    assert_matches(y, expected, bound)


def test_w4a16_config_is_checked():
    from qcourse.kernels.triton_w4a16 import Config
    x, qweight, scales, zeros = _w4_inputs()
    with pytest.raises(ValueError, match="not both"):
        w4a16_matmul(x, qweight, scales, zeros, 32, split_k=2, config=Config(16, 64, 32))
    with pytest.raises(ValueError, match="does not fit M = 2"):
        w4a16_matmul(x, qweight, scales, zeros, 32, config=Config(1, 64, 32))


def test_triton_kernels_need_groups_of_16():
    x, (qweight, scales, zeros), _ = w4_case(2, 16, 64, 8, torch.float32)
    kernels.w4a16_reference(x, qweight, scales, zeros, 8)             # the format allows g = 8
    with pytest.raises(ValueError, match="multiple of 16 for the Triton kernels"):
        w4a16_matmul(x, qweight, scales, zeros, 8)


COMPILE_FOR_H100 = r"""
import re, triton, triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from qcourse.kernels import triton_w4a16 as k
POINTERS = {"x_ptr": "*fp16", "qweight_ptr": "*i32", "scales_ptr": "*fp16", "zeros_ptr": "*fp16",
            "y_ptr": "*fp32"}
def ptx(fn, scalars, constexprs):   # as a launch specializes it: 16-byte aligned pointers
    signature = {**POINTERS, **{s: "i32" for s in scalars}, **{c: "constexpr" for c in constexprs}}
    attrs = {(fn.arg_names.index(p),): [["tt.divisibility", 16]] for p in POINTERS}
    source = ASTSource(fn=fn, signature=signature, constexprs=constexprs, attrs=attrs)
    return triton.compile(source, target=GPUTarget("cuda", 90, 32),
                          options={"num_warps": 4, "num_stages": 3}).asm["ptx"]
gemv = ptx(k.w4a16_gemv_kernel, ["N", "K", "group_size", "steps_per_split"],
           {"BLOCK_N": 128, "BLOCK_K": 128, "SPLIT_K": 2})
gemm = ptx(k.w4a16_gemm_kernel, ["M", "N", "K", "group_size", "steps_per_split"],
           {"BLOCK_M": 16, "BLOCK_N": 64, "BLOCK_K": 128, "SPLIT_K": 1, "DOT_DTYPE": tl.float16})
for name, code in (("gemv", gemv), ("gemm", gemm)):
    assert not re.search(r"cvt\.rn\.f32\.[us]32", code), name   # codes become floats by the magic number
print("v4" if "ld.global.v4.b32" in gemv else "no v4",
      "mma" if re.search(r"mma\.sync|wgmma", gemm) else "no mma",
      "async" if "cp.async" in gemm else "no async")
"""


def test_triton_kernels_compile_for_an_h100():
    """Triton compiles for a GPU target without a GPU (ptxas ships with it): the kernels
    compile for sm_90, the GEMV's words come in 128-bit loads, the GEMM uses the tensor cores
    with asynchronous copies, and neither converts integers to floats instruction by
    instruction."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_DEFAULT_FP_FUSION"] = "1"
    result = subprocess.run([sys.executable, "-c", COMPILE_FOR_H100], capture_output=True,
                            text=True, env=env)
    assert result.stdout.split() == ["v4", "mma", "async"], result.stderr[-3000:]


@pytest.mark.slow
def test_the_gpu_benchmark_runs_its_code_on_the_cpu(tmp_path):
    """benchmarks/kernels.py is the one prepared script for a GPU session: --cpu-check runs all
    of it (autotuning, correctness checks, record, plot) on tiny shapes with faked times."""
    import json
    script = pathlib.Path(__file__).parents[1] / "benchmarks" / "kernels.py"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run([sys.executable, str(script), "--cpu-check", "--out", str(tmp_path)],
                            capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    (record_file,) = tmp_path.glob("kernels-cpu-check-*.json")
    record = json.loads(record_file.read_text())
    assert record["cpu_check"] and (tmp_path / record_file.name.replace(".json", ".png")).exists()
    timed = {(r["kernel"], r["M"]) for r in record["rows"] if "error" not in r}
    assert timed == {(kernel, m) for kernel in ("fp16_linear", "w4a16_triton") for m in (1, 4, 16)}
    for r in record["rows"]:
        if r["kernel"] == "w4a16_triton":
            tried = r["launch"]["autotuned"]
            assert len(tried) >= 4 and all(t == 1e-3 for t in tried.values())
            assert r["rel_error_vs_reference"] < 1e-2
    assert any(r["kernel"] == "tinygemm_int4" and "error" in r for r in record["rows"])
    assert len(record["targets"]) == 4                         # M = 1, 4, 16 here: x1; M = 16: x1.8


# -- the checkpoint layout <-> the kernels' layout ------------------------------------------------

def test_checkpoint_layout_round_trip():
    qweight, scales, zeros = kernels.prepare_w4a16(torch.randn(32, 128), 64)
    ckpt_qweight, qzeros, ckpt_scales = kernels.layout.to_checkpoint(qweight, scales, zeros)
    assert ckpt_qweight.shape == (16, 32) and qzeros.shape == (2, 4)   # [K/8, N], [K/g, N/8]
    back = kernels.layout.from_checkpoint(ckpt_qweight, qzeros, ckpt_scales)
    for a, b in zip(back, (qweight, scales, zeros)):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="integers in \\[0, 15\\]"):
        kernels.layout.to_checkpoint(qweight, scales, zeros + 0.5)



def test_autoawq_gemm_layout_packs_along_n_in_its_interleaved_order():
    """AutoAWQ's WQLinear_GEMM: qweight [K, N/8], nibble i of word [k, c] = output 8c + (0 2 4 6
    1 3 5 7)[i]; GPTQ's qweight [K/8, N] packs along K in order (tests/test_awq_autoawq.py reads
    AutoAWQ's own bytes back)."""
    n, k = 16, 8
    q = (torch.arange(n)[:, None] % 16).expand(n, k).contiguous()     # q[n, k] = n: visible order
    qweight = pack_int32(q, 4, dim=1)                                   # kernels' layout [N, K/8]
    zeros = torch.zeros(1, n)
    awq_qweight, awq_qzeros, _ = kernels.layout.to_awq_gemm(qweight, torch.ones(1, n), zeros)
    assert awq_qweight.shape == (k, n // 8) and awq_qzeros.shape == (1, n // 8)
    nibbles = [(int(awq_qweight[3, 1]) >> (4 * i)) & 0xF for i in range(8)]
    assert nibbles == [8, 10, 12, 14, 9, 11, 13, 15]                    # outputs 8 + AWQ_ORDER
    gptq_qweight, _, _ = kernels.layout.to_checkpoint(qweight, torch.ones(1, n), zeros)
    assert gptq_qweight.shape == (k // 8, n)
    assert [(int(gptq_qweight[0, 5]) >> (4 * j)) & 0xF for j in range(8)] == [5] * 8  # along K


def test_autoawq_gemm_layout_round_trip_and_bad_shapes():
    qweight, scales, zeros = kernels.prepare_w4a16(torch.randn(24, 128), 32)
    awq = kernels.layout.to_awq_gemm(qweight, scales, zeros)
    assert awq[0].shape == (128, 3) and awq[1].shape == (4, 3)
    back = kernels.layout.from_awq_gemm(*awq)
    for a, b in zip(back, (qweight, scales, zeros)):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="multiple of 8"):
        kernels.layout.to_awq_gemm(*kernels.prepare_w4a16(torch.randn(12, 64), 32))
    with pytest.raises(ValueError, match="integers in \\[0, 15\\]"):
        kernels.layout.to_awq_gemm(qweight, scales, zeros + 0.5)

def test_quantlinear_gives_the_kernels_what_prepare_w4a16_gives():
    from qcourse.kernels.quantlinear import kernel_inputs
    from qcourse.layers import QuantLinear
    linear = torch.nn.Linear(256, 48, bias=False)
    layer = QuantLinear.from_float(linear, 4, 64)
    qweight, scales, zeros, g = kernel_inputs(layer)
    expected = kernels.prepare_w4a16(linear.weight.detach(), 64)
    assert g == 64 and all(torch.equal(a, b) for a, b in zip((qweight, scales, zeros), expected))
    assert kernel_inputs(layer)[0] is qweight                          # converted once, cached
    layer.qweight.zero_()                                              # ... until it changes
    assert not kernel_inputs(layer)[0].any()


def test_a_gptq_checkpoint_feeds_the_kernels_the_same_tensors(tmp_path):
    """Kernel tensors -> QuantLinear buffers -> saved GPTQ checkpoint -> loaded -> kernel tensors."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from qcourse import gptq_checkpoint, models
    from qcourse.kernels.quantlinear import kernel_inputs
    from qcourse.layers import QuantLinear
    config = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, vocab_size=32)
    model = LlamaForCausalLM(config).eval()
    originals = {}
    for name, linear in list(gptq_checkpoint.quant_linears(model).items()) or \
            [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)
             and n != "lm_head"]:
        packed = kernels.prepare_w4a16(linear.weight.detach(), 32)
        layer = QuantLinear(linear.in_features, linear.out_features, 4, 32)
        ckpt_qweight, qzeros, scales = kernels.layout.to_checkpoint(*packed)
        layer.qweight.copy_(ckpt_qweight)
        layer.qzeros.copy_(qzeros)
        layer.scales.copy_(scales)
        models.set_module(model, name, layer)
        originals[name] = packed
    gptq_checkpoint.save_gptq_checkpoint(model, tmp_path / "ckpt", checkpoint_format="gptq_v2")
    loaded, _ = gptq_checkpoint.load_gptq_checkpoint(tmp_path / "ckpt")
    layers = gptq_checkpoint.quant_linears(loaded)
    assert set(layers) == set(originals) and len(layers) == 7
    for name, packed in originals.items():
        assert all(torch.equal(a, b) for a, b in zip(kernel_inputs(layers[name])[:3], packed))


# -- Triton W8A8 ----------------------------------------------------------------------------------

def w8_case(m, n, k, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(-127, 128, (m, k), generator=gen, dtype=torch.int8)
    w = torch.randint(-127, 128, (n, k), generator=gen, dtype=torch.int8)
    return x, w, torch.rand(m, generator=gen) / 100, torch.rand(n, generator=gen) / 100


@pytest.mark.parametrize("m,n,k", [(1, 96, 160), (3, 72, 200), (16, 64, 64), (33, 136, 96),
                                   (70, 130, 130)])
@pytest.mark.parametrize("out_dtype", DTYPES, ids=str)
def test_w8a8_matches_reference(m, n, k, out_dtype):
    x, w, xs, ws = w8_case(m, n, k, seed=m + n)
    y = w8a8_matmul(x, w, xs, ws, out_dtype=out_dtype)
    expected = kernels.w8a8_reference(x, w, xs, ws, out_dtype=out_dtype)
    # integer sums are exact; only the last float rounding of the scales may differ
    assert_matches(y, expected, expected.float().abs())


def test_w8a8_equals_float_matmul_of_the_dequantized_operands():
    x, w, xs, ws = w8_case(20, 48, 96, seed=5)
    y = w8a8_matmul(x, w, xs.reshape(-1, 1), ws, out_dtype=torch.float32)
    expected = (x.double() * xs.double()[:, None]) @ (w.double() * ws.double()[:, None]).t()
    assert torch.allclose(y.double(), expected, rtol=1e-5, atol=1e-6)


def test_w8a8_per_tensor_scales():
    x, w, _, _ = w8_case(17, 32, 64, seed=6)
    y = w8a8_matmul(x, w, torch.tensor(0.5), torch.tensor([0.25]), out_dtype=torch.float32)
    assert torch.equal(y, (x.double() @ w.double().t() / 8).float())


# -- bad input: clear errors before launch --------------------------------------------------------

def _w4_inputs():
    x, (qweight, scales, zeros), _ = w4_case(2, 16, 64, 32, torch.float16)
    return x, qweight, scales, zeros


@pytest.mark.parametrize("fn", ["triton", "reference"])
@pytest.mark.parametrize("change,error,words", [
    (lambda a: {**a, "x": a["x"][:, :32]}, ValueError, "packed columns"),       # K mismatch
    (lambda a: {**a, "x": torch.zeros(2, 60, dtype=torch.float16)}, ValueError, "multiple of 8"),
    (lambda a: {**a, "group_size": 12}, ValueError, "multiple of 8"),
    (lambda a: {**a, "group_size": 48}, ValueError, "not a multiple of group_size"),
    (lambda a: {**a, "scales": a["scales"][:, :8]}, ValueError, "scales must be [K/g, N]"),
    (lambda a: {**a, "zeros": a["zeros"][:1]}, ValueError, "zeros must be [K/g, N]"),
    (lambda a: {**a, "x": a["x"].int()}, TypeError, "float16, bfloat16 or float32"),
    (lambda a: {**a, "qweight": a["qweight"].long()}, TypeError, "int32"),
    (lambda a: {**a, "zeros": a["zeros"].float()}, TypeError, "share one dtype"),
    (lambda a: {**a, "qweight": a["qweight"].to("meta")}, ValueError, "same device"),
    (lambda a: {**a, "x": a["x"].numpy()}, TypeError, "torch.Tensor"),
])
def test_w4a16_bad_input(fn, change, error, words):
    x, qweight, scales, zeros = _w4_inputs()
    args = change(dict(x=x, qweight=qweight, scales=scales, zeros=zeros, group_size=32))
    matmul = w4a16_matmul if fn == "triton" else kernels.w4a16_reference
    with pytest.raises(error) as info:
        matmul(**args)
    assert words in str(info.value)


@pytest.mark.parametrize("change,error,words", [
    (lambda x, w, xs, ws: (x[:, :10], w, xs, ws), ValueError, "disagree on K"),
    (lambda x, w, xs, ws: (x.float(), w, xs, ws), TypeError, "x_int8 must be int8"),
    (lambda x, w, xs, ws: (x, w.to(torch.uint8), xs, ws), TypeError, "w_int8 must be int8"),
    (lambda x, w, xs, ws: (x, w, xs[:2], ws), ValueError, "one scale per row"),
    (lambda x, w, xs, ws: (x, w, xs, ws.half()), TypeError, "float32"),
    (lambda x, w, xs, ws: (x, w, xs, ws.to("meta")), ValueError, "same device"),
    (lambda x, w, xs, ws: (x[0], w, xs, ws), ValueError, "2-D"),
])
def test_w8a8_bad_input(change, error, words):
    args = change(*w8_case(4, 8, 16))
    for matmul in (w8a8_matmul, kernels.w8a8_reference):
        with pytest.raises(error) as info:
            matmul(*args)
        assert words in str(info.value)


def test_prepare_w4a16_bad_input():
    with pytest.raises(ValueError, match="2-D"):
        kernels.prepare_w4a16(torch.randn(64), 32)
    with pytest.raises(ValueError, match="multiple of 8"):
        kernels.prepare_w4a16(torch.randn(8, 64), 12)
    with pytest.raises(ValueError, match="group_size"):           # from qcourse.quant
        kernels.prepare_w4a16(torch.randn(8, 64), 48)
    with pytest.raises(TypeError):
        kernels.prepare_w4a16(torch.randint(0, 3, (8, 64)), 32)


@pytest.mark.parametrize("split_k", [0, -1, 1.5, True])
def test_w4a16_bad_split_k(split_k):
    with pytest.raises(ValueError, match="split_k"):
        w4a16_matmul(*_w4_inputs(), 32, split_k=split_k)


def test_triton_on_cpu_without_interpreter_is_refused(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ValueError, match="CUDA tensors"):
        w4a16_matmul(*_w4_inputs(), 32)
    with pytest.raises(ValueError, match="CUDA tensors"):
        w8a8_matmul(*w8_case(2, 8, 16))


def test_importing_qcourse_does_not_import_triton():
    code = ("import sys, qcourse, qcourse.kernels, qcourse.layers; "
            "assert 'triton' not in sys.modules, 'triton imported eagerly'")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ,
                                                                  "TRITON_INTERPRET": "0"})


# -- CUDA source ----------------------------------------------------------------------------------

NVCC = shutil.which("nvcc") or next((p for p in ("/usr/local/cuda/bin/nvcc",) if os.path.exists(p)),
                                    None)
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc not found")


@needs_nvcc
def test_cuda_source_compiles(tmp_path):
    archs = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in (80, 90)]  # A100, H100/H200
    result = subprocess.run([NVCC, "-c", "-std=c++17", *archs, "-Werror", "all-warnings",
                             str(kernels_cuda.KERNEL_SOURCE),
                             "-o", str(tmp_path / "k.o")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@needs_nvcc
def test_cuda_kernel_is_built_as_designed(tmp_path):
    """The PTX shows the redesign: 128-bit loads, the warp's shuffle reduction, dequantization
    on pairs of fp16/bf16 values, one atomic add per warp and row."""
    result = subprocess.run([NVCC, "--ptx", "-std=c++17", "-arch=sm_90",
                             str(kernels_cuda.KERNEL_SOURCE), "-o", str(tmp_path / "k.ptx")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    ptx = (tmp_path / "k.ptx").read_text()
    for instruction in ("ld.global.nc.v4.u32", "shfl.sync.bfly", "sub.f16x2", "mul.f16x2",
                        "sub.bf16x2", "atom.global.add.f32"):
        assert instruction in ptx, instruction
    assert "cvt.rn.f32.u32" not in ptx and "cvt.rn.f32.s32" not in ptx   # magic numbers instead


@needs_nvcc
@pytest.mark.skipif(not os.environ.get("QCOURSE_COMPILE_BINDING"),
                    reason="slow (minutes): set QCOURSE_COMPILE_BINDING=1 to compile the binding")
def test_cuda_torch_binding_compiles(tmp_path):
    """The PyTorch binding compiles against this torch's headers (CPU builds included)."""
    import sysconfig
    from torch.utils.cpp_extension import include_paths
    includes = [f"-I{p}" for p in [sysconfig.get_paths()["include"], *include_paths()]]
    result = subprocess.run([NVCC, "-c", "-std=c++17", *includes,
                             str(kernels_cuda.BINDING_SOURCE), "-o", str(tmp_path / "b.o")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]


HARNESS = r"""
#include <cstdio>
#include <vector>
#include "w4a16_gemv.cu"
using namespace qcourse;
// The kernel's work on the host: every warp (output n, K slice, tile of kRows rows), its 32
// lanes' partial sums (lane_sums, the kernel's own code), added as the warp reduction would.
template <typename T> void run(FILE* in, FILE* out, int M, int N, int K, int g, int split) {
    std::vector<T> x((size_t)M * K), s((size_t)K / g * N), z((size_t)K / g * N);
    std::vector<uint4> qw((size_t)K / 32 * N);   // 16-byte aligned, as the 128-bit loads need
    if (fread(x.data(), sizeof(T), x.size(), in) != x.size() ||
        fread(qw.data(), 16, qw.size(), in) != qw.size() ||
        fread(s.data(), sizeof(T), s.size(), in) != s.size() ||
        fread(z.data(), sizeof(T), z.size(), in) != z.size()) return;
    const int chunks = K / kChunk, per_split = (chunks + split - 1) / split;
    const int32_t* words = reinterpret_cast<const int32_t*>(qw.data());
    std::vector<float> y((size_t)M * N, 0.0f);
    for (int m0 = 0; m0 < M; m0 += kRows) for (int n = 0; n < N; ++n)
        for (int b = 0; b < chunks; b += per_split) {
            const int end = b + per_split < chunks ? b + per_split : chunks;
            const int rows = M - m0 < kRows ? M - m0 : kRows;
            float warp[kRows] = {0};
            for (int lane = 0; lane < kWarp; ++lane) {
                float acc[kRows];
                lane_sums(x.data() + (size_t)m0 * K, rows, K, words + (size_t)n * (K / 8), s.data(),
                          z.data(), n, N, g, b + lane, end, kWarp, acc);
                for (int r = 0; r < kRows; ++r) warp[r] += acc[r];
            }
            for (int r = 0; r < rows; ++r) y[(size_t)(m0 + r) * N + n] += warp[r];
        }
    fwrite(y.data(), 4, y.size(), out);
}
int main(int argc, char** argv) {
    FILE* in = fopen(argv[1], "rb"); FILE* out = fopen(argv[2], "wb");
    int h[6];
    if (fread(h, 4, 6, in) != 6) return 1;
    if (h[4] == 0) run<__half>(in, out, h[0], h[1], h[2], h[3], h[5]);
    else run<__nv_bfloat16>(in, out, h[0], h[1], h[2], h[3], h[5]);
    fclose(out);
    return 0;
}
"""


@pytest.fixture(scope="module")
def cuda_host_harness(tmp_path_factory):
    """The kernel's per-lane arithmetic (a __host__ __device__ function), built for the CPU."""
    if NVCC is None:
        pytest.skip("nvcc not found")
    folder = tmp_path_factory.mktemp("cuda")
    (folder / "harness.cu").write_text(HARNESS)
    result = subprocess.run([NVCC, "-std=c++17", f"-I{kernels_cuda.SOURCE_DIR}",
                             str(folder / "harness.cu"), "-o", str(folder / "harness")],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"no host compiler usable by nvcc: {result.stderr[-300:]}")
    return folder / "harness"


def _raw(t: torch.Tensor) -> bytes:
    if t.dtype in (torch.float16, torch.bfloat16):
        t = t.view(torch.int16)
    return t.contiguous().numpy().tobytes()


CUDA_DTYPES = (torch.float16, torch.bfloat16)


@pytest.mark.parametrize("dtype", CUDA_DTYPES, ids=str)
@pytest.mark.parametrize("m,n,k,g,split", [(1, 24, 160 * 2, 32, 1), (3, 16, 384, 128, 4),
                                           (11, 9, 1280, 64, 3)])
def test_cuda_arithmetic_on_host_matches_reference(cuda_host_harness, tmp_path, dtype, m, n, k,
                                                   g, split):
    x, (qweight, scales, zeros), _ = w4_case(m, n, k, g, dtype, seed=k, scale_dtype=dtype)
    header = torch.tensor([m, n, k, g, CUDA_DTYPES.index(dtype), split], dtype=torch.int32)
    (tmp_path / "in.bin").write_bytes(b"".join(_raw(t) for t in (header, x, qweight, scales,
                                                                  zeros)))
    subprocess.run([str(cuda_host_harness), str(tmp_path / "in.bin"), str(tmp_path / "out.bin")],
                   check=True)
    y = torch.frombuffer(bytearray((tmp_path / "out.bin").read_bytes()), dtype=torch.float32)
    expected = kernels.w4a16_reference(x, qweight, scales, zeros, g)
    bound = x.float().abs() @ kernels.dequantize_w4a16(qweight, scales, zeros, g).abs().t()
    assert_matches(y.reshape(m, n).to(dtype), expected, bound)


def test_cuda_wrapper_checks_input_before_compiling():
    x, qweight, scales, zeros = _w4_inputs()
    with pytest.raises(ValueError, match="multiple of 8"):
        kernels_cuda.w4a16_gemv(x, qweight, scales, zeros, 12)
    with pytest.raises(TypeError, match="float16 or bfloat16"):
        kernels_cuda.w4a16_gemv(x.float(), qweight, scales, zeros, 32)
    with pytest.raises(ValueError, match="CUDA tensors"):
        kernels_cuda.w4a16_gemv(x, qweight, scales, zeros, 32)
    x64, (qweight64, scales64, zeros64), _ = w4_case(2, 16, 64, 16, torch.float16)
    with pytest.raises(ValueError, match="multiple of 32 for the CUDA kernel"):
        kernels_cuda.w4a16_gemv(x64, qweight64, scales64, zeros64, 16)
    assert "lane_sums" in kernels_cuda.source()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_kernel_on_gpu():
    x, (qweight, scales, zeros), _ = w4_case(3, 256, 512, 128, torch.float16)
    args = [t.cuda() for t in (x, qweight, scales, zeros)]
    y = kernels_cuda.w4a16_gemv(*args, 128)
    expected = kernels.w4a16_reference(*args, 128)
    assert torch.allclose(y.float(), expected.float(), atol=0.05, rtol=1e-2)


# -- QuantLinear through the kernels --------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_4bit():
    from qcourse import models
    from qcourse.layers import QuantLinear
    try:
        model, tok = models.load("qcourse-tiny")
    except FileNotFoundError as err:
        pytest.skip(str(err))
    models.swap_linears(model, lambda name, lin: QuantLinear.from_float(lin, 4, 64))
    # >= 16 tokens: the GEMM path (the GEMV path is covered above; the interpreter is slow)
    ids = torch.tensor([tok.encode("def fibonacci(n):\n    return fibonacci(n - 1) + 1")])
    assert ids.shape[1] >= 16
    return model, ids


def test_quantized_tiny_same_logits_through_kernel_path(tiny_4bit):
    model, ids = tiny_4bit
    with torch.no_grad():
        own = model(ids).logits
        routed = kernels.use_kernels(model, "reference")        # what "auto" picks on CPU
        assert len(routed) == 42                                 # 6 layers × 7 projections
        assert kernels.use_kernels(model, "auto") == routed
        via_reference = model(ids).logits
        kernels.use_kernels(model, "triton")                     # the Triton kernel, interpreted
        via_triton = model(ids).logits
        kernels.use_kernels(model, None)
        restored = model(ids).logits
    assert torch.equal(restored, own)
    assert torch.allclose(via_reference, own, atol=1e-4, rtol=1e-4)
    assert torch.allclose(via_triton, via_reference, atol=1e-4, rtol=1e-4)
    assert torch.equal(via_triton.argmax(-1), own.argmax(-1))


def test_quantlinear_forward_handles_bias_and_rejects_unsupported_layers():
    from qcourse.layers import QuantLinear
    linear = torch.nn.Linear(64, 16)
    layer = QuantLinear.from_float(linear, 4, 32)
    x = torch.randn(5, 64)
    assert torch.allclose(kernels.quantlinear_forward(layer, x), layer(x), atol=1e-5)
    assert torch.allclose(kernels.quantlinear_forward(layer, x, "triton"), layer(x), atol=1e-4)
    with pytest.raises(ValueError, match="4-bit"):
        kernels.quantlinear_forward(QuantLinear.from_float(linear, 8, 32), x)
    shuffled = QuantLinear.from_float(linear, 4, 32)
    shuffled.g_idx.copy_(torch.arange(64, dtype=torch.int32).flip(0) // 32)
    with pytest.raises(ValueError, match="act-order"):
        kernels.quantlinear_forward(shuffled, x)
    with pytest.raises(ValueError, match="backend"):
        kernels.quantlinear_forward(layer, x, "cublas")

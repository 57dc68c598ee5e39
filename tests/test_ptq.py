import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from qcourse import eval as ev
from qcourse import models
from qcourse.layers import Int8MixedLinear, W8A8Linear, int8_matmul, quantize_per_token
from qcourse.ptq import quantize_llm_int8, quantize_rtn, quantize_w8a8
from qcourse.layers import QuantLinear

WINDOWS = 4


@pytest.fixture(scope="module")
def fp32_ppl(tiny):
    model, tokenizer = tiny
    return ev.perplexity(model, tokenizer, max_windows=WINDOWS)


def rtn_ppl(tiny, bits, granularity, group_size=None, **kwargs):
    model, tokenizer = tiny
    quantized = quantize_rtn(copy.deepcopy(model), bits, granularity, group_size, **kwargs)
    return ev.perplexity(quantized, tokenizer, max_windows=WINDOWS)


def test_rtn_swaps_every_linear_but_the_head(tiny):
    model, _ = tiny
    quantized = quantize_rtn(copy.deepcopy(model), 4, "group", 128)
    kinds = {name: type(m) for name, m in quantized.named_modules()}
    assert sum(k is QuantLinear for k in kinds.values()) == 6 * 7
    assert kinds["lm_head"] is nn.Linear and kinds["model.embed_tokens"] is nn.Embedding
    assert not models.linear_layers(quantized)
    assert quantized.lm_head.weight is quantized.model.embed_tokens.weight  # still tied


@pytest.mark.slow
def test_rtn_8bit_is_within_1_percent_and_2bit_much_worse(tiny, fp32_ppl):
    assert rtn_ppl(tiny, 8, "channel") == pytest.approx(fp32_ppl, rel=0.01)
    assert rtn_ppl(tiny, 8, "group", 128) == pytest.approx(fp32_ppl, rel=0.01)
    ppl4 = rtn_ppl(tiny, 4, "group", 32)
    ppl2 = rtn_ppl(tiny, 2, "channel")
    assert ppl2 > 1.05 * fp32_ppl and ppl2 > ppl4


@pytest.mark.slow
def test_mse_clipping_helps_at_low_bits(tiny):
    assert rtn_ppl(tiny, 3, "channel", clip="mse") < rtn_ppl(tiny, 3, "channel")


def test_rtn_model_size_is_real(tiny):
    model, _ = tiny
    fp32_bytes = ev.model_size_bytes(model)
    for bits, group_size in ((4, 128), (3, None), (2, 32)):
        granularity = "channel" if group_size is None else "group"
        quantized = quantize_rtn(copy.deepcopy(model), bits, granularity, group_size)
        expected = fp32_bytes
        for linear in models.linear_layers(model).values():
            n, k = linear.weight.shape
            g = group_size or k
            expected += (-4 * n * k + bits * n * k // 8 + bits * n * (k // g) // 8
                         + 2 * n * (k // g) + 4 * k)
        assert ev.model_size_bytes(quantized) == expected


def test_rtn_per_tensor_uses_one_scale(tiny):
    model, _ = tiny
    quantized = quantize_rtn(copy.deepcopy(model), 8, "tensor")
    scales = quantized.model.layers[0].self_attn.q_proj.scales
    assert scales.shape == (1, 256) and torch.all(scales == scales[0, 0])


def test_rtn_bad_arguments(tiny):
    model, _ = tiny
    with pytest.raises(ValueError, match="granularity"):
        quantize_rtn(copy.deepcopy(model), 4, "row")
    with pytest.raises(ValueError, match="group_size"):
        quantize_rtn(copy.deepcopy(model), 4, "group")
    with pytest.raises(ValueError, match="does not divide"):
        quantize_rtn(copy.deepcopy(model), 4, "group", 100)
    with pytest.raises(ValueError, match="bits"):
        quantize_rtn(copy.deepcopy(model), 9, "channel")
    with pytest.raises(ValueError, match="clip"):
        quantize_rtn(copy.deepcopy(model), 4, "channel", clip="max")


@pytest.mark.parametrize("k", [768, 1536, 2500])
def test_int8_matmul_is_exact(k):
    torch.manual_seed(0)
    a = torch.randint(-128, 128, (33, k), dtype=torch.int8)
    b = torch.randint(-128, 128, (17, k), dtype=torch.int8)
    assert torch.equal(int8_matmul(a, b), torch._int_mm(a, b.t().contiguous()))


def test_int8_matmul_is_exact_at_the_largest_sums():
    """All -128: each product is 2^14 and a chunk of 1024 sums to 2^24, the last integer up to
    which float32 counts exactly; past it (2^24 + 1) float32 would round."""
    for k in (1024, 1025, 3000):
        a = torch.full((2, k), -128, dtype=torch.int8)
        b = torch.full((3, k), -128, dtype=torch.int8)
        a[0, 0] = b[0, 0] = 1                             # an odd sum: float32 would round it
        assert torch.equal(int8_matmul(a, b), torch._int_mm(a, b.t().contiguous())), k


def test_per_token_quantization_has_one_scale_per_token():
    x = torch.tensor([[1.0, -2.0, 0.5], [100.0, 3.0, -50.0]])
    q, scale = quantize_per_token(x)
    assert q.dtype == torch.int8 and scale.shape == (2, 1)
    assert torch.allclose(scale.flatten(), torch.tensor([2.0, 100.0]) / 127)
    assert q[:, :2].tolist() == [[64, -127], [127, 4]]


def make_linear(n=96, k=256, seed=0):
    torch.manual_seed(seed)
    linear = nn.Linear(k, n)
    linear.weight.data = torch.randn(n, k) * 0.05
    return linear


def test_w8a8_output_is_close_to_float():
    linear = make_linear()
    layer = W8A8Linear.from_float(linear)
    assert layer.qweight.dtype == torch.int8
    x = torch.randn(2, 9, 256)
    y, y8 = linear(x).detach(), layer(x)
    assert y8.shape == y.shape
    assert ((y8 - y).norm() / y.norm()).item() < 0.02
    # it is really per-token: scaling one token does not change the others
    x2 = x.clone()
    x2[0, 0] *= 1000
    assert torch.equal(layer(x2)[1], y8[1])


def outlier_input(seed=0):
    torch.manual_seed(seed)
    x = torch.randn(4, 256)
    x[:, 7] = 60.0  # one outlier feature, as in LLM activations
    return x


def test_llm_int8_limits():
    linear = make_linear()
    x = outlier_input()
    w8a8 = W8A8Linear.from_float(linear)
    never = Int8MixedLinear.from_float(linear, threshold=math.inf)
    always = Int8MixedLinear.from_float(linear, threshold=0.0)
    assert torch.equal(never(x), w8a8(x)) and never.last_outliers == 0
    # every feature in floating point: float activations times the stored int8 weight
    assert torch.allclose(always(x), F.linear(x, w8a8.weight(), linear.bias), atol=1e-5)
    assert always.last_outliers == 256


def test_llm_int8_rescues_outlier_features():
    linear = make_linear()
    x = outlier_input()
    y = linear(x).detach()
    mixed = Int8MixedLinear.from_float(linear, threshold=6.0)
    err_mixed = ((mixed(x) - y).norm() / y.norm()).item()
    err_w8a8 = ((W8A8Linear.from_float(linear)(x) - y).norm() / y.norm()).item()
    assert mixed.last_outliers == 1
    assert err_mixed < err_w8a8 / 3


def test_w8a8_and_llm_int8_models(tiny, fp32_ppl):
    model, tokenizer = tiny
    w8a8 = quantize_w8a8(copy.deepcopy(model))
    assert sum(isinstance(m, W8A8Linear) for m in w8a8.modules()) == 42
    assert ev.perplexity(w8a8, tokenizer, max_windows=WINDOWS) == pytest.approx(fp32_ppl, rel=0.05)
    mixed = quantize_llm_int8(copy.deepcopy(model))
    assert ev.perplexity(mixed, tokenizer, max_windows=WINDOWS) == pytest.approx(fp32_ppl, rel=0.05)
    with pytest.raises(ValueError, match="threshold"):
        quantize_llm_int8(copy.deepcopy(model), threshold=-1)
    with pytest.raises(TypeError, match="nn.Linear"):
        W8A8Linear.from_float(nn.Conv1d(2, 2, 1))


# --- static per-tensor activations (SmoothQuant's O3): a scale fixed by calibration ----------

def test_static_activation_scale_is_fixed_and_saturates():
    linear = make_linear(n=8, k=16)
    layer = W8A8Linear.from_float(linear, activations="static", input_absmax=torch.full((16,), 2.0))
    assert layer.input_scale.item() == pytest.approx(2.0 / 127)
    x = torch.randn(5, 16, generator=torch.Generator().manual_seed(0))
    x[0, 3] = 50.0                                       # beyond the calibrated range: saturates
    qx = torch.round(x / (2.0 / 127)).clamp(-128, 127)
    s_w = linear.weight.detach().abs().amax(1, keepdim=True) / 127
    expected = (qx @ torch.round(linear.weight.detach() / s_w).t()) * (2.0 / 127) * s_w.t() \
        + linear.bias.detach()
    assert torch.allclose(layer(x), expected, atol=1e-5)
    assert "per-tensor (static)" in repr(layer)


def test_static_scale_does_not_depend_on_the_batch_dynamic_per_tensor_does():
    linear = make_linear(n=8, k=16)
    x = torch.randn(6, 16, generator=torch.Generator().manual_seed(1))
    louder = x.clone()
    louder[0] *= 20                                      # another sequence in the batch
    static = W8A8Linear.from_float(linear, activations="static", input_absmax=x.abs().amax(0))
    dynamic = W8A8Linear.from_float(linear, activations="tensor")
    assert torch.equal(static(louder)[1:], static(x)[1:])
    assert not torch.equal(dynamic(louder)[1:], dynamic(x)[1:])


def test_static_w8a8_needs_calibration_statistics(tiny):
    from qcourse import calib, data

    model, tokenizer = tiny
    with pytest.raises(ValueError, match="stats"):
        quantize_w8a8(copy.deepcopy(model), "static")
    with pytest.raises(ValueError, match="input_absmax"):
        W8A8Linear.from_float(make_linear(), activations="static")
    with pytest.raises(ValueError, match="input_absmax"):
        W8A8Linear.from_float(make_linear(), input_absmax=1.0)
    with pytest.raises(ValueError, match="positive"):
        W8A8Linear.from_float(make_linear(), activations="static", input_absmax=0.0)
    stats = calib.collect_activation_stats(model, data.calibration_samples(tokenizer, 2, 64))
    with pytest.raises(ValueError, match="stats"):
        quantize_w8a8(copy.deepcopy(model), "token", stats)
    with pytest.raises(ValueError, match="no calibration statistics"):
        quantize_w8a8(copy.deepcopy(model), "static", {"model.layers.0.mlp.up_proj": stats[
            "model.layers.0.mlp.up_proj"]})
    static = quantize_w8a8(copy.deepcopy(model), "static", stats)
    layer = static.model.layers[2].mlp.down_proj
    assert layer.input_scale.item() == pytest.approx(
        stats["model.layers.2.mlp.down_proj"].absmax.max().item() / 127)

"""Notebook 10's failure modes, each reproduced and its recovery measured on small data.

Fast tests use hand-built layers and small random Llamas; tests that run qcourse-tiny end to end
or llama.cpp are marked slow."""
import copy
import json
import warnings

import pytest
import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from qcourse import awq, calib, data, gptq, gptq_checkpoint, kernels, models, ptq, smoothquant
from qcourse import eval as ev
from qcourse.diagnose import check_gguf, diagnose
from qcourse.exercises import ex10
from qcourse.layers import QuantLinear, W8A8Linear, int8_matmul
from qcourse.layers.int8 import quantize_per_tensor
from qcourse.layers.scaled import ScaledInput
from qcourse.quant import QuantScheme


def small_llama(hidden: int = 64, vocab: int = 128, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=64)
    return LlamaForCausalLM(config).eval()


def kl(model, reference, ids) -> float:
    with torch.no_grad():
        return ev.kl_per_token(model(ids).logits, reference(ids).logits).mean().item()


# ---- outlier channels: per-tensor W8A8 ------------------------------------------------------

def test_per_tensor_activations_share_one_scale():
    x = torch.tensor([[1.0, -2.0], [0.5, 127.0]])
    q, scale = quantize_per_tensor(x)
    assert scale.shape == (1, 1) and scale.item() == pytest.approx(1.0)
    assert q.tolist() == [[1, -2], [0, 127]]        # 0.5 rounds to 0 (round half to even)


def test_w8a8_per_tensor_layer_matches_a_hand_computation():
    gen = torch.Generator().manual_seed(0)
    linear = nn.Linear(16, 8)
    x = torch.randn(5, 16, generator=gen)
    layer = W8A8Linear.from_float(linear, activations="tensor")
    s_x = x.abs().max() / 127
    qx = torch.round(x / s_x).clamp(-128, 127)
    s_w = linear.weight.detach().abs().amax(1, keepdim=True) / 127
    qw = torch.round(linear.weight.detach() / s_w)
    expected = (qx @ qw.t()) * s_x * s_w.t() + linear.bias.detach()
    assert torch.allclose(layer(x), expected, atol=1e-5)
    assert "A8 per-tensor" in repr(layer)


def test_one_outlier_coarsens_every_token_per_tensor_not_per_token():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(32, 64, generator=gen)
    x[0, 5] = 500.0                                   # one token holds an outlier
    linear = nn.Linear(64, 16, bias=False)
    y = linear(x).detach()
    errors = {a: (W8A8Linear.from_float(linear, activations=a)(x) - y)[1:].pow(2).mean().item()
              for a in ("token", "tensor")}
    assert errors["tensor"] > 50 * errors["token"]   # the other 31 tokens pay per tensor


@pytest.mark.parametrize("bad", ["channel", "per-token", None])
def test_unknown_activation_granularity_is_refused(bad):
    with pytest.raises(ValueError, match="activations must be one of"):
        W8A8Linear.from_float(nn.Linear(4, 4), activations=bad)
    with pytest.raises(ValueError, match="activations must be one of"):
        ptq.quantize_w8a8(small_llama(), bad)


@pytest.mark.slow
def test_outliers_break_w8a8_and_the_fixes_recover(tiny):
    model, tokenizer = tiny
    outlier = models.with_outliers(model)
    ids = data.calibration_samples(tokenizer, 2, 128, seed=7)
    stats = calib.collect_activation_stats(outlier, ids)
    broken = {a: kl(ptq.quantize_w8a8(copy.deepcopy(outlier), a), outlier, ids)
              for a in ("tensor", "token")}
    plain = kl(ptq.quantize_w8a8(copy.deepcopy(model), "tensor"), model, ids)
    smoothed = copy.deepcopy(outlier)
    smoothquant.smooth_llama(smoothed, stats, 0.5)
    fixed = {"smoothquant": kl(ptq.quantize_w8a8(smoothed, "tensor"), outlier, ids),
             "llm.int8": kl(ptq.quantize_llm_int8(copy.deepcopy(outlier)), outlier, ids)}
    assert broken["tensor"] > 3 * broken["token"] > 30 * plain
    assert fixed["smoothquant"] < broken["tensor"] / 20
    assert fixed["llm.int8"] < broken["token"] / 5


# ---- outlier channels where scales cannot be folded (BERT): explicit division ----------------

def test_scaled_input_computes_the_same_function():
    gen = torch.Generator().manual_seed(2)
    linear = nn.Linear(8, 4)
    s = torch.rand(8, generator=gen) + 0.5
    scaled = copy.deepcopy(linear)
    with torch.no_grad():
        scaled.weight.mul_(s)
    x = torch.randn(3, 8, generator=gen)
    assert torch.allclose(ScaledInput(scaled, s)(x), linear(x), atol=1e-6)
    with pytest.raises(ValueError, match="positive"):
        ScaledInput(linear, -s)
    with pytest.raises(ValueError, match="1-D tensor of 8"):
        ScaledInput(linear, torch.ones(5))


class Encoder(nn.Module):
    """embedding -> (a channel x60) -> two linear layers, like an encoder's hidden states."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.embed = nn.Embedding(50, 64)
        self.a = nn.Linear(64, 64)
        self.b = nn.Linear(64, 32)
        with torch.no_grad():
            self.embed.weight[:, 9] *= 60

    def forward(self, ids):
        return self.b(torch.relu(self.a(self.embed(ids))))


def test_smooth_explicit_keeps_the_function_and_flattens_the_inputs():
    model = Encoder()
    ids = torch.randint(0, 50, (4, 16), generator=torch.Generator().manual_seed(4))
    stats = calib.collect_activation_stats(model, ids)
    smoothed = copy.deepcopy(model)
    scales = smoothquant.smooth_explicit(smoothed, stats, alpha=0.5)
    assert set(scales) == {"a", "b"} and isinstance(smoothed.a, ScaledInput)
    assert torch.allclose(smoothed(ids), model(ids), atol=1e-4)
    after = calib.collect_activation_stats(smoothed, ids)["a.layer"].absmax
    before = stats["a"].absmax
    assert after.max() / after.median() < (before.max() / before.median()) / 3
    quantized = ptq.quantize_w8a8(copy.deepcopy(smoothed), "tensor")
    assert isinstance(quantized.a.layer, W8A8Linear)
    y = model(ids)
    smooth_err = (quantized(ids) - y).pow(2).mean()
    plain_err = (ptq.quantize_w8a8(copy.deepcopy(model), "tensor")(ids) - y).pow(2).mean()
    assert smooth_err < plain_err / 3


def test_awq_explicit_beats_round_to_nearest_on_an_outlier_channel():
    model = Encoder()
    ids = torch.randint(0, 50, (8, 16), generator=torch.Generator().manual_seed(5))
    y = model(ids).detach()
    rtn = ptq.quantize_rtn(copy.deepcopy(model), 4, "group", 32)
    found = awq.quantize_explicit(copy.deepcopy(model), ids, 4, 32)
    assert isinstance(found.a, ScaledInput) and isinstance(found.a.layer, QuantLinear)
    assert (found(ids) - y).pow(2).mean() < 0.8 * (rtn(ids) - y).pow(2).mean()
    with pytest.raises(ValueError, match="does not divide"):
        awq.quantize_explicit(copy.deepcopy(model), ids, 4, 48)


@pytest.mark.slow
def test_minilm_smoothing_is_exact_in_float():
    from qcourse.models import minilm

    bert, tok = minilm.load()
    texts = minilm.sentences(8)
    stats = calib.collect_activation_stats(bert, minilm.token_ids(tok, texts))
    smoothed = copy.deepcopy(bert)
    smoothquant.smooth_explicit(smoothed, stats, 0.5)
    reference = minilm.embed(bert, tok, texts)
    assert 1 - minilm.cosine_quality(reference, minilm.embed(smoothed, tok, texts)) < 1e-6


# ---- 2-bit collapse and the symmetric-grid trap ----------------------------------------------

@pytest.mark.parametrize("bits, symmetric, levels", [(2, True, 3), (2, False, 4), (3, True, 7),
                                                     (3, False, 8)])
def test_levels_used_by_each_grid(bits, symmetric, levels):
    w = torch.randn(64, 256, generator=torch.Generator().manual_seed(6))
    q, _, _ = QuantScheme(bits, 128, symmetric).quantize(w)
    assert q.unique().numel() == levels


@pytest.mark.slow
def test_two_bit_collapse_and_its_recoveries(tiny):
    model, tokenizer = tiny
    ids = data.calibration_samples(tokenizer, 2, 128, seed=8)
    asym = kl(ptq.quantize_rtn(copy.deepcopy(model), 2, "group", 128), model, ids)
    sym = kl(ptq.quantize_rtn(copy.deepcopy(model), 2, "group", 128, symmetric=True), model, ids)
    assert sym > 2 * asym
    found = diagnose(model, samples=ids[:1], quantize=QuantScheme(2, 128))
    mixed = ptq.quantize_rtn(copy.deepcopy(model), 2, "group", 128)
    for layer in found.most_sensitive(4):
        models.set_module(mixed, layer.name, ptq.rtn_layer(model.get_submodule(layer.name),
                                                           QuantScheme(8, 128)))
    assert kl(mixed, model, ids) < 0.7 * asym


# ---- calibration mismatch ---------------------------------------------------------------------

@pytest.mark.slow
def test_prose_calibration_does_not_carry_over_to_code(tiny):
    from qcourse import blocks

    model, tokenizer = tiny
    block = model.model.layers[0]

    def hessian(domain, seed):
        samples = data.calibration_samples(tokenizer, 8, 128, seed=seed, domain=domain)
        inputs = blocks.capture_block_inputs(model, samples)
        return gptq.collect_hessians(block, inputs, ["mlp.down_proj"])["mlp.down_proj"].matrix

    W = block.mlp.down_proj.weight.detach()
    on_code = hessian("code", seed=5)
    errors = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for domain in ("code", "prose"):
            Q = gptq.gptq_quantize_layer(W, hessian(domain, seed=1), 3, 128)[0]
            errors[domain] = gptq.hessian_error(W, Q, on_code)
    assert errors["prose"] > 1.3 * errors["code"]


# ---- broken GGUF files -------------------------------------------------------------------------

def test_a_wrong_pretokenizer_is_written_in_place(tiny, tmp_path):
    from qcourse.gguf import reader, writer

    model, tokenizer = tiny
    good = tmp_path / "good.gguf"
    writer.export(model, tokenizer, good, "Q8_0")
    bad = ex10.with_wrong_pretokenizer(good, tmp_path / "bad.gguf")
    a, b = reader.read_gguf(good), reader.read_gguf(bad)
    assert a.metadata["tokenizer.ggml.pre"] == "gpt-2" and b.metadata["tokenizer.ggml.pre"] == "qwen2"
    assert good.stat().st_size == bad.stat().st_size
    name = "blk.0.attn_q.weight"
    assert (a.tensor_data(name) == b.tensor_data(name)).all()
    with pytest.raises(ValueError, match="5 bytes"):
        ex10.with_wrong_pretokenizer(good, tmp_path / "x.gguf", b"llama3")


def test_unpermuted_copy_undoes_the_rope_permutation(tiny):
    from qcourse.gguf.writer import permute_qk

    model, _ = tiny
    broken = ex10.unpermuted_copy(model)
    q = model.model.layers[1].self_attn.q_proj.weight
    assert torch.equal(permute_qk(broken.model.layers[1].self_attn.q_proj.weight, 4), q)
    assert not torch.equal(broken.model.layers[1].self_attn.q_proj.weight, q)


@pytest.mark.slow
def test_check_gguf_tells_the_broken_files_apart(tiny, tmp_path):
    from qcourse.gguf import writer

    model, tokenizer = tiny
    paths = {"good": tmp_path / "good.gguf", "rope": tmp_path / "rope.gguf"}
    writer.export(model, tokenizer, paths["good"], "F32")
    writer.export(ex10.unpermuted_copy(model), tokenizer, paths["rope"], "F32")
    paths["pre"] = ex10.with_wrong_pretokenizer(paths["good"], tmp_path / "pre.gguf")
    found = {k: check_gguf(p, model, tokenizer) for k, p in paths.items()}
    assert found["good"]["max_logit_diff"] < 1e-2 and found["good"]["top1_agreement"] == 1.0
    assert found["good"]["same_tokens"] == found["good"]["tokens"]
    assert found["rope"]["max_logit_diff"] > 1.0 and found["rope"]["top1_agreement"] < 0.9
    assert found["pre"]["pre_tokenizer"] == "qwen2"
    assert found["pre"]["same_tokens"] < found["pre"]["tokens"] / 10
    assert found["pre"]["max_logit_diff"] < 1e-2          # same ids in, same logits out


# ---- GPTQ checkpoints: zero-point convention, g_idx -----------------------------------------------

def test_reading_v1_zeros_as_v2_shifts_every_weight_by_one_step(tmp_path):
    model = ptq.quantize_rtn(small_llama(), 4, "group", 32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = gptq_checkpoint.save_gptq_checkpoint(model, tmp_path / "ckpt",
                                                    checkpoint_format="gptq")
    right = gptq_checkpoint.load_gptq_checkpoint(path)[0]
    config = json.loads((path / "config.json").read_text())
    config["quantization_config"]["checkpoint_format"] = "gptq_v2"
    (path / "config.json").write_text(json.dumps(config))
    wrong = gptq_checkpoint.load_gptq_checkpoint(path)[0]
    name = "model.layers.1.mlp.up_proj"
    a, b = right.get_submodule(name), wrong.get_submodule(name)
    assert torch.allclose(a.weight(), model.get_submodule(name).weight())
    # stored zero - 1 read as the zero: (q - (z - 1)) · s = W + s, except where z was 0
    # (stored as -1, i.e. 15 in 4 bits, borrowing from the packed word)
    step = a.scales.t().float().repeat_interleave(32, dim=1)
    z = a.integers()[1].repeat_interleave(32, dim=1)
    shifted = (b.weight() - a.weight())[z > 0]
    assert torch.allclose(shifted, step[z > 0], rtol=1e-3)


def test_act_order_codes_read_without_g_idx_are_wrong():
    gen = torch.Generator().manual_seed(9)
    X = torch.randn(512, 128, generator=gen) * torch.linspace(0.1, 4, 128)[torch.randperm(128,
                                                                                        generator=gen)]
    linear = nn.Linear(128, 32, bias=False)
    layer = gptq.to_quant_linear(linear, gptq.hessian(X), QuantScheme(4, 32), act_order=True)
    y = X @ linear.weight.detach().t()
    error = lambda w: ((X @ w.t() - y).pow(2).mean() / y.pow(2).mean()).item()  # noqa: E731
    right = error(layer.weight())
    assert not torch.equal(layer.g_idx.long(), torch.arange(128) // 32)
    layer.g_idx.copy_(torch.arange(128, dtype=torch.int32) // 32)
    assert error(layer.weight()) > 5 * right


# ---- overflow ----------------------------------------------------------------------------------

def test_float16_overflows_where_bfloat16_does_not():
    x, w = torch.full((1, 256), 30.0), torch.full((4, 256), 30.0)   # each output 230,400
    assert torch.isinf(x.half() @ w.half().t()).all()
    assert torch.isfinite(x.bfloat16() @ w.bfloat16().t()).all()
    assert (x @ w.t()).eq(230400.0).all()


def test_int8_products_overflow_int16_but_not_int32():
    a = torch.full((2, 256), 127, dtype=torch.int8)
    b = torch.full((3, 256), -128, dtype=torch.int8)
    exact = int8_matmul(a, b)
    assert exact.dtype == torch.int32 and (exact == 256 * 127 * -128).all()
    wrapped = (exact.long() + 2**15) % 2**16 - 2**15
    assert (wrapped != exact).all()


@pytest.mark.slow
def test_float16_overflow_on_a_model_and_its_fixes(tiny):
    model, tokenizer = tiny
    hot = models.with_outliers(model, factor=30000.0)
    ids = data.calibration_samples(tokenizer, 1, 64, seed=0)
    assert diagnose(hot, samples=ids, sensitivity=False).fp16_overflows()
    with torch.no_grad():
        reference = model(ids).logits
        assert torch.isnan(copy.deepcopy(hot).half()(ids).logits).any()
        bf16 = copy.deepcopy(hot).bfloat16()(ids).logits.float()
        undone = models.with_outliers(hot, hot.outlier_channels, 1 / 30000).half()
        fp16 = undone(ids).logits.float()
    assert torch.isfinite(bf16).all() and torch.isfinite(fp16).all()
    assert (fp16.argmax(-1) == reference.argmax(-1)).float().mean() > 0.9


# ---- a missing kernel ----------------------------------------------------------------------------

def test_use_kernels_routes_four_bit_layers_and_falls_back_for_others():
    ids = torch.randint(0, 128, (1, 16), generator=torch.Generator().manual_seed(10))
    four = ptq.quantize_rtn(small_llama(), 4, "group", 32)
    with torch.no_grad():
        before = four(ids).logits
        routed = kernels.use_kernels(four, "reference")
        assert len(routed) == 14
        assert torch.allclose(four(ids).logits, before, atol=1e-4)
        kernels.use_kernels(four, None)
        three = ptq.quantize_rtn(small_llama(), 3, "group", 32)
        expected = three(ids).logits
        assert kernels.use_kernels(three, "reference") == []
        assert torch.equal(three(ids).logits, expected)      # the fallback: its own forward


# ---- bad inputs: the errors and warnings the package gives -----------------------------------------

def test_nan_weights_are_refused_by_the_quantizers():
    model = small_llama()
    with torch.no_grad():
        model.model.layers[0].mlp.up_proj.weight[1, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN or Inf"):
        ptq.quantize_rtn(copy.deepcopy(model), 4, "group", 32)
    report = diagnose(model, samples=torch.randint(0, 128, (1, 8)), sensitivity=False)
    assert report["model.layers.0.mlp.up_proj"].nonfinite_weights == 1


def test_a_group_size_that_does_not_divide_is_refused():
    with pytest.raises(ValueError, match="group_size 48 does not divide the 64 inputs"):
        ptq.quantize_rtn(small_llama(), 4, "group", 48)


def test_too_few_tokens_and_no_damping_warn_and_still_quantize():
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(16, 64, generator=gen)                  # 16 tokens, 64 inputs: rank <= 16
    hessian = gptq.Hessian(64)
    hessian.add(x)
    W = torch.randn(8, 64, generator=gen)
    with pytest.warns(UserWarning, match="only 16 calibration tokens for 64 inputs"):
        assert gptq.warn_few_tokens("layer", hessian)
    with pytest.warns(RuntimeWarning, match="retrying with damp=0.01"):
        Q = gptq.gptq_quantize_layer(W, hessian.matrix, 4, 32, damp=0.0)[0]
    assert torch.isfinite(Q).all()

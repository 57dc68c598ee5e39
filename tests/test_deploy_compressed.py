"""The checkpoints the course writes, read by the loaders production uses.

* compressed-tensors (vLLM's format): our writer's words equal compressed-tensors' own packer,
  and transformers + compressed-tensors load the file on the CPU to the same logits; a GPTQ
  checkpoint of qcourse.gptq, and a model quantized by qcourse.awq, go through the same route.
* GPTQ (``gptq_checkpoint``): transformers' loader needs GPTQModel + optimum and a CUDA torch,
  so the layout is checked against GPTQModel's documented buffers instead
  (``GPTQQuantLinear._register_gptq_buffers`` in gptqmodel/nn_modules/qlinear/__init__.py:
  qweight int32 [K/32·b, N], qzeros int32 [K/g, N/32·b], scales fp16 [K/g, N], g_idx int32 [K]
  = k // g) and decoded here with shifts, independently of qcourse.pack.
"""
import copy
import json

import pytest
import torch
from safetensors.torch import load_file

from qcourse import gptq_checkpoint, models
from qcourse.deploy import compressed
from qcourse.layers import QuantLinear


FEW = ("model.layers.0.self_attn.k_proj", "model.layers.1.mlp.up_proj",
       "model.layers.0.mlp.down_proj")


def rtn_model(tiny, bits=4, group_size=128, symmetric=False, names=None):
    """A copy of qcourse-tiny with the linear layers ``names`` (default: all) as RTN
    QuantLinear layers."""
    model = copy.deepcopy(tiny[0])
    for name, linear in models.linear_layers(model).items():
        if names is None or name in names:
            models.set_module(model, name, QuantLinear.from_float(linear, bits, group_size,
                                                                  symmetric=symmetric))
    return model


def test_layer_tensors_layout(tiny):
    layer = rtn_model(tiny, names=FEW).model.layers[0].self_attn.k_proj   # W [128, 256], g 128
    t = compressed.layer_tensors(layer, symmetric=False)
    assert t["weight_packed"].shape == (128, 256 * 4 // 32) and t["weight_packed"].dtype == torch.int32
    assert t["weight_zero_point"].shape == (128 * 4 // 32, 2)
    assert t["weight_scale"].shape == (128, 2) and t["weight_scale"].dtype == torch.float16
    assert t["weight_shape"].tolist() == [128, 256]
    q, zero = layer.integers()
    first_word = sum(int(q[0, j]) << (4 * j) for j in range(8))        # value j at bits 4j..4j+3
    assert t["weight_packed"][0, 0].item() & 0xFFFFFFFF == first_word
    assert "weight_zero_point" not in compressed.layer_tensors(layer, symmetric=True)


def test_quantization_config_says_what_the_layers_hold(tiny):
    asym = compressed.quantization_config(gptq_checkpoint.quant_linears(rtn_model(tiny, names=FEW)))
    weights = asym["config_groups"]["group_0"]["weights"]
    assert (asym["quant_method"], asym["format"]) == ("compressed-tensors", "pack-quantized")
    assert weights == {"num_bits": 4, "type": "int", "symmetric": False, "strategy": "group",
                       "group_size": 128, "dynamic": False, "actorder": None}
    sym = compressed.quantization_config(gptq_checkpoint.quant_linears(
        rtn_model(tiny, 8, None, symmetric=True, names=FEW)))["config_groups"]["group_0"]["weights"]
    assert sym["symmetric"] and sym["strategy"] == "channel" and sym["num_bits"] == 8
    with pytest.raises(ValueError, match="no QuantLinear"):
        compressed.quantization_config({})


def test_act_order_layers_are_refused(tiny):
    layer = rtn_model(tiny, names=FEW).model.layers[0].mlp.down_proj
    layer.g_idx.copy_(layer.g_idx.flip(0))
    with pytest.raises(ValueError, match="natural group order"):
        compressed.layer_tensors(layer, symmetric=False)


@pytest.mark.slow
@pytest.mark.parametrize("bits, group_size", [(4, 128), (3, 128), (8, None)])
def test_our_words_equal_compressed_tensors_packer(tiny, bits, group_size):
    from qcourse.references.checkpoint_loaders import pack_reference

    layer = rtn_model(tiny, bits, group_size, names=FEW).model.layers[1].mlp.up_proj
    ours = compressed.layer_tensors(layer, symmetric=False)
    q, zero = layer.integers()
    assert torch.equal(ours["weight_packed"], pack_reference(q, bits, packed_dim=1))
    assert torch.equal(ours["weight_zero_point"], pack_reference(zero, bits, packed_dim=0))


def logits(model, ids):
    with torch.no_grad():
        return model(ids).logits


@pytest.mark.slow
@pytest.mark.parametrize("bits, group_size, symmetric", [(4, 128, False), (8, None, True)])
def test_transformers_loads_our_compressed_checkpoint_to_the_same_logits(tiny, tmp_path, bits,
                                                                         group_size, symmetric):
    from qcourse.references.checkpoint_loaders import load_compressed

    model = rtn_model(tiny, bits, group_size, symmetric)
    compressed.save_compressed(model, tmp_path, tiny[1])
    loaded = load_compressed(tmp_path)
    assert not gptq_checkpoint.quant_linears(loaded)                 # their loader built the model
    ids = torch.arange(64)[None] * 7 % 4096
    assert torch.allclose(logits(loaded, ids), logits(model, ids), atol=1e-4)


@pytest.mark.slow
def test_a_corrupted_file_gives_other_logits(tiny, tmp_path):
    """The check can fail: zero points packed along the wrong axis change the model."""
    from safetensors.torch import save_file

    from qcourse.references.checkpoint_loaders import load_compressed

    model = rtn_model(tiny)
    compressed.save_compressed(model, tmp_path)
    tensors = load_file(str(tmp_path / "model.safetensors"))
    name = "model.layers.0.mlp.down_proj.weight_packed"
    tensors[name] = tensors[name].flip(1).contiguous()          # words in the wrong order
    save_file(tensors, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    ids = torch.arange(64)[None] * 7 % 4096
    assert not torch.allclose(logits(load_compressed(tmp_path), ids), logits(model, ids),
                              atol=1e-2)


@pytest.mark.slow
def test_a_gptq_checkpoint_loads_through_compressed_tensors(tiny, tmp_path):
    from qcourse import data, gptq
    from qcourse.references.checkpoint_loaders import load_compressed

    model, tokenizer = tiny
    samples = data.calibration_samples(tokenizer, 4, 192, seed=0)  # 768 tokens: H full rank
    quantized = gptq.quantize_model(copy.deepcopy(model), samples, 4, 128, progress=False,
                                    true_sequential=False)
    gptq_checkpoint.save_gptq_checkpoint(quantized, tmp_path / "gptq", tokenizer)
    compressed.gptq_to_compressed(tmp_path / "gptq", tmp_path / "ct")
    ours, _ = gptq_checkpoint.load_gptq_checkpoint(tmp_path / "gptq")
    ids = samples[:1]
    assert torch.allclose(logits(load_compressed(tmp_path / "ct"), ids), logits(ours, ids),
                          atol=1e-4)


@pytest.mark.slow
def test_an_awq_model_loads_through_compressed_tensors(tiny, tmp_path):
    """AWQ's output (scales folded into the float layers, codes in QuantLinear) written as
    llm-compressor writes AWQ results, read back by transformers + compressed-tensors."""
    from qcourse import awq, data
    from qcourse.references.checkpoint_loaders import load_compressed

    model, tokenizer = tiny
    samples = data.calibration_samples(tokenizer, 2, 64, seed=0)
    quantized = awq.quantize_model(copy.deepcopy(model), samples, 4, 128, progress=False,
                                   clip=False)
    compressed.save_compressed(quantized, tmp_path, tokenizer)
    ids = samples[:1]
    loaded = load_compressed(tmp_path)
    assert not gptq_checkpoint.quant_linears(loaded)
    assert torch.allclose(logits(loaded, ids), logits(quantized, ids), atol=1e-4)
    assert not torch.allclose(logits(loaded, ids), logits(model, ids), atol=1e-3)  # it is quantized


@pytest.mark.slow
def test_transformers_gptq_loader_cannot_run_here_and_says_why(tiny, tmp_path):
    from transformers import AutoModelForCausalLM

    from qcourse.references.checkpoint_loaders import gptq_loader_unavailable_reason

    reason = gptq_loader_unavailable_reason()
    if reason is None:
        pytest.skip("GPTQModel and optimum are installed here: use the real loader instead")
    assert "GPTQModel" in reason
    gptq_checkpoint.save_gptq_checkpoint(rtn_model(tiny, names=FEW), tmp_path, tiny[1])
    with pytest.raises(ImportError, match="optimum"):
        AutoModelForCausalLM.from_pretrained(tmp_path)


def unpack_columns(words: torch.Tensor, bits: int) -> torch.Tensor:
    """Independent GPTQ unpacking for 4- and 8-bit: word row r holds input rows
    r·(32/b) + j at bit offset j·b (value 0 in the low bits)."""
    per = 32 // bits
    shifts = torch.arange(per) * bits
    values = (words.long()[:, None, :] >> shifts[None, :, None]) & (2 ** bits - 1)
    return values.reshape(words.shape[0] * per, words.shape[1])


@pytest.mark.parametrize("checkpoint_format", ["gptq", "gptq_v2"])
def test_gptq_checkpoint_layout_is_gptqmodels(tiny, tmp_path, checkpoint_format):
    model = rtn_model(tiny, names=FEW)
    gptq_checkpoint.save_gptq_checkpoint(model, tmp_path, checkpoint_format=checkpoint_format)
    tensors = load_file(str(tmp_path / "model.safetensors"))
    config = json.loads((tmp_path / "config.json").read_text())["quantization_config"]
    assert {config[k] for k in ("quant_method", "checkpoint_format")} == {"gptq", checkpoint_format}
    assert (config["bits"], config["group_size"], config["desc_act"]) == (4, 128, False)
    for name, layer in gptq_checkpoint.quant_linears(model).items():
        n, k, g, b = layer.out_features, layer.in_features, 128, 4
        expected = {"qweight": ((k // 32 * b, n), torch.int32), "qzeros": ((k // g, n // 32 * b), torch.int32),
                    "scales": ((k // g, n), torch.float16), "g_idx": ((k,), torch.int32)}
        for suffix, (shape, dtype) in expected.items():
            t = tensors[f"{name}.{suffix}"]
            assert (tuple(t.shape), t.dtype) == (shape, dtype), (name, suffix)
        assert torch.equal(tensors[f"{name}.g_idx"].long(), torch.arange(k) // g)
        q = unpack_columns(tensors[f"{name}.qweight"], b)                       # [K, N]
        zeros = unpack_columns(tensors[f"{name}.qzeros"].t().contiguous(), b).t()  # [K/g, N]
        if checkpoint_format == "gptq":
            zeros = (zeros + 1) & (2 ** b - 1)       # v1 stores zero − 1 (GPTQModel adds it back)
        scales = tensors[f"{name}.scales"].float()
        gi = tensors[f"{name}.g_idx"].long()
        weight = (scales[gi] * (q - zeros[gi])).t()                              # [N, K]
        assert torch.allclose(weight, layer.weight(), atol=1e-6), name

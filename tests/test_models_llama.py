"""The Llama block in one place (qcourse.models.llama): its groups, its order and its attention
shape hold for any LlamaForCausalLM. Checked on a random 2-layer model of SmolLM2-135M's shape
(hidden 576, 9 heads of 64, 3 key/value heads: grouped-query attention) and on qcourse-tiny's
config, and every method that reads the structure keeps a float model's function."""
import copy

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from qcourse import awq, gptq, rotate, smoothquant
from qcourse.calib import collect_activation_stats
from qcourse.models import llama, tiny_config, with_outliers


def smollm2_shaped(layers: int = 2) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=256, hidden_size=576, intermediate_size=1536,
                         num_hidden_layers=layers, num_attention_heads=9, num_key_value_heads=3,
                         max_position_embeddings=64, tie_word_embeddings=True)
    return LlamaForCausalLM(config).eval()


def test_the_attention_shape_of_smollm2_and_of_qcourse_tiny():
    smol = smollm2_shaped(30).config
    assert llama.head_dim(smol) == 576 // 9 == 64 and llama.kv_heads(smol) == 3
    assert llama.kv_cache_values(smol, tokens=100, batch=2) == 2 * 30 * 3 * 64 * 100 * 2
    tiny = tiny_config()
    assert llama.head_dim(tiny) == 64 and llama.kv_heads(tiny) == 2
    as_dict = {"hidden_size": 576, "num_attention_heads": 9, "num_hidden_layers": 30}
    assert llama.head_dim(as_dict) == 64 and llama.kv_heads(as_dict) == 9   # no GQA said
    assert llama.kv_cache_values({**as_dict, "num_key_value_heads": 3}, 100, 2) == \
        llama.kv_cache_values(smol, 100, 2)


def test_the_groups_of_a_block_in_forward_order():
    block = smollm2_shaped().model.layers[0]
    groups = llama.input_groups(block)
    assert groups == [llama.ATTENTION_NORM, llama.MLP_NORM, llama.UP_DOWN]   # GQA: no v -> o
    norm, linears = llama.ATTENTION_NORM.modules(block)
    assert norm is block.input_layernorm and linears == [block.self_attn.q_proj,
                                                         block.self_attn.k_proj,
                                                         block.self_attn.v_proj]
    assert llama.sequential_groups(block) == [list(g.layers) for g in llama.BLOCK_GROUPS]
    assert gptq.sequential_groups(block) == llama.sequential_groups(block)
    assert awq.scale_groups(block) == groups


def test_a_block_of_another_layout_is_named():
    block = smollm2_shaped().model.layers[1]
    del block.mlp.gate_proj
    with pytest.raises(ValueError, match=r"model\.layers\.1 has no 'mlp\.gate_proj'"):
        llama.input_groups(block, "model.layers.1")
    with pytest.raises(ValueError, match="Sequential has no model.layers: SmoothQuant"):
        llama.decoder_blocks(torch.nn.Sequential(), "SmoothQuant")


@torch.no_grad()
def test_every_method_reading_the_structure_keeps_the_float_function():
    model = smollm2_shaped()
    ids = torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(1))
    before = model(ids).logits
    outliers = with_outliers(model, factor=10.0)
    torch.testing.assert_close(outliers(ids).logits, before, rtol=1e-4, atol=1e-4)
    smoothed = copy.deepcopy(model)
    smoothquant.smooth_llama(smoothed, collect_activation_stats(smoothed, ids))
    torch.testing.assert_close(smoothed(ids).logits, before, rtol=1e-4, atol=1e-4)
    rotated = rotate.rotate_model(copy.deepcopy(model))
    torch.testing.assert_close(rotated(ids).logits, before, rtol=1e-3, atol=1e-3)

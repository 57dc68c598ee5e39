import pytest
import torch
from torch import nn

from qcourse import models


def test_embedded_model_has_the_documented_shape(tiny):
    model, tokenizer = tiny
    c = model.config
    assert type(model).__name__ == "LlamaForCausalLM"
    assert (c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads,
            c.intermediate_size, c.vocab_size, c.max_position_embeddings) == (256, 6, 4, 2, 768, 4096, 512)
    assert c.tie_word_embeddings and model.lm_head.weight is model.model.embed_tokens.weight
    assert len(tokenizer) == 4096
    for name, linear in models.linear_layers(model).items():
        assert linear.in_features % 256 == 0, name


def test_tokenizer_loads_with_autotokenizer_and_round_trips(tiny):
    from transformers import AutoTokenizer
    from qcourse.paths import TINY_DIR

    tokenizer = AutoTokenizer.from_pretrained(TINY_DIR)
    text = "def f(x):\n    return x  # ünïcode ✓\n"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text
    assert ids == tiny[1](text, add_special_tokens=False)["input_ids"]


def test_linear_layers_and_swap(tiny):
    model, _ = tiny
    layers = models.linear_layers(model)
    assert len(layers) == 6 * 7
    assert next(iter(layers)) == "model.layers.0.self_attn.q_proj"
    assert "lm_head" in models.linear_layers(model, include_head=True)


def test_swap_linears_replaces_every_layer_in_place():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Sequential(nn.Linear(4, 2)))
    seen = []

    def make(name, linear):
        seen.append(name)
        return nn.Identity()

    models.swap_linears(model, make)
    assert seen == ["0", "2.0"]
    assert isinstance(model[0], nn.Identity) and isinstance(model[2][0], nn.Identity)
    old = models.set_module(model, "1", nn.Tanh())
    assert isinstance(old, nn.ReLU) and isinstance(model[1], nn.Tanh)
    with pytest.raises(ValueError, match="no submodule"):
        models.get_module(model, "5.weight_thing")


def test_hub_model_offline_names_the_embedded_default(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(ValueError, match="qcourse-tiny"):
        models.load("HuggingFaceTB/SmolLM2-135M")


def test_local_folder_without_config_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="config.json"):
        models.load(str(tmp_path))


def test_dtype_must_be_floating():
    with pytest.raises(TypeError, match="floating"):
        models.load(dtype=torch.int8)


def test_parameter_count_counts_tied_weights_once(tiny):
    model, _ = tiny
    n = models.parameter_count(model)
    assert n == sum(p.numel() for p in model.parameters())  # parameters() already dedups
    embed = model.model.embed_tokens.weight.numel()
    assert n < sum(p.numel() for p in model.state_dict().values())
    assert embed == 4096 * 256

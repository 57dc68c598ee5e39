"""The shape of the embedded default model, ``qcourse-tiny``."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import LlamaConfig


def tiny_config() -> LlamaConfig:
    """The shape of ``qcourse-tiny``: a 6-layer Llama, hidden 256, 4 query / 2 key-value heads."""
    # imported here: transformers pulls in hqq and torch._dynamo (triton) when hqq is installed
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=4096,
        hidden_size=256,
        intermediate_size=768,
        num_hidden_layers=6,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=64,
        max_position_embeddings=512,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        tie_word_embeddings=True,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
        hidden_act="silu",
        attention_bias=False,
        mlp_bias=False,
    )

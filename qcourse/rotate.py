"""Rotations: turn a Llama into one that computes the same function with activations that have
no outlier channels, so that 4-bit activations become usable (QuaRot, Ashkboos et al. 2024;
SpinQuant, Liu et al. 2024).

For any orthogonal ``Q`` (``Q Qᵀ = I``), a linear layer fed ``x Q`` with weight ``W Q`` computes
``(x Q)(W Q)ᵀ = x Wᵀ``: nothing changes. A *random Hadamard* matrix ``Q = diag(±1) · H_n / √n``
(``H_n``: Sylvester's ±1 matrix, ``n`` a power of two) spreads every coordinate of ``x`` evenly
over all ``n`` outputs: a channel carrying an outlier ``M`` becomes ``±M/√n`` in every channel.
Per-token absmax scales then fit the bulk of the values instead of one channel.

Folded into a Llama (everything is exact in real arithmetic):

1. RMSNorm weights are folded into the linear layers that read them (``W ← W diag(w)``, the norm
   keeps weight 1): an RMSNorm without weight commutes with ``Q`` (``‖x Q‖ = ‖x‖``).
2. The residual stream is rotated by ``Q`` (width ``hidden``): the embedding ``E ← E Q``, every
   layer reading the stream (q, k, v, gate, up, lm_head) ``W ← W Q``, every layer writing into it
   (o, down) ``W ← Qᵀ W``. Tied embeddings are untied first (lm_head = E diag(w_final) Q ≠ E Q).
3. The values are rotated per head by ``R`` (``head_dim``): ``v_proj`` rows ``← Rᵀ W_v[h]``, and
   ``o_proj`` columns of each head ``← W_o[:, h] R``: the attention output of each head arrives
   rotated at o_proj's input (QuaRot's fused rotation of the values).
4. ``down_proj``'s input (after SiLU, no linear map to fold into) is rotated *online*: an
   :class:`OnlineRotation` multiplies it by a block-diagonal Hadamard ``H`` and ``W_down ← W_down H``
   (QuaRot's online Hadamard).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from qcourse.models import decoder_layers, llama
from qcourse.models.llama import NORM_GROUPS, READS_STREAM, WRITES_STREAM
from qcourse.transforms import fold_norm_weight


def hadamard(n: int) -> torch.Tensor:
    """Sylvester's Hadamard matrix divided by √n, ``[n, n]`` float64 (orthogonal, symmetric):
    ``H_1 = [1]``, ``H_2n = [[H_n, H_n], [H_n, -H_n]]``; ``n`` a power of two."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1 or n & (n - 1):
        raise ValueError(f"a Sylvester Hadamard matrix needs n a power of two, got {n!r}")
    H = torch.ones(1, 1, dtype=torch.float64)
    while H.shape[0] < n:
        H = torch.cat([torch.cat([H, H], 1), torch.cat([H, -H], 1)], 0)
    return H / math.sqrt(n)


def random_hadamard(n: int, seed: int = 0) -> torch.Tensor:
    """``diag(±1) · H_n / √n`` with random signs (seeded): a random orthogonal matrix that still
    spreads every coordinate over all n (float64 ``[n, n]``). If ``n`` is not a power of two,
    block-diagonal with the largest power-of-two blocks that divide it (768 = 3 × 256)."""
    block = n & -n                                    # largest power of two dividing n
    H = torch.block_diag(*[hadamard(block)] * (n // block))
    signs = torch.randint(0, 2, (n,), generator=torch.Generator().manual_seed(seed)) * 2 - 1
    return signs[:, None].double() * H


class OnlineRotation(nn.Module):
    """``layer(x R)``: the rotation of an input that no earlier weight can absorb (down_proj's,
    after the SiLU); ``layer``'s weight must have been multiplied by ``R`` on its input side."""

    def __init__(self, layer: nn.Module, R: torch.Tensor) -> None:
        super().__init__()
        self.layer = layer
        self.register_buffer("R", R.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x @ self.R.to(x.dtype))


@torch.no_grad()
def untie_embeddings(model: nn.Module) -> None:
    """Give the output head its own copy of the embedding matrix (and say so in the config)."""
    head, embed = model.get_output_embeddings(), model.get_input_embeddings()
    if head.weight is embed.weight or head.weight.data_ptr() == embed.weight.data_ptr():
        head.weight = nn.Parameter(embed.weight.detach().clone())
    model.config.tie_word_embeddings = False


@torch.no_grad()
def rotate_linear(linear: nn.Linear, Q: torch.Tensor, side: str) -> None:
    """``W ← W Q`` (``side="input"``) or ``W ← Qᵀ W`` (and bias ``← Qᵀ b``, ``side="output"``),
    computed in float64."""
    W = linear.weight.double()
    if side == "input":
        linear.weight.copy_(W @ Q)
    else:
        linear.weight.copy_(Q.t() @ W)
        if linear.bias is not None:
            linear.bias.copy_(Q.t() @ linear.bias.double())


@torch.no_grad()
def rotate_values(attention: nn.Module, R: torch.Tensor, head_dim: int) -> None:
    """Rotate each head's values by ``R [head_dim, head_dim]``: v_proj rows of every kv head
    ``← Rᵀ W_v[h]``, o_proj columns of every query head ``← W_o[:, h] R``."""
    v, o = attention.v_proj, attention.o_proj
    Wv = v.weight.double().reshape(-1, head_dim, v.in_features)        # [kv_heads, d, hidden]
    v.weight.copy_((R.t() @ Wv).reshape(v.weight.shape))
    Wo = o.weight.double().reshape(o.out_features, -1, head_dim)       # [hidden, heads, d]
    o.weight.copy_((Wo @ R).reshape(o.weight.shape))


@torch.no_grad()
def fold_norms(model: nn.Module) -> nn.Module:
    """Step 1 alone: every RMSNorm weight folded into the linear layers it feeds (the final norm
    into the untied output head); the norms keep weight 1. Same function; returns the model."""
    untie_embeddings(model)
    for layer in decoder_layers(model):
        for group in NORM_GROUPS:
            fold_norm_weight(*group.modules(layer))
    fold_norm_weight(model.model.norm, [model.get_output_embeddings()])
    return model


@torch.no_grad()
def rotate_model(model: nn.Module, seed: int = 0) -> nn.Module:
    """Fold QuaRot's rotations into a Llama-family ``model`` in place (module docstring); the
    function it computes is unchanged up to float rounding. Returns the model."""
    head_dim = llama.head_dim(model.config)
    Q = random_hadamard(model.config.hidden_size, seed)
    R = random_hadamard(head_dim, seed + 1)
    fold_norms(model)
    embed = model.get_input_embeddings()
    embed.weight.copy_(embed.weight.double() @ Q)
    rotate_linear(model.get_output_embeddings(), Q, "input")
    for layer in decoder_layers(model):
        for name in READS_STREAM:
            rotate_linear(layer.get_submodule(name), Q, "input")
        for name in WRITES_STREAM:
            rotate_linear(layer.get_submodule(name), Q, "output")
        rotate_values(layer.self_attn, R, head_dim)
        down = layer.mlp.down_proj
        H = random_hadamard(down.in_features, seed + 2)
        rotate_linear(down, H, "input")
        layer.mlp.down_proj = OnlineRotation(down, H)
    return model


# The W4A4 / W4A8 experiment with and without the rotation lives in qcourse.experiments.rotation;
# its names stay reachable here, where notebook 11 first met them.
_MOVED = ("quantize_weights_activations", "PREPARE", "rotation_experiment", "peak_to_rms")


def __getattr__(name: str):
    if name in _MOVED:
        from qcourse.experiments import rotation
        return getattr(rotation, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""Rotations: turn a Llama into one that computes the same function with activations that have
no outlier channels, so that 4-bit activations become usable (QuaRot, Ashkboos et al. 2024;
SpinQuant, Liu et al. 2024).

For any orthogonal ``Q`` (``Q Qᵀ = I``), a linear layer fed ``x Q`` with weight ``W Q`` computes
``(x Q)(W Q)ᵀ = x Wᵀ``: nothing changes. A *random Hadamard* matrix ``Q = diag(±1) · H_n / √n``
(``H_n``: a ±1 matrix with orthogonal rows) spreads every coordinate of ``x`` evenly over all
``n`` outputs: a channel carrying an outlier ``M`` becomes ``±M/√n`` in every channel. Per-token
absmax scales then fit the bulk of the values instead of one channel.

Hadamard matrices exist only for n = 1, 2 and multiples of 4. Sylvester's doubling gives every
power of two; Paley's constructions give ``q + 1`` (q a prime ≡ 3 mod 4: 12, 20, 24, 32, 44, 48,
60, 72, ...) and ``2(q + 1)`` (q a prime ≡ 1 mod 4: 12, 28, 36, 60, ...); Kronecker products
multiply orders. :func:`hadamard` combines them: SmolLM2's width 576 = 36 · 16, its MLP's
1536 = 12 · 128; QuaRot does the same with a stored H_36, H_12, ... (``get_hadK``). A
*block-diagonal* Hadamard (``block``: e.g. 9 blocks of 64 for 576) only spreads an outlier over
its own block: ±M/√block, not ±M/√n.

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
   :class:`OnlineRotation` multiplies it by a Hadamard ``H`` and ``W_down ← W_down H``
   (QuaRot's online Hadamard; a fast Walsh-Hadamard transform there, a matrix product here).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from qcourse.models import decoder_layers, llama
from qcourse.models.llama import NORM_GROUPS, READS_STREAM, WRITES_STREAM
from qcourse.transforms import fold_norm_weight


def sylvester(n: int) -> torch.Tensor:
    """Sylvester's ±1 Hadamard matrix ``[n, n]`` (float64), ``n`` a power of two:
    ``H_1 = [1]``, ``H_2n = [[H_n, H_n], [H_n, -H_n]]``."""
    H = torch.ones(1, 1, dtype=torch.float64)
    while H.shape[0] < n:
        H = torch.cat([torch.cat([H, H], 1), torch.cat([H, -H], 1)], 0)
    return H


def _is_prime(q: int) -> bool:
    return q > 1 and all(q % d for d in range(2, math.isqrt(q) + 1))


def paley(n: int) -> torch.Tensor | None:
    """A ±1 Hadamard matrix of order ``n`` from Paley's constructions, or None if neither
    applies. With q prime and χ the quadratic character mod q, the Jacobsthal matrix
    ``J[i, j] = χ(j - i)`` gives

        q ≡ 3 (mod 4), n = q + 1:    H = [[1, 1ᵀ], [-1, J + I]]
        q ≡ 1 (mod 4), n = 2(q + 1): C = [[0, 1ᵀ], [1, J]],  H = C ⊗ [[1, 1], [1, -1]] + I ⊗ [[1, -1], [-1, -1]]
    """
    for q, kind in ((n - 1, 3), (n // 2 - 1, 1)):
        if not (_is_prime(q) and q % 4 == kind and (kind == 3 or n % 2 == 0)):
            continue
        squares = {i * i % q for i in range(1, q)}
        chi = torch.tensor([0] + [1 if d in squares else -1 for d in range(1, q)], dtype=torch.float64)
        J = chi[(torch.arange(q)[None, :] - torch.arange(q)[:, None]) % q]   # J[i, j] = χ(j - i)
        ones = torch.ones(1, q, dtype=torch.float64)
        if kind == 3:
            return torch.cat([torch.cat([torch.ones(1, 1, dtype=torch.float64), ones], 1),
                              torch.cat([-ones.t(), J + torch.eye(q, dtype=torch.float64)], 1)], 0)
        C = torch.cat([torch.cat([torch.zeros(1, 1, dtype=torch.float64), ones], 1),
                       torch.cat([ones.t(), J], 1)], 0)
        plus, minus = torch.tensor([[1.0, 1], [1, -1]], dtype=torch.float64), torch.tensor(
            [[1.0, -1], [-1, -1]], dtype=torch.float64)
        return torch.kron(C, plus) + torch.kron(torch.eye(q + 1, dtype=torch.float64), minus)
    return None


def hadamard(n: int) -> torch.Tensor:
    """A Hadamard matrix divided by √n, ``[n, n]`` float64 (orthogonal, every entry ±1/√n):
    Sylvester's for powers of two, else ``paley(m) ⊗ sylvester(2^k)`` with ``n = m · 2^k`` and
    the smallest such Paley order m; a clear error for the orders built neither way."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"a Hadamard matrix needs a positive int order, got {n!r}")
    power = n & -n                                    # largest power of two dividing n
    while power >= 1:
        m = n // power
        base = torch.ones(1, 1, dtype=torch.float64) if m == 1 else paley(m)
        if base is not None:
            return torch.kron(base, sylvester(power)) / math.sqrt(n)
        power //= 2
    raise ValueError(f"no Hadamard matrix of order {n} is built here (Sylvester powers of two "
                     f"times a Paley order; Hadamard orders are 1, 2 or multiples of 4)")


def random_hadamard(n: int, seed: int = 0, block: int | None = None) -> torch.Tensor:
    """``diag(±1) · H / √·`` with random signs (seeded): a random orthogonal matrix that spreads
    every coordinate evenly (float64 ``[n, n]``). ``block``: block-diagonal, ``n / block``
    Hadamard blocks of ``block`` (each coordinate spread over its block only); None: one
    Hadamard of order n."""
    size = n if block is None else block
    if n % size:
        raise ValueError(f"block {block} does not divide n = {n}")
    H = torch.block_diag(*[hadamard(size)] * (n // size))
    signs = torch.randint(0, 2, (n,), generator=torch.Generator().manual_seed(seed)) * 2 - 1
    return signs[:, None].double() * H


def random_orthogonal(n: int, seed: int = 0) -> torch.Tensor:
    """A random orthogonal matrix (Haar-distributed: QR of a Gaussian matrix with the signs of
    R's diagonal fixed), float64 ``[n, n]``: it spreads coordinates too, but unevenly (entries
    ~N(0, 1/n), the largest several times 1/√n), which SpinQuant found worse than Hadamard."""
    G = torch.randn(n, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    Q, R = torch.linalg.qr(G)
    return Q * torch.sign(torch.diagonal(R))[None, :]


ROTATIONS = {"hadamard": random_hadamard, "orthogonal": lambda n, seed, block=None: random_orthogonal(n, seed)}


def rotation(n: int, seed: int = 0, kind: str = "hadamard", block: int | None = None) -> torch.Tensor:
    """The rotation ``rotate_model`` uses: ``kind`` "hadamard" (:func:`random_hadamard`, full
    width or ``block``-diagonal) or "orthogonal" (:func:`random_orthogonal`)."""
    if kind not in ROTATIONS:
        raise ValueError(f"kind must be one of {tuple(ROTATIONS)}, got {kind!r}")
    if kind == "orthogonal" and block is not None:
        raise ValueError("block applies to Hadamard rotations only")
    return ROTATIONS[kind](n, seed, block=block)


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
def rotate_model(model: nn.Module, seed: int = 0, *, kind: str = "hadamard",
                 block: int | None = None) -> nn.Module:
    """Fold QuaRot's rotations into a Llama-family ``model`` in place (module docstring); the
    function it computes is unchanged up to float rounding. ``kind`` and ``block`` choose the
    rotation of the residual stream and of down_proj's input (:func:`rotation`: full-width
    random Hadamard by default). Returns the model."""
    head_dim = llama.head_dim(model.config)
    Q = rotation(model.config.hidden_size, seed, kind, block)
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
        H = rotation(down.in_features, seed + 2, kind, block)
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

"""GPTQ: quantize a weight matrix column by column, pushing each column's error onto the rest.

A linear layer maps inputs ``X [K, n]`` (n calibration tokens) to ``W X``. GPTQ (Frantar et al.,
2022, arXiv 2210.17323) looks for the quantized ``Q`` that keeps the *outputs* close,

    minimise  ||W X - Q X||²  =  (n/2) · tr((W - Q) H (W - Q)ᵀ),   H = 2/n · X Xᵀ  [K, K],

which splits into independent rows sharing one Hessian ``H``. Optimal Brain Quantization (OBQ,
arXiv 2208.11580) quantizes one weight ``w_j`` at a time and re-optimises the weights not yet
quantized (``F``) to absorb its error:

    δ_F = -(w_j - q_j) / [H_F⁻¹]_jj · (H_F⁻¹)_{:, j},       error added: (w_j - q_j)² / [H_F⁻¹]_jj

GPTQ makes three changes that turn this into a fast algorithm (the paper's Algorithm 1):

1. every row uses the same (left-to-right, or descending-diag(H) with ``act_order``) order, so
   ``H_F⁻¹`` is shared by all rows;
2. the rows of ``H_F⁻¹`` needed at each step are the rows of ``U``, the upper Cholesky factor of
   ``H⁻¹ = Uᵀ U`` (scaled by ``U_jj``), so nothing is re-inverted;
3. updates are *lazy*: inside a block of ``block_size`` columns the error is pushed onto the
   block only; the rest of the matrix gets it in one matrix product per block.

``H`` is dampened (``damp`` × mean of its diagonal added to the diagonal) so that it can be
inverted even when the calibration set does not span all K input directions. The scale of ``H``
does not matter: the paper writes ``2 X Xᵀ``, its code (IST-DASLab/gptq ``add_batch``) divides by
the number of calibration *sequences*, this module by the number of tokens (an average that does
not grow with the calibration set); any factor c > 0 scales ``U`` by 1/√c and the dampening by c,
and cancels in every update.

Each group of ``group_size`` columns gets its scale and zero point when quantization reaches its
first column, from the weights as updated so far (``static_groups``: from the original weights,
as llm-compressor does). The reference code (and AutoGPTQ, GPTQModel) takes that range from the
weights as of the start of the current block of ``block_size`` columns, before the updates of the
block's earlier columns; applying them first, as here, makes the result independent of the block
size. Identical when groups start only at block starts (``group_size`` = ``block_size`` = 128);
at groups of 32 or 64 some codes differ and the error moves by a few percent, either way
(``tests/test_gptq.py`` runs both).

One weight, one algorithm: :func:`gptq` returns a :class:`GPTQResult` (its integers, scales,
``.weight`` dequantized, ``.to_quant_linear()`` packed); :func:`gptq_quantize_layer` gives the same
as tensors (the API DESIGN names) and :func:`to_quant_linear` takes an ``nn.Linear``.

At the model level (:func:`quantize_model`) the decoder blocks are quantized in order, each
calibrated on the outputs of the already-quantized blocks before it; inside a block the layers go
q/k/v → o → gate/up → down, each group's Hessians collected after the groups before it were
quantized ("true sequential").
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from qcourse import blocks
from qcourse.layers import QuantLinear
from qcourse.models import get_module, llama, set_module
from qcourse.quant import QuantScheme, as_scheme, check_finite, dequantize

MAX_DAMP_RETRIES = 6


# --------------------------------------------------------------------------------------------
# The Hessian H = 2/n · X Xᵀ
# --------------------------------------------------------------------------------------------

class Hessian:
    """Running ``H = 2/n · Σ_t x_t x_tᵀ`` over the ``n`` input rows (tokens) seen so far (the
    reference code divides by the number of sequences instead: a factor that cancels in GPTQ).

    After ``add(x)`` with ``b`` new rows: ``H ← H · n/(n+b) + 2/(n+b) · xᵀx``, so ``H`` is always
    the average over every row added, without keeping the rows.
    """

    def __init__(self, width: int) -> None:
        self.width = width
        self.matrix = torch.zeros(width, width)
        self.count = 0

    def add(self, x: torch.Tensor) -> None:
        """Add inputs ``x [..., width]`` (any leading shape: batch, tokens)."""
        if x.shape[-1] != self.width:
            raise ValueError(f"inputs have width {x.shape[-1]}, the Hessian {self.width}")
        rows = x.detach().reshape(-1, self.width).float()
        new = rows.shape[0]
        self.matrix *= self.count / (self.count + new)
        self.count += new
        rows = rows * math.sqrt(2 / self.count)
        self.matrix += rows.t() @ rows


def hessian(x: torch.Tensor) -> torch.Tensor:
    """``H = 2/n · Xᵀ X`` for the ``n`` rows of ``x [..., K]`` (tokens by input features)."""
    acc = Hessian(x.shape[-1])
    acc.add(x)
    return acc.matrix


# --------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------

def _symmetric(symmetric: bool, sym: bool | None) -> bool:
    """``symmetric``, or ``sym`` (GPTQ's own spelling, which DESIGN uses), not both differently."""
    if sym is not None and symmetric and not sym:
        raise ValueError("symmetric=True and sym=False disagree: pass one of them")
    return symmetric if sym is None else sym


def _check_problem(W: torch.Tensor, H: torch.Tensor, scheme: QuantScheme) -> QuantScheme:
    """Validate a layer problem; return the scheme with the group size resolved for ``W``."""
    check_finite(W, "W", "GPTQ")
    check_finite(H, "H", "GPTQ", "a NaN in H usually means the calibration activations "
                                 "overflowed")
    if W.dim() != 2:
        raise ValueError(f"W must be a 2-D weight [out_features, in_features], got shape "
                         f"{tuple(W.shape)}")
    k = W.shape[1]
    if tuple(H.shape) != (k, k):
        raise ValueError(f"H must be [{k}, {k}] for a weight with {k} input columns, got "
                         f"{tuple(H.shape)}")
    return scheme.resolved(k, "W")


# --------------------------------------------------------------------------------------------
# Building blocks of the algorithm
# --------------------------------------------------------------------------------------------

def without_dead_inputs(W: torch.Tensor, H: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Copies of ``W`` and ``H`` where inputs that were never active (``H_jj = 0``) get
    ``H_jj = 1`` (so H stays invertible) and a zero weight (they never reach the output)."""
    W, H = W.clone(), H.clone()
    dead = H.diagonal() == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    return W, H


def inverse_hessian_cholesky(H: torch.Tensor, damp: float = 0.01) -> torch.Tensor:
    """Upper Cholesky factor ``U`` of the dampened inverse Hessian: ``(H + λI)⁻¹ = Uᵀ U``,
    ``λ = damp · mean(diag H)``.

    If a factorisation fails (H not positive definite even after dampening), ``damp`` is
    multiplied by 10 and tried again, with a warning, up to ``MAX_DAMP_RETRIES`` times.
    """
    if not damp >= 0:
        raise ValueError(f"damp must be >= 0 (a fraction of the mean diagonal), got {damp!r}")
    mean_diag = H.diagonal().mean().abs().clamp(min=1e-12)
    for attempt in range(MAX_DAMP_RETRIES + 1):
        damped = H + damp * mean_diag * torch.eye(H.shape[0], dtype=H.dtype)
        L, info = torch.linalg.cholesky_ex(damped)
        if not info:
            U, info = torch.linalg.cholesky_ex(torch.cholesky_inverse(L), upper=True)
            if not info and torch.isfinite(U).all():
                return U
        if attempt == MAX_DAMP_RETRIES:
            break
        new = damp * 10 if damp > 0 else 0.01
        warnings.warn(f"Cholesky of the Hessian failed with damp={damp:g} (H is not positive "
                      f"definite); retrying with damp={new:g}", RuntimeWarning, stacklevel=2)
        damp = new
    raise ValueError(f"H is not positive definite even with damp={damp:g}; check the "
                     "calibration data (is H really 2/n·XXᵀ?)")


def error_feedback(W1: torch.Tensor, u: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """One GPTQ step, in place. The first column ``w`` of ``W1 [N, m]`` is quantized to ``q``;
    ``u = U[j, j:]`` is the row of the Cholesky factor from the diagonal on. Then

        e = (w - q) / u_0,      W1 ← W1 - e uᵀ

    which sets the first column to ``q`` and moves the others by the OBS update. Returns ``e``."""
    err = (W1[:, 0] - q) / u[0]
    W1.addr_(err, u, alpha=-1)
    return err


@dataclass
class GPTQResult:
    """What :func:`gptq` returns. ``q [N, K]`` holds the integers on the scheme's grid (int8 if
    symmetric, else uint8) in the original column order; ``scale``/``zero`` are ``[N, K/g]``
    (zero = 0 when symmetric, as in :func:`qcourse.quant.quantize`); ``g_idx [K]`` is each
    column's group; ``losses [N, K]`` is the error each weight added, ``(w - q)² / U_jj²``: its
    sum is ``tr(ΔH'Δᵀ)`` with ``H'`` the dampened Hessian; ``perm`` the column order used;
    ``scheme`` the grid, its group size resolved."""

    q: torch.Tensor
    scale: torch.Tensor
    zero: torch.Tensor
    g_idx: torch.Tensor
    losses: torch.Tensor
    perm: torch.Tensor
    scheme: QuantScheme

    @property
    def weight(self) -> torch.Tensor:
        """The dequantized ``Q [N, K] = (q - zero[:, g_idx]) · scale[:, g_idx]``."""
        g = self.g_idx.long()
        return dequantize(self.q, self.scale[:, g], self.zero[:, g])

    def to_quant_linear(self, bias: torch.Tensor | None = None) -> QuantLinear:
        """The packed :class:`QuantLinear` holding these integers (and ``bias``)."""
        return QuantLinear.from_quantized(self.q, self.scale, self.zero, self.scheme.bits,
                                          self.scheme.group_size, bias=bias, g_idx=self.g_idx)


def gptq(W: torch.Tensor, H: torch.Tensor, bits: int | QuantScheme, group_size: int | None = None,
         *, act_order: bool = False, symmetric: bool = False, block_size: int = 128,
         damp: float = 0.01, static_groups: bool = False, sym: bool | None = None) -> GPTQResult:
    """GPTQ on one weight ``W [N, K]`` with Hessian ``H [K, K]`` (see the module docstring);
    ``bits``/``group_size``/``symmetric`` (or a :class:`~qcourse.quant.QuantScheme` as ``bits``;
    ``sym`` is accepted for ``symmetric``). :attr:`GPTQResult.weight` is the quantized weight,
    :meth:`GPTQResult.to_quant_linear` the packed layer.

    ``act_order``: quantize columns by descending ``diag(H)`` (the inputs with the most energy
    first); groups are then consecutive in that order and ``g_idx`` maps columns to them.
    ``static_groups``: every group's scale and zero come from the original ``W`` (natural
    column groups) before anything is quantized, so ``g_idx = k // g`` even with act-order.
    Inputs whose ``H_jj = 0`` (never active) get a zero weight.
    """
    scheme = _check_problem(W, H, as_scheme(bits, group_size, _symmetric(symmetric, sym)))
    g = scheme.group_size
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be a positive integer, got {block_size!r}")
    W, H = without_dead_inputs(W.detach().float(), H.detach().float())
    n, k = W.shape
    if static_groups:
        static_scale, static_zero = scheme.params(W)
    perm = torch.argsort(H.diagonal(), descending=True, stable=True) if act_order \
        else torch.arange(k)
    W, H = W[:, perm], H[perm][:, perm]
    U = inverse_hessian_cholesky(H, damp)

    codes, losses = torch.zeros_like(W), torch.zeros_like(W)
    scale, zero = torch.zeros(n, k // g), torch.zeros(n, k // g)
    for i1 in range(0, k, block_size):
        i2 = min(i1 + block_size, k)
        W1 = W[:, i1:i2].clone()                  # the block, updated column by column
        Err1 = torch.zeros_like(W1)               # (w - q) / U_jj of every column done
        for i in range(i2 - i1):
            j = i1 + i
            if static_groups:
                s, z = static_scale[:, perm[j] // g], static_zero[:, perm[j] // g]
            elif j % g == 0:                      # a new group: its range as updated so far
                # (the reference reads W[:, j:j + g] as at the block's start: module docstring)
                current = W[:, j:j + g] - Err1[:, :i] @ U[i1:j, j:j + g]
                s, z = (t[:, 0] for t in scheme.params(current))
                scale[:, j // g], zero[:, j // g] = s, z
            codes[:, j] = scheme.apply_grid(W1[:, i], s, z)
            q = (codes[:, j] - z) * s             # the column's value on the grid
            err = error_feedback(W1[:, i:], U[j, j:i2], q)  # the columns after j absorb it
            Err1[:, i], losses[:, j] = err, err.pow(2)
        W[:, i2:] -= Err1 @ U[i1:i2, i2:]           # lazy update of every later column

    inverse = torch.argsort(perm)
    if static_groups:
        scale, zero, g_idx = static_scale, static_zero, torch.arange(k) // g
    else:
        g_idx = (torch.arange(k) // g)[inverse]
    q = codes[:, inverse].to(torch.int8 if scheme.symmetric else torch.uint8)
    return GPTQResult(q, scale, zero, g_idx.int(), losses[:, inverse], perm, scheme)


def gptq_quantize_layer(W: torch.Tensor, H: torch.Tensor, bits: int | QuantScheme,
                        group_size: int | None = None, *, act_order: bool = False,
                        symmetric: bool = False, sym: bool | None = None, block_size: int = 128,
                        damp: float = 0.01, static_groups: bool = False,
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`gptq` as tensors (the API DESIGN names): ``(Q_dequantized [N, K], scale [N, K/g],
    zero [N, K/g], g_idx [K])``.

    ``Q[n, k] = (q[n, k] - zero[n, g_idx[k]]) · scale[n, g_idx[k]]`` with integer ``q`` on the
    ``bits``-bit grid (signed and zero = 0 if ``symmetric``); see :func:`gptq` for the options.
    """
    result = gptq(W, H, bits, group_size, act_order=act_order, symmetric=symmetric, sym=sym,
                  block_size=block_size, damp=damp, static_groups=static_groups)
    return result.weight, result.scale, result.zero, result.g_idx


def hessian_error(W: torch.Tensor, Q: torch.Tensor, H: torch.Tensor) -> float:
    """The GPTQ objective ``tr((W - Q) H (W - Q)ᵀ)`` (float64)."""
    delta = (W.double() - Q.double())
    return torch.einsum("nk,kl,nl->", delta, H.double(), delta).item()


def to_quant_linear(linear: nn.Linear, H: torch.Tensor, scheme: QuantScheme, *,
                    act_order: bool = False, block_size: int = 128, damp: float = 0.01,
                    static_groups: bool = False) -> QuantLinear:
    """:func:`gptq` of ``linear`` with Hessian ``H``, as a packed :class:`QuantLinear`."""
    return gptq(linear.weight, H, scheme, act_order=act_order, block_size=block_size, damp=damp,
                static_groups=static_groups).to_quant_linear(linear.bias)


# --------------------------------------------------------------------------------------------
# Optimal Brain Quantization: the exact, greedy reference
# --------------------------------------------------------------------------------------------

def obq_quantize_layer(W: torch.Tensor, H: torch.Tensor, bits: int, group_size: int | None = None,
                       *, symmetric: bool = False, sym: bool | None = None, damp: float = 0.01
                       ) -> torch.Tensor:
    """Optimal Brain Quantization (OBQ): every row on its own, quantize next the weight whose
    rounding adds the least error, ``argmin_p (w_p - q_p)² / [H_F⁻¹]_pp``, update the others by
    ``δ_F = -(w_p - q_p)/[H_F⁻¹]_pp · H_F⁻¹[:, p]`` and remove ``p`` from the inverse Hessian:

        H_F⁻¹ ← H_F⁻¹ - H_F⁻¹[:, p] H_F⁻¹[p, :] / [H_F⁻¹]_pp

    The grid (scale and zero per row and group) is fixed from the original ``W``, as GPTQ's
    ``static_groups``. K steps of O(N·K²) each: for small layers only. Rows run in parallel
    (one inverse Hessian per row). Returns the dequantized weight ``[N, K]``.
    """
    scheme = _check_problem(W, H, QuantScheme(bits, group_size, _symmetric(symmetric, sym)))
    g = scheme.group_size
    W, H = without_dead_inputs(W.detach().double(), H.detach().double())
    n, k = W.shape
    scale, zero = scheme.params(W.float())
    scale = scale.double().repeat_interleave(g, dim=1)
    zero = zero.double().repeat_interleave(g, dim=1)
    H = H + damp * H.diagonal().mean() * torch.eye(k, dtype=H.dtype)
    Hinv = torch.linalg.inv(H).expand(n, k, k).clone()
    done = torch.zeros(n, k, dtype=torch.bool)
    rows = torch.arange(n)
    for _ in range(k):
        Q = scheme.snap(W, scale, zero)
        diag = Hinv.diagonal(dim1=1, dim2=2)
        score = ((W - Q) ** 2 / diag).masked_fill(done, float("inf"))
        p = score.argmin(dim=1)                                   # [N] one weight per row
        d = diag[rows, p]
        col = Hinv[rows, :, p]                                    # [N, K]
        err = (W[rows, p] - Q[rows, p]) / d
        W -= err[:, None] * col
        W[rows, p] = Q[rows, p]                                   # exactly on the grid
        Hinv -= col[:, :, None] * col[:, None, :] / d[:, None, None]
        done[rows, p] = True
    return W.float()


# --------------------------------------------------------------------------------------------
# The whole model
# --------------------------------------------------------------------------------------------

def sequential_groups(block: nn.Module, true_sequential: bool = True) -> list[list[str]]:
    """The block's linear layers (names relative to the block) in quantization order: q/k/v →
    o → gate/up → down, then any other linear layer, one group each
    (:func:`qcourse.models.llama.sequential_groups`; layers in one group read the same input and
    share one Hessian). Without ``true_sequential``: a single group holding all of them."""
    groups = llama.sequential_groups(block)
    return groups if true_sequential else [[name for group in groups for name in group]]


class _AllSeen(Exception):
    """Raised by the Hessian hooks once every hooked layer has seen the batch: the rest of
    the block's forward pass is not needed."""


@torch.no_grad()
def collect_hessians(block: nn.Module, inputs: blocks.BlockInputs, names: list[str]
                     ) -> dict[str, Hessian]:
    """Run the block on ``inputs`` and accumulate the Hessian of each named linear layer's
    input with forward hooks. Layers fed the same tensor (q/k/v, gate/up) share one Hessian.
    Each batch's pass stops as soon as every named layer has run."""
    modules = {name: get_module(block, name) for name in names}
    hessians: dict[str, Hessian] = {}
    # id(input tensor) -> (tensor, its Hessian) for this batch; holding the tensor keeps its id
    # from being reused by another tensor during the pass
    shared: dict[int, tuple[torch.Tensor, Hessian]] = {}
    seen: set[str] = set()

    def hook(name):
        def record(module, args, output):
            x = args[0]
            if id(x) not in shared:
                acc = hessians.get(name) or Hessian(x.shape[-1])
                acc.add(x)
                shared[id(x)] = (x, acc)
            hessians[name] = shared[id(x)][1]
            seen.add(name)
            if len(seen) == len(modules):
                raise _AllSeen
        return record

    handles = [m.register_forward_hook(hook(name)) for name, m in modules.items()]
    try:
        for hidden, kwargs in zip(inputs.hidden, inputs.kwargs):
            shared.clear()
            seen.clear()
            try:
                block(hidden, **kwargs)
            except _AllSeen:
                pass
    finally:
        for handle in handles:
            handle.remove()
    missing = set(modules) - set(hessians)
    if missing:
        raise RuntimeError(f"the block's forward pass never called {sorted(missing)}")
    return hessians


def warn_few_tokens(name: str, hessian: Hessian) -> bool:
    """Warn (and return True) if ``hessian`` saw fewer tokens than the layer has inputs."""
    if hessian.count >= hessian.width:
        return False
    warnings.warn(f"{name}: only {hessian.count} calibration tokens for {hessian.width} "
                  f"inputs, so H = 2/n·XXᵀ has rank <= {hessian.count} and relies on the "
                  "dampening; use more (or longer) calibration samples", stacklevel=3)
    return True


def quantize_model(model: nn.Module, samples, bits: int = 4, group_size: int | None = 128, *,
                   act_order: bool = False, symmetric: bool = False, sym: bool | None = None,
                   damp: float = 0.01, block_size: int = 128, static_groups: bool = False,
                   progress: bool = True, true_sequential: bool = True, batch_size: int = 8
                   ) -> nn.Module:
    """GPTQ-quantize every linear layer of the decoder blocks, in place; returns the model.

    Block by block (:func:`qcourse.blocks.sequential`), each block sees the outputs of the
    already-quantized blocks before it. Inside a block, with ``true_sequential`` (default), the
    layers go in the groups q/k/v → o → gate/up → down, and each group's Hessians are collected
    with the groups before it already quantized (one extra pass of the block per group);
    otherwise all Hessians come from one pass of the float block (as llm-compressor does).
    Every layer becomes a :class:`~qcourse.layers.QuantLinear`; embeddings and ``lm_head`` stay
    float. ``samples``: token ids ``[n, seq_len]`` (:func:`qcourse.data.calibration_samples`);
    ``sym`` is accepted for ``symmetric``.
    """
    scheme = QuantScheme(bits, group_size, _symmetric(symmetric, sym)).packable()
    options = dict(act_order=act_order, damp=damp, block_size=block_size,
                   static_groups=static_groups)

    warned: set[int] = set()   # input widths already warned about
    done: list[tuple[nn.Module, str, QuantLinear]] = []

    def process(index: int, block: nn.Module, inputs: blocks.BlockInputs) -> None:
        for names in sequential_groups(block, true_sequential):
            hessians = collect_hessians(block, inputs, names)
            for name in names:
                if hessians[name].width not in warned and warn_few_tokens(name, hessians[name]):
                    warned.add(hessians[name].width)
                linear = get_module(block, name)
                new = to_quant_linear(linear, hessians[name].matrix, scheme, **options)
                # later passes see the quantized weight; the float layer computes it faster
                # than QuantLinear (which unpacks at every call), so it is swapped in at the end
                linear.weight.data = new.weight().to(linear.weight.dtype)
                done.append((block, name, new))

    blocks.sequential(model, samples, process, batch_size=batch_size, desc="GPTQ",
                      progress=progress)
    for block, name, new in done:
        set_module(block, name, new)
    return model

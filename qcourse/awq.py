"""AWQ (Lin et al., 2024, arXiv 2306.00978): activation-aware weight quantization.

Weights are not equally important: the input channels that carry large activations matter
most. Keeping 1 % of them in full precision recovers much of the quantization loss, but mixed
precision is awkward for hardware. AWQ protects them by *scaling* instead. For any positive
per-input-channel vector ``s``, a linear layer computes the same function as

    Y = X W^T = (X diag(s)^-1) (W diag(s))^T,

and quantizing ``W diag(s)`` instead of ``W`` shrinks the relative rounding error of a column
scaled up by ``s_j > 1`` (its values use more of the grid while the group's step barely moves).
The division of ``X`` is folded into whatever produces ``X`` (an RMSNorm or the previous linear
layer, :mod:`qcourse.transforms`), so it costs nothing at run time.

Per group of layers that read the same input, in a Llama block

    input_layernorm          -> q_proj, k_proj, v_proj   (error measured on the attention output)
    post_attention_layernorm -> gate_proj, up_proj       (error measured on the MLP output)
    v_proj                   -> o_proj   (only if v has as many outputs as o has inputs: AutoAWQ
                                          skips it under grouped-query attention, and so do we)
    up_proj                  -> down_proj

the scale is searched on a grid of 20 exponents ``α ∈ {0, 0.05, ..., 0.95}``:

    s(α) = mean|X_j|^α,   normalised to  s / sqrt(max(s) · min(s))
    α*   = argmin_α  ‖ f(X; Q(W diag(s)) diag(s)^-1) − f(X; W) ‖²

(``f``: the block part the layers belong to, run on the calibration activations; α = 0 is plain
round-to-nearest). ``duo_scaling`` uses AutoAWQ's default ``s = mean|X_j|^α / w̄_j^(1-α)``
instead, with ``w̄_j`` the mean over output rows of ``|W_nj|`` divided by its group's max.

Then, per output channel n and group G, a clip ratio ``r ∈ {1, 0.95, ..., 0.55}`` shrinks the
group's range, chosen to minimize the group's output error ``Σ_t (x_t,G · (w_n,G − Q_r(w_n,G)))²``
(not for q and k, whose errors are multiplied together in ``q·k``; AutoAWQ skips them too).
Finally every linear layer is quantized asymmetrically (4-bit, groups of 128 by default) into a
:class:`~qcourse.layers.QuantLinear`, block by block (:func:`qcourse.blocks.sequential`).

Models whose scales cannot be folded (a post-norm encoder such as BERT: its LayerNorm output is
also the residual stream) get :func:`quantize_explicit`: the same search per layer, the division
by ``s`` kept explicit in front of the layer (:class:`~qcourse.layers.scaled.ScaledInput`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import inspect

import torch
from torch import nn

from qcourse import blocks
from qcourse.calib import best_ratio_on_grid, check_samples
from qcourse.layers import QuantLinear
from qcourse.layers.scaled import ScaledInput
from qcourse.models import get_module, linear_layers, set_module
from qcourse.models.llama import InputGroup, decoder_blocks, input_groups
from qcourse.quant import QuantScheme
from qcourse.transforms import fold_scales

ALPHAS = torch.arange(20) / 20              # 0, 0.05, ..., 0.95
CLIP_RATIOS = 1 - torch.arange(10) / 20     # 1, 0.95, ..., 0.55
NO_CLIP = ("q_proj", "k_proj", "query", "key")  # errors meet in q·k: not clipped (Llama, BERT)


# ---------------------------------------------------------------------------------------------
# which layers share an input: the Llama block's groups (qcourse.models.llama)

ScaleGroup = InputGroup


def scale_groups(block: nn.Module, block_name: str = "block") -> list[InputGroup]:
    """The groups of a Llama block whose scales AWQ searches, in forward order
    (:func:`qcourse.models.llama.input_groups`); a clear error if the block has another layout
    (``block_name`` is used in the message)."""
    return input_groups(block, block_name)


# ---------------------------------------------------------------------------------------------
# the scale search


def awq_scales(x_mean: torch.Tensor, alpha: float, w_mean: torch.Tensor | None = None
               ) -> torch.Tensor:
    """``s = mean|X|^α`` (or ``mean|X|^α / (w̄^(1-α) + 1e-4)`` with ``w_mean``), clamped to
    at least 1e-4 and normalised so that ``max(s) · min(s) = 1``."""
    s = x_mean.float().pow(alpha)
    if w_mean is not None:
        s = s / (w_mean.float().pow(1 - alpha) + 1e-4)
    s = s.clamp(min=1e-4)
    return s / (s.max() * s.min()).sqrt()


def weight_mean(weights: list[torch.Tensor], group_size: int) -> torch.Tensor:
    """``w̄_j``: mean over all output rows of ``|W_nj| / max_{k in group} |W_nk|``."""
    w = torch.cat([w.detach().float() for w in weights])
    grouped = w.abs().reshape(w.shape[0], -1, group_size)
    return (grouped / (grouped.amax(-1, keepdim=True) + 1e-6)).reshape(w.shape).mean(0)


def _accepted(module: nn.Module, kwargs: dict) -> dict:
    params = inspect.signature(module.forward).parameters
    return {k: v for k, v in kwargs.items() if k in params}


@torch.no_grad()
def run_scope(scope: nn.Module, xs: list[torch.Tensor], kwargs: list[dict]) -> list[torch.Tensor]:
    """``scope``'s output for each batch of inputs (the block's keyword arguments it accepts)."""
    outputs = []
    for x, kw in zip(xs, kwargs):
        out = scope(x, **_accepted(scope, kw))
        outputs.append(out[0] if isinstance(out, tuple) else out)
    return outputs


def output_error(outputs: list[torch.Tensor], reference: list[torch.Tensor]) -> float:
    """Mean squared difference over every element of every batch."""
    total = sum((o.double() - r.double()).pow(2).sum().item() for o, r in zip(outputs, reference))
    return total / sum(r.numel() for r in reference)


@dataclasses.dataclass
class ScaleSearch:
    """Result of :func:`search_scale`: the error for every α of the grid and the best one."""

    alphas: torch.Tensor
    errors: torch.Tensor
    alpha: float
    scales: torch.Tensor


@torch.no_grad()
def search_scale(scope: nn.Module, layers: list[nn.Linear], xs: list[torch.Tensor],
                 kwargs: list[dict], scheme: QuantScheme, *, duo_scaling: bool = False,
                 alphas: torch.Tensor = ALPHAS) -> ScaleSearch:
    """Grid search of α: for each α, replace the weights of ``layers`` by
    ``Q(W diag(s)) diag(s)^-1`` (``Q``: fake quantization with ``scheme``, per group), run
    ``scope`` on the layers' inputs ``xs`` and keep the α with the smallest output error (the
    first on ties). The weights are restored afterwards."""
    g = scheme.group_size_for(layers[0].in_features)
    x_mean = torch.cat([x.reshape(-1, x.shape[-1]) for x in xs]).abs().float().mean(0)
    w_mean = weight_mean([l.weight for l in layers], g) if duo_scaling else None
    reference = run_scope(scope, xs, kwargs)
    originals = [layer.weight.detach().clone() for layer in layers]
    errors = []
    try:
        for alpha in alphas.tolist():
            s = awq_scales(x_mean, alpha, w_mean)
            for layer, w in zip(layers, originals):
                layer.weight.copy_(scheme.fake_quantize(w.float() * s) / s)
            errors.append(output_error(run_scope(scope, xs, kwargs), reference))
    finally:
        for layer, w in zip(layers, originals):
            layer.weight.copy_(w)
    errors = torch.tensor(errors, dtype=torch.float64)
    best = int(torch.argmin(errors))
    return ScaleSearch(alphas.clone(), errors, alphas[best].item(),
                       awq_scales(x_mean, alphas[best].item(), w_mean))


# ---------------------------------------------------------------------------------------------
# clipping


@torch.no_grad()
def search_clip(weight: torch.Tensor, x: torch.Tensor, scheme: QuantScheme, *,
                ratios: torch.Tensor = CLIP_RATIOS) -> torch.Tensor:
    """Clip ratio per output channel and group, ``[N, K / g]``: the ratio of ``ratios`` whose
    quantization with ``scheme`` minimizes the group's output error over the tokens of
    ``x [T, K]``,

        err[n, G] = Σ_t (x_t,G · Δw_n,G)² = Δw_n,G · H_G · Δw_n,Gᵀ,   H_G = Σ_t x_t,Gᵀ x_t,G.

    Ties keep the larger ratio, so a group is clipped only if that lowers its error."""
    n, k = weight.shape
    group_size = scheme.group_size_for(k)
    groups = k // group_size
    xg = x.reshape(-1, groups, group_size).float()
    hessian = torch.einsum("tgi,tgj->gij", xg, xg)
    w = weight.detach().float()

    def error(r: float) -> torch.Tensor:
        delta = w - scheme.fake_quantize(w, clip_ratio=r)
        delta = delta.reshape(n, groups, group_size)
        return torch.einsum("ngi,gij,ngj->ng", delta, hessian, delta)

    return best_ratio_on_grid(ratios.tolist(), error)


# ---------------------------------------------------------------------------------------------
# one block, the whole model


@contextlib.contextmanager
def recorded_inputs(module: nn.Module, names: list[str]):
    """Within the block, the input each named linear layer of ``module`` receives is appended
    to ``seen[name]`` (``seen`` is what the block gets)."""
    seen: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    handles = [module.get_submodule(name).register_forward_hook(
        lambda layer, args, output, name=name: seen[name].append(args[0].detach()))
        for name in names]
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def capture_linear_inputs(block: nn.Module, inputs: blocks.BlockInputs, names: list[str]
                          ) -> dict[str, list[torch.Tensor]]:
    """The input each named linear layer of ``block`` receives, per batch of ``inputs``."""
    with recorded_inputs(block, names) as seen:
        blocks.run_block(block, inputs)
    return seen


def _flat(xs: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([x.reshape(-1, x.shape[-1]) for x in xs])


@torch.no_grad()
def quantize_block(block: nn.Module, inputs: blocks.BlockInputs, scheme: QuantScheme, *,
                   duo_scaling: bool = False, clip: bool = True, block_name: str = "block"
                   ) -> dict[str, ScaleSearch]:
    """AWQ on one decoder block, in place: search and fold the scales of every group, search
    the clip ratios, then replace each linear layer by a :class:`QuantLinear`. Returns the
    search of each group, keyed by the name of its first layer."""
    groups = scale_groups(block, block_name)
    names = list(linear_layers(block))
    feats = capture_linear_inputs(block, inputs, names)
    searches = {}
    for group in groups:  # every search sees the unscaled float block, as in AutoAWQ
        layers = [get_module(block, name) for name in group.layers]
        searches[group.layers[0]] = search_scale(get_module(block, group.scope), layers,
                                                 feats[group.layers[0]], inputs.kwargs, scheme,
                                                 duo_scaling=duo_scaling)
    for group in groups:
        s = searches[group.layers[0]].scales
        fold_scales(*group.modules(block), s)
        scaled = [x / s.to(x.dtype) for x in feats[group.layers[0]]]  # what the layers now see
        feats.update(dict.fromkeys(group.layers, scaled))
    for name in names:
        linear = get_module(block, name)
        ratio = (search_clip(linear.weight, _flat(feats[name]), scheme)
                 if clip and not name.endswith(NO_CLIP) else 1.0)
        set_module(block, name, QuantLinear.from_float(linear, scheme, clip_ratio=ratio))
    return searches


def check_config(model: nn.Module, scheme: QuantScheme) -> None:
    """Refuse bit widths QuantLinear cannot store, group sizes that do not divide every layer,
    and models whose blocks are not Llama-shaped (naming the offending layer)."""
    for i, block in enumerate(decoder_blocks(model, "AWQ")):
        scale_groups(block, f"model.layers.{i}")
        for name, linear in linear_layers(block).items():
            QuantLinear.storable(linear.in_features, linear.out_features, scheme,
                                 f"model.layers.{i}.{name}")


def quantize_model(model: nn.Module, samples: torch.Tensor, bits: int = 4,
                   group_size: int | None = 128, *, symmetric: bool = False,
                   progress: bool = True, duo_scaling: bool = False, clip: bool = True,
                   batch_size: int = 8, report: dict | None = None) -> nn.Module:
    """AWQ on every decoder block of a Llama-family ``model``, in place, block by block (each
    block calibrated on the outputs of the already-quantized blocks before it). Every linear
    layer of the blocks becomes a :class:`QuantLinear` (``bits``, asymmetric as AutoAWQ unless
    ``symmetric``, ``group_size`` inputs per scale, None = per output channel); embeddings and
    head stay float.

    ``samples``: calibration token ids ``[n, seq_len]``, e.g.
    ``qcourse.data.calibration_samples(tokenizer, 32, 512)``. ``report``: if a dict, receives
    the :class:`ScaleSearch` of every group by layer name. Returns the model."""
    scheme = QuantScheme(bits, group_size, symmetric)
    check_config(model, scheme)
    check_samples(samples, model.config.vocab_size)

    def process(index: int, block: nn.Module, inputs: blocks.BlockInputs) -> None:
        prefix = f"model.layers.{index}"
        searches = quantize_block(block, inputs, scheme, duo_scaling=duo_scaling, clip=clip,
                                  block_name=prefix)
        if report is not None:
            report.update({f"{prefix}.{name}": found for name, found in searches.items()})

    return blocks.sequential(model, samples, process, batch_size=batch_size, desc="AWQ",
                             progress=progress)


@torch.no_grad()
def quantize_explicit(model: nn.Module, samples, bits: int = 4, group_size: int | None = 128, *,
                      symmetric: bool = False, clip: bool = True, batch_size: int = 8
                      ) -> nn.Module:
    """AWQ for any model whose scales cannot be folded, in place: for every linear layer (not
    the head), :func:`search_scale` with the layer itself as the scope (inputs from one pass of
    the float model over ``samples``), its weight columns ``*= s``, the clip search, a
    :class:`QuantLinear`, wrapped in a :class:`ScaledInput` that divides its input by ``s``.
    ``samples``: token ids ``[n, T]`` or a list of ``[1, T]`` tensors. Returns the model."""
    scheme = QuantScheme(bits, group_size, symmetric).packable()
    layers = linear_layers(model)
    for name, linear in layers.items():
        QuantLinear.storable(linear.in_features, linear.out_features, scheme, name)
    with recorded_inputs(model, list(layers)) as feats:   # one pass of the float model
        for batch in check_samples(samples):
            for chunk in batch.split(batch_size):
                model(chunk)
    for name, linear in layers.items():
        xs = feats.pop(name)
        s = search_scale(linear, [linear], xs, [{}] * len(xs), scheme).scales
        linear.weight.mul_(s.to(linear.weight.dtype))
        ratio = (search_clip(linear.weight, _flat([x / s for x in xs]), scheme)
                 if clip and not name.endswith(NO_CLIP) else 1.0)
        set_module(model, name, ScaledInput(QuantLinear.from_float(linear, scheme,
                                                                   clip_ratio=ratio), s))
    return model


# The salient-weight experiment (AWQ paper, Table 1) lives in qcourse.experiments.salient_weights;
# its names stay reachable here, where notebook 05 first met them.
_MOVED = ("SALIENT_CRITERIA", "salient_channels", "keep_salient")


def __getattr__(name: str):
    if name in _MOVED:
        from qcourse.experiments import salient_weights
        return getattr(salient_weights, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

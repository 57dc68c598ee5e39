"""Quantization-aware training (QAT): fine-tune a model *through* the rounding it will get.

**Fake quantization.** While training, every linear layer computes with its weight after a round
trip through the integer grid of a :class:`~qcourse.quant.QuantScheme` (``QuantScheme.snap``):

    u = w / s + z,        ŵ = (clamp(round(u), qmin, qmax) - z) · s

with one scale ``s`` (stored as fp16, as :class:`~qcourse.layers.QuantLinear` stores it) and one
integer zero point ``z`` per group of ``g`` inputs. The forward pass is exactly what the
converted model computes; the weights ``w`` themselves stay float ("latent" weights).

**Straight-through estimator.** ``round`` is flat between the grid points and jumps at them: its
derivative is 0 almost everywhere, so backpropagation through ``ŵ`` gives no signal. The clipped
straight-through estimator (STE; Bengio, Léonard, Courville 2013) uses the derivative of the
*clipped identity* instead:

    ∂ŵ/∂w = 1   if qmin ≤ u ≤ qmax       (inside the grid)
            0   otherwise                 (clipped: moving w does not move ŵ)

**Learned step size** (LSQ; Esser et al., ICLR 2020). With ``learn_scales`` the scale (and, for
an asymmetric grid, the zero point) of every group is a parameter. Treating ``round`` by the STE,

    ∂ŵ/∂s = round(u) - u        inside
            qmin - z / qmax - z  below / above the grid
    ∂ŵ/∂z = 0 inside,  -s outside

each multiplied by LSQ's gradient scale ``g = 1/√(N·Q_P)`` (``N`` values share the scale,
``Q_P = 2^(b-1) - 1`` levels above zero), so that the step sizes learn at a rate comparable to the
weights. LSQ initialises ``s = 2·mean(|w|)/√Q_P`` (``init="lsq"``); ``init="minmax"`` starts from
the round-to-nearest grid instead (QAT then starts where RTN ends).

**The model API.** :func:`prepare` swaps every linear layer (not the output head) for a
:class:`FakeQuantLinear`; :func:`train` fine-tunes on the train split (optionally distilling from
the float model's logits, as LLM-QAT does); :func:`convert` stores each layer as a packed
:class:`~qcourse.layers.QuantLinear`, whose logits equal the fake-quantized model's.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from qcourse.layers import QuantizedInput, QuantLinear, check_linear
from qcourse.models import linear_layers, set_module
from qcourse.quant import QuantScheme
from qcourse.training import fine_tune
from qcourse.training import distillation_loss, random_windows  # noqa: F401  (their former home)

ACTIVATIONS = (None, "int8")
INITS = ("minmax", "lsq")
SMALLEST_SCALE = 2.0**-24       # the smallest positive fp16 value: a stored scale is never 0
TOKEN_SCHEME = QuantScheme(8, None, symmetric=False)   # int8 activations: per token, asymmetric


# --------------------------------------------------------------------------------------------
# The straight-through estimator
# --------------------------------------------------------------------------------------------

class FakeQuantize(torch.autograd.Function):
    """``ŵ = (clamp(round(x/s + z), qmin, qmax) - z) · s`` forward; clipped STE for ``x`` and
    LSQ's gradients for ``s`` and ``z`` (times ``grad_scale``) backward.

    ``x [..., G, g]``; ``scale`` and ``zero`` broadcast against it (``[..., G, 1]``: one per
    group). Only inputs that require a gradient get one.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor,
                scheme: QuantScheme, grad_scale: float) -> torch.Tensor:
        u = x / scale + zero
        ctx.save_for_backward(u, scale, zero)
        ctx.scheme, ctx.grad_scale = scheme, grad_scale
        return scheme.snap(x, scale, zero)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        u, scale, zero = ctx.saved_tensors
        scheme = ctx.scheme
        below, above = u < scheme.qmin, u > scheme.qmax
        inside = ~(below | above)
        grad_x = grad_scale_ = grad_zero = None
        if ctx.needs_input_grad[0]:
            grad_x = grad * inside                                # clipped STE
        if ctx.needs_input_grad[1]:
            ds = torch.where(below, scheme.qmin - zero,
                             torch.where(above, scheme.qmax - zero, torch.round(u) - u))
            grad_scale_ = sum_to(grad * ds * ctx.grad_scale, scale.shape)
        if ctx.needs_input_grad[2]:
            grad_zero = sum_to(grad * (~inside) * -scale * ctx.grad_scale, zero.shape)
        return grad_x, grad_scale_, grad_zero, None, None


def sum_to(t: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """``t`` summed over the dimensions that broadcasting added to a tensor of ``shape``."""
    return t.sum_to_size(shape) if t.shape != shape else t


def fake_quantize_ste(x: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor,
                      scheme: QuantScheme, grad_scale: float = 1.0) -> torch.Tensor:
    """:class:`FakeQuantize` applied: ``x`` on the given grid ``(scale, zero)`` of ``scheme``,
    with the clipped straight-through estimator (and LSQ's gradients for the scale and zero).
    (:func:`qcourse.quant.fake_quantize` is the same round trip, choosing the grid itself and
    without gradients.)"""
    return FakeQuantize.apply(x, scale, zero, scheme, grad_scale)


fake_quantize = fake_quantize_ste   # its former name (notebook 03, tests)


def positive_levels(bits: int) -> int:
    """``Q_P = 2^(b-1) - 1``: the grid levels above zero on a grid centred on zero."""
    return 2 ** (bits - 1) - 1


def lsq_grad_scale(n: int, bits: int) -> float:
    """LSQ's gradient scale ``g = 1/√(N·Q_P)`` for ``N = n`` values sharing one step size."""
    return 1.0 / math.sqrt(n * positive_levels(bits))


def lsq_init(grouped: torch.Tensor, scheme: QuantScheme) -> tuple[torch.Tensor, torch.Tensor]:
    """LSQ's initial step size ``s = 2·mean(|w|)/√Q_P`` per group of ``grouped [..., G, g]``,
    and a zero point that centres the grid on 0 (0 if symmetric, ``2^(b-1)`` if not):
    ``[..., G, 1]`` each."""
    s = 2 * grouped.abs().mean(-1, keepdim=True) / math.sqrt(positive_levels(scheme.bits))
    z = 0 if scheme.symmetric else 2 ** (scheme.bits - 1)
    return s.clamp(min=SMALLEST_SCALE), torch.full_like(s, float(z))


def as_stored(scale: torch.Tensor, zero: torch.Tensor, scheme: QuantScheme
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and zero as :class:`~qcourse.layers.QuantLinear` stores them: the scale rounded to
    fp16 (and kept positive), the zero point rounded to an integer on the grid. The rounding
    passes gradients straight through, so learned scales still learn."""
    stored_s = scale.clamp(min=SMALLEST_SCALE).half().float()
    stored_z = torch.zeros_like(zero) if scheme.symmetric else zero.round().clamp(0, scheme.qmax)
    return (scale + (stored_s - scale).detach(), zero + (stored_z - zero).detach())


# --------------------------------------------------------------------------------------------
# The fake-quantized layer
# --------------------------------------------------------------------------------------------

class FakeQuantLinear(nn.Module):
    """A linear layer that trains float weights but computes with their quantized values.

    ``weight [N, K]`` (and ``bias``) are the original layer's parameters. Without
    ``learn_scales`` each group's scale and zero come from the current weights at every step
    (min-max, as round-to-nearest); with it they are parameters ``scale``, ``zero`` ``[N, K/g]``
    learned by LSQ.
    """

    def __init__(self, linear: nn.Linear, scheme: QuantScheme, *, learn_scales: bool = False,
                 init: str = "minmax") -> None:
        super().__init__()
        check_linear(linear)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.scheme = scheme.resolved(self.in_features, "a layer")
        self.weight, self.bias = linear.weight, linear.bias
        self.grad_scale = lsq_grad_scale(self.scheme.group_size, self.scheme.bits)
        self.scale = self.zero = None
        if learn_scales:
            scale, zero = self.initial_params(init)
            self.scale = nn.Parameter(scale)
            self.zero = nn.Parameter(zero, requires_grad=not self.scheme.symmetric)

    def grouped(self, w: torch.Tensor) -> torch.Tensor:
        """``w [N, K]`` viewed as ``[N, K/g, g]``."""
        return w.reshape(self.out_features, -1, self.scheme.group_size)

    @torch.no_grad()
    def initial_params(self, init: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(scale, zero)`` ``[N, K/g]`` to start LSQ from: min-max or LSQ's formula."""
        w = self.grouped(self.weight.detach().float())
        if init == "lsq":
            scale, zero = lsq_init(w, self.scheme)
            return scale[..., 0], zero[..., 0]
        return self.scheme.params(self.weight.detach())

    def params(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The grid ``(scale, zero)`` ``[N, K/g]`` the layer computes with, as stored."""
        if self.scale is None:
            with torch.no_grad():
                scale, zero = self.scheme.params(self.weight.detach())
        else:
            scale, zero = self.scale, self.zero
        return as_stored(scale, zero, self.scheme)

    def fake_weight(self) -> torch.Tensor:
        """The weight on the grid, ``ŵ [N, K]`` (float32), with STE/LSQ gradients."""
        scale, zero = self.params()
        w = fake_quantize_ste(self.grouped(self.weight.float()), scale[..., None],
                              zero[..., None], self.scheme, self.grad_scale)  # [N, K/g, g]
        return w.reshape(self.out_features, self.in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, self.fake_weight().to(x.dtype), bias)

    @torch.no_grad()
    def to_quant_linear(self) -> QuantLinear:
        """The packed layer with the same weights: ``q = clamp(round(w/s + z))`` on the stored grid."""
        scale, zero = (t.detach() for t in self.params())
        q = self.scheme.apply_grid(self.grouped(self.weight.detach().float()), scale[..., None],
                                   zero[..., None]).reshape(self.out_features, self.in_features)
        q = q.to(torch.int8 if self.scheme.symmetric else torch.uint8)
        bias = None if self.bias is None else self.bias.detach()
        return QuantLinear.from_quantized(q, scale, zero, self.scheme.bits,
                                          self.scheme.group_size, bias=bias)

    def extra_repr(self) -> str:
        s = self.scheme
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bits={s.bits}, group_size={s.group_size}, symmetric={s.symmetric}, "
                f"learn_scales={self.scale is not None}")


def fake_quantize_tokens(rows: torch.Tensor) -> torch.Tensor:
    """Dynamic int8 fake quantization of ``rows [tokens, K]``, each token on its own
    asymmetric grid (``TOKEN_SCHEME``, min-max: torchao's per-token int8 activations), with the
    clipped STE. The quantizer of :class:`~qcourse.layers.QuantizedInput` for ``activations="int8"``."""
    with torch.no_grad():
        scale, zero = TOKEN_SCHEME.params(rows)                             # [tokens, 1] each
    return fake_quantize_ste(rows.float(), scale, zero, TOKEN_SCHEME).to(rows.dtype)


def fake_quantized_layers(model: nn.Module) -> dict[str, FakeQuantLinear]:
    """Every :class:`FakeQuantLinear` of ``model`` by qualified name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, FakeQuantLinear)}


def grid_position(w: torch.Tensor, scheme: QuantScheme) -> tuple[torch.Tensor, torch.Tensor]:
    """Where the weights ``w [N, K]`` sit on their min-max grid (groups of the scheme): each
    weight's distance to its nearest grid point, in steps (0: on a grid point, 0.5: on a
    rounding boundary), and its integer code; ``[N, K]`` each."""
    g = scheme.group_size_for(w.shape[-1])
    grouped = w.detach().float().reshape(w.shape[0], -1, g)                 # [N, K/g, g]
    scale, zero = (t[..., None] for t in scheme.params(w.detach()))
    codes = scheme.apply_grid(grouped, scale, zero)
    distance = (grouped / scale + zero - codes).abs()
    return distance.reshape(w.shape), codes.reshape(w.shape)


# --------------------------------------------------------------------------------------------
# prepare / train / convert
# --------------------------------------------------------------------------------------------

def prepare(model: nn.Module, bits: int, group_size: int | None, *, symmetric: bool = False,
            learn_scales: bool = False, activations: str | None = None,
            init: str = "minmax") -> nn.Module:
    """Swap every linear layer (not the output head) for a :class:`FakeQuantLinear`, in place;
    returns the model.

    ``bits`` 2, 3, 4 or 8 (the widths :class:`~qcourse.layers.QuantLinear` packs), ``group_size``
    inputs per scale (None: per output channel); ``learn_scales``: LSQ step sizes (and zero
    points), initialised by ``init`` ("minmax" or "lsq"); ``activations``: None or "int8"
    (dynamic, per token: each layer sits in a :class:`~qcourse.layers.QuantizedInput` with
    :func:`fake_quantize_tokens`, which stays after :func:`convert`). Every layer is checked
    before any is swapped.
    """
    scheme = QuantScheme(bits, group_size, symmetric)
    if activations not in ACTIVATIONS:
        raise ValueError(f"activations must be one of {ACTIVATIONS}, got {activations!r}")
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    if not isinstance(learn_scales, bool):
        raise TypeError(f"learn_scales must be True or False, got {learn_scales!r}")
    if fake_quantized_layers(model):
        raise ValueError("the model is already prepared for QAT (it holds FakeQuantLinear "
                         "layers); call qat.convert(model) or start from a float model")
    linears = linear_layers(model)
    if not linears:
        raise ValueError("the model has no nn.Linear layer (besides an output head) to prepare")
    for name, linear in linears.items():    # convert can store every layer: checked before any swap
        QuantLinear.storable(linear.in_features, linear.out_features, scheme, name)
    for name, linear in linears.items():
        layer = FakeQuantLinear(linear, scheme, learn_scales=learn_scales, init=init)
        if activations == "int8":
            layer = QuantizedInput(layer, fake_quantize_tokens)
        set_module(model, name, layer)
    return model


def freeze_scales(model: nn.Module, frozen: bool = True) -> nn.Module:
    """Stop (or, with ``frozen=False``, resume) learning the LSQ scales and zero points of a
    prepared model: training then moves the weights only. Returns the model."""
    layers = [m for m in fake_quantized_layers(model).values() if m.scale is not None]
    if not layers:
        raise ValueError("the model has no learned scales: prepare it with learn_scales=True")
    for layer in layers:
        layer.scale.requires_grad_(not frozen)
        layer.zero.requires_grad_(not frozen and not layer.scheme.symmetric)
    return model


def convert(model: nn.Module) -> nn.Module:
    """Replace every :class:`FakeQuantLinear` by the packed :class:`~qcourse.layers.QuantLinear`
    holding the same quantized weights, in place (int8 activations keep their
    :class:`~qcourse.layers.QuantizedInput`); returns the model, in eval mode. Its logits equal
    the fake-quantized model's."""
    layers = fake_quantized_layers(model)
    if not layers:
        raise ValueError("the model has no fake-quantized layer: call qat.prepare(model, bits, "
                         "group_size) (and qat.train) before qat.convert")
    packed = {name: layer.to_quant_linear() for name, layer in layers.items()}   # all, then swap
    for name, layer in packed.items():
        set_module(model, name, layer)
    return model.eval()


def train(model: nn.Module, tokenizer, steps: int, *, lr: float = 1e-4, batch_size: int = 8,
          seq_len: int = 256, seed: int = 0, distill: bool | nn.Module = False,
          scale_lr: float | None = None, warmup: int | None = None, schedule: str = "cosine",
          progress: bool = True, callback: Callable[[int, nn.Module], None] | None = None,
          ) -> dict:
    """Quantization-aware fine-tuning of a prepared model on the train split; returns the log
    of :func:`fine_tune`.

    ``distill``: train on the KL divergence to a teacher's next-token distribution instead of
    the labels (LLM-QAT): ``True`` uses a float copy of the model as it is now (right after
    :func:`prepare`: the original model), or pass the teacher. ``scale_lr``: learning rate of
    LSQ's scales and zeros (default ``lr``).
    """
    layers = fake_quantized_layers(model)
    if not layers:
        raise ValueError("the model has no fake-quantized layer: call qat.prepare(model, bits, "
                         "group_size) before qat.train")
    quantizer = [p for layer in layers.values() for p in (layer.scale, layer.zero)
                 if p is not None and p.requires_grad]
    ids = {id(p) for p in quantizer}
    weights = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
    groups = [{"params": weights, "lr": lr}]
    if quantizer:
        groups.append({"params": quantizer, "lr": scale_lr if scale_lr is not None else lr})
    teacher = float_teacher(model) if distill is True else (distill or None)
    return fine_tune(model, tokenizer, steps, groups, batch_size=batch_size, seq_len=seq_len,
                     seed=seed, teacher=teacher, warmup=warmup, schedule=schedule,
                     progress=progress, callback=callback, desc="QAT")


def float_teacher(model: nn.Module) -> nn.Module:
    """A frozen float copy of a prepared model: each :class:`FakeQuantLinear` (with its input
    quantizer, if any) back to an ``nn.Linear`` with its current (latent) weight."""
    teacher = copy.deepcopy(model)
    for name, layer in fake_quantized_layers(teacher).items():
        linear = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None)
        linear.weight, linear.bias = layer.weight, layer.bias
        parent = name.rpartition(".")[0]
        if isinstance(teacher.get_submodule(parent), QuantizedInput):   # float inputs too
            name = parent
        set_module(teacher, name, linear)
    return teacher.eval().requires_grad_(False)

"""Post-training quantization of a whole model, without calibration data (except static W8A8's
activation ranges): RTN, W8A8, LLM.int8() and NF4. Each swaps every linear layer (not the output head) for a quantized layer
of :mod:`qcourse.layers`.

* RTN (round-to-nearest), weight-only: every linear weight becomes ``bits``-bit integers with a
  scale and zero point per output channel or per group, stored packed in a
  :class:`~qcourse.layers.QuantLinear`; activations stay in floating point.
* W8A8: int8 weights per channel and int8 activations per token or per tensor (at run time),
  or per tensor with a scale fixed by calibration ("static"), multiplied in integers
  (:class:`~qcourse.layers.W8A8Linear`).
* LLM.int8(): W8A8 with the outlier input features kept in float
  (:class:`~qcourse.layers.Int8MixedLinear`).
* NF4: 4-bit NormalFloat codes in blocks of 64 (:class:`~qcourse.layers.NF4Linear`).

The output head and the embeddings are never quantized here.
"""
from __future__ import annotations

from torch import nn

from qcourse.calib import ActivationStats, mse_clip_ratio
from qcourse.layers import Int8MixedLinear, NF4Linear, QuantLinear, W8A8Linear
from qcourse.layers.int8 import check_activations, check_threshold
from qcourse.models import swap_linears
from qcourse.nf4 import BLOCK_SIZE
from qcourse.quant import QuantScheme, quantize

RTN_GRANULARITIES = ("tensor", "channel", "group")
CLIP_METHODS = ("minmax", "mse")


def rtn_layer(linear: nn.Linear, scheme: QuantScheme, *, per_tensor: bool = False,
              clip: str = "minmax", name: str = "this layer") -> QuantLinear:
    """Round-to-nearest of one layer into a :class:`QuantLinear`: per group of the scheme (or
    per output channel), or with one scale for the whole matrix if ``per_tensor`` (stored as
    per-channel with identical scales). ``clip="mse"``: the MSE-optimal clip ratio per scale.
    ``name``: what errors call the layer."""
    weight = linear.weight.detach()
    n, k = weight.shape
    grid = {"granularity": "tensor"} if per_tensor else \
        {"granularity": "group", "group_size": scheme.resolved(k, name).group_size}
    ratio = mse_clip_ratio(weight, scheme.bits, symmetric=scheme.symmetric, **grid) \
        if clip == "mse" else 1.0
    q, scale, zero = quantize(weight, scheme.bits, symmetric=scheme.symmetric, clip_ratio=ratio,
                              **grid)
    if per_tensor:                                 # stored per channel, every scale the same
        scale, zero = scale.expand(n, 1), zero.expand(n, 1)
    return QuantLinear.from_quantized(q, scale, zero, scheme.bits, grid.get("group_size"),
                                      bias=linear.bias)


def quantize_rtn(model: nn.Module, bits: int, granularity: str, group_size: int | None = None,
                 *, symmetric: bool = False, clip: str = "minmax") -> nn.Module:
    """Round-to-nearest weight-only quantization of every linear layer (not the output head),
    in place; returns the model.

    ``granularity``: ``"channel"`` (one scale per output channel), ``"group"`` (one per
    ``group_size`` input columns) or ``"tensor"``. ``clip``: ``"minmax"`` (no clipping) or
    ``"mse"`` (MSE-optimal clip ratio per scale, :func:`qcourse.calib.mse_clip_ratio`).
    """
    if granularity not in RTN_GRANULARITIES:
        raise ValueError(f"granularity must be one of {RTN_GRANULARITIES}, got {granularity!r}")
    if granularity == "group" and group_size is None:
        raise ValueError("granularity 'group' needs a group_size (e.g. 128)")
    if granularity != "group" and group_size is not None:
        raise ValueError(f"group_size={group_size} is only used with granularity='group'")
    if clip not in CLIP_METHODS:
        raise ValueError(f"clip must be one of {CLIP_METHODS}, got {clip!r}")
    scheme = QuantScheme(bits, group_size, symmetric).packable()
    return swap_linears(model, lambda name, linear: rtn_layer(
        linear, scheme, per_tensor=granularity == "tensor", clip=clip, name=name))


def quantize_w8a8(model: nn.Module, activations: str = "token",
                  stats: dict[str, ActivationStats] | None = None) -> nn.Module:
    """Swap every linear layer (not the output head) for a :class:`W8A8Linear`, in place.

    ``activations``: ``"token"`` (one scale per token) or ``"tensor"`` (one per batch), both
    computed at run time, or ``"static"`` (one per layer, fixed before inference: the largest
    |input| in ``stats``, from :func:`qcourse.calib.collect_activation_stats` on calibration
    samples of this very model, divided by 127).
    """
    check_activations(activations)
    if (activations == "static") != (stats is not None):
        raise ValueError("stats (calibration statistics of this model's layer inputs) are "
                         "needed by, and only used by, activations='static'")

    def make(name: str, linear: nn.Linear) -> W8A8Linear:
        if stats is None:
            return W8A8Linear.from_float(linear, activations=activations)
        if name not in stats:
            raise ValueError(f"no calibration statistics for layer {name!r}: collect them on "
                             f"this model (calib.collect_activation_stats)")
        return W8A8Linear.from_float(linear, activations="static",
                                     input_absmax=stats[name].absmax)
    return swap_linears(model, make)


def quantize_llm_int8(model: nn.Module, threshold: float = 6.0) -> nn.Module:
    """Swap every linear layer (not the output head) for an :class:`Int8MixedLinear`, in place."""
    check_threshold(threshold)
    return swap_linears(model, lambda name, linear: Int8MixedLinear.from_float(
        linear, threshold=threshold))


def quantize_nf4_model(model: nn.Module, block_size: int = BLOCK_SIZE) -> nn.Module:
    """Swap every linear layer (not the output head) for an :class:`NF4Linear`, in place."""
    return swap_linears(model, lambda name, linear: NF4Linear.from_float(linear, block_size))

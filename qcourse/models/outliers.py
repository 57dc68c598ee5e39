"""A stand-in for a large model's outlier channels: the same float function, with a few residual
channels whose normalized activations are ``factor`` times larger.

Large language models grow a handful of *outlier feature dimensions*: the same few channels of
the residual stream, in every layer, carry activations far larger than the rest. LLM.int8()
(Dettmers et al. 2022, arXiv 2208.07339) reports magnitudes "up to 20x larger than in other
dimensions" (3–20× the *largest* other dimension, its Table 4), present in every layer from
6.7B parameters on; SmoothQuant (Xiao et al. 2023, arXiv 2211.10438, §3) finds outliers
"~100× larger than most of the activation values". qcourse-tiny is too small to grow them.

:func:`with_outliers` gives it such channels *without changing what it computes*. In a Llama
block, an RMSNorm feeds linear layers: ``y = (w ⊙ x̂) Wᵀ``. Multiplying the norm's weight on
channel j by ``f`` and dividing column j of every linear layer it feeds by ``f``,

    w_j ← f · w_j,     W[:, j] ← W[:, j] / f,

leaves ``y`` unchanged (the inverse of SmoothQuant's migration, done with
:func:`qcourse.transforms.fold_scale_into_norm` and ``s_j = 1/f``). The inputs of q/k/v and
gate/up now have channels ``f`` times larger in every token, while their weight columns shrink
by ``f``. The output error a quantizer causes on channel j is ``Δw_j · x_j``: the rounding
step of the group times a ``f``-times larger activation, whatever the size of ``w_j``. That is
why weight-only and W8A8 quantization suffer on this model as they do on a real outlier model.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
from torch import nn

from qcourse.transforms import fold_scale_into_norm

from .llama import NORM_GROUPS, decoder_blocks, input_groups
from .modules import decoder_layers

DEFAULT_FACTOR = 100.0   # SmoothQuant §3: outliers ~100x most activation values
DEFAULT_COUNT = 4        # "a few" channels, as in the LLM.int8() analysis


def norm_groups(block: nn.Module) -> list[tuple[nn.Module, list[nn.Linear]]]:
    """A Llama block's norms and the linear layers each one feeds:
    ``input_layernorm -> q, k, v`` and ``post_attention_layernorm -> gate, up``
    (:data:`qcourse.models.llama.NORM_GROUPS`, checked)."""
    return [group.modules(block) for group in input_groups(block, type(block).__name__,
                                                             NORM_GROUPS)]


def default_channels(hidden: int, count: int = DEFAULT_COUNT, seed: int = 0) -> list[int]:
    """``count`` distinct residual channels of ``hidden``, drawn with a seeded generator, sorted."""
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= hidden:
        raise ValueError(f"count must be an integer from 1 to {hidden}, got {count!r}")
    generator = torch.Generator().manual_seed(seed)
    return sorted(torch.randperm(hidden, generator=generator)[:count].tolist())


def check_channels(channels: Sequence[int], hidden: int) -> list[int]:
    """``channels`` as a sorted list of distinct ints in ``[0, hidden)``, else a clear error."""
    if isinstance(channels, torch.Tensor):
        channels = channels.tolist()
    if isinstance(channels, (str, bytes)) or not isinstance(channels, Sequence) or not channels:
        raise TypeError(f"channels must be a non-empty sequence of channel indices, "
                        f"got {channels!r}")
    if any(not isinstance(c, int) or isinstance(c, bool) for c in channels):
        raise TypeError(f"channels must be integers, got {list(channels)!r}")
    bad = [c for c in channels if not 0 <= c < hidden]
    if bad:
        raise ValueError(f"channels {bad} are out of range: the residual stream has {hidden} "
                         f"channels, 0 to {hidden - 1}")
    if len(set(channels)) != len(channels):
        raise ValueError(f"channels must be distinct, got {list(channels)!r}")
    return sorted(channels)


def check_factor(factor: float) -> float:
    """``factor`` if it is a positive finite number, else a clear error."""
    if isinstance(factor, bool) or not isinstance(factor, (int, float)):
        raise TypeError(f"factor must be a number, got {factor!r}")
    if not math.isfinite(factor) or factor <= 0:
        raise ValueError(f"factor must be positive and finite (e.g. 100: channels 100x "
                         f"larger), got {factor!r}")
    return float(factor)


@torch.no_grad()
def with_outliers(model: nn.Module, channels: Sequence[int] | None = None,
                  factor: float = DEFAULT_FACTOR, *, count: int = DEFAULT_COUNT,
                  seed: int = 0) -> nn.Module:
    """A copy of the Llama ``model`` that computes the same function but whose ``channels`` of
    the residual stream (default: ``count`` channels drawn with ``seed``) are ``factor`` times
    larger at the input of every q/k/v and gate/up projection, as outlier channels are in large
    models. The argument is not modified.

    Per block and per norm: ``norm.weight[j] *= factor`` and ``W[:, j] /= factor`` for every
    linear layer the norm feeds (:func:`qcourse.transforms.fold_scale_into_norm` with
    ``s_j = 1 / factor`` on the chosen channels, 1 elsewhere). The copy's
    ``outlier_channels`` and ``outlier_factor`` attributes say what was done.
    """
    factor = check_factor(factor)
    blocks = decoder_blocks(model, "with_outliers")
    hidden = norm_groups(blocks[0])[0][0].weight.shape[-1]
    channels = (default_channels(hidden, count, seed) if channels is None
                else check_channels(channels, hidden))
    out = copy.deepcopy(model)
    s = torch.ones(hidden)
    s[channels] = 1 / factor                                    # [hidden]
    for block in decoder_layers(out):
        for norm, linears in norm_groups(block):
            fold_scale_into_norm(norm, linears, s)
    out.outlier_channels = tuple(channels)
    out.outlier_factor = factor
    return out

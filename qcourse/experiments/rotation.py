"""Rotations at work: perplexity with 4- or 8-bit activations, with and without QuaRot's
rotation (:mod:`qcourse.rotate`), and how far the largest value of a token sticks out.

For each way of preparing the model ("plain", "norms folded", "rotated"), weights are
round-to-nearest (symmetric, per output channel) and, unless ``a_bits`` is None, every linear
input is fake-quantized per token (symmetric):

    peak-to-RMS of a token x [K] = max_k |x_k| / sqrt(mean_k x_k²)   (√K: one channel has it all)
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from qcourse import evaluation
from qcourse.layers import int_activations, quantize_inputs
from qcourse.ptq import quantize_rtn
from qcourse.rotate import fold_norms, rotate_model


def quantize_weights_activations(model: nn.Module, w_bits: int, a_bits: int | None) -> nn.Module:
    """RTN weights (symmetric, per output channel, packed ``QuantLinear``) and, unless ``a_bits``
    is None, activations fake-quantized per token (symmetric) at every linear input; in place."""
    quantize_rtn(model, w_bits, "channel", symmetric=True)
    if a_bits is not None:
        quantize_inputs(model, int_activations(a_bits))
    return model


PREPARE = {"plain": lambda model, seed: model, "norms folded": lambda model, seed: fold_norms(model),
           "rotated": rotate_model}


def rotation_experiment(model: nn.Module, tokenizer, settings=((4, None), (4, 8), (4, 4)), *,
                        kinds=("plain", "rotated"), seed: int = 0, **perplexity_options
                        ) -> dict[str, dict[str, float]]:
    """Perplexity of ``model`` (any Llama; left unchanged) in float and at each ``(w_bits,
    a_bits)`` of ``settings``, for each of ``kinds`` ("plain", "norms folded", "rotated"):
    ``{"plain": {...}, "rotated": {...}}`` keyed "float", "W4A16", "W4A8", ...
    ``perplexity_options`` go to :func:`qcourse.evaluation.perplexity`."""
    unknown = [kind for kind in kinds if kind not in PREPARE]
    if unknown:
        raise ValueError(f"kinds must be among {tuple(PREPARE)}, got {unknown}")
    results = {}
    for kind in kinds:
        base = PREPARE[kind](copy.deepcopy(model), seed)
        row = {"float": evaluation.perplexity(base, tokenizer, **perplexity_options)}
        for w_bits, a_bits in settings:
            quantized = quantize_weights_activations(copy.deepcopy(base), w_bits, a_bits)
            row[f"W{w_bits}A{a_bits or 16}"] = evaluation.perplexity(quantized, tokenizer,
                                                                **perplexity_options)
        results[kind] = row
    return results


def peak_to_rms(x: torch.Tensor) -> torch.Tensor:
    """For each token (row) of ``x [tokens, K]``: ``max_k |x| / rms(x)``, how far the largest
    value sticks out (√K when one channel holds everything, ~3–4 for Gaussian rows of 256)."""
    return x.abs().amax(-1) / x.pow(2).mean(-1).sqrt()

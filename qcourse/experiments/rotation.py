"""Rotations at work: perplexity with 4- or 8-bit activations, with and without QuaRot's
rotation (:mod:`qcourse.rotate`), and how far the largest value of a token sticks out.

For each way of preparing the model (:data:`PREPARE`: "plain", "norms folded", "rotated" with a
full-width random Hadamard, "rotated, blocks of 64" with a block-diagonal one, "rotated,
orthogonal" with a random orthogonal matrix), weights are round-to-nearest (symmetric, per output
channel, unless ``w_bits`` is None) and, unless ``a_bits`` is None, every linear input is
fake-quantized per token (symmetric):

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


def quantize_weights_activations(model: nn.Module, w_bits: int | None, a_bits: int | None
                                 ) -> nn.Module:
    """RTN weights (symmetric, per output channel, packed ``QuantLinear``) unless ``w_bits`` is
    None and, unless ``a_bits`` is None, activations fake-quantized per token (symmetric) at
    every linear input; in place."""
    if w_bits is not None:
        quantize_rtn(model, w_bits, "channel", symmetric=True)
    if a_bits is not None:
        quantize_inputs(model, int_activations(a_bits))
    return model


PREPARE = {"plain": lambda model, seed: model,
           "norms folded": lambda model, seed: fold_norms(model),
           "rotated": rotate_model,
           "rotated, blocks of 64": lambda model, seed: rotate_model(model, seed, block=64),
           "rotated, orthogonal": lambda model, seed: rotate_model(model, seed, kind="orthogonal")}


def setting_name(w_bits: int | None, a_bits: int | None) -> str:
    """``"W4A4"``, ``"W16A4"`` (weights float), ``"W4A16"`` (activations float)."""
    return f"W{w_bits or 16}A{a_bits or 16}"


def prepare(model: nn.Module, kind: str, w_bits: int | None = None, a_bits: int | None = None,
            seed: int = 0) -> nn.Module:
    """``model`` prepared as ``kind`` (:data:`PREPARE`) and quantized at ``(w_bits, a_bits)``,
    in place (for a model too large to copy: load it again for the next kind)."""
    if kind not in PREPARE:
        raise ValueError(f"kind must be one of {tuple(PREPARE)}, got {kind!r}")
    return quantize_weights_activations(PREPARE[kind](model, seed), w_bits, a_bits)


def rotation_experiment(model: nn.Module, tokenizer, settings=((4, None), (4, 8), (4, 4)), *,
                        kinds=("plain", "rotated"), seed: int = 0, **perplexity_options
                        ) -> dict[str, dict[str, float]]:
    """Perplexity of ``model`` (any Llama; left unchanged: each row works on a copy) in float and
    at each ``(w_bits, a_bits)`` of ``settings``, for each of ``kinds``: ``{"plain": {...},
    "rotated": {...}}`` keyed "float", "W4A16", "W16A4", ... ``perplexity_options`` go to
    :func:`qcourse.evaluation.perplexity`."""
    unknown = [kind for kind in kinds if kind not in PREPARE]
    if unknown:
        raise ValueError(f"kinds must be among {tuple(PREPARE)}, got {unknown}")
    results = {}
    for kind in kinds:
        base = prepare(copy.deepcopy(model), kind, seed=seed)
        row = {"float": evaluation.perplexity(base, tokenizer, **perplexity_options)}
        for w_bits, a_bits in settings:
            quantized = quantize_weights_activations(copy.deepcopy(base), w_bits, a_bits)
            row[setting_name(w_bits, a_bits)] = evaluation.perplexity(quantized, tokenizer,
                                                                      **perplexity_options)
        results[kind] = row
    return results


def peak_to_rms(x: torch.Tensor) -> torch.Tensor:
    """For each token (row) of ``x [tokens, K]``: ``max_k |x| / rms(x)``, how far the largest
    value sticks out (√K when one channel holds everything, ~3–4 for Gaussian rows of 256)."""
    return x.abs().amax(-1) / x.pow(2).mean(-1).sqrt()

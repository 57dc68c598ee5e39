"""The quantized linear layers of the course, over one base (:class:`QuantizedLinear`: shape,
bias, ``forward`` through ``weight()``):

    QuantLinear       packed b-bit integers, fp16 scales, zero points (GPTQ/AWQ layout)
                      -- what RTN, GPTQ, AWQ and QAT store into
    W8A8Linear        int8 weights per channel, int8 activations per token, integer matmul
    Int8MixedLinear   LLM.int8(): W8A8 with outlier input features kept in float
    NF4Linear         NF4 codes in blocks of 64 with a float32 absmax (QLoRA, bitsandbytes)
    FloatZeroLinear   packed codes with a float scale and a float zero point per group (HQQ)

and fake quantization (:mod:`.fake`): :func:`fake_quantize_weights` (a format's round trip in
place of each weight) and :class:`QuantizedInput` (any layer behind a run-time quantizer of its
input, per token: FP8, W4A8, W4A4 activations).
"""
from .base import QuantizedLinear, check_linear, quantized_layers
from .fake import (QuantizedInput, fake_quantize_weights, int_activations, per_token_int,
                   quantize_inputs)
from .float_zero import FloatZeroLinear
from .int8 import Int8MixedLinear, W8A8Linear, int8_matmul, outlier_features, quantize_per_token
from .nf4 import NF4Linear
from .quantlinear import QuantLinear, to_unsigned

__all__ = ["QuantizedLinear", "QuantLinear", "W8A8Linear", "Int8MixedLinear", "NF4Linear",
           "FloatZeroLinear", "QuantizedInput", "fake_quantize_weights", "int_activations",
           "per_token_int", "quantize_inputs",
           "check_linear", "quantized_layers", "int8_matmul", "outlier_features",
           "quantize_per_token", "to_unsigned"]

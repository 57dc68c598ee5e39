"""bitsandbytes on the CPU: the production implementation of LLM.int8() and NF4.

``load_bnb("int8")`` / ``load_bnb("nf4")`` load ``qcourse-tiny`` (or another local model) through
transformers' ``BitsAndBytesConfig``, which swaps every linear layer except the output head for
``bnb.nn.Linear8bitLt`` (int8 weights per output row, outlier threshold 6.0) or
``bnb.nn.Linear4bit`` (NF4 codes in blocks of 64, float32 absmax). bitsandbytes >= 0.45 runs
both on the CPU; transformers needs ``accelerate`` to load them.

Measured with bitsandbytes 0.50.2 on the CPU: the first batched forward pass of a 4-bit model
repacks each ``Linear4bit`` weight into a CPU-friendly layout and turns its float32 absmax into
bfloat16 (4.25 instead of 4.5 bits per weight), so :func:`size_bytes` reports the loaded model's
size before and a smaller one after.
"""
from __future__ import annotations

import contextlib
import logging
import warnings

import torch
from torch import nn

from qcourse.evaluation import model_size_bytes, tensor_bytes
from qcourse.models import resolve

MODES = ("int8", "nf4")


# On CPUs with AVX512-BF16, bitsandbytes 0.50 tries, while it is being imported, to fetch an
# optional CPU kernel from the Hugging Face Hub through the `kernels` package, and logs a warning
# on stderr when it cannot ("Failed to load CPU gemm_4bit_forward from kernels-community ...").
# The course runs offline and uses bitsandbytes' built-in CPU path instead, so that one logger is
# raised to ERROR for the duration of the import only, and put back as it was. (Installing
# `kernels` would make bitsandbytes download code at run time.)
OPTIONAL_HUB_KERNEL_LOGGER = "bitsandbytes.backends.cpu.ops"


@contextlib.contextmanager
def quiet_logger(name: str, level: int = logging.ERROR):
    """Raise logger ``name`` to ``level`` inside the ``with`` block; restore its level after."""
    logger = logging.getLogger(name)
    before = logger.level
    logger.setLevel(level)
    try:
        yield logger
    finally:
        logger.setLevel(before)


def require_bitsandbytes():
    """Import bitsandbytes (without its import-time warning about the optional Hub kernel: see
    :data:`OPTIONAL_HUB_KERNEL_LOGGER`; later warnings of that logger still show), or say how
    to install it."""
    try:
        with quiet_logger(OPTIONAL_HUB_KERNEL_LOGGER):
            import bitsandbytes
    except ImportError as err:
        raise ImportError("bitsandbytes is not installed: `pip install bitsandbytes accelerate` "
                          "(version 0.45 or later runs on the CPU)") from err
    return bitsandbytes


def bnb_config(mode: str, threshold: float = 6.0, double_quant: bool = False):
    """The ``BitsAndBytesConfig`` for ``mode`` "int8" (LLM.int8()) or "nf4" (block size 64;
    ``double_quant``: the absmax values quantized again to 8 bits, as QLoRA does)."""
    from transformers import BitsAndBytesConfig

    if mode == "int8":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_threshold=threshold)
    if mode == "nf4":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                  bnb_4bit_use_double_quant=double_quant,
                                  bnb_4bit_compute_dtype=torch.float32)
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


def load_bnb(mode: str, name: str = "qcourse-tiny", threshold: float = 6.0,
             double_quant: bool = False) -> nn.Module:
    """Load model ``name`` quantized by bitsandbytes (``mode`` "int8" or "nf4"), on the CPU."""
    require_bitsandbytes()
    from transformers import AutoModelForCausalLM

    config = bnb_config(mode, threshold, double_quant)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = AutoModelForCausalLM.from_pretrained(resolve(name), quantization_config=config,
                                                     dtype=torch.float32)
    model.eval()
    return model


def dequantized_nf4_weight(layer: nn.Module) -> torch.Tensor:
    """The float32 weight a ``bnb.nn.Linear4bit`` computes with: bitsandbytes' own dequantizer."""
    import bitsandbytes.functional as bnbf

    return bnbf.dequantize_4bit(layer.weight.data, layer.weight.quant_state).float()


def int8_weight(layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """``(int8 weight [N, K], per-row absmax [N])`` of a ``bnb.nn.Linear8bitLt``."""
    return layer.weight.data, layer.weight.SCB


def size_bytes(model: nn.Module) -> int:
    """Real bytes of a bitsandbytes model now: :func:`qcourse.evaluation.model_size_bytes` plus what
    bitsandbytes keeps outside parameters and buffers (NF4 block absmax in ``quant_state``, the
    int8 row scales ``SCB``), which ``model.get_memory_footprint()`` leaves out too (on the CPU
    the absmax shrinks to bfloat16 after the first forward pass: see the module docstring)."""
    extra = 0
    for module in model.modules():
        weight = getattr(module, "weight", None)
        state = getattr(weight, "quant_state", None)
        if state is not None:
            extra += tensor_bytes(state.absmax)
        scb = getattr(weight, "SCB", None)
        if isinstance(scb, torch.Tensor):
            extra += tensor_bytes(scb)
    return model_size_bytes(model) + extra


def silence_int8_casts() -> None:
    """bitsandbytes logs a warning on every float32 matmul of an int8 layer ("inputs will be
    cast from torch.float32 to float16"); the cast is what it always does, so hide the message."""
    logging.getLogger("bitsandbytes.autograd._functions").setLevel(logging.ERROR)

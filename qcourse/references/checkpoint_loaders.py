"""The loaders production uses for quantized checkpoints, run on the course's files.

* **compressed-tensors through transformers** (:func:`load_compressed`): ``from_pretrained`` of a
  folder whose ``config.json`` says ``quant_method: "compressed-tensors"`` builds the model with
  compressed-tensors' own ``PackedQuantizationCompressor``, which unpacks and dequantizes every
  ``weight_packed`` on the CPU. It reads nothing the course wrote except the file: an
  independent decoder of :mod:`qcourse.deploy.compressed`'s bytes, and the format vLLM serves.
* **GPTQ through transformers** needs GPTQModel and optimum (transformers 5's
  ``GptqHfQuantizer``); :func:`gptq_loader_unavailable_reason` says why they are not installed
  here.
* :func:`pack_reference` is compressed-tensors' own packer, to compare words with ours.
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import pathlib

import torch
from torch import nn


def load_compressed(path: str | pathlib.Path) -> nn.Module:
    """``AutoModelForCausalLM.from_pretrained`` of a compressed-tensors folder (float32, CPU,
    decompressed to ordinary ``nn.Linear`` weights). ImportError if compressed-tensors is
    missing; ValueError if the folder is not a compressed-tensors checkpoint."""
    import json

    if importlib.util.find_spec("compressed_tensors") is None:
        raise ImportError("compressed-tensors is not installed (pip install llmcompressor, or "
                          "compressed-tensors)")
    config = json.loads((pathlib.Path(path) / "config.json").read_text())
    method = config.get("quantization_config", {}).get("quant_method")
    if method != "compressed-tensors":
        raise ValueError(f"{path} is not a compressed-tensors checkpoint (quant_method {method!r})")
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    logging.getLogger("compressed_tensors").setLevel(logging.ERROR)
    with contextlib.redirect_stderr(io.StringIO()):      # compressed-tensors' progress bars
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32).eval()
        with torch.no_grad():                # compressed-tensors decompresses in a forward
            model(torch.zeros(1, 1, dtype=torch.long))     # pre-hook: run it now, quietly
    return model


def gptq_loader_unavailable_reason() -> str | None:
    """Why transformers cannot load a ``quant_method: "gptq"`` checkpoint here (None if it can).

    transformers 5 hands GPTQ checkpoints to ``GptqHfQuantizer``, which needs ``optimum``
    (``optimum.gptq.GPTQQuantizer``) and ``gptqmodel`` for the kernels; with GPTQModel installed
    it runs on a CPU too (``gptq_supports_cpu = is_gptqmodel_available()`` in transformers'
    ``quantizer_gptq.py``). What keeps it out of this environment is installing it: GPTQModel
    7.7 needs transformers >= 5.20 and installs with a CUDA build of torch, while llm-compressor
    0.14 pins transformers <= 5.17 (DESIGN.md, "Facts verified")."""
    missing = [m for m in ("optimum", "gptqmodel") if importlib.util.find_spec(m) is None]
    if missing:
        return (f"{' and '.join(missing)} not installed: transformers' GPTQ loader needs optimum "
                "and GPTQModel (which runs on a CPU too), and GPTQModel 7.7 needs transformers "
                ">= 5.20 and a CUDA build of torch, which this environment's llm-compressor "
                "(transformers <= 5.17) excludes")
    return None


def pack_reference(q: torch.Tensor, bits: int, packed_dim: int = 1) -> torch.Tensor:
    """compressed-tensors' ``pack_to_int32`` of unsigned ``bits``-bit codes ``q`` (it takes the
    signed codes ``q − 2^(b−1)`` as int8, as its quantizer produces them)."""
    from compressed_tensors.compressors.pack_quantized.helpers import pack_to_int32

    signed = (q.to(torch.int16) - 2 ** (bits - 1)).to(torch.int8)
    return pack_to_int32(signed, bits, packed_dim=packed_dim)

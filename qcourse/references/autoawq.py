"""AutoAWQ (casper-hansen/AutoAWQ 0.2.9), the AWQ implementation most checkpoints on the Hub were
made with, run for real on the same calibration windows as :mod:`qcourse.awq`.

AutoAWQ is deprecated (its maintainers point to llm-compressor's ``AWQModifier``, which does not
run on the CPU in version 0.14), but 0.2.9 still quantizes a Llama on the CPU with
transformers 5, after one fix (:func:`copying_quantizer`).
"""
from __future__ import annotations

import pathlib

import torch
from torch import nn

from qcourse.models import decoder_layers, set_module


def copying_quantizer():
    """AutoAWQ's quantizer with one CPU fix: its scale search saves the weights with
    ``{k: v.cpu() for k, v in state_dict().items()}``, a copy on a GPU but the *same* tensors on
    a CPU, so the in-place ``weight.mul_(s)`` of every α of the grid compounds into the
    "saved" weights and the float model no longer computes the same function (llm-awq issue
    #163, fix proposed in llm-awq PR #327). Here ``state_dict`` returns clones during the search."""
    from awq.quantize.quantizer import AwqQuantizer

    class CopyingQuantizer(AwqQuantizer):
        def _compute_best_scale(self, x, w_mean, x_mean, module2inspect, *args, **kwargs):
            original = module2inspect.state_dict
            module2inspect.state_dict = lambda *a, **k: {
                name: t.clone() for name, t in original(*a, **k).items()}
            try:
                return super()._compute_best_scale(x, w_mean, x_mean, module2inspect, *args,
                                                   **kwargs)
            finally:
                del module2inspect.state_dict

    return CopyingQuantizer


def quantize_model(model_dir: str | pathlib.Path, samples: torch.Tensor, bits: int = 4,
                     group_size: int = 128, *, duo_scaling: bool = True, clip: bool = True,
                     parallel_samples: int | None = 8, fix_cpu_copy: bool = True) -> nn.Module:
    """Quantize the model in ``model_dir`` with AutoAWQ 0.2.9 on the same calibration token
    windows, and return a float32 ``transformers`` model carrying AutoAWQ's result: its folded
    norms and, for every linear layer, the dequantized weight.

    4-bit runs AutoAWQ's real path (``version="GEMM"``: packed ``WQLinear_GEMM``, read back
    with AutoAWQ's own ``dequantize_gemm``); other widths (GEMM stores only 4-bit) use
    ``export_compatible=True`` (scaled and clipped float weights) followed by AutoAWQ's own
    ``pseudo_quantize_tensor`` in fp16, as its packing step would do. ``fix_cpu_copy``: run
    with the CPU fix of :func:`copying_quantizer` (False: AutoAWQ exactly as released).
    """
    try:
        from awq import AutoAWQForCausalLM
        from awq.modules.linear import WQLinear_GEMM
        from awq.quantize.quantizer import AwqQuantizer
        from awq.utils.packing_utils import dequantize_gemm
    except ImportError as err:
        raise ImportError(f"AutoAWQ (pip install autoawq==0.2.9, import name awq) is needed: "
                          f"{err}") from err
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    wrapper = AutoAWQForCausalLM.from_pretrained(str(model_dir), torch_dtype=torch.float32)
    config = {"zero_point": True, "q_group_size": group_size, "w_bit": bits, "version": "GEMM"}
    wrapper.quantize(tokenizer, quant_config=config, calib_data=samples.tolist(),
                     max_calib_samples=samples.shape[0], max_calib_seq_len=samples.shape[1],
                     n_parallel_calib_samples=parallel_samples, duo_scaling=duo_scaling,
                     apply_clip=clip, export_compatible=bits != 4,
                     quantizer_cls=copying_quantizer() if fix_cpu_copy else AwqQuantizer)
    model = wrapper.model.eval()
    for layer in decoder_layers(model):
        for name, module in list(layer.named_modules()):
            if isinstance(module, WQLinear_GEMM):
                weight = dequantize_gemm(module.qweight, module.qzeros, module.scales, bits,
                                         module.group_size).t()
            elif isinstance(module, nn.Linear):
                weight = wrapper.quantizer.pseudo_quantize_tensor(module.weight.data.half())[0]
            else:
                continue
            linear = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
            linear.weight.data = weight.float().contiguous()
            set_module(layer, name, linear)
    return model.float()

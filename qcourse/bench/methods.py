"""The methods of the course, registered for ``qcourse compare``, and the artifacts each runtime
gives: a model of the course's PyTorch layers, a bitsandbytes model or a GGUF file in llama.cpp.

A later chapter registers its method here in one line (:func:`~qcourse.bench.registry.register`).
"""
from __future__ import annotations

import copy
import pathlib

from .registry import Artifact, Context, Method, register


def dequantize_weights(model):
    """``model`` itself, its weight-only quantized layers (those computing ``x · weight()ᵀ +
    bias``, the base :class:`~qcourse.layers.QuantizedLinear` forward) replaced in place by plain
    ``nn.Linear`` holding the dequantized weight: the same logits, without unpacking the weights
    at every call. Layers with their own forward (W8A8, LLM.int8()) stay as they are."""
    import torch
    from torch import nn

    from qcourse.layers import QuantizedLinear, quantized_layers
    from qcourse.models import set_module

    for name, layer in quantized_layers(model).items():
        if type(layer).forward is not QuantizedLinear.forward:
            continue
        linear = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None)
        with torch.no_grad():
            linear.weight.copy_(layer.weight())
            if layer.bias is not None:
                linear.bias.copy_(layer.bias)
        set_module(model, name, linear)
    return model


def dequantized_copy(model):
    """A copy of ``model`` with its weight-only quantized layers dequantized
    (:func:`dequantize_weights`); the model itself is left as it is."""
    return dequantize_weights(copy.deepcopy(model))


def torch_artifact(ctx: Context, model) -> Artifact:
    """A model the course's PyTorch layers run: sized by its stored tensors, fingerprinted by
    the model it is scored as (the dequantized copy: equal weights give equal fingerprints,
    whichever method or layer stored them)."""
    from qcourse import evaluation

    from .caching import fingerprint

    scorer = model if model is ctx.model else dequantized_copy(model)
    return Artifact(scorer=scorer, size_bytes=evaluation.model_size_bytes(model),
                    runtime="torch", served=model, fingerprint=fingerprint(scorer))


def gguf_artifact(ctx: Context, path: pathlib.Path) -> Artifact:
    """A GGUF file run by llama.cpp (repacking off: :func:`qcourse.gguf.llamacpp.load`),
    fingerprinted by its bytes."""
    from qcourse.gguf import llamacpp

    from .caching import fingerprint

    llm = llamacpp.load(path, n_ctx=512, n_threads=ctx.settings.threads)
    return Artifact(scorer=llamacpp.logits_fn(llm), size_bytes=path.stat().st_size,
                    runtime="gguf", served=path, fingerprint=fingerprint(path))


# ---- the methods -----------------------------------------------------------------------------

def _float(ctx: Context) -> Artifact:
    return torch_artifact(ctx, ctx.model)


def _rtn(granularity: str, group_size: int | None):
    def run(ctx: Context) -> Artifact:
        from qcourse import ptq
        return torch_artifact(ctx, ptq.quantize_rtn(copy.deepcopy(ctx.model), 4, granularity,
                                                    group_size))
    return run


def _ptq(function: str, **options):
    def run(ctx: Context) -> Artifact:
        from qcourse import ptq
        return torch_artifact(ctx, getattr(ptq, function)(copy.deepcopy(ctx.model), **options))
    return run


def _bnb_nf4(ctx: Context) -> Artifact:
    from qcourse.references import bnb

    model = bnb.load_bnb("nf4")
    return Artifact(scorer=model, size_bytes=bnb.size_bytes(model), runtime="bnb", served="nf4")


def _gptq(group_size: int):
    def run(ctx: Context) -> Artifact:
        from qcourse import gptq
        samples = ctx.calibration(*ctx.settings.gptq_samples)
        return torch_artifact(ctx, gptq.quantize_model(copy.deepcopy(ctx.model), samples, 4,
                                                       group_size, progress=False))
    return run


def _awq(group_size: int):
    def run(ctx: Context) -> Artifact:
        from qcourse import awq
        samples = ctx.calibration(*ctx.settings.awq_samples)
        return torch_artifact(ctx, awq.quantize_model(copy.deepcopy(ctx.model), samples, 4,
                                                      group_size, progress=False))
    return run


def _qat(ctx: Context) -> Artifact:
    """QAT: prepare (4-bit, groups of 128), train, convert to QuantLinear."""
    from qcourse import qat
    model = qat.prepare(copy.deepcopy(ctx.model), 4, 128)
    qat.train(model, ctx.tokenizer, ctx.settings.qat_steps, progress=False)
    return torch_artifact(ctx, qat.convert(model))


def _gguf(ftype: str):
    def run(ctx: Context) -> Artifact:
        from qcourse.gguf import llamacpp
        source, quantized = ctx.float_gguf()
        path = ctx.workdir / f"{pathlib.Path(ctx.model_name).name}-{ftype}.gguf"
        llamacpp.quantize_file(source, path, ftype, n_threads=ctx.settings.threads,
                               allow_requantize=quantized)
        return gguf_artifact(ctx, path)
    return run


PTQ_MODULES = ("qcourse.ptq", "qcourse.layers", "qcourse.quant", "qcourse.pack")
PYTORCH = "PyTorch (qcourse.layers)"

register(Method("fp32", "float32 (reference)", "PyTorch", _float, ("qcourse.models",)))
register(Method("rtn-channel", "RTN 4-bit per-channel", PYTORCH, _rtn("channel", None),
                PTQ_MODULES, {"bits": 4, "group_size": None}))
register(Method("rtn-g128", "RTN 4-bit g128", PYTORCH, _rtn("group", 128), PTQ_MODULES,
                {"bits": 4, "group_size": 128}))
register(Method("rtn-g64", "RTN 4-bit g64", PYTORCH, _rtn("group", 64), PTQ_MODULES,
                {"bits": 4, "group_size": 64}))
register(Method("rtn-g32", "RTN 4-bit g32", PYTORCH, _rtn("group", 32), PTQ_MODULES,
                {"bits": 4, "group_size": 32}))
register(Method("w8a8", "W8A8 (int8 weights and activations)", PYTORCH, _ptq("quantize_w8a8"),
                PTQ_MODULES))
register(Method("w8a8-tensor", "W8A8, one activation scale per tensor", PYTORCH,
                _ptq("quantize_w8a8", activations="tensor"), PTQ_MODULES,
                {"activations": "tensor"}))
register(Method("llm-int8", "LLM.int8() (threshold 6)", PYTORCH, _ptq("quantize_llm_int8"),
                PTQ_MODULES, {"threshold": 6.0}))
register(Method("nf4", "NF4 (ours, blocks of 64)", PYTORCH, _ptq("quantize_nf4_model"),
                PTQ_MODULES + ("qcourse.nf4",), {"block_size": 64}))
register(Method("bnb-nf4", "NF4 (bitsandbytes)", "bitsandbytes", _bnb_nf4,
                ("qcourse.references.bnb",), {"block_size": 64}, ("bitsandbytes",)))
GPTQ_MODULES = PTQ_MODULES + ("qcourse.gptq", "qcourse.blocks")
AWQ_MODULES = PTQ_MODULES + ("qcourse.awq", "qcourse.blocks", "qcourse.transforms", "qcourse.calib")
register(Method("gptq", "GPTQ 4-bit g128", PYTORCH, _gptq(128), GPTQ_MODULES,
                {"bits": 4, "group_size": 128}))
register(Method("gptq-g64", "GPTQ 4-bit g64", PYTORCH, _gptq(64), GPTQ_MODULES,
                {"bits": 4, "group_size": 64}))
register(Method("awq", "AWQ 4-bit g128", PYTORCH, _awq(128), AWQ_MODULES,
                {"bits": 4, "group_size": 128}))
register(Method("awq-g64", "AWQ 4-bit g64", PYTORCH, _awq(64), AWQ_MODULES,
                {"bits": 4, "group_size": 64}))
register(Method("qat", "QAT 4-bit g128", PYTORCH, _qat,
                ("qcourse.qat", "qcourse.training") + PTQ_MODULES, {"bits": 4, "group_size": 128}))
for _ftype in ("Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q3_K_M", "Q2_K"):
    register(Method(f"gguf-{_ftype}", f"GGUF {_ftype}", "llama.cpp", _gguf(_ftype),
                    ("qcourse.gguf",), {"ftype": _ftype}, ("llama_cpp",)))

"""ONNX Runtime on the CPU: the model exported to ONNX, quantized to INT8 and INT4, and run.

* :func:`export` writes the model with ``torch.onnx.export(dynamo=True)`` (optimum-onnx, the
  usual route, requires transformers < 4.58 and cannot run with transformers 5). The graph takes
  ``input_ids [B, S]`` and the KV cache of the tokens before them, ``past [L, 2, B, H_kv, T,
  D]`` (T may be 0), and returns ``logits [B, S, V]`` and ``present [L, 2, B, H_kv, T + S, D]``,
  so generation feeds one token per step like every other runtime here.
* :func:`quantize_int8`: ``onnxruntime.quantization.quantize_dynamic`` (weights int8 per tensor
  or channel, activations quantized on the fly per batch: ``MatMulInteger``);
* :func:`quantize_int4`: ``MatMulNBitsQuantizer`` (weights int4 in blocks of 32 along the input,
  one scale per block, symmetric: ``MatMulNBits``, activations stay float).

Both quantize the weights of the 42 ``MatMul`` nodes of qcourse-tiny's linear layers. Measured
here (onnxruntime 1.32): ``quantize_dynamic`` also stores the tied embedding / output-head matrix
as uint8 (a ``DequantizeLinear`` before each use), while ``MatMulNBitsQuantizer`` leaves that
shared matrix float32, so the INT8 file is the smaller of the two for this model.

:func:`onnx_files` exports once per model (cached) in a child process.
"""
from __future__ import annotations

import contextlib
import io
import os
import pathlib
import subprocess
import sys

import numpy as np
import torch
from torch import nn

from qcourse import paths
from qcourse.deploy.model_file import model_fingerprint
from qcourse.models import llama, resolve

BLOCK_SIZE = 32


def require():
    """The ``onnxruntime`` module, or ImportError saying how to install it."""
    try:
        import onnxruntime
    except ImportError as err:
        raise ImportError("ONNX Runtime is not installed: pip install onnx onnxscript "
                          "onnxruntime (the reference extra)") from err
    return onnxruntime


class CachedCausalLM(nn.Module):
    """A Hugging Face causal LM with its KV cache as plain tensors in and out (what an ONNX
    graph can carry): ``(input_ids [B, S], past [L, 2, B, H_kv, T, D]) -> (logits, present)``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, past: torch.Tensor):
        from transformers import DynamicCache

        cache = DynamicCache(config=self.model.config)
        for layer in range(past.shape[0]):
            cache.update(past[layer, 0], past[layer, 1], layer)
        start = past.shape[4]
        positions = torch.arange(input_ids.shape[1]).unsqueeze(0) + start          # [1, S]
        out = self.model(input_ids=input_ids, past_key_values=cache, position_ids=positions,
                         use_cache=True)
        present = torch.stack([torch.stack([layer.keys, layer.values])
                               for layer in out.past_key_values.layers])   # [L, 2, B, H, T+S, D]
        return out.logits, present


def empty_past(config, batch: int = 1) -> np.ndarray:
    """A KV cache of length 0, ``[L, 2, B, H_kv, 0, D]`` float32."""
    return np.zeros((config.num_hidden_layers, 2, batch, config.num_key_value_heads, 0,
                     llama.head_dim(config)), np.float32)


def export(model: nn.Module, path: str | os.PathLike) -> pathlib.Path:
    """Export ``model`` to ONNX at ``path`` (weights in ``path.data`` beside it), dynamic in
    batch, new tokens and cache length. Returns the path."""
    path = pathlib.Path(path)
    config = model.config
    ids = torch.zeros(1, 4, dtype=torch.long)                     # example inputs: 4 new tokens
    layers, two, batch_size, heads, _, head_dim = empty_past(config).shape
    past = torch.zeros(layers, two, batch_size, heads, 3, head_dim)   # after 3 cached tokens
    batch, seq, cached = (torch.export.Dim(n) for n in ("batch", "seq", "past"))
    with contextlib.redirect_stdout(io.StringIO()):              # the exporter's progress lines
        torch.onnx.export(CachedCausalLM(model).eval(), (ids, past), str(path), dynamo=True,
                          dynamic_shapes=({0: batch, 1: seq}, {2: batch, 4: cached}),
                          input_names=["input_ids", "past"], output_names=["logits", "present"])
    return path


def quantize_int8(src: str | os.PathLike, dst: str | os.PathLike) -> pathlib.Path:
    """``quantize_dynamic``: int8 weights (signed), activations quantized per batch at run time."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
    return pathlib.Path(dst)


def quantize_int4(src: str | os.PathLike, dst: str | os.PathLike,
                  block_size: int = BLOCK_SIZE) -> pathlib.Path:
    """``MatMulNBitsQuantizer``: symmetric int4 weights in blocks of ``block_size`` inputs."""
    import logging

    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)
    quantizer = MatMulNBitsQuantizer(onnx.load(str(src)), block_size=block_size,
                                     is_symmetric=True)
    quantizer.process()
    quantizer.model.save_model_to_file(str(dst), use_external_data_format=True)
    return pathlib.Path(dst)


def onnx_paths(model_name: str = "qcourse-tiny") -> dict[str, pathlib.Path]:
    """Where the float32, INT8 and INT4 files of ``model_name`` are cached:
    ``cache_dir()/onnx/<name>-<fingerprint of the model's files>/``."""
    source = resolve(model_name)
    if not isinstance(source, pathlib.Path):
        raise ValueError(f"{model_name!r} is not a local model folder")
    folder = paths.cache_dir() / "onnx" / f"{source.name}-{model_fingerprint(source)}"
    return {"fp32": folder / "model.onnx", "int8": folder / "model-int8.onnx",
            "int4": folder / f"model-int4-b{BLOCK_SIZE}.onnx"}


def write_onnx_files(model_name: str = "qcourse-tiny") -> dict[str, pathlib.Path]:
    """Export ``model_name`` and quantize it to INT8 and INT4, at :func:`onnx_paths`."""
    from qcourse import models

    files = onnx_paths(model_name)
    files["fp32"].parent.mkdir(parents=True, exist_ok=True)
    net, _ = models.load(model_name)
    export(net, files["fp32"])
    quantize_int8(files["fp32"], files["int8"])
    quantize_int4(files["fp32"], files["int4"])
    return files


def onnx_files(model_name: str = "qcourse-tiny", *, timeout_s: float = 1800) -> dict[str, pathlib.Path]:
    """``{"fp32": ..., "int8": ..., "int4": ...}``: the model exported and quantized once, then
    cached. The export runs in a child process (``python -m qcourse.references.onnx_runtime``):
    the exporter's tracing takes several hundred MB that a process does not give back."""
    require()
    files = onnx_paths(model_name)
    if not all(f.exists() for f in files.values()):
        done = subprocess.run([sys.executable, "-m", "qcourse.references.onnx_runtime", model_name],
                              capture_output=True, text=True, timeout=timeout_s)
        if done.returncode != 0 or not all(f.exists() for f in files.values()):
            raise RuntimeError(f"exporting {model_name} to ONNX failed:\n{done.stderr[-2000:]}")
    return files


class OrtRuntime:
    """An ONNX file from :func:`export` (or its quantized copies) in an ONNX Runtime CPU
    session, as a :class:`qcourse.deploy.runtimes.Runtime`."""

    def __init__(self, path: str | os.PathLike, config, name: str | None = None, *,
                 threads: int = 1) -> None:
        ort = require()
        self.path, self.config = pathlib.Path(path), config
        self.name = name or f"ONNX Runtime {self.path.stem}"
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = threads
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(self.path), options,
                                            providers=["CPUExecutionProvider"])

    def step(self, ids: np.ndarray, past: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One forward pass: ``(logits [1, S, V], present)``."""
        logits, present = self.session.run(None, {"input_ids": ids, "past": past})
        return logits, present

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        logits, _ = self.step(ids.numpy()[None].astype(np.int64), empty_past(self.config))
        return torch.from_numpy(logits[0])

    def generate(self, ids: list[int], new_tokens: int) -> list[int]:
        x, past, new = np.array([ids], dtype=np.int64), empty_past(self.config), []
        for _ in range(new_tokens):
            logits, past = self.step(x, past)
            new.append(int(logits[0, -1].argmax()))
            x = np.array([[new[-1]]], dtype=np.int64)
        return new

    def weight_bytes(self) -> int:
        """Bytes of the ONNX file and its external data (the initializers)."""
        data = self.path.with_name(self.path.name + ".data")
        return self.path.stat().st_size + (data.stat().st_size if data.exists() else 0)


def initializer_bytes(path: str | os.PathLike, *, largest: int = 1) -> dict:
    """What an ONNX file's weights are stored as: ``{"by_dtype": {dtype: bytes}, "largest":
    [(name, dtype, shape), ...]}`` over its initializers (``largest``: the biggest ones by
    bytes). Read from the file itself, external data included."""
    import onnx
    from onnx import helper, numpy_helper

    graph = onnx.load(str(path)).graph
    by_dtype: dict[str, int] = {}
    sizes = []
    for tensor in graph.initializer:
        array = numpy_helper.to_array(tensor)
        dtype = helper.tensor_dtype_to_np_dtype(tensor.data_type).name
        by_dtype[dtype] = by_dtype.get(dtype, 0) + array.nbytes
        sizes.append((array.nbytes, tensor.name, dtype, tuple(array.shape)))
    sizes.sort(reverse=True)
    return {"by_dtype": dict(sorted(by_dtype.items(), key=lambda kv: -kv[1])),
            "largest": [(name, dtype, shape) for _, name, dtype, shape in sizes[:largest]]}


if __name__ == "__main__":
    write_onnx_files(sys.argv[1] if len(sys.argv) > 1 else "qcourse-tiny")

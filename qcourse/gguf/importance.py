"""The importance matrix ("imatrix"): how much each input column of each weight matters.

For a linear layer y = W x, the error that quantizing W adds to y is Σ_j (W_ij − Ŵ_ij) x_j; its
expected square, for independent inputs, weighs column j by E[x_j²]. llama.cpp's ``imatrix`` tool
collects exactly that over calibration text,

    imatrix_j = (1/T) Σ_t x_{t,j}²      (per input channel j, over T calibration tokens)

and its K-quant (and legacy) quantizers, when choosing block scales and mins, minimise a
weighted error Σ_j imatrix_j · sqrt(σ² + w_j²) · (w_j − ŵ_j)² instead of the plain one (σ² a
mean square of the weights around w_j; Q6_K drops the square root: see
:func:`qcourse.gguf.kquants.importance_weights`).

Two ways to hand it to llama.cpp, both here:
- in memory: ``llama_model_quantize_params.imatrix`` is a C array of ``{name, data, size}``
  entries (GGUF tensor name, float32 values), ended by a null name
  (:func:`qcourse.gguf.llamacpp.quantize_file` builds it);
- on disk: the GGUF imatrix file that ``llama-imatrix`` writes and ``llama-quantize --imatrix``
  reads: per weight ``<name>.in_sum2`` (sum of squares) and ``<name>.counts`` (tokens), plus
  ``imatrix.datasets``/``chunk_count``/``chunk_size`` metadata (:func:`save_imatrix`).
"""
from __future__ import annotations

import os

import numpy as np
from torch import nn

from qcourse.calib import collect_activation_stats

from .writer import gguf_name


def imatrix(model: nn.Module, calibration_samples, *, batch_size: int = 4) -> dict[str, np.ndarray]:
    """Per-input-channel mean squared activation of every linear layer of a Llama ``model``,
    keyed by GGUF tensor name (``blk.0.attn_q.weight``), float32 arrays of the layer's input width.

    ``calibration_samples``: token ids, LongTensor [n, seq_len] (e.g.
    ``qcourse.data.calibration_samples(tokenizer, 16, 512)``).
    """
    stats = collect_activation_stats(model, calibration_samples, batch_size=batch_size)
    return {gguf_name(f"{name}.weight"): s.mean_sq.numpy().astype(np.float32)
            for name, s in stats.items()}


def save_imatrix(path: str | os.PathLike, matrix: dict[str, np.ndarray], tokens: int, *,
                 chunk_size: int = 512, dataset: str = "qcourse") -> None:
    """Write ``matrix`` as the GGUF imatrix file ``llama-quantize --imatrix`` reads.

    ``tokens``: calibration tokens the means were taken over (the file stores sums and counts).
    """
    import gguf

    if tokens < 1:
        raise ValueError(f"tokens must be the positive number of calibration tokens, got {tokens}")
    writer = gguf.GGUFWriter(path, arch="")  # empty: no general.architecture, as llama-imatrix
    writer.add_type("imatrix")
    writer.add_array("imatrix.datasets", [dataset])
    writer.add_uint32("imatrix.chunk_count", max(1, tokens // chunk_size))
    writer.add_uint32("imatrix.chunk_size", chunk_size)
    for name in sorted(matrix):
        values = np.asarray(matrix[name], dtype=np.float32)
        writer.add_tensor(f"{name}.in_sum2", (values * np.float32(tokens))[None, :])
        writer.add_tensor(f"{name}.counts", np.full((1, 1), tokens, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def load_imatrix(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a GGUF imatrix file the way llama-quantize does: in_sum2 / counts, per weight."""
    from .reader import read_gguf

    f = read_gguf(path)
    if f.metadata.get("general.type") != "imatrix":
        raise ValueError(f"{path} is a GGUF file but not an imatrix (general.type is "
                         f"{f.metadata.get('general.type')!r})")
    matrix = {}
    for name in f.tensors:
        if name.endswith(".in_sum2"):
            weight = name.removesuffix(".in_sum2")
            count = f.tensor(f"{weight}.counts").reshape(-1)[0]
            sums = f.tensor(name).reshape(-1)
            matrix[weight] = sums / count if count > 0 else np.ones_like(sums)
    return matrix

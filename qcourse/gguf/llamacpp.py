"""Running GGUF files in llama.cpp itself, through llama-cpp-python: the referee of this package.

Thin wrappers, each mirroring a ``qcourse`` function so results compare one to one:

- :func:`quantize_file` is ``llama-quantize`` (``llama_model_quantize``), optionally ``pure`` and
  with an importance matrix;
- :func:`perplexity` scores the same windows as :func:`qcourse.eval.perplexity` from llama.cpp's
  logits; :func:`generate` is greedy decoding like :func:`qcourse.eval.generate`;
- :func:`tokens_per_second` times llama.cpp's single-token decoding.

llama-cpp-python is an optional dependency: :func:`require` says how to install it.

Found on an Intel Xeon with AMX and AVX-512 (llama-cpp-python 0.3.36 built natively): with
llama.cpp's *extra buffer types* on (its default: weights repacked at load time for the AMX /
AVX-512 kernels), evaluating more than one token of qcourse-tiny in Q4_0, Q8_0, Q4_K or Q6_K
crashes the process (segmentation fault); one token at a time, or with the extra buffer types
off, every type runs and gives the same logits. :func:`load` therefore turns them off by default
(``repack=False``); on a small model the repacked kernels buy nothing measurable anyway.
"""
from __future__ import annotations

import contextlib
import ctypes
import math
import os
import threading
import time

import numpy as np
import torch
import torch.nn.functional as F

from qcourse import data
from qcourse import eval as qeval

from .mixes import FTYPES, check_ftype

_PARAMS_LOCK = threading.Lock()


def available() -> bool:
    """True if llama-cpp-python imports."""
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return False
    return True


def require():
    """The ``llama_cpp`` module with llama.cpp's logging quietened (ImportError with a hint if
    llama-cpp-python is missing)."""
    try:
        import llama_cpp
        from llama_cpp import _logger
    except ImportError as err:
        raise ImportError("this needs llama-cpp-python: pip install llama-cpp-python "
                          "(it compiles llama.cpp, a few minutes)") from err
    _logger.set_verbose(False)
    return llama_cpp


def _imatrix_array(llama_cpp, matrix: dict[str, np.ndarray]):
    """A C array of llama_model_imatrix_data {name, data, size}, null-terminated, plus the Python
    objects that must stay alive while llama.cpp reads it."""
    entries = (llama_cpp.llama_model_imatrix_data * (len(matrix) + 1))()
    keep = []
    for entry, (name, values) in zip(entries, sorted(matrix.items())):
        values = np.ascontiguousarray(values, dtype=np.float32)
        if not np.isfinite(values).all() or (values < 0).any():
            raise ValueError(f"imatrix for {name} holds negative, NaN or Inf values")
        name_bytes = name.encode()
        keep += [values, name_bytes]
        entry.name = name_bytes
        entry.data = values.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        entry.size = values.size
    entries[len(matrix)].name = None
    return entries, keep


def quantize_file(src: str | os.PathLike, dst: str | os.PathLike, ftype: str, *, pure: bool = False,
                  imatrix: dict[str, np.ndarray] | None = None, n_threads: int = 1) -> None:
    """Quantize the GGUF file ``src`` (F32/F16) into ``dst`` with llama.cpp's own quantizer.

    ``ftype``: a name of :data:`qcourse.gguf.mixes.FTYPES` ("Q4_K_M", "Q8_0", ...). ``pure``: no
    mix rules, one type for every 2-D weight. ``imatrix``: GGUF tensor name -> float32 importance
    of each input column (:func:`qcourse.gguf.importance.imatrix`).
    """
    llama_cpp = require()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FTYPES[check_ftype(ftype)][0]
    params.pure = pure
    params.nthread = n_threads
    if imatrix is not None:
        entries, _keep = _imatrix_array(llama_cpp, imatrix)
        params.imatrix = entries
    if not os.path.exists(src):
        raise FileNotFoundError(src)
    status = llama_cpp.llama_model_quantize(os.fsencode(src), os.fsencode(dst), ctypes.byref(params))
    if status != 0:
        raise RuntimeError(f"llama.cpp could not quantize {src} to {ftype} (status {status})")


@contextlib.contextmanager
def extra_buffer_types(enabled: bool):
    """Within the block, models that llama-cpp-python loads use llama.cpp's extra buffer types
    (repacked weights for AMX / AVX-512 / ARM kernels) only if ``enabled``. llama-cpp-python
    has no argument for it, so its default model parameters are wrapped for the duration."""
    llama_cpp = require()
    module = llama_cpp.llama.llama_cpp        # the low-level bindings Llama() builds its params from
    default = module.llama_model_default_params

    def params():
        p = default()
        p.use_extra_bufts = enabled
        return p

    with _PARAMS_LOCK:
        module.llama_model_default_params = params
        try:
            yield
        finally:
            module.llama_model_default_params = default


def load(path: str | os.PathLike, *, n_ctx: int = 512, n_threads: int = 1, repack: bool = False):
    """A ``llama_cpp.Llama`` for the GGUF file ``path`` that keeps the logits of every position.
    ``repack``: let llama.cpp repack weights for its CPU-specific kernels (off by default: see the
    module docstring)."""
    llama_cpp = require()
    with extra_buffer_types(repack):
        return llama_cpp.Llama(model_path=os.fspath(path), n_ctx=n_ctx, n_batch=n_ctx,
                               n_threads=n_threads, n_threads_batch=n_threads, logits_all=True,
                               verbose=False)


def tokenize(llm, text: str) -> list[int]:
    """llama.cpp's tokenization of ``text`` (no BOS, special-token text not parsed)."""
    return llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)


def _logits(llm, tokens: list[int]) -> np.ndarray:
    """Logits [len(tokens), vocab] of a fresh sequence ``tokens``."""
    llm.reset()
    llm.eval(tokens)
    return llm.scores[: len(tokens)]


def generate(llm, prompt: str, max_new_tokens: int = 40) -> str:
    """Greedy continuation of ``prompt`` in llama.cpp (argmax of its logits at each step)."""
    tokens = tokenize(llm, prompt)
    llm.reset()
    llm.eval(tokens)
    new = []
    for _ in range(max_new_tokens):
        token = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        new.append(token)
        if token == llm.token_eos():
            break
        llm.eval([token])
    return llm.detokenize(new).decode("utf-8", errors="replace")


def nll_per_window(llm, batches: torch.Tensor) -> torch.Tensor:
    """Summed negative log-likelihood (nats) of each window's predicted tokens, from llama.cpp."""
    totals = []
    for window in batches:
        logits = torch.from_numpy(np.array(_logits(llm, window.tolist()), dtype=np.float64))
        totals.append(F.cross_entropy(logits[:-1], window[1:], reduction="sum"))
    return torch.stack(totals)


def perplexity(llm, tokenizer, split: str = "test", seq_len: int = 512, *,
               max_windows: int | None = None) -> float:
    """llama.cpp's perplexity over exactly the windows :func:`qcourse.eval.perplexity` scores
    (the split tokenized by ``tokenizer``, cut into ``seq_len`` windows, each scored alone)."""
    if seq_len > llm.n_ctx():
        raise ValueError(f"seq_len {seq_len} exceeds the llama.cpp context {llm.n_ctx()}")
    batches = qeval.windows(data.token_ids(tokenizer, split), seq_len)
    if max_windows is not None:
        batches = batches[:max_windows]
    nll = nll_per_window(llm, batches)
    return math.exp(nll.sum().item() / (batches.size(0) * (seq_len - 1)))


def tokens_per_second(llm, prompt: str = "def ", new_tokens: int = 64, repeats: int = 2) -> float:
    """llama.cpp's greedy decoding speed in generated tokens per second (best of ``repeats``)."""
    tokens = tokenize(llm, prompt)
    best = float("inf")
    for _ in range(repeats):
        llm.reset()
        start = time.perf_counter()
        llm.eval(tokens)
        for _ in range(new_tokens):
            llm.eval([int(np.argmax(llm.scores[llm.n_tokens - 1]))])
        best = min(best, time.perf_counter() - start)
    return new_tokens / best

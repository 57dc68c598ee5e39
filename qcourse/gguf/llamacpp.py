"""Running GGUF files in llama.cpp itself, through llama-cpp-python: the referee of this package.

Thin wrappers, each mirroring a ``qcourse`` function so results compare one to one:

- :func:`quantize_file` is ``llama-quantize`` (``llama_model_quantize``), optionally ``pure`` and
  with an importance matrix;
- :func:`logits_fn` gives llama.cpp's logits to the course's metrics (:mod:`qcourse.evaluation`):
  :func:`perplexity` scores the same windows as :func:`qcourse.evaluation.perplexity`;
  :func:`greedy` and :func:`generate` decode greedily like :func:`qcourse.evaluation.generate`;
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
import os
import threading
import time

import numpy as np
import torch

from qcourse import evaluation

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


def load(path: str | os.PathLike, *, n_ctx: int = 512, n_threads: int = 1, repack: bool = False,
         logits_all: bool = True):
    """A ``llama_cpp.Llama`` for the GGUF file ``path`` that keeps the logits of every position
    (``logits_all=False``: of the last one only, as a server does). ``repack``: let llama.cpp
    repack weights for its CPU-specific kernels (off by default: see the module docstring)."""
    llama_cpp = require()
    with extra_buffer_types(repack):
        return llama_cpp.Llama(model_path=os.fspath(path), n_ctx=n_ctx, n_batch=n_ctx,
                               n_threads=n_threads, n_threads_batch=n_threads,
                               logits_all=logits_all, verbose=False)


def tokenize(llm, text: str) -> list[int]:
    """llama.cpp's tokenization of ``text`` (no BOS, special-token text not parsed)."""
    return llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)


def window_logits(llm, tokens: list[int]) -> torch.Tensor:
    """Float32 logits ``[len(tokens), V]`` of a fresh sequence ``tokens`` in llama.cpp."""
    llm.reset()
    llm.eval(list(tokens))
    return torch.from_numpy(np.array(llm.scores[: len(tokens)], dtype=np.float32))


def logits_fn(llm):
    """``ids [B, T] -> logits [B, T, V]`` from llama.cpp, one sequence at a time: what
    :func:`qcourse.evaluation.logits_fn` takes, so every metric of the course scores llama.cpp
    exactly as it scores a PyTorch model."""
    return lambda ids: torch.stack([window_logits(llm, row) for row in ids.tolist()])


def next_token(llm) -> int:
    """The greedy next token after the sequence llama.cpp has evaluated so far."""
    return int(np.argmax(llm.scores[llm.n_tokens - 1]))


def greedy(llm, tokens: list[int], new_tokens: int, *, stop: int | None = None) -> list[int]:
    """The ``new_tokens`` tokens greedy decoding appends to ``tokens`` in llama.cpp, with its KV
    cache (one evaluation per new token); ``stop``: a token that ends it early (kept)."""
    llm.reset()
    llm.eval(list(tokens))
    new: list[int] = []
    while len(new) < new_tokens:
        if new:
            llm.eval(new[-1:])
        new.append(next_token(llm))
        if new[-1] == stop:
            break
    return new


def generate(llm, prompt: str, max_new_tokens: int = 40) -> str:
    """Greedy continuation of ``prompt`` in llama.cpp (argmax of its logits at each step),
    stopping at the end-of-text token."""
    new = greedy(llm, tokenize(llm, prompt), max_new_tokens, stop=llm.token_eos())
    return llm.detokenize(new).decode("utf-8", errors="replace")


def perplexity(llm, tokenizer, split: str = "test", seq_len: int = 512, *,
               max_windows: int | None = None) -> float:
    """llama.cpp's perplexity over exactly the windows :func:`qcourse.evaluation.perplexity`
    scores (the split tokenized by ``tokenizer``, cut into ``seq_len`` windows, each scored
    alone), through the same scoring path."""
    if seq_len > llm.n_ctx():
        raise ValueError(f"seq_len {seq_len} exceeds the llama.cpp context {llm.n_ctx()}")
    return evaluation.perplexity(logits_fn(llm), tokenizer, split, seq_len,
                                 max_windows=max_windows, batch_size=1)


def tokens_per_second(llm, prompt: str = "def ", new_tokens: int = 64, repeats: int = 2) -> float:
    """llama.cpp's greedy decoding speed in generated tokens per second (best of ``repeats``)."""
    tokens = tokenize(llm, prompt)
    best = float("inf")
    for _ in range(repeats):
        llm.reset()
        start = time.perf_counter()
        llm.eval(tokens)
        for _ in range(new_tokens):
            llm.eval([next_token(llm)])
        best = min(best, time.perf_counter() - start)
    return new_tokens / best

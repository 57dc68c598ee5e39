"""llama.cpp's quantized KV cache: the ``--cache-type-k`` / ``--cache-type-v`` options of its
tools (``type_k`` / ``type_v`` of llama-cpp-python's ``Llama``), run for real.

llama.cpp stores each key and value row (one token, one head) in GGML blocks of 32 values:
``q8_0`` (int8 + an fp16 scale per block, 8.5 bits per value) or ``q4_0`` (4 bits + fp16 scale,
4.5 bits), like the symmetric int caches of :mod:`qcourse.kvcache` with ``group_size=32``. A
quantized *V* cache needs flash attention (``flash_attn=True``). As everywhere in this package,
models are loaded without llama.cpp's extra buffer types (see :mod:`qcourse.gguf.llamacpp`).
"""
from __future__ import annotations

import os

from .llamacpp import extra_buffer_types, require

#: cache type name -> (GGML type id, bits per cached value)
CACHE_TYPES = {"f16": (1, 16.0), "q8_0": (8, 8.5), "q4_0": (2, 4.5)}


def load_with_cache(path: str | os.PathLike, type_k: str = "f16", type_v: str = "f16", *,
                    n_ctx: int = 512, n_threads: int = 1):
    """A ``llama_cpp.Llama`` for the GGUF file ``path`` whose KV cache stores keys as ``type_k``
    and values as ``type_v`` (names of :data:`CACHE_TYPES`), with flash attention, keeping the
    logits of every position (for :func:`qcourse.gguf.llamacpp.perplexity`)."""
    for name in (type_k, type_v):
        if name not in CACHE_TYPES:
            raise ValueError(f"cache type must be one of {tuple(CACHE_TYPES)}, got {name!r}")
    llama_cpp = require()
    with extra_buffer_types(False):
        return llama_cpp.Llama(model_path=os.fspath(path), n_ctx=n_ctx, n_batch=n_ctx,
                               n_threads=n_threads, n_threads_batch=n_threads, logits_all=True,
                               flash_attn=True, type_k=CACHE_TYPES[type_k][0],
                               type_v=CACHE_TYPES[type_v][0], verbose=False)

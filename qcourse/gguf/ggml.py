"""The referee: llama.cpp's own quantizer, called through ctypes.

llama-cpp-python ships llama.cpp's shared libraries (``llama_cpp/lib/libggml-base.so`` on Linux).
``ggml_quantize_chunk`` in that library is what ``llama-quantize`` (and ``llama_model_quantize``)
run for every tensor; ``ggml_get_type_traits(type)->to_float`` is llama.cpp's dequantizer. This
module binds just those, so tests and benchmarks can compare ``qcourse.gguf.quantize`` with the
real thing on the same array::

    from qcourse.gguf import ggml
    ggml.quantize(a, "Q4_K", importance) == qcourse.gguf.quantize(a, "Q4_K", importance)

Importing works without llama-cpp-python; calling raises ``ImportError`` saying what to install.
"""
from __future__ import annotations

import ctypes
import functools
import importlib.util
import os
import pathlib
import sys

import numpy as np

from .mixes import GGML_TYPES

_LIB_NAMES = {"linux": "libggml-base.so", "darwin": "libggml-base.dylib", "win32": "ggml-base.dll"}

_ToFloat = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.POINTER(ctypes.c_float), ctypes.c_int64)


class _TypeTraits(ctypes.Structure):
    """``struct ggml_type_traits`` (ggml.h)."""
    _fields_ = [
        ("type_name", ctypes.c_char_p),
        ("blck_size", ctypes.c_int64),
        ("blck_size_interleave", ctypes.c_int64),
        ("type_size", ctypes.c_size_t),
        ("is_quantized", ctypes.c_bool),
        ("to_float", ctypes.c_void_p),
        ("from_float_ref", ctypes.c_void_p),
    ]


def library_path() -> pathlib.Path | None:
    """Where ggml's base library is: ``$LLAMA_CPP_LIB_PATH`` or llama-cpp-python's ``lib/``."""
    name = _LIB_NAMES.get(sys.platform, "libggml-base.so")
    folders = []
    if os.environ.get("LLAMA_CPP_LIB_PATH"):
        folders.append(pathlib.Path(os.environ["LLAMA_CPP_LIB_PATH"]))
    spec = importlib.util.find_spec("llama_cpp")
    if spec is not None and spec.submodule_search_locations:
        folders += [pathlib.Path(p) / "lib" for p in spec.submodule_search_locations]
    for folder in folders:
        if (folder / name).exists():
            return folder / name
    return None


def available() -> bool:
    """True when llama.cpp's ggml library can be loaded."""
    try:
        _library()
    except ImportError:
        return False
    return True


@functools.lru_cache(maxsize=1)
def _library() -> ctypes.CDLL:
    path = library_path()
    if path is None:
        raise ImportError("llama.cpp's ggml library was not found: install llama-cpp-python "
                          "(pip install llama-cpp-python) or set LLAMA_CPP_LIB_PATH to the folder "
                          "that holds libggml-base")
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as err:
        raise ImportError(f"could not load {path}: {err}") from err
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
                                        ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
                                        ctypes.c_void_p]
    lib.ggml_row_size.restype = ctypes.c_size_t
    lib.ggml_row_size.argtypes = [ctypes.c_int, ctypes.c_int64]
    lib.ggml_get_type_traits.restype = ctypes.POINTER(_TypeTraits)
    lib.ggml_get_type_traits.argtypes = [ctypes.c_int]
    return lib


def _type_id(qtype: str) -> int:
    if qtype not in GGML_TYPES:
        raise ValueError(f"unknown qtype {qtype!r}; known: {', '.join(GGML_TYPES)}")
    return GGML_TYPES[qtype]


def _pointer(a: np.ndarray | None) -> int | None:
    return None if a is None else a.ctypes.data


def quantize(a: np.ndarray, qtype: str, importance: np.ndarray | None = None) -> np.ndarray:
    """``ggml_quantize_chunk(type, a, dst, 0, rows, n, importance)`` on float32 ``a [..., n]``;
    returns uint8 ``[..., row_bytes]``."""
    lib, type_id = _library(), _type_id(qtype)
    src = np.ascontiguousarray(a, dtype=np.float32)
    n = src.shape[-1]
    rows = src.size // n
    row_bytes = lib.ggml_row_size(type_id, n)
    dst = np.zeros((rows, row_bytes), dtype=np.uint8)
    imp = None if importance is None else np.ascontiguousarray(importance, dtype=np.float32)
    written = lib.ggml_quantize_chunk(type_id, src.ctypes.data, dst.ctypes.data, 0, rows, n,
                                      _pointer(imp))
    assert written == dst.size, (written, dst.size)
    return dst.reshape(*src.shape[:-1], row_bytes)


def dequantize(b: np.ndarray, qtype: str, shape: tuple[int, ...]) -> np.ndarray:
    """llama.cpp's ``to_float`` (``dequantize_row_*``) on ``b``; returns float32 of ``shape``."""
    lib, type_id = _library(), _type_id(qtype)
    data = np.ascontiguousarray(b, dtype=np.uint8)
    count = int(np.prod(shape))
    if qtype == "F32":
        return data.view(np.float32).reshape(shape).copy()
    out = np.empty(count, dtype=np.float32)
    to_float = _ToFloat(lib.ggml_get_type_traits(type_id).contents.to_float)
    to_float(data.ctypes.data, out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), count)
    return out.reshape(shape)

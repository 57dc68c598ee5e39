"""GGUF, llama.cpp's file format, and its block quantization types, written from scratch.

``quantize``/``dequantize`` produce and read exactly llama.cpp's block bytes (``quants``); the rest of
the package writes, reads and runs GGUF files.
"""
from .quants import BLOCK_SIZE, TYPE_SIZE, QTYPES, dequantize, quantize  # noqa: F401
from .mixes import FTYPES, tensor_types  # noqa: F401,E402
from .writer import export  # noqa: F401,E402
from .reader import load_gguf, read_gguf  # noqa: F401,E402
from .importance import imatrix, load_imatrix, save_imatrix  # noqa: F401,E402

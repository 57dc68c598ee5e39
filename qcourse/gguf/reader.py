"""Reading a GGUF file: a small, strict parser, and ``load_gguf`` back into a PyTorch model.

Layout (little-endian, version 3)::

    magic "GGUF" | version u32 | n_tensors u64 | n_kv u64
    n_kv  x  key (u64 length + UTF-8) | value type u32 | value
    n_tensors x name | n_dims u32 | dims u64[n_dims] (fastest-varying first) | ggml type u32 | offset u64
    padding to the alignment (general.alignment, default 32)
    tensor data: each tensor at data_start + offset, offsets multiples of the alignment

Every length and offset read from the file is checked against the bytes that are really there,
so a truncated or corrupted file gives a ValueError that says what is wrong, never a crash or a
silently wrong model.
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
import struct

import numpy as np
import torch

from .mixes import GGML_TYPE_NAMES, llama_shapes
from .quants import BLOCK_SIZE, TYPE_SIZE, dequantize
from .writer import LAYER_TENSORS, unpermute_qk

MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32
# GGUF value types: id -> struct format (scalars); 8 = string, 9 = array.
SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q",
           12: "<d"}
STRING, ARRAY = 8, 9
MAX_DIMS = 4


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    name: str
    qtype: str              # "F32", "Q4_K", ...
    shape: tuple[int, ...]  # PyTorch order: (rows, row_length)
    offset: int             # absolute offset of the data in the file
    nbytes: int


@dataclasses.dataclass
class GGUFFile:
    version: int
    metadata: dict[str, object]
    tensors: dict[str, TensorInfo]
    alignment: int
    data_start: int
    buffer: np.ndarray  # the whole file, uint8

    def tensor_data(self, name: str) -> np.ndarray:
        """The raw block bytes of tensor ``name`` (uint8 view, no copy)."""
        info = self.tensors[name]
        return self.buffer[info.offset: info.offset + info.nbytes]

    def tensor(self, name: str) -> np.ndarray:
        """Tensor ``name`` dequantized to float32, in PyTorch shape."""
        info = self.tensors[name]
        return dequantize(self.tensor_data(name), info.qtype, info.shape)


class _Cursor:
    """Reads little-endian values from a byte buffer; ValueError past its end."""

    def __init__(self, buffer: memoryview):
        self.buffer, self.pos = buffer, 0

    def take(self, n: int, what: str) -> memoryview:
        if n < 0 or self.pos + n > len(self.buffer):
            raise ValueError(f"truncated GGUF file: {what} needs {n} bytes at offset {self.pos}, "
                             f"the file has {len(self.buffer)}")
        chunk = self.buffer[self.pos: self.pos + n]
        self.pos += n
        return chunk

    def scalar(self, fmt: str, what: str):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))[0]

    def string(self, what: str) -> str:
        n = self.scalar("<Q", what)
        try:
            return bytes(self.take(n, what)).decode("utf-8")
        except UnicodeDecodeError as err:
            raise ValueError(f"corrupted GGUF file: {what} is not valid UTF-8") from err

    def value(self, vtype: int, what: str, depth: int = 0):
        if vtype in SCALARS:
            return self.scalar(SCALARS[vtype], what)
        if vtype == STRING:
            return self.string(what)
        if vtype == ARRAY and depth == 0:
            item_type, n = self.scalar("<I", what), self.scalar("<Q", what)
            if item_type in SCALARS:  # read numeric arrays in one go
                dtype = np.dtype(SCALARS[item_type].replace("?", "b1"))
                return np.frombuffer(self.take(n * dtype.itemsize, what), dtype=dtype).copy()
            if n > len(self.buffer) - self.pos:  # every element takes at least one byte
                raise ValueError(f"corrupted GGUF file: {what} claims {n} elements")
            return [self.value(item_type, what, depth + 1) for _ in range(n)]
        raise ValueError(f"corrupted GGUF file: {what} has unknown value type {vtype}")


def read_tensor_info(cursor: _Cursor, index: int) -> tuple[str, str, tuple[int, ...], int]:
    name = cursor.string(f"name of tensor {index}")
    n_dims = cursor.scalar("<I", f"dimension count of {name}")
    if not 1 <= n_dims <= MAX_DIMS:
        raise ValueError(f"corrupted GGUF file: tensor {name} has {n_dims} dimensions (1..4 allowed)")
    dims = [cursor.scalar("<Q", f"shape of {name}") for _ in range(n_dims)]
    type_id = cursor.scalar("<I", f"type of {name}")
    offset = cursor.scalar("<Q", f"offset of {name}")
    if type_id not in GGML_TYPE_NAMES:
        raise ValueError(f"tensor {name} has ggml type {type_id}, which this reader does not "
                         f"support (supported: {sorted(GGML_TYPE_NAMES.items())})")
    return name, GGML_TYPE_NAMES[type_id], tuple(reversed(dims)), offset


def _nbytes(name: str, qtype: str, shape: tuple[int, ...]) -> int:
    if any(d <= 0 for d in shape) or shape[-1] % BLOCK_SIZE[qtype]:
        raise ValueError(f"corrupted GGUF file: tensor {name} of type {qtype} has shape {shape} "
                         f"(row length must be a positive multiple of {BLOCK_SIZE[qtype]})")
    return int(np.prod(shape, dtype=object)) // BLOCK_SIZE[qtype] * TYPE_SIZE[qtype]


def read_gguf(path: str | os.PathLike) -> GGUFFile:
    """Parse and validate the GGUF file at ``path`` (memory-mapped, tensors not yet decoded)."""
    path = pathlib.Path(path)
    size = path.stat().st_size
    if size < 24:
        raise ValueError(f"{path} is not a GGUF file: {size} bytes, shorter than a GGUF header")
    buffer = np.memmap(path, dtype=np.uint8, mode="r")
    cursor = _Cursor(memoryview(buffer))
    if bytes(cursor.take(4, "magic")) != MAGIC:
        raise ValueError(f"{path} is not a GGUF file (it does not start with b'GGUF')")
    version = cursor.scalar("<I", "version")
    if version not in (2, 3):
        raise ValueError(f"GGUF version {version} is not supported (2 and 3 are)")
    n_tensors, n_kv = cursor.scalar("<Q", "tensor count"), cursor.scalar("<Q", "key-value count")
    if n_tensors > size or n_kv > size:
        raise ValueError(f"corrupted GGUF file: {n_tensors} tensors / {n_kv} keys in {size} bytes")
    metadata = {}
    for i in range(n_kv):
        key = cursor.string(f"key {i}")
        metadata[key] = cursor.value(cursor.scalar("<I", f"type of {key}"), key)
    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise ValueError(f"corrupted GGUF file: general.alignment {alignment!r} is not a power of two")
    infos = [read_tensor_info(cursor, i) for i in range(n_tensors)]
    data_start = -(-cursor.pos // alignment) * alignment
    tensors = {}
    for name, qtype, shape, offset in infos:
        if name in tensors:
            raise ValueError(f"corrupted GGUF file: tensor {name} appears twice")
        nbytes = _nbytes(name, qtype, shape)
        if offset % alignment or data_start + offset + nbytes > size:
            raise ValueError(f"truncated or corrupted GGUF file: tensor {name} ({nbytes} bytes at "
                             f"data offset {offset}) does not lie inside the {size}-byte file")
        tensors[name] = TensorInfo(name, qtype, shape, data_start + offset, nbytes)
    return GGUFFile(version, metadata, tensors, alignment, data_start, buffer)


# ----------------------------------------------------------------------------- back to PyTorch

def _positive_int(metadata: dict, key: str) -> int:
    value = metadata.get(key)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"GGUF metadata {key} must be a positive integer, got {value!r}")
    return int(value)


def llama_config(metadata: dict):
    """A transformers ``LlamaConfig`` from the ``llama.*`` metadata of a GGUF file."""
    from transformers import LlamaConfig

    if metadata.get("general.architecture") != "llama":
        raise ValueError(f"load_gguf reads Llama models; this file's architecture is "
                         f"{metadata.get('general.architecture')!r}")
    get = lambda key: _positive_int(metadata, f"llama.{key}")  # noqa: E731
    hidden, heads = get("embedding_length"), get("attention.head_count")
    kv_heads = get("attention.head_count_kv")
    head_dim = metadata.get("llama.attention.key_length", hidden // heads)
    if heads % kv_heads or not isinstance(head_dim, int) or head_dim <= 0 or head_dim % 2:
        raise ValueError(f"inconsistent attention shape: {heads} heads, {kv_heads} key/value heads, "
                         f"head size {head_dim}")
    rms_eps = metadata.get("llama.attention.layer_norm_rms_epsilon", 1e-5)
    rope_theta = metadata.get("llama.rope.freq_base", 10000.0)
    for key, value in (("layer_norm_rms_epsilon", rms_eps), ("rope.freq_base", rope_theta)):
        if not isinstance(value, float) or not np.isfinite(value) or value <= 0:
            raise ValueError(f"GGUF metadata llama.{key} must be a positive number, got {value!r}")
    tokens = metadata.get("tokenizer.ggml.tokens")
    vocab = len(tokens) if isinstance(tokens, list) else get("vocab_size")
    eos, bos = _token_id(metadata, "eos", vocab), _token_id(metadata, "bos", vocab)
    return LlamaConfig(
        vocab_size=vocab, hidden_size=hidden, intermediate_size=get("feed_forward_length"),
        num_hidden_layers=get("block_count"), num_attention_heads=heads,
        num_key_value_heads=kv_heads, head_dim=int(head_dim),
        max_position_embeddings=get("context_length"), rms_norm_eps=rms_eps,
        rope_theta=rope_theta, tie_word_embeddings=False,
        bos_token_id=eos if bos is None else bos, eos_token_id=eos,
        pad_token_id=_token_id(metadata, "padding", vocab),
    )


def _token_id(metadata: dict, kind: str, vocab: int) -> int | None:
    """The id stored under ``tokenizer.ggml.<kind>_token_id`` (None if absent), range-checked."""
    value = metadata.get(f"tokenizer.ggml.{kind}_token_id")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < vocab:
        raise ValueError(f"GGUF metadata tokenizer.ggml.{kind}_token_id {value!r} is not a token "
                         f"id below {vocab}")
    return value


def expected_shapes(config) -> dict[str, tuple[int, ...]]:
    """GGUF tensor name -> PyTorch shape of every tensor a Llama with ``config`` has (untied)."""
    return llama_shapes(n_layers=config.num_hidden_layers, hidden=config.hidden_size,
                        ffn=config.intermediate_size, n_head=config.num_attention_heads,
                        n_head_kv=config.num_key_value_heads, vocab=config.vocab_size, tied=False,
                        head_dim=config.head_dim)


def _check_tensors(gguf_file: GGUFFile, config) -> None:
    expected = expected_shapes(config)
    for name, shape in expected.items():
        info = gguf_file.tensors.get(name)
        if info is None and name != "output.weight":
            raise ValueError(f"the GGUF file lacks tensor {name}, which a Llama with "
                             f"{config.num_hidden_layers} layers needs")
        if info is not None and info.shape != shape:
            raise ValueError(f"tensor {name} has shape {info.shape}, expected {shape}")
    unknown = set(gguf_file.tensors) - set(expected)
    if unknown:
        raise ValueError(f"the GGUF file holds tensors a Llama does not have: {sorted(unknown)[:5]}")


def load_tokenizer(metadata: dict):
    """A Hugging Face fast tokenizer rebuilt from a GGUF "gpt2" (byte-level BPE) tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    if metadata.get("tokenizer.ggml.model") != "gpt2":
        raise ValueError(f"load_gguf rebuilds byte-level BPE ('gpt2') tokenizers, this file has "
                         f"{metadata.get('tokenizer.ggml.model')!r}")
    tokens, merges = metadata.get("tokenizer.ggml.tokens"), metadata.get("tokenizer.ggml.merges", [])
    types = metadata.get("tokenizer.ggml.token_type")
    if (not isinstance(tokens, list) or not isinstance(merges, list) or types is None
            or len(types) != len(tokens) or not all(isinstance(t, str) for t in tokens + merges)):
        raise ValueError("corrupted GGUF tokenizer: tokens, token types and merges must be lists "
                         "of strings (and one type per token)")
    vocab = {token: i for i, token in enumerate(tokens)}
    if len(vocab) != len(tokens):
        raise ValueError("corrupted GGUF tokenizer: the token list holds duplicates")
    pairs = [tuple(m.split(" ")) for m in merges]
    if any(len(p) != 2 or p[0] not in vocab or p[1] not in vocab or p[0] + p[1] not in vocab
           for p in pairs):
        raise ValueError("corrupted GGUF tokenizer: a merge is not 'a b' of two tokens whose "
                         "concatenation is a token")
    backend = Tokenizer(models.BPE(vocab, pairs))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()

    def token(kind: str) -> str | None:
        i = _token_id(metadata, kind, len(tokens))
        return None if i is None else tokens[i]

    specials = [t for t, kind in zip(tokens, types) if kind == 3]
    backend.add_special_tokens(specials)
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=token("bos"),
                                   eos_token=token("eos"), unk_token=token("unknown"),
                                   pad_token=token("padding"))


def load_gguf(path: str | os.PathLike):
    """Read a Llama GGUF file into ``(LlamaForCausalLM, tokenizer)``, weights dequantized to float32.

    q/k rows are permuted back to Hugging Face's RoPE layout, so ``qcourse.evaluation`` functions run on
    the result and measure exactly the weights llama.cpp would use. ValueError if the file is not a
    valid, complete Llama GGUF.
    """
    from transformers import LlamaForCausalLM

    gguf_file = read_gguf(path)
    config = llama_config(gguf_file.metadata)
    _check_tensors(gguf_file, config)
    tokenizer = load_tokenizer(gguf_file.metadata)
    config.tie_word_embeddings = "output.weight" not in gguf_file.tensors
    state = {}
    for name in gguf_file.tensors:
        w = torch.from_numpy(np.require(gguf_file.tensor(name), requirements="W"))
        if not torch.isfinite(w).all():
            raise ValueError(f"tensor {name} decodes to NaN or Inf values: the file is corrupted")
        if name.endswith("attn_q.weight"):
            w = unpermute_qk(w, config.num_attention_heads)
        elif name.endswith("attn_k.weight"):
            w = unpermute_qk(w, config.num_key_value_heads)
        state[hf_name(name)] = w
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    model.load_state_dict(state, strict=False, assign=True)
    if config.tie_word_embeddings:
        model.tie_weights()
    model.model.rotary_emb.__init__(config)  # its buffers were created on the meta device
    return model.eval(), tokenizer


def hf_name(name: str) -> str:
    """The Hugging Face parameter name of llama.cpp tensor ``name`` (inverse of ``gguf_name``)."""
    globals_ = {"token_embd.weight": "model.embed_tokens.weight",
                "output_norm.weight": "model.norm.weight", "output.weight": "lm_head.weight"}
    if name in globals_:
        return globals_[name]
    _, layer, inner = name.split(".", 2)
    hf_inner = {v: k for k, v in LAYER_TENSORS.items()}[inner]
    return f"model.layers.{layer}.{hf_inner}"

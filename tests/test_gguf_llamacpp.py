"""qcourse.gguf against llama.cpp itself (llama-cpp-python): bit-exact blocks, the same mixes, the
same tokens, the same greedy text, the same perplexity.

Perplexities are taken on the first WINDOWS windows of 512 tokens of the test split (the full
split takes minutes per model on two CPU cores); the comparisons are window for window.
"""
import collections

import numpy as np
import pytest
import torch

from qcourse import data
from qcourse import eval as qeval
from qcourse.gguf import export, imatrix, load_gguf, quantize, read_gguf
from qcourse.gguf.mixes import tensor_types

pytestmark = pytest.mark.slow  # runs a production library on the whole model

llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
pytest.importorskip("gguf", reason="gguf-py is not installed")
from qcourse.gguf import llamacpp  # noqa: E402

WINDOWS = 6
# ftype whose default block type is the key: with pure=True every 2-D weight gets that type
PURE_FTYPE = {"Q8_0": "Q8_0", "Q4_0": "Q4_0", "Q4_1": "Q4_1", "Q5_0": "Q5_0", "Q5_1": "Q5_1",
              "Q2_K": "Q2_K", "Q3_K": "Q3_K_M", "Q4_K": "Q4_K_M", "Q5_K": "Q5_K_M", "Q6_K": "Q6_K"}
K_QUANTS = ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]
MIXES = ["Q2_K", "Q3_K_M", "Q4_K_S", "Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0", "F16", "BF16"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("llamacpp")


@pytest.fixture(scope="module")
def f32_file(tiny, workdir):
    path = workdir / "tiny-F32.gguf"
    export(*tiny, path, "F32")
    return path


@pytest.fixture(scope="module")
def outlier_file(tiny, workdir):
    """A random one-layer Llama whose weights hold outliers, all-zero rows and constant rows."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(1)
    config = LlamaConfig(vocab_size=4096, hidden_size=256, intermediate_size=512, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         tie_word_embeddings=True)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        layer = model.model.layers[0]
        for i, linear in enumerate([layer.self_attn.q_proj, layer.mlp.up_proj, layer.mlp.down_proj,
                                    model.model.embed_tokens]):
            w = linear.weight
            w[0].zero_()                                     # an all-zero row
            w[1].fill_(0.37 * (i + 1))                       # a constant row
            w[2, :128].fill_(-1e-3)                          # half-constant
            w[3:40].mul_(torch.logspace(-4, 2, 37)[:, None]) # rows from tiny to large
            w[5, 17], w[6, 200], w[7, 31] = 50.0, -80.0, 1e-30  # outliers, a tiny value
    path = workdir / "outliers-F32.gguf"
    export(model, tiny[1], path, "F32")
    return path


def llama_quantized(src, workdir, ftype, *, pure, matrix=None, tag=""):
    dst = workdir / f"{src.stem}-{ftype}{'-pure' if pure else ''}{tag}.gguf"
    if not dst.exists():
        llamacpp.quantize_file(src, dst, ftype, pure=pure, imatrix=matrix)
    return dst


def byte_agreement(src, quantized, matrix=None, only=None) -> tuple[int, int, collections.Counter]:
    """(equal bytes, total bytes, block types) of our quantize vs llama.cpp's over every
    quantized tensor of ``quantized`` (or those whose name contains one of ``only``), from the
    F32 data of ``src``."""
    source, theirs = read_gguf(src), read_gguf(quantized)
    equal = total = 0
    types = collections.Counter()
    for name, info in theirs.tensors.items():
        types[info.qtype] += 1
        if info.qtype == "F32" or (only and not any(part in name for part in only)):
            continue
        importance = None if matrix is None else matrix.get(name)
        ours = quantize(source.tensor(name), info.qtype, importance).reshape(-1)
        equal += int((ours == theirs.tensor_data(name)).sum())
        total += info.nbytes
    return equal, total, types


@pytest.mark.parametrize("qtype", list(PURE_FTYPE))
def test_bit_exact_on_qcourse_tiny(f32_file, workdir, qtype):
    quantized = llama_quantized(f32_file, workdir, PURE_FTYPE[qtype], pure=True)
    equal, total, types = byte_agreement(f32_file, quantized)
    assert types == {qtype: 43, "F32": 13}  # pure: token_embd too
    assert equal == total, f"{qtype}: {equal}/{total} bytes equal ({100 * equal / total:.3f}%)"


@pytest.mark.parametrize("qtype", list(PURE_FTYPE))
def test_bit_exact_on_outliers_zeros_and_constant_rows(outlier_file, workdir, qtype):
    quantized = llama_quantized(outlier_file, workdir, PURE_FTYPE[qtype], pure=True)
    equal, total, _ = byte_agreement(outlier_file, quantized)
    assert equal == total, f"{qtype}: {equal}/{total} bytes equal ({100 * equal / total:.3f}%)"


@pytest.fixture(scope="module")
def tiny_imatrix(tiny):
    model, tok = tiny
    return imatrix(model, data.calibration_samples(tok, 8, 256, seed=0))


@pytest.mark.parametrize("qtype", K_QUANTS + ["Q4_0"])
def test_bit_exact_with_an_importance_matrix(f32_file, workdir, tiny_imatrix, qtype):
    """llama.cpp quantizes the whole file with the imatrix; we compare the first and last blocks'
    tensors (14 of 43 weights, to keep the test short)."""
    quantized = llama_quantized(f32_file, workdir, PURE_FTYPE[qtype], pure=True, matrix=tiny_imatrix,
                                tag="-imatrix")
    equal, total, _ = byte_agreement(f32_file, quantized, tiny_imatrix, only=("blk.0.", "blk.5."))
    assert equal == total, f"{qtype}+imatrix: {equal}/{total} bytes equal ({100 * equal / total:.3f}%)"


@pytest.mark.parametrize("ftype", MIXES)
def test_mix_types_equal_llama_cpp_choice(tiny, f32_file, workdir, ftype):
    quantized = read_gguf(llama_quantized(f32_file, workdir, ftype, pure=False))
    theirs = {n: i.qtype for n, i in quantized.tensors.items()}
    config = tiny[0].config
    ours = tensor_types({n: i.shape for n, i in read_gguf(f32_file).tensors.items()}, ftype,
                        n_layers=config.num_hidden_layers, n_head=config.num_attention_heads,
                        n_head_kv=config.num_key_value_heads)
    assert ours == theirs


def test_our_q4_k_m_file_has_llama_cpp_types_and_bytes(tiny, f32_file, workdir):
    ours_path = workdir / "ours-Q4_K_M.gguf"
    types = export(*tiny, ours_path, "Q4_K_M")
    ours = read_gguf(ours_path)
    theirs = read_gguf(llama_quantized(f32_file, workdir, "Q4_K_M", pure=False))
    assert types == {n: i.qtype for n, i in theirs.tensors.items()}
    different = [n for n in theirs.tensors
                 if not np.array_equal(ours.tensor_data(n), theirs.tensor_data(n))]
    assert different == []


# --------------------------------------------------------------------------- running the model

@pytest.fixture(scope="module")
def f32_llm(f32_file):
    return llamacpp.load(f32_file)


def test_tokenization_of_the_test_split_is_identical(tiny, f32_llm):
    _, tok = tiny
    documents = [d.text for d in data.documents("test")]
    ours = tok(documents, add_special_tokens=False)["input_ids"]
    mismatched = [i for i, (doc, ids) in enumerate(zip(documents, ours))
                  if llamacpp.tokenize(f32_llm, doc) != ids]
    assert len(documents) > 10 and mismatched == []


@pytest.mark.parametrize("prompt", ["def ", "import os\n\n\nclass ", "The module provides"])
def test_greedy_generation_matches_pytorch(tiny, f32_llm, prompt):
    model, tok = tiny
    assert llamacpp.generate(f32_llm, prompt, 30) == qeval.generate(model, tok, prompt, 30)


def test_f32_perplexity_matches_pytorch_within_0_1_percent(tiny, f32_llm):
    ours = qeval.perplexity(*tiny, max_windows=WINDOWS)
    theirs = llamacpp.perplexity(f32_llm, tiny[1], max_windows=WINDOWS)
    assert abs(theirs / ours - 1) < 1e-3


@pytest.mark.parametrize("ftype", MIXES)
def test_quantized_perplexity_matches_the_dequantized_model_within_1_percent(tiny, f32_file, workdir,
                                                                             ftype):
    path = llama_quantized(f32_file, workdir, ftype, pure=False)
    model, _ = load_gguf(path)
    ours = qeval.perplexity(model, tiny[1], max_windows=WINDOWS)
    theirs = llamacpp.perplexity(llamacpp.load(path), tiny[1], max_windows=WINDOWS)
    assert abs(theirs / ours - 1) < 1e-2, f"{ftype}: llama.cpp {theirs:.3f} vs dequantized {ours:.3f}"


def test_tokens_per_second_is_positive(f32_llm):
    assert llamacpp.tokens_per_second(f32_llm, new_tokens=8, repeats=1) > 0


def test_llama_cpp_wrappers_refuse_bad_input(f32_file, workdir):
    with pytest.raises(ValueError, match="unknown GGUF file type"):
        llamacpp.quantize_file(f32_file, workdir / "x.gguf", "Q4_K_X")
    with pytest.raises(ValueError, match="NaN"):
        llamacpp.quantize_file(f32_file, workdir / "x.gguf", "Q4_K_M",
                               imatrix={"blk.0.attn_q.weight": np.full(256, np.nan, np.float32)})
    with pytest.raises(FileNotFoundError):
        llamacpp.quantize_file(workdir / "missing.gguf", workdir / "x.gguf", "Q8_0")

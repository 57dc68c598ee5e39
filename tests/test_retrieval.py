"""qcourse.models.retrieval: the docstring-retrieval task used to score MiniLM's quantizations."""
import ast

import pytest
import torch

from qcourse.models import retrieval


def function_node(source: str) -> ast.FunctionDef:
    return ast.parse(source).body[0]


def test_signature_query_reads_like_a_call():
    node = function_node("def open_file(self, path, mode='r', *, encoding=None): pass")
    assert retrieval.signature_query(node) == "open file(path, mode, encoding)"
    node = function_node("def weekday(year, month, day, /): pass")
    assert retrieval.signature_query(node) == "weekday(year, month, day)"
    node = function_node("def from_string(cls, text): pass")
    assert retrieval.signature_query(node) == "from string(text)"


def test_accuracy_counts_queries_whose_first_document_is_their_own():
    # query 0 -> doc 0 (right), 1 -> 2 (wrong), 2 -> 2 (right), 3 -> 0 (wrong)
    assert retrieval.accuracy(torch.tensor([0, 2, 2, 0])) == pytest.approx(0.5)
    assert retrieval.accuracy(torch.arange(7)) == 1.0


def test_agreement_compares_two_rankings():
    assert retrieval.agreement(torch.tensor([0, 2, 2, 0]),
                               torch.tensor([0, 1, 2, 3])) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="rankings of 3 and 4 queries"):
        retrieval.agreement(torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2, 3]))


def test_pairs_are_public_documented_and_distinct():
    pairs = retrieval.docstring_pairs("test", limit=30)
    assert len(pairs) == 30
    assert len({p.document for p in pairs}) == 30
    for pair in pairs:
        assert not pair.name.rsplit(".", 1)[-1].startswith("_")
        assert 20 <= len(pair.document) <= retrieval.MAX_DOC_CHARS
        assert pair.query.endswith(")") and "self" not in pair.query.split("(")[1]


@pytest.mark.slow
def test_float_minilm_finds_docstrings_far_above_chance():
    from qcourse.models import minilm

    model, tokenizer = minilm.load()
    pairs = retrieval.docstring_pairs("test", limit=60)
    top1 = retrieval.rankings(model, tokenizer, pairs)
    assert top1.shape == (60,)
    assert retrieval.accuracy(top1) > 0.2          # chance: 1/60
    assert retrieval.agreement(top1, top1) == 1.0

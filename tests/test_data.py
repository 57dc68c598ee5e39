import torch
import pytest

from qcourse import data


def test_split_is_stable_and_covers_all_three():
    names = [f"module{i}" for i in range(400)]
    splits = [data.split_of(n) for n in names]
    assert splits == [data.split_of(n) for n in names]
    counts = {s: splits.count(s) for s in data.SPLITS}
    assert counts["train"] > counts["validation"] > 0 and counts["test"] > 0
    assert 0.8 < counts["train"] / len(names) < 0.97


def test_documents_are_split_by_name_and_have_domains():
    docs = data.documents()
    assert {d.domain for d in docs} == {"prose", "code"}
    by_split = {s: {d.name for d in data.documents(s)} for s in data.SPLITS}
    assert not (by_split["train"] & by_split["test"])
    assert not (by_split["train"] & by_split["validation"])
    assert sum(len(v) for v in by_split.values()) == len({d.name for d in docs})
    # the corpus is the standard library: its own source and its documentation
    train_names = {d.name for d in data.documents("train")} | {d.name for d in data.documents("test")}
    assert any(n.startswith("topic:") for n in train_names)
    total = sum(len(d.text) for d in docs)
    assert 8e6 < total < 20e6


def test_corpus_is_deterministic_and_split_text_differs():
    assert data.corpus("test") == data.corpus("test")
    assert data.corpus("test") != data.corpus("validation")
    code = data.corpus("test", "code")
    prose = data.corpus("test", "prose")
    assert "def " in code and "import " in code
    assert len(prose) > 1000 and len(code) > 1000


def test_docstrings_are_extracted_without_importing():
    source = '"""Module doc."""\n\nclass A:\n    """Class doc."""\n    def f(self, x, y=1):\n        """Method doc."""\n'
    text = data.docstrings_of("mod", source)
    assert text.startswith("mod\n\nModule doc.")
    assert "class mod.A\n\nClass doc." in text
    assert "mod.f(self, x, y=1)\n\nMethod doc." in text
    assert data.docstrings_of("broken", "def (:") == ""


def test_bad_split_and_domain_are_rejected():
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        data.corpus("dev")
    with pytest.raises(ValueError, match="unknown domain"):
        data.documents("train", "poetry")


def test_calibration_samples_are_seeded_windows_of_the_train_split(tiny):
    _, tokenizer = tiny
    a = data.calibration_samples(tokenizer, 4, 64, seed=1)
    b = data.calibration_samples(tokenizer, 4, 64, seed=1)
    c = data.calibration_samples(tokenizer, 4, 64, seed=2)
    assert a.shape == (4, 64) and a.dtype == torch.long
    assert torch.equal(a, b) and not torch.equal(a, c)
    stream = data.token_ids(tokenizer, "train")
    # every sample is a contiguous window of the train stream
    first = a[0]
    starts = (stream[: len(stream) - 63] == first[0]).nonzero().flatten()
    assert any(torch.equal(stream[s : s + 64], first) for s in starts.tolist())


def test_calibration_samples_refuse_more_than_the_split_holds(tiny):
    _, tokenizer = tiny
    with pytest.raises(ValueError, match="at most"):
        data.calibration_samples(tokenizer, 10_000_000, 512, seed=0)
    with pytest.raises(ValueError, match="positive"):
        data.calibration_samples(tokenizer, 0, 512, seed=0)

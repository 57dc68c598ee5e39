import gzip
import hashlib
import platform

import pytest
import torch

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


# ---- the shipped corpus: the same text on every Python ----------------------------------------

def test_every_python_reads_the_corpus_built_on_3_11():
    # the split sizes the launch issue measured on Python 3.11 (3.13's own stdlib gives 447,097)
    assert len(data.corpus("test")) == 386_156
    assert len({d.name for d in data.documents()}) < len(data.documents())  # prose + code pairs
    assert data.CORPUS_FILE.name.endswith(".json.gz")
    licence = (data.CORPUS_FILE.parent / "LICENSE-Python.txt").read_text()
    assert "PYTHON SOFTWARE FOUNDATION LICENSE VERSION 2" in licence


def test_shipped_corpus_matches_its_checksum():
    raw = gzip.decompress(data.CORPUS_FILE.read_bytes())
    assert hashlib.sha256(raw).hexdigest() == data.CORPUS_SHA256
    assert raw == data.corpus_json(list(data.shipped_documents()))


def test_damaged_or_missing_corpus_is_refused_with_a_clear_message(tmp_path, monkeypatch):
    damaged = tmp_path / "corpus.json.gz"
    raw = gzip.decompress(data.CORPUS_FILE.read_bytes())
    damaged.write_bytes(gzip.compress(raw.replace(b"def ", b"DEF ", 1)))
    monkeypatch.setattr(data, "CORPUS_FILE", damaged)
    data.shipped_documents.cache_clear()
    try:
        with pytest.raises(ValueError, match="damaged or was rebuilt.*reinstall qcourse"):
            data.corpus("test")
        monkeypatch.setattr(data, "CORPUS_FILE", tmp_path / "absent.json.gz")
        with pytest.raises(FileNotFoundError, match="corpus is missing"):
            data.corpus("test")
    finally:
        data.shipped_documents.cache_clear()


@pytest.mark.slow
@pytest.mark.skipif(platform.python_version() != data.CORPUS_PYTHON,
                    reason=f"the shipped corpus is rebuilt on Python {data.CORPUS_PYTHON} only")
def test_shipped_corpus_is_what_its_python_builds():
    assert data.corpus_json(data.build_documents()) == data.corpus_json(list(data.shipped_documents()))

"""The course corpus: Python's standard library, its documentation and its source code.

Every Python install carries the same text, so the corpus needs no network:

* ``prose`` documents: the language reference topics of ``pydoc_data.topics`` (one document per
  topic) and, for every standard-library module, its docstrings (module, classes, functions),
  extracted with :mod:`ast` without importing anything.
* ``code`` documents: the module's ``.py`` source, as it is on disk.

Test suites and GUI/demo packages (``test``, ``tests``, ``idlelib``, ``tkinter``, ``turtledemo``,
``lib2to3``, ``ensurepip``) and ``site-packages`` are left out. Documents are built in sorted
order with fixed formatting.

The standard library changes between Python versions (built on 3.13 the test split holds 447,097
characters against 386,156 on 3.11), so every Python reads the same corpus: the one built on
Python :data:`CORPUS_PYTHON`, shipped with the package as ``data/corpus/`` (gzip-compressed JSON,
with the PSF licence it is distributed under) and checked against :data:`CORPUS_SHA256` when
read. :func:`build_documents` rebuilds it from the running interpreter and
:func:`write_corpus_file` writes it (``python -m qcourse.data``, on that Python).

Split: a module (or topic) goes to ``test`` if ``sha1(name) mod 100 < 5``, to ``validation`` if
it is ``< 10``, otherwise to ``train``. Prose and code of one module always share a split, so a
model never sees the code of a module whose docs it is evaluated on.

Token ids of a split are cached in :func:`qcourse.paths.cache_dir`.
"""
from __future__ import annotations

import ast
import dataclasses
import functools
import gzip
import hashlib
import json
import pathlib
import platform
import sysconfig
import warnings

import numpy as np
import torch

from qcourse.paths import CORPUS_DIR, cache_dir

SPLITS = ("train", "validation", "test")
DOMAINS = ("prose", "code")
EXCLUDED_DIRS = frozenset(
    {"test", "tests", "idlelib", "tkinter", "turtledemo", "lib2to3", "ensurepip",
     "site-packages", "dist-packages", "__pycache__"}
)
DOC_SEPARATOR = "\n\n"
CORPUS_PYTHON = "3.11.7"   # the interpreter whose standard library the shipped corpus holds
CORPUS_FILE = CORPUS_DIR / "stdlib-py3.11.json.gz"
# sha256 of the decompressed JSON (gzip's bytes may differ between zlib builds; the text may not)
CORPUS_SHA256 = "69185397cfad1db6a035b8833bae445a79343af3f868e84d29002439e2ddd03f"


@dataclasses.dataclass(frozen=True)
class Document:
    """One unit of text: ``name`` is the module or topic it came from."""

    name: str
    domain: str  # "prose" or "code"
    text: str


def split_of(name: str) -> str:
    """Stable split of a module or topic name: sha1(name) mod 100 -> test <5, validation <10."""
    bucket = int(hashlib.sha1(name.encode("utf-8")).hexdigest(), 16) % 100
    return "test" if bucket < 5 else "validation" if bucket < 10 else "train"


def stdlib_sources() -> list[tuple[str, pathlib.Path]]:
    """(module name, path) of every standard-library .py file in the corpus, sorted by name."""
    root = pathlib.Path(sysconfig.get_paths()["stdlib"])
    found = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root)
        if set(rel.parts[:-1]) & EXCLUDED_DIRS:
            continue
        parts = list(rel.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found.append((".".join(parts), path))
    return sorted(found)


def docstrings_of(module: str, source: str) -> str:
    """The module's docstrings as prose: module docstring, then each class and function's
    signature line and docstring, in source order. Empty if it has none."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(source)
    except SyntaxError:
        return ""
    pieces = []
    if doc := ast.get_docstring(tree):
        pieces.append(f"{module}\n\n{doc}")
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            doc = ast.get_docstring(node)
            if not doc:
                continue
            if isinstance(node, ast.ClassDef):
                header = f"class {module}.{node.name}"
            else:
                header = f"{module}.{node.name}({ast.unparse(node.args)})"
            pieces.append(f"{header}\n\n{doc}")
    return DOC_SEPARATOR.join(pieces)


def build_documents() -> list[Document]:
    """Build every document from the running interpreter's standard library (no cache)."""
    import pydoc_data.topics

    docs = [
        Document(f"topic:{name}", "prose", text.strip())
        for name, text in sorted(pydoc_data.topics.topics.items())
    ]
    for module, path in stdlib_sources():
        source = path.read_text(encoding="utf-8", errors="replace")
        if prose := docstrings_of(module, source):
            docs.append(Document(module, "prose", prose))
        if source.strip():
            docs.append(Document(module, "code", source))
    return docs


def corpus_json(docs: list[Document]) -> bytes:
    """The corpus file's content (before compression): a JSON list of documents, UTF-8."""
    return json.dumps([dataclasses.asdict(d) for d in docs], ensure_ascii=False).encode("utf-8")


def write_corpus_file(path: pathlib.Path = CORPUS_FILE) -> str:
    """Build the corpus from the running interpreter and write it gzip-compressed (no timestamp,
    so the same documents give the same file); returns the sha256 of the JSON to record in
    :data:`CORPUS_SHA256`."""
    raw = corpus_json(build_documents())
    pathlib.Path(path).write_bytes(gzip.compress(raw, compresslevel=9, mtime=0))
    return hashlib.sha256(raw).hexdigest()


@functools.cache
def shipped_documents() -> tuple[Document, ...]:
    """Every document of the shipped corpus, read once per process and checked against
    :data:`CORPUS_SHA256`."""
    if not CORPUS_FILE.is_file():
        raise FileNotFoundError(
            f"the course corpus is missing: {CORPUS_FILE} does not exist; reinstall qcourse "
            "or restore data/corpus from the repository")
    raw = gzip.decompress(CORPUS_FILE.read_bytes())
    digest = hashlib.sha256(raw).hexdigest()
    if digest != CORPUS_SHA256:
        raise ValueError(
            f"the course corpus {CORPUS_FILE} is damaged or was rebuilt: its sha256 is "
            f"{digest}, expected {CORPUS_SHA256}; reinstall qcourse or restore data/corpus")
    return tuple(Document(**d) for d in json.loads(raw))


def documents(split: str | None = None, domain: str | None = None) -> list[Document]:
    """The corpus documents, optionally restricted to one split and/or domain."""
    if split is not None and split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: choose one of {SPLITS}")
    if domain is not None and domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}: choose one of {DOMAINS}")
    return [
        d for d in shipped_documents()
        if (split is None or split_of(d.name) == split) and (domain is None or d.domain == domain)
    ]


def corpus(split: str, domain: str | None = None) -> str:
    """The text of one split ("train", "validation" or "test"), documents joined by a blank line.

    ``domain`` ("prose" or "code") keeps only documentation or only source code.
    """
    return DOC_SEPARATOR.join(d.text for d in documents(split, domain))


def token_ids(tokenizer, split: str, domain: str | None = None) -> torch.Tensor:
    """The split tokenized as one long 1-D LongTensor, documents separated by the EOS token.

    Cached per tokenizer (keyed by a hash of its vocabulary) in the cache folder.
    """
    vocab_hash = hashlib.sha1(
        json.dumps(sorted(tokenizer.get_vocab().items())).encode()
    ).hexdigest()[:12]
    path = cache_dir() / f"tokens-corpus-{CORPUS_SHA256[:12]}-{vocab_hash}-{split}-{domain or 'all'}.npy"
    if path.exists():
        return torch.from_numpy(np.load(path).astype(np.int64))
    texts = [d.text for d in documents(split, domain)]
    eos = tokenizer.eos_token_id
    ids: list[int] = []
    # documents are longer than the model's context on purpose (they are cut into windows
    # later): verbose=False keeps the tokenizer from warning about it
    for encoded in tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]:
        ids.extend(encoded)
        ids.append(eos)
    array = np.asarray(ids, dtype=np.int32)
    np.save(path, array)
    return torch.from_numpy(array.astype(np.int64))


def calibration_samples(
    tokenizer, n: int, seq_len: int, seed: int = 0, *, split: str = "train",
    domain: str | None = None,
) -> torch.Tensor:
    """``n`` windows of ``seq_len`` tokens drawn from the train split, LongTensor [n, seq_len].

    Window starts are drawn uniformly with ``torch.Generator().manual_seed(seed)``, so the same
    arguments always give the same samples.
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if not isinstance(seq_len, int) or seq_len < 1:
        raise ValueError(f"seq_len must be a positive integer, got {seq_len!r}")
    ids = token_ids(tokenizer, split, domain)
    windows = len(ids) // seq_len
    if n > windows:
        raise ValueError(
            f"asked for {n} samples of {seq_len} tokens, but the {split} split "
            f"({domain or 'all domains'}) holds {len(ids)} tokens, i.e. at most {windows} "
            f"non-overlapping windows; ask for n <= {windows} or a shorter seq_len"
        )
    generator = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, len(ids) - seq_len + 1, (n,), generator=generator)
    return torch.stack([ids[s : s + seq_len] for s in starts.tolist()])


if __name__ == "__main__":
    if platform.python_version() != CORPUS_PYTHON:
        print(f"note: this is Python {platform.python_version()}; the shipped corpus was built on "
              f"{CORPUS_PYTHON} (a new file changes every number in the course)")
    print(f"wrote {CORPUS_FILE}; set CORPUS_SHA256 = {write_corpus_file()!r}")

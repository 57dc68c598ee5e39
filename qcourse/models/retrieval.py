"""A retrieval task for sentence-embedding encoders: which docstring belongs to which function?

Built from the course corpus (:mod:`qcourse.data`): for every public function and method of the
standard-library modules in a split, the query is its call signature as a reader sees it, the
name's words and its arguments (``calendar.weekday`` -> ``"weekday(year, month, day)"``), and
the document is the first paragraph of its docstring. An encoder
embeds all queries and all documents (:func:`qcourse.models.minilm.embed`), and

    accuracy@1 = mean_i [ argmax_j  cos(q_i, d_j) = i ]

over the N pairs (every document competes with every other). A quantized encoder is compared
with its float original on the same pairs: its accuracy, and how often its top-1 document is
the float model's top-1 (agreement), which isolates what quantization changed.
"""
from __future__ import annotations

import ast
import dataclasses
import warnings

import torch
from torch import nn

from qcourse import data

from .minilm import embed

MAX_DOC_CHARS = 300


@dataclasses.dataclass(frozen=True)
class Pair:
    name: str       # qualified name, e.g. "calendar.weekday"
    query: str      # its signature, e.g. "weekday(year, month, day)"
    document: str   # first paragraph of its docstring


def signature_query(node: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    """``"open file(path, mode)"`` for ``def open_file(self, path, mode)``: the name's words
    (underscores as spaces) and the argument names, without ``self``/``cls``."""
    args = [a.arg for a in node.args.posonlyargs + node.args.args + node.args.kwonlyargs
            if a.arg not in ("self", "cls")]
    return f"{node.name.replace('_', ' ').strip()}({', '.join(args)})"


def _functions(tree: ast.Module, prefix: str):
    """``(qualified name, node)`` of the functions of a module and of its classes, in order."""
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield f"{prefix}.{node.name}", node
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            for inner in node.body:
                if isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    yield f"{prefix}.{node.name}.{inner.name}", inner


def docstring_pairs(split: str = "test", limit: int | None = None) -> list[Pair]:
    """The (function name, docstring paragraph) pairs of a split, in corpus order: public
    functions only, first paragraph of at least 20 characters, one pair per distinct paragraph."""
    pairs, seen = [], set()
    for doc in data.documents(split, "code"):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tree = ast.parse(doc.text)
        except SyntaxError:
            continue
        for name, node in _functions(tree, doc.name):
            docstring = ast.get_docstring(node)
            if name.rsplit(".", 1)[-1].startswith("_") or not docstring:
                continue
            paragraph = " ".join(docstring.split("\n\n")[0].split())[:MAX_DOC_CHARS]
            if len(paragraph) < 20 or paragraph in seen:
                continue
            seen.add(paragraph)
            pairs.append(Pair(name, signature_query(node), paragraph))
            if limit is not None and len(pairs) == limit:
                return pairs
    if not pairs:
        raise ValueError(f"the {split} split holds no documented public function")
    return pairs


@torch.no_grad()
def rankings(model: nn.Module, tokenizer, pairs: list[Pair]) -> torch.Tensor:
    """For every query, the index of the document it ranks first, LongTensor ``[N]``."""
    queries = embed(model, tokenizer, [p.query for p in pairs])         # [N, D], unit length
    documents = embed(model, tokenizer, [p.document for p in pairs])    # [N, D]
    return (queries @ documents.t()).argmax(dim=1)                      # [N]


def accuracy(top1: torch.Tensor) -> float:
    """accuracy@1: the fraction of queries whose first document is their own."""
    return (top1 == torch.arange(len(top1))).float().mean().item()


def agreement(top1: torch.Tensor, reference_top1: torch.Tensor) -> float:
    """The fraction of queries for which two models rank the same document first."""
    if top1.shape != reference_top1.shape:
        raise ValueError(f"rankings of {len(top1)} and {len(reference_top1)} queries")
    return (top1 == reference_top1).float().mean().item()

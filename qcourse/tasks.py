"""Small evaluation tasks built from the course corpus: accuracy on questions, not only perplexity.

Two multiple-choice tasks, made deterministically from the **test** split (which no model of the
course trained or calibrated on), shipped as JSONL in ``data/tasks/`` with a task YAML each for
lm-evaluation-harness (``dataset_path: json``):

* ``qcourse_next_line``: the first lines of a function of the standard library's source; which
  of four lines comes next? The three wrong lines are lines of other functions of the same file,
  re-indented like the right one, so indentation gives nothing away.
* ``qcourse_docstring_cloze``: a passage of documentation (docstrings, language reference) cut
  just before the last word of a sentence; which of four words ends it? The wrong words are
  other words of the same document (LAMBADA-style cloze).

Every example is ``{"context", "choices", "label"}``; the model scores each choice by its
log-likelihood given the context (:func:`choice_loglikelihoods`), and

    acc      = mean over examples of [argmax_i  log p(choice_i | context)           = label]
    acc_norm = mean over examples of [argmax_i  log p(choice_i | context) / chars_i = label]

exactly as lm-evaluation-harness computes them for ``output_type: multiple_choice``
(:mod:`qcourse.references.lm_eval` runs the harness itself on the same files). Chance is 25 %.

Two models answer the **same** questions, so whether one is better is a paired question
(:func:`paired_test`, McNemar's exact test): only the questions on which they disagree say
anything. If ``b`` questions go to the first model alone and ``c`` to the second alone, then
under "no difference" each of the n = b + c discordant questions is a fair coin, and

    p = min(1, 2 · Σ_{k ≤ min(b, c)} C(n, k) / 2^n)                       (two-sided)

The standard error of one accuracy, √(acc (1 − acc) / N), is the wrong yardstick for a
difference: it counts the questions both models get right or both get wrong.
"""
from __future__ import annotations

import ast
import json
import pathlib
import random
import re

import torch
import torch.nn.functional as F

from qcourse import data
from qcourse.evaluation import logits_fn
from qcourse.paths import DATA_DIR, REPO_DIR

TASK_DIR = DATA_DIR / "tasks"
TASKS = ("qcourse_next_line", "qcourse_docstring_cloze")
CHOICES = 4
MAX_EXAMPLES = 300          # per task
MAX_PER_DOCUMENT = 24       # so that one long module cannot dominate a task
CONTEXT_LINES = 16          # lines of code before the line to predict
CONTEXT_CHARS = 600         # characters of documentation before the word to predict
SEED = 0


def _check_task(name: str) -> str:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}: choose one of {TASKS}")
    return name


# ---- qcourse_next_line ------------------------------------------------------------------------

def _usable_line(line: str) -> bool:
    """A line worth predicting: code (not blank, not a comment), 12 to 80 characters."""
    text = line.strip()
    return 12 <= len(text) <= 80 and not text.startswith("#")


def _docstring_lines(node: ast.AST) -> set[int]:
    """1-based line numbers of a function's docstring."""
    body = getattr(node, "body", [])
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
            and isinstance(body[0].value.value, str):
        return set(range(body[0].lineno, body[0].end_lineno + 1))
    return set()


def function_lines(source: str) -> list[list[tuple[int, str]]]:
    """Per function of ``source`` (in source order): its ``(line number, line)`` pairs, without
    the lines of its docstring. Functions of fewer than 6 lines are left out."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    lines = source.splitlines()
    found = []
    nodes = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    for node in sorted(nodes, key=lambda n: n.lineno):
        if node.end_lineno - node.lineno < 5:
            continue
        skip = _docstring_lines(node)
        found.append([(i, lines[i - 1]) for i in range(node.lineno, node.end_lineno + 1)
                      if i not in skip])
    return found


def _reindent(line: str, like: str) -> str:
    indent = like[: len(like) - len(like.lstrip())]
    return indent + line.strip()


def next_line_examples(seed: int = SEED, limit: int = MAX_EXAMPLES) -> list[dict]:
    """The ``qcourse_next_line`` examples (deterministic for a given corpus and ``seed``)."""
    rng = random.Random(seed)
    examples = []
    for doc in data.documents("test", "code"):
        functions = function_lines(doc.text)
        pool = sorted({line.strip() for f in functions for _, line in f if _usable_line(line)})
        made = 0
        for f_index, function in enumerate(functions):
            if made >= MAX_PER_DOCUMENT:
                break
            own = {line.strip() for _, line in function}
            targets = [k for k in range(3, len(function))   # after a line of code, not a blank
                       if _usable_line(function[k][1]) and function[k - 1][1].strip()]
            others = [line for line in pool if line not in own]
            if not targets or len(others) < CHOICES - 1:
                continue
            k = rng.choice(targets)
            answer = function[k][1]
            wrong = [_reindent(line, answer) for line in rng.sample(others, CHOICES - 1)]
            context = "\n".join(line for _, line in function[max(0, k - CONTEXT_LINES):k])
            examples.append(_shuffled(context, ["\n" + answer] + ["\n" + w for w in wrong], rng,
                                      f"{doc.name}:{function[k][0]}"))
            made += 1
    return _subsample(examples, limit, rng)


# ---- qcourse_docstring_cloze ------------------------------------------------------------------

_WORD = re.compile(r"[A-Za-z]{4,}")
_SENTENCE_END = re.compile(r"(?<=[a-z])\s([A-Za-z]{4,})([.!?])(?=\s|$)")


def cloze_points(text: str) -> list[tuple[int, str]]:
    """``(offset, word)`` of every sentence-final word of 4+ letters that follows a lower-case
    word: ``"... returns the result."`` gives the offset of ``result``."""
    return [(m.start(1), m.group(1)) for m in _SENTENCE_END.finditer(text)]


def docstring_cloze_examples(seed: int = SEED, limit: int = MAX_EXAMPLES) -> list[dict]:
    """The ``qcourse_docstring_cloze`` examples (deterministic for a given corpus and ``seed``)."""
    rng = random.Random(seed)
    examples = []
    for doc in data.documents("test", "prose"):
        vocabulary = sorted({w for w in _WORD.findall(doc.text)})
        points = [(i, w) for i, w in cloze_points(doc.text) if i >= 200]
        rng.shuffle(points)
        for offset, word in sorted(points[:MAX_PER_DOCUMENT]):
            others = [w for w in vocabulary if w.lower() != word.lower()]
            if len(others) < CHOICES - 1:
                continue
            start = offset - CONTEXT_CHARS
            context = doc.text[max(0, start):offset - 1]          # up to the space before the word
            if start > 0 and " " in context:
                context = context[context.index(" ") + 1:]        # start on a word boundary
            wrong = rng.sample(others, CHOICES - 1)
            examples.append(_shuffled(context, [" " + word] + [" " + w for w in wrong], rng,
                                      f"{doc.name}@{offset}"))
    return _subsample(examples, limit, rng)


# ---- common -----------------------------------------------------------------------------------

def _shuffled(context: str, choices: list[str], rng: random.Random, source: str) -> dict:
    """An example whose right answer is ``choices[0]``, the choices shuffled."""
    order = list(range(len(choices)))
    rng.shuffle(order)
    return {"context": context, "choices": [choices[i] for i in order],
            "label": order.index(0), "source": source}


def _subsample(examples: list[dict], limit: int, rng: random.Random) -> list[dict]:
    if len(examples) <= limit:
        return examples
    keep = sorted(rng.sample(range(len(examples)), limit))
    return [examples[i] for i in keep]


BUILDERS = {"qcourse_next_line": next_line_examples,
            "qcourse_docstring_cloze": docstring_cloze_examples}


def build(name: str, seed: int = SEED) -> list[dict]:
    """Build task ``name`` from the corpus (what :func:`write` ships)."""
    return BUILDERS[_check_task(name)](seed)


def task_file(name: str, folder: pathlib.Path = TASK_DIR) -> pathlib.Path:
    """The JSONL file of task ``name``."""
    return folder / f"{_check_task(name)}.jsonl"


def yaml_file(name: str, folder: pathlib.Path = TASK_DIR) -> pathlib.Path:
    """The lm-evaluation-harness task YAML of task ``name``."""
    return folder / f"{_check_task(name)}.yaml"


def task_config(name: str, folder: pathlib.Path = TASK_DIR) -> dict:
    """The lm-evaluation-harness task config (what the YAML holds). ``data_files`` is relative to
    the repository root when the folder is inside it, so ``lm_eval --include_path data/tasks``
    works from there; :func:`qcourse.references.lm_eval.task_configs` makes it absolute."""
    path = task_file(name, folder).resolve()
    data_file = path.relative_to(REPO_DIR) if path.is_relative_to(REPO_DIR) else path
    return {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data_file)}},
        "test_split": "test",
        "output_type": "multiple_choice",
        "doc_to_text": "context",           # field names: taken from each example as they are
        "doc_to_choice": "choices",
        "doc_to_target": "label",
        "target_delimiter": "",             # the choices carry their own leading space / newline
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True},
                        {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True}],
        "metadata": {"version": 1.0},
    }


def write(folder: pathlib.Path = TASK_DIR) -> dict[str, int]:
    """Build every task and write its JSONL and YAML into ``folder``; returns example counts."""
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name in TASKS:
        examples = build(name)
        with open(task_file(name, folder), "w", encoding="utf-8") as f:
            for example in examples:
                f.write(json.dumps(example, ensure_ascii=False, sort_keys=True) + "\n")
        yaml_file(name, folder).write_text(
            "# Built by qcourse.tasks.write() from the corpus test split; see qcourse/tasks.py.\n"
            + yaml.safe_dump(task_config(name, folder), sort_keys=False), encoding="utf-8")
        counts[name] = len(examples)
    return counts


def load(name: str, limit: int | None = None) -> list[dict]:
    """The shipped examples of task ``name`` (the first ``limit``)."""
    path = task_file(name)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `python -m qcourse.tasks` to build it")
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines[:limit]]


# ---- scoring, from scratch --------------------------------------------------------------------

def encode_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Token ids of ``context`` and of ``continuation`` after it, split the way
    lm-evaluation-harness splits them: encode ``context + continuation`` whole and take the
    tokens past those of ``context`` alone (trailing spaces of the context move to the
    continuation first)."""
    spaces = len(context) - len(context.rstrip(" "))
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
    head = tokenizer(context, add_special_tokens=False)["input_ids"]
    return head, whole[len(head):]


@torch.no_grad()
def choice_loglikelihoods(model, tokenizer, example: dict) -> list[float]:
    """``log p(choice | context)`` of each choice (summed over its tokens), from ``model``'s
    logits (a Hugging Face causal LM or an ``ids -> logits`` callable)."""
    call = logits_fn(model)
    scores = []
    for choice in example["choices"]:
        head, tail = encode_pair(tokenizer, example["context"], choice)
        ids = torch.tensor([head + tail])                                  # [1, T]
        log_probs = F.log_softmax(call(ids)[0].double(), dim=-1)           # [T, V]
        positions = torch.arange(len(head) - 1, len(head) + len(tail) - 1)
        scores.append(log_probs[positions, torch.tensor(tail)].sum().item())
    return scores


def accuracy(scores: list[list[float]], examples: list[dict]) -> dict:
    """``{"acc", "acc_norm", "n"}`` from per-choice log-likelihoods (see the module docstring)."""
    if len(scores) != len(examples) or not examples:
        raise ValueError(f"{len(scores)} score lists for {len(examples)} examples")
    hits = hits_norm = 0
    for ll, example in zip(scores, examples):
        norm = [s / len(c) for s, c in zip(ll, example["choices"])]
        hits += max(range(len(ll)), key=ll.__getitem__) == example["label"]
        hits_norm += max(range(len(norm)), key=norm.__getitem__) == example["label"]
    return {"acc": hits / len(examples), "acc_norm": hits_norm / len(examples),
            "n": len(examples)}


def paired_test(correct_a, correct_b) -> dict:
    """McNemar's exact test (module docstring) of two models' answers to the same questions,
    ``correct_a[i]``, ``correct_b[i]`` in {0, 1} (or bools): ``{"n", "both", "neither",
    "a_only", "b_only", "difference" (acc_b − acc_a), "p_value"}``."""
    import math

    a, b = [int(x) for x in correct_a], [int(x) for x in correct_b]
    if len(a) != len(b) or not a:
        raise ValueError(f"need the same questions answered by both models: got {len(a)} and "
                         f"{len(b)} answers")
    if any(x not in (0, 1) for x in a + b):
        raise ValueError("answers must be 1 (right) or 0 (wrong)")
    a_only = sum(x > y for x, y in zip(a, b))
    b_only = sum(y > x for x, y in zip(a, b))
    n = a_only + b_only
    tail = sum(math.comb(n, k) for k in range(min(a_only, b_only) + 1)) / 2**n
    return {"n": len(a), "both": sum(x & y for x, y in zip(a, b)),
            "neither": sum((1 - x) & (1 - y) for x, y in zip(a, b)),
            "a_only": a_only, "b_only": b_only, "difference": (b_only - a_only) / len(a),
            "p_value": min(1.0, 2 * tail)}


def evaluate(model, tokenizer, name: str, limit: int | None = None) -> dict:
    """Our own scoring of task ``name`` (``acc``, ``acc_norm``, ``n``), to compare with what
    lm-evaluation-harness reports for the same model and examples."""
    examples = load(name, limit)
    return accuracy([choice_loglikelihoods(model, tokenizer, e) for e in examples], examples)


if __name__ == "__main__":
    print(write())

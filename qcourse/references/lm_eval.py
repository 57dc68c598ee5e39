"""lm-evaluation-harness (``lm-eval``), offline: task accuracy of any model the course makes.

:func:`evaluate` runs the harness's own ``simple_evaluate`` on the course's tasks
(:mod:`qcourse.tasks`, shipped as JSONL with a task YAML each in ``data/tasks/``):

* a Hugging Face model in memory, quantized or not (every model of ``qcourse compare`` that runs
  in PyTorch), goes through the harness's own ``HFLM(pretrained=model, tokenizer=tokenizer)``
  (``backend="hflm"``), or through :func:`context_cached_lm` (``backend="cached"``), which runs
  each question's context once and scores its four choices from the context's KV cache: the
  same log-likelihoods (to float rounding) for about a quarter of the tokens;
* any other model is an ``ids -> logits`` callable (llama.cpp running a GGUF file, through
  :mod:`qcourse.gguf.llamacpp`), wrapped in :func:`logits_lm`, a minimal ``lm_eval.api.model.LM``
  whose ``loglikelihood`` splits context and continuation exactly as ``HFLM`` does.

Either way the harness builds the requests and computes the metrics; :func:`evaluate` also
returns which questions each model got right (``correct``, in the task file's order), so that two
models can be compared question by question (:func:`qcourse.tasks.paired_test`).

Nothing is downloaded: ``HF_DATASETS_OFFLINE`` is set and the data files are local paths.
"""
from __future__ import annotations

import logging
import os

import torch
import torch.nn.functional as F
from torch import nn

from qcourse import tasks
from qcourse.evaluation import logits_fn
from qcourse.paths import REPO_DIR


def require():
    """Import lm_eval, or say how to install it."""
    try:
        import lm_eval
    except ImportError as err:
        raise ImportError("this needs lm-evaluation-harness: pip install 'lm-eval[hf]==0.4.13' "
                          "(or pip install -e '.[reference]')") from err
    return lm_eval


def task_configs(names=tasks.TASKS) -> list[dict]:
    """The task configs of :func:`qcourse.tasks.task_config` with absolute data paths."""
    configs = []
    for name in names:
        config = tasks.task_config(name)
        path = config["dataset_kwargs"]["data_files"]["test"]
        config["dataset_kwargs"] = {"data_files": {"test": str(REPO_DIR / path)}}
        configs.append(config)
    return configs


def logits_lm(model, tokenizer, max_length: int = 512):
    """An ``lm_eval`` language model scoring with ``model`` (an ``ids -> logits`` callable or a
    Hugging Face model): ``loglikelihood`` only, which is all multiple-choice tasks need."""
    from lm_eval.api.model import LM

    call = logits_fn(model)

    class LogitsLM(LM):
        def loglikelihood(self, requests, disable_tqdm: bool = False):
            results = []
            for request in requests:
                context, continuation = request.args
                head, tail = tasks.encode_pair(tokenizer, context, continuation)
                ids = (head + tail)[-(max_length + 1):]                    # keep the end
                logits = call(torch.tensor([ids[:-1]]))[0].double()         # [T-1, V]
                log_probs = F.log_softmax(logits[-len(tail):], dim=-1)      # [len(tail), V]
                target = torch.tensor(tail)
                greedy = bool((log_probs.argmax(-1) == target).all())
                results.append((log_probs[torch.arange(len(tail)), target].sum().item(), greedy))
            return results

        def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
            raise NotImplementedError("the course's tasks are multiple choice")

        def generate_until(self, requests, disable_tqdm: bool = False):
            raise NotImplementedError("the course's tasks are multiple choice")

    return LogitsLM()


def context_cached_lm(model: nn.Module, tokenizer, max_length: int | None = None):
    """An ``lm_eval`` language model for a Hugging Face causal LM that computes each distinct
    context once and every continuation of it from the context's KV cache (multiple-choice
    tasks ask the same context with every choice). Context and continuation are split as
    ``HFLM`` splits them (:func:`qcourse.tasks.encode_pair`); ``loglikelihood`` only."""
    from lm_eval.api.model import LM

    limit = max_length or model.config.max_position_embeddings

    @torch.no_grad()
    def score(context: str, continuations: list[str]) -> list[tuple[float, bool]]:
        pairs = [tasks.encode_pair(tokenizer, context, c) for c in continuations]
        head = pairs[0][0]
        if not head or any(p[0] != head for p in pairs) or \
                len(head) + max(len(t) for _, t in pairs) > limit:
            return [_full_sequence(model, h, t) for h, t in pairs]       # rare: no shared prefix
        out = model(torch.tensor([head]), use_cache=True)
        first = F.log_softmax(out.logits[0, -1].double(), dim=-1)        # predicts tail[0]
        cache, results = out.past_key_values, []
        for _, tail in pairs:
            log_probs = first[None]                                       # [1, V]
            if len(tail) > 1:
                step = model(torch.tensor([tail[:-1]]), past_key_values=cache, use_cache=True)
                log_probs = torch.cat([log_probs,
                                       F.log_softmax(step.logits[0].double(), dim=-1)])
                cache.crop(-(len(tail) - 1))                              # back to the context
            target = torch.tensor(tail)
            results.append((log_probs[torch.arange(len(tail)), target].sum().item(),
                            bool((log_probs.argmax(-1) == target).all())))
        return results

    class ContextCachedLM(LM):
        def loglikelihood(self, requests, disable_tqdm: bool = False):
            by_context: dict[str, list[int]] = {}
            for i, request in enumerate(requests):
                by_context.setdefault(request.args[0], []).append(i)
            results = [None] * len(requests)
            for context, indices in by_context.items():
                scored = score(context, [requests[i].args[1] for i in indices])
                for i, result in zip(indices, scored):
                    results[i] = result
            return results

        def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
            raise NotImplementedError("the course's tasks are multiple choice")

        def generate_until(self, requests, disable_tqdm: bool = False):
            raise NotImplementedError("the course's tasks are multiple choice")

    return ContextCachedLM()


@torch.no_grad()
def _full_sequence(model: nn.Module, head: list[int], tail: list[int]) -> tuple[float, bool]:
    """``(log p(tail | head), greedy)`` from one forward pass over ``head + tail``."""
    logits = model(torch.tensor([(head + tail)[:-1]])).logits[0, -len(tail):]   # [len(tail), V]
    log_probs, target = F.log_softmax(logits.double(), dim=-1), torch.tensor(tail)
    return (log_probs[torch.arange(len(tail)), target].sum().item(),
            bool((log_probs.argmax(-1) == target).all()))


BACKENDS = ("hflm", "cached")


def evaluate(model, tokenizer, names=tasks.TASKS, *, limit: int | None = None,
             batch_size: int = 16, backend: str = "hflm") -> dict[str, dict]:
    """Task accuracy by lm-evaluation-harness: ``{task: {"acc", "acc_norm", "n", "correct",
    "correct_norm"}}``, the last two listing 1 or 0 per question in the task file's order.

    ``model``: a Hugging Face causal LM in memory (through the harness's ``HFLM``, or
    :func:`context_cached_lm` with ``backend="cached"``) or an ``ids -> logits`` callable
    (through :func:`logits_lm`); ``limit``: the first examples of each task only.
    """
    require()
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: choose one of {BACKENDS}")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    for name in ("lm-eval", "lm_eval", "datasets"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if isinstance(model, nn.Module) and backend == "hflm":
        from lm_eval.models.huggingface import HFLM
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size,
                  max_length=model.config.max_position_embeddings)
    elif isinstance(model, nn.Module):
        lm = context_cached_lm(model, tokenizer)
    else:
        lm = logits_lm(model, tokenizer)
    out = simple_evaluate(model=lm, tasks=task_configs(names), limit=limit,
                          task_manager=TaskManager(), verbosity="ERROR", log_samples=True,
                          bootstrap_iters=0)
    scores = {}
    for name in names:
        samples = sorted(out["samples"][name], key=lambda sample: sample["doc_id"])
        scores[name] = {"acc": out["results"][name]["acc,none"],
                        "acc_norm": out["results"][name]["acc_norm,none"],
                        "n": out["n-samples"][name]["effective"],
                        "correct": [int(sample["acc"]) for sample in samples],
                        "correct_norm": [int(sample["acc_norm"]) for sample in samples]}
    return scores

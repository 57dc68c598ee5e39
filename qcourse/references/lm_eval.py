"""lm-evaluation-harness (``lm-eval``), offline: task accuracy of any model the course makes.

:func:`evaluate` runs the harness's own ``simple_evaluate`` on the course's tasks
(:mod:`qcourse.tasks`, shipped as JSONL with a task YAML each in ``data/tasks/``):

* a Hugging Face model in memory, quantized or not (every model of ``qcourse compare`` that runs
  in PyTorch), goes through the harness's ``HFLM(pretrained=model, tokenizer=tokenizer)``;
* any other model is an ``ids -> logits`` callable (llama.cpp running a GGUF file, through
  :mod:`qcourse.gguf.llamacpp`), wrapped in :func:`logits_lm`, a minimal ``lm_eval.api.model.LM``
  whose ``loglikelihood`` splits context and continuation exactly as ``HFLM`` does.

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


def evaluate(model, tokenizer, names=tasks.TASKS, *, limit: int | None = None,
             batch_size: int = 16) -> dict[str, dict]:
    """Task accuracy by lm-evaluation-harness: ``{task: {"acc", "acc_norm", "n"}}``.

    ``model``: a Hugging Face causal LM in memory (through ``HFLM``) or an ``ids -> logits``
    callable (through :func:`logits_lm`); ``limit``: the first examples of each task only.
    """
    require()
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    for name in ("lm-eval", "lm_eval", "datasets"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if isinstance(model, nn.Module):
        from lm_eval.models.huggingface import HFLM
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size,
                  max_length=model.config.max_position_embeddings)
    else:
        lm = logits_lm(model, tokenizer)
    out = simple_evaluate(model=lm, tasks=task_configs(names), limit=limit,
                          task_manager=TaskManager(), verbosity="ERROR", log_samples=False,
                          bootstrap_iters=0)
    return {name: {"acc": out["results"][name]["acc,none"],
                   "acc_norm": out["results"][name]["acc_norm,none"],
                   "n": out["n-samples"][name]["effective"]}
            for name in names}

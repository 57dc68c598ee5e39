"""Measuring a model: perplexity, size in bytes, generation speed and peak memory.

Perplexity is the quality measure of the whole course:

    PPL = exp( (1/N) · Σ_t −log p(x_t | x_<t) )

over the N predicted tokens of a split. The split's token stream (documents joined by the EOS
token) is cut into non-overlapping windows of ``seq_len`` tokens; each window is scored on its own
(the first token of a window has no context and is not predicted), the tail shorter than a window
is dropped, and the average is token-weighted. Lower is better; a model that guessed uniformly
among V tokens would score V.
"""
from __future__ import annotations

import math
import resource
import sys
import threading
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from qcourse import data


def windows(ids: torch.Tensor, seq_len: int) -> torch.Tensor:
    """Cut a 1-D token stream into non-overlapping windows, [len(ids) // seq_len, seq_len]."""
    if seq_len < 2:
        raise ValueError(f"seq_len must be at least 2 (one token of context, one predicted), got {seq_len}")
    count = len(ids) // seq_len
    if count == 0:
        raise ValueError(
            f"the text holds {len(ids)} tokens, fewer than one window of seq_len={seq_len}; "
            "use a longer text or a shorter seq_len"
        )
    return ids[: count * seq_len].view(count, seq_len)


@torch.no_grad()
def nll_per_window(model: nn.Module, batches: torch.Tensor, batch_size: int = 8) -> torch.Tensor:
    """Summed negative log-likelihood (nats) of each window's predicted tokens, shape [windows]."""
    device = next(model.parameters()).device
    totals = []
    for chunk in batches.split(batch_size):
        chunk = chunk.to(device)
        logits = model(chunk).logits.float()
        nll = F.cross_entropy(
            logits[:, :-1].reshape(-1, logits.size(-1)), chunk[:, 1:].reshape(-1), reduction="none"
        )
        totals.append(nll.view(chunk.size(0), -1).sum(dim=1).cpu())
    return torch.cat(totals)


def perplexity(
    model: nn.Module,
    tokenizer,
    split: str = "test",
    seq_len: int = 512,
    *,
    domain: str | None = None,
    text: str | None = None,
    max_windows: int | None = None,
    batch_size: int = 8,
) -> float:
    """Token-weighted perplexity of ``model`` on a corpus split (or on ``text`` if given).

    ``domain`` restricts the split to "prose" or "code"; ``max_windows`` scores only the first
    windows (for quick looks; the course's tables use the whole split).
    """
    if text is not None:
        ids = torch.tensor(tokenizer(text, add_special_tokens=False)["input_ids"], dtype=torch.long)
    else:
        if split not in data.SPLITS:
            raise ValueError(f"unknown split {split!r}: choose one of {data.SPLITS}")
        ids = data.token_ids(tokenizer, split, domain)
    batches = windows(ids, seq_len)
    if max_windows is not None:
        batches = batches[:max_windows]
    nll = nll_per_window(model, batches, batch_size)
    predicted = batches.size(0) * (seq_len - 1)
    return math.exp(nll.sum().item() / predicted)


def unigram_perplexity(tokenizer, train_split: str = "train", eval_split: str = "test",
                       seq_len: int = 512) -> float:
    """Perplexity of the best context-free model: token frequencies of ``train_split``
    (add-one smoothed), scored on the same predicted tokens as :func:`perplexity`."""
    counts = torch.bincount(data.token_ids(tokenizer, train_split), minlength=len(tokenizer)).double() + 1
    log_p = (counts / counts.sum()).log()
    targets = windows(data.token_ids(tokenizer, eval_split), seq_len)[:, 1:]
    return math.exp(-log_p[targets].mean().item())


def tensor_bytes(t: torch.Tensor) -> int:
    """Bytes a tensor occupies: ``numel · element_size``."""
    return t.numel() * t.element_size()


def model_size_bytes(model: nn.Module) -> int:
    """Real storage of the model's parameters and buffers, in bytes, each tensor counted once.

    Quantized layers keep their packed integers, scales and zeros as buffers, so they are counted
    at their true size. Tied weights (shared by embedding and output head) count once.
    """
    seen: dict[int, torch.Tensor] = {}
    for t in list(model.parameters()) + list(model.buffers()):
        seen.setdefault(t.data_ptr() if t.numel() else id(t), t)
    return sum(tensor_bytes(t) for t in seen.values())


@torch.no_grad()
def generate(model: nn.Module, tokenizer, prompt: str, max_new_tokens: int = 40) -> str:
    """Greedy continuation of ``prompt`` (deterministic), returned without the prompt."""
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
    out = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False,
                         pad_token_id=tokenizer.eos_token_id)
    return tokenizer.decode(out[0, ids.size(1):])


@torch.no_grad()
def tokens_per_second(model: nn.Module, tokenizer, prompt: str = "def ", new_tokens: int = 64,
                      repeats: int = 2) -> float:
    """Greedy decoding speed, in generated tokens per second (best of ``repeats``)."""
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                       pad_token_id=tokenizer.eos_token_id)
        best = min(best, time.perf_counter() - start)
    return new_tokens / best


def current_rss() -> int:
    """Resident memory of this process now, in bytes (Linux: /proc/self/statm)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def peak_memory(fn: Callable[[], object], interval: float = 0.002) -> tuple[object, int]:
    """Run ``fn()``; return its result and the peak growth of resident memory while it ran, in
    bytes, sampled every ``interval`` seconds by a watcher thread (Linux only)."""
    baseline = current_rss()
    peak = baseline
    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, current_rss())
            time.sleep(interval)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        result = fn()
    finally:
        done.set()
        watcher.join()
    peak = max(peak, current_rss())
    return result, peak - baseline


def process_peak_rss() -> int:
    """Peak resident memory of this process so far, in bytes."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


# ---------------------------------------------------------------------------------------------
# Beyond perplexity: how far does a quantized model drift from the float model it came from?
#
# Over the same predicted tokens as :func:`perplexity`, with p the reference (float) model's
# next-token distribution and q the quantized model's (llama.cpp's ``--kl-divergence``):
#
#     KL(p || q)       = Σ_v p(v) · (log p(v) − log q(v))         (mean over predicted tokens)
#     top-1 agreement  = fraction of positions where argmax q = argmax p
#
# and, generating instead of scoring, the greedy-continuation match length: from the same
# prompt, how many tokens the two models' greedy continuations share before they first differ.

LogitsFn = Callable[[torch.Tensor], torch.Tensor]


def logits_fn(model) -> LogitsFn:
    """``token ids [B, T] -> float32 logits [B, T, V]`` for a Hugging Face causal LM (anything
    whose call returns ``.logits``); a plain callable with that contract is returned unchanged
    (e.g. a wrapper around llama.cpp)."""
    if isinstance(model, nn.Module):
        device = next(model.parameters()).device

        @torch.no_grad()
        def call(ids: torch.Tensor) -> torch.Tensor:
            return model(ids.to(device)).logits.float().cpu()
        return call
    if callable(model):
        return model
    raise TypeError(f"expected an nn.Module or a callable ids -> logits, got {type(model).__name__}")


def kl_per_token(logits: torch.Tensor, reference_logits: torch.Tensor) -> torch.Tensor:
    """``KL(p || q)`` at every position, ``[..., V] -> [...]`` (nats), where
    ``p = softmax(reference_logits)`` and ``q = softmax(logits)``, computed in float64."""
    if logits.shape != reference_logits.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and reference logits "
                         f"{tuple(reference_logits.shape)} must have the same shape")
    log_q = F.log_softmax(logits.double(), dim=-1)
    log_p = F.log_softmax(reference_logits.double(), dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum(dim=-1)


class Divergence:
    """Running sums over predicted tokens: the model's negative log-likelihood (its perplexity),
    ``KL(p_reference || q_model)`` and top-1 agreement. :meth:`update` with the logits of a
    batch of windows (the reference's may be left out: perplexity only); :meth:`result` for the
    token-weighted means."""

    def __init__(self) -> None:
        self.nll = 0.0
        self.tokens = 0
        self.kl = 0.0
        self.agree = 0
        self.compared = 0

    def update(self, logits: torch.Tensor, reference_logits: torch.Tensor | None,
               ids: torch.Tensor) -> None:
        """``logits``, ``reference_logits`` ``[B, T, V]`` of windows ``ids [B, T]``; position t
        predicts token t+1, so the last position of each window is not scored."""
        logits = logits[:, :-1].float()
        targets = ids[:, 1:]                                              # [B, T-1]
        self.nll += F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1),
                                    reduction="sum").item()
        self.tokens += targets.numel()
        if reference_logits is None:
            return
        reference_logits = reference_logits[:, :-1].float()
        self.kl += kl_per_token(logits, reference_logits).sum().item()
        self.agree += (logits.argmax(-1) == reference_logits.argmax(-1)).sum().item()
        self.compared += targets.numel()

    def result(self) -> dict:
        """``{"perplexity", "tokens", "kl_divergence", "top1_agreement", "compared_tokens"}``
        (KL and top-1 over the tokens compared with the reference)."""
        if self.tokens == 0:
            raise ValueError("no tokens were scored")
        out = {"perplexity": math.exp(self.nll / self.tokens), "tokens": self.tokens}
        if self.compared:
            out.update(kl_divergence=self.kl / self.compared,
                       top1_agreement=self.agree / self.compared, compared_tokens=self.compared)
        return out


def evaluation_windows(tokenizer, split: str = "test", seq_len: int = 512,
                       max_windows: int | None = None) -> torch.Tensor:
    """The windows :func:`perplexity` scores, ``[count, seq_len]`` (the first ``max_windows``)."""
    if split not in data.SPLITS:
        raise ValueError(f"unknown split {split!r}: choose one of {data.SPLITS}")
    batches = windows(data.token_ids(tokenizer, split), seq_len)
    return batches if max_windows is None else batches[:max_windows]


def divergence(model, reference, tokenizer, split: str = "test", seq_len: int = 512, *,
               max_windows: int | None = None, compare_windows: int | None = None,
               batch_size: int = 8, progress: bool = False) -> dict:
    """Perplexity of ``model`` and its KL divergence from / top-1 agreement with ``reference``,
    in one pass over the windows of :func:`perplexity` (``compare_windows``: compare with the
    reference on the first windows only; perplexity still uses every window). ``model`` and
    ``reference``: Hugging Face causal LMs or callables ``ids -> logits`` (:func:`logits_fn`).
    See :class:`Divergence`."""
    model_logits, reference_logits = logits_fn(model), logits_fn(reference)
    meter = Divergence()
    batches = evaluation_windows(tokenizer, split, seq_len, max_windows)
    compared = batches.size(0) if compare_windows is None else compare_windows
    starts = range(0, batches.size(0), batch_size)
    if progress:
        from tqdm.auto import tqdm
        starts = tqdm(starts, desc="windows", leave=False)
    for start in starts:
        chunk = batches[start:start + batch_size]
        logits = model_logits(chunk)
        k = max(0, min(len(chunk), compared - start))             # windows to compare here
        if k < len(chunk):
            meter.update(logits[k:], None, chunk[k:])
        if k:
            meter.update(logits[:k], reference_logits(chunk[:k]), chunk[:k])
    return meter.result()


def kl_divergence(model, reference, tokenizer, split: str = "test", seq_len: int = 512,
                  **options) -> float:
    """Mean ``KL(p_reference || q_model)`` per predicted token (nats); see :func:`divergence`."""
    return divergence(model, reference, tokenizer, split, seq_len, **options)["kl_divergence"]


def top1_agreement(model, reference, tokenizer, split: str = "test", seq_len: int = 512,
                   **options) -> float:
    """Fraction of predicted tokens where both models rank the same token first."""
    return divergence(model, reference, tokenizer, split, seq_len, **options)["top1_agreement"]


def match_length(a, b) -> int:
    """Length of the common prefix of two token sequences: ``[5, 7, 9]`` and ``[5, 7, 2]`` -> 2."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


@torch.no_grad()
def greedy_tokens(model, prompt_ids, new_tokens: int) -> list[int]:
    """The ``new_tokens`` tokens greedy decoding appends to ``prompt_ids``. A Hugging Face model
    decodes with its KV cache (``generate``); any other ``ids -> logits`` callable (llama.cpp)
    re-reads the whole sequence at each step."""
    ids = torch.as_tensor(list(prompt_ids), dtype=torch.long)[None]     # [1, T]
    if isinstance(model, nn.Module):                                     # no EOS stop, no sampling
        step = model(ids, use_cache=True)
        out = []
        for _ in range(new_tokens):
            token = step.logits[0, -1].argmax().view(1, 1)                # [1, 1]
            out.append(int(token))
            step = model(token, past_key_values=step.past_key_values, use_cache=True)
        return out
    call, out = logits_fn(model), []
    for _ in range(new_tokens):
        token = int(call(ids)[0, -1].argmax())
        out.append(token)
        ids = torch.cat([ids, torch.tensor([[token]])], dim=1)            # [1, T + 1]
    return out


def greedy_continuations(model, prompts: torch.Tensor, new_tokens: int) -> list[list[int]]:
    """:func:`greedy_tokens` for every prompt of ``prompts [n, T]``."""
    return [greedy_tokens(model, p.tolist(), new_tokens) for p in prompts]


def continuation_prompts(tokenizer, count: int, prompt_tokens: int = 64, split: str = "test",
                         seed: int = 0) -> torch.Tensor:
    """``count`` prompts of ``prompt_tokens`` tokens drawn (seeded) from ``split``,
    LongTensor ``[count, prompt_tokens]`` (:func:`qcourse.data.calibration_samples`)."""
    return data.calibration_samples(tokenizer, count, prompt_tokens, seed, split=split)


def greedy_match_length(model, reference, tokenizer=None, *, prompts: torch.Tensor | None = None,
                        count: int = 8, new_tokens: int = 32, split: str = "test",
                        seed: int = 0) -> float:
    """Mean number of leading tokens on which the greedy continuations of ``model`` and
    ``reference`` agree (``new_tokens`` = they never diverge), over ``prompts [n, T]`` (default:
    ``count`` seeded prompts of 64 tokens from ``split``, which needs ``tokenizer``).
    ``reference`` may also be its continuations, already computed (a list of token lists)."""
    if prompts is None:
        if tokenizer is None:
            raise ValueError("pass prompts, or a tokenizer to draw them from the corpus")
        prompts = continuation_prompts(tokenizer, count, split=split, seed=seed)
    if not isinstance(reference, list):
        reference = greedy_continuations(reference, prompts, new_tokens)
    ours = greedy_continuations(model, prompts, new_tokens)
    if len(ours) != len(reference):
        raise ValueError(f"{len(reference)} reference continuations for {len(ours)} prompts")
    return sum(match_length(a, b) for a, b in zip(ours, reference)) / len(ours)


def reset_peak_rss() -> bool:
    """Make the peak resident memory start again from the current one (Linux: writing 5 to
    ``/proc/self/clear_refs`` resets ``VmHWM``); False where the system does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def peak_rss() -> int:
    """Peak resident memory of this process since it started or since :func:`reset_peak_rss`,
    in bytes (``VmHWM``; :func:`process_peak_rss` where /proc is missing)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return process_peak_rss()

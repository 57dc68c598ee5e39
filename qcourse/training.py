"""Fine-tuning a causal LM on the corpus: the loop that quantization-aware training
(:mod:`qcourse.qat`), QLoRA (:mod:`qcourse.qlora`), the torchao reference and qcourse-tiny's own
training (:mod:`qcourse.models.train`) share.

One step on ``batch_size`` random windows ``x`` of ``seq_len`` train tokens:

    loss = CE(model(x), next tokens)          (or KL(p_teacher ‖ p_model), distillation)
    θ ← AdamW(θ, ∇loss clipped to norm 1.0, lr(step))

    lr(step) = peak · (step + 1) / warmup                       during the warm-up
             = peak · (0.1 + 0.9 · ½ (1 + cos(π · progress)))   then ("cosine"; "constant": peak)

A NaN or Inf loss or gradient stops training before the step changes anything.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from qcourse import data


def learning_rate(step: int, total: int, peak: float, warmup: int) -> float:
    """Linear warm-up to ``peak`` over ``warmup`` steps, then cosine decay to ``0.1·peak``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


SCHEDULES = ("cosine", "constant")


def schedule_lr(step: int, total: int, peak: float, warmup: int, schedule: str) -> float:
    """Linear warm-up to ``peak`` over ``warmup`` steps, then cosine decay to 0.1·peak
    (``"cosine"``, as qcourse-tiny's own training) or ``peak`` until the end (``"constant"``)."""
    if schedule == "constant" and step >= warmup:
        return peak
    return learning_rate(step, total, peak, warmup)


def random_windows(ids: torch.Tensor, batch_size: int, seq_len: int,
                   generator: torch.Generator) -> torch.Tensor:
    """``batch_size`` windows of ``seq_len`` tokens at random starts: ``[batch_size, seq_len]``."""
    starts = torch.randint(0, len(ids) - seq_len, (batch_size,), generator=generator)
    return torch.stack([ids[s: s + seq_len] for s in starts.tolist()])


def distillation_loss(logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """``KL(p_teacher ‖ p_student)`` per token, averaged: logits ``[B, T, V]`` each."""
    v = logits.shape[-1]
    return F.kl_div(F.log_softmax(logits.float().reshape(-1, v), -1),
                    F.log_softmax(teacher_logits.float().reshape(-1, v), -1),
                    log_target=True, reduction="batchmean")


def check_training_args(steps: int, batch_size: int, seq_len: int, schedule: str) -> None:
    for name, value, low in (("steps", steps, 1), ("batch_size", batch_size, 1),
                             ("seq_len", seq_len, 2)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")


def fine_tune(model: nn.Module, tokenizer, steps: int, param_groups: list[dict], *,
              batch_size: int = 8, seq_len: int = 256, seed: int = 0, domain: str | None = None,
              teacher: nn.Module | None = None, warmup: int | None = None,
              schedule: str = "cosine", progress: bool = True,
              callback: Callable[[int, nn.Module], None] | None = None,
              desc: str = "fine-tune") -> dict:
    """Train ``model`` for ``steps`` steps of AdamW (``param_groups``: each with its peak
    ``lr``) on random windows of the train split (``domain`` "prose"/"code": one half only).

    Loss: next-token cross-entropy, or :func:`distillation_loss` to ``teacher``. Warm-up of
    ``warmup`` steps (default 10 % of the steps), then ``schedule``; gradients clipped at 1.0.
    After each step ``callback(step, model)`` runs if given. If a loss or gradient is NaN/Inf,
    training stops *before* that step changes anything, with a FloatingPointError naming the
    step. Returns ``{"steps", "tokens", "seconds", "tokens_per_second", "loss": [per step],
    "trainable_parameters", "training_state_bytes", ...}``.
    """
    check_training_args(steps, batch_size, seq_len, schedule)
    warmup = max(1, steps // 10) if warmup is None else warmup
    ids = data.token_ids(tokenizer, "train", domain)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(param_groups, betas=(0.9, 0.95), weight_decay=0.0)
    params = [p for group in param_groups for p in group["params"]]
    peaks = [group["lr"] for group in optimizer.param_groups]
    log = {"steps": steps, "batch_size": batch_size, "seq_len": seq_len,
           "tokens": steps * batch_size * seq_len, "lr": peaks[0], "schedule": schedule,
           "distill": teacher is not None, "loss": []}
    model.train()
    start, outside = time.perf_counter(), 0.0
    try:
        bar = tqdm(range(steps), desc=desc, disable=not progress)
        for step in bar:
            for group, peak in zip(optimizer.param_groups, peaks):
                group["lr"] = schedule_lr(step, steps, peak, warmup, schedule)
            x = random_windows(ids, batch_size, seq_len, generator)
            loss = step_loss(model, x, teacher)
            check_finite_loss(loss, step + 1, peaks[0])
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(params, 1.0)
            if not torch.isfinite(norm):
                optimizer.zero_grad(set_to_none=True)
                check_finite_loss(norm, step + 1, peaks[0], what="gradient norm")
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            log["loss"].append(loss.item())
            bar.set_postfix(loss=f"{loss.item():.3f}")
            if callback is not None:
                called = time.perf_counter()
                callback(step + 1, model)
                model.train()
                outside += time.perf_counter() - called
    finally:
        model.eval()
    log["seconds"] = time.perf_counter() - start - outside     # training only, not callbacks
    log["tokens_per_second"] = log["tokens"] / log["seconds"]
    log["trainable_parameters"] = sum(p.numel() for p in params)
    log["training_state_bytes"] = training_state_bytes(optimizer)
    return log


def training_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes training keeps for the parameters it updates, read from the tensors: each
    parameter, its gradient (the same size) and the optimizer's state (AdamW: two moments)."""
    total = 0
    for group in optimizer.param_groups:
        for p in group["params"]:
            total += 2 * p.numel() * p.element_size()
            total += sum(t.numel() * t.element_size()
                         for t in optimizer.state.get(p, {}).values() if torch.is_tensor(t))
    return total


def saved_activation_bytes(model: nn.Module, x: torch.Tensor) -> int:
    """Bytes of the tensors autograd keeps for the backward pass of one training forward pass
    on windows ``x [B, T]`` (the loss included): activations, and weights made on the fly (a
    dequantized 4-bit weight), each storage counted once; the model's own parameters and
    buffers are not counted (they are held anyway)."""
    held = {t.untyped_storage().data_ptr() for t in (*model.parameters(), *model.buffers())}
    saved: dict[int, torch.Tensor] = {}     # kept alive, so that no address is reused

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.untyped_storage().data_ptr() not in held:
            saved.setdefault(t.untyped_storage().data_ptr(), t)
        return t

    was_training = model.training
    model.train()
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(x, labels=x).loss
    finally:
        model.train(was_training)
    return sum(t.untyped_storage().nbytes() for t in saved.values())


def step_loss(model: nn.Module, x: torch.Tensor, teacher: nn.Module | None) -> torch.Tensor:
    """The training loss on windows ``x [B, T]``: cross-entropy, or KL to the teacher."""
    if teacher is None:
        return model(x, labels=x).loss
    with torch.no_grad():
        target = teacher(x).logits
    return distillation_loss(model(x).logits, target)


def check_finite_loss(value: torch.Tensor, step: int, lr: float, what: str = "loss") -> None:
    """A clear error if ``value`` is NaN or Inf at ``step`` (counted from 1); the caller has
    not changed the model in this step yet."""
    if not torch.isfinite(value):
        raise FloatingPointError(
            f"the {what} is {value.item()} at step {step}: training stopped before step {step} "
            f"changed the model (it is as it was after step {step - 1}). Lower the learning "
            f"rate (lr={lr:g}) and train again.")

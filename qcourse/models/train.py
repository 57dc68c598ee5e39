"""Train ``qcourse-tiny`` from scratch on the corpus, on the CPU.

    python -m qcourse.models.train--tokens 4_000_000      (or: qcourse train-tiny)

Recipe: random windows of 512 tokens from the train split (seeded), AdamW (betas 0.9/0.95,
weight decay 0.1 on matrices), linear warm-up then cosine decay to 10 % of the peak learning rate,
gradient clipping at 1.0, fp32 (bf16 autocast is optional: on CPUs without native bf16, such as
the AVX2-only machine this model was trained on, it is over 10x slower). The validation loss is measured
every ``eval_every`` steps on fixed windows; the best checkpoint is kept and written as fp32
safetensors with the tokenizer, ``config.json`` and ``train_log.json``.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import platform
import time

import torch

from qcourse import data
from qcourse.models import parameter_count, tiny_config
from qcourse.models.tokenizer import save_tokenizer, train_tokenizer
from qcourse.paths import TINY_DIR
from qcourse.training import learning_rate, random_windows


def fixed_windows(ids: torch.Tensor, seq_len: int, count: int) -> torch.Tensor:
    """``count`` evenly spaced, non-overlapping windows of the token stream."""
    n = len(ids) // seq_len
    picks = torch.linspace(0, n - 1, min(count, n)).long()
    return torch.stack([ids[i * seq_len : (i + 1) * seq_len] for i in picks.tolist()])


@torch.no_grad()
def mean_loss(model, windows: torch.Tensor, batch: int, autocast: bool) -> float:
    model.eval()
    losses = []
    for chunk in windows.split(batch):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            losses.append(model(chunk, labels=chunk).loss.float().item())
    model.train()
    return sum(losses) / len(losses)


def train(
    out_dir: pathlib.Path = TINY_DIR,
    tokens: int = 4_000_000,
    seq_len: int = 512,
    batch: int = 16,
    lr: float = 2e-3,
    warmup: int = 100,
    eval_every: int = 100,
    seed: int = 0,
    autocast: bool = False,
    threads: int | None = None,
) -> dict:
    """Train the tokenizer and the model; write everything to ``out_dir``; return the log."""
    torch.manual_seed(seed)
    if threads:
        torch.set_num_threads(threads)
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    t0 = time.time()
    tokenizer = train_tokenizer()
    save_tokenizer(tokenizer, out_dir)
    train_ids = data.token_ids(tokenizer, "train")
    val_windows = fixed_windows(data.token_ids(tokenizer, "validation"), seq_len, 64)
    print(f"tokenizer + corpus: {time.time() - t0:.0f}s, train split {len(train_ids):,} tokens")

    from transformers import LlamaForCausalLM  # here, so importing qcourse.models stays light

    model = LlamaForCausalLM(tiny_config())
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr, betas=(0.9, 0.95),
    )
    steps = tokens // (batch * seq_len)
    generator = torch.Generator().manual_seed(seed)
    log = {"config": dict(tokens=tokens, seq_len=seq_len, batch=batch, lr=lr, warmup=warmup,
                          seed=seed, autocast=autocast, steps=steps),
           "parameters": parameter_count(model), "train": [], "validation": []}
    best = float("inf")
    model.train()
    start = time.time()
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, steps, lr, warmup)
        x = random_windows(train_ids, batch, seq_len, generator)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = model(x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step % 10 == 0:
            log["train"].append([step, round(loss.item(), 4)])
        if (step + 1) % eval_every == 0 or step + 1 == steps:
            val = mean_loss(model, val_windows, batch, autocast)
            elapsed = time.time() - start
            log["validation"].append([step + 1, round(val, 4)])
            print(f"step {step + 1}/{steps} train {loss.item():.3f} val {val:.3f} "
                  f"({(step + 1) * batch * seq_len / elapsed:,.0f} tok/s, {elapsed / 60:.1f} min)",
                  flush=True)
            if val < best:
                best = val
                model.save_pretrained(out_dir, safe_serialization=True)
                log["best"] = {"step": step + 1, "validation_loss": round(val, 4)}
            _write_log(out_dir, log, start)
    log["train_seconds"] = round(time.time() - start)
    log["machine"] = f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    _write_log(out_dir, log, start)
    return log


def _write_log(out_dir: pathlib.Path, log: dict, start: float) -> None:
    log["elapsed_seconds"] = round(time.time() - start)
    (out_dir / "train_log.json").write_text(json.dumps(log, indent=1) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train qcourse-tiny on the CPU.")
    parser.add_argument("--out", type=pathlib.Path, default=TINY_DIR)
    parser.add_argument("--tokens", type=int, default=4_000_000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--autocast", action="store_true", help="bf16 autocast (fast only on CPUs with bf16)")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    train(args.out, tokens=args.tokens, batch=args.batch, lr=args.lr, seed=args.seed,
          eval_every=args.eval_every, autocast=args.autocast, threads=args.threads)


if __name__ == "__main__":
    main()

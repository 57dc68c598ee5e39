"""QAT against PTQ on qcourse-tiny, on the CPU, in one run: test perplexity on the whole split,
training tokens, wall time and peak memory of every method, at three widths.

    python benchmarks/qat.py --threads 1
                                        # the full run: 131,072 training tokens per QAT run,
                                        # the whole test split; recorded on 2026-12-07 in 38
                                        # minutes on one thread of a quiet 2-core machine (load
                                        # average 0.25 at the start, 1.10 at the end); on
                                        # 2026-11-30 in 47 minutes with the cores shared
    python benchmarks/qat.py --steps 16 --batch-size 4 --seq-len 128 --samples 32 \
        --max-windows 8 --qlora-steps 16 --threads 1
                                        # a bounded run: 8,192 tokens per QAT run, 8 windows
    python benchmarks/qat.py --quick    # a few steps and 4 test windows: checks that it all runs
    python benchmarks/qat.py --qlora-only --threads 1
                                        # item 4 alone (about 3 minutes), to its own record
                                        # benchmarks/results/qat-qlora-<machine>-<date>.json

0. The float model, and the float model fine-tuned with the same loop, data and tokens as the QAT
   runs (a control: how much of QAT's gain is only more training).
1. At W4 g128, W3 g128 and W2 g64 (asymmetric, as RTN and GPTQ here): RTN, GPTQ (128 windows of
   512 calibration tokens), QAT with the STE (``qcourse.qat``, min-max grid from the current
   weights), QAT with LSQ (learned scales and zero points), QAT with distillation from the float
   model's logits (STE), and torchao 0.18's QAT (``QATConfig(IntxWeightOnlyConfig)``: its grid
   is symmetric) with the same training loop, data and learning rate. Every QAT run sees the
   same windows of the train split (seed 0).
2. A token sweep: the STE run is evaluated at 1/8, 1/4 and 1/2 of its tokens as well (a
   constant learning rate after the warm-up makes those checkpoints stand in for shorter runs),
   which says how many training tokens QAT needs to beat GPTQ at each width.
3. Like for like with torchao: our QAT on torchao's symmetric grid (STE) next to it.
4. QLoRA: ours (``qcourse.qlora``, NF4Linear + LoRA), peft on a bitsandbytes NF4 base with
   double quantization, and the control, LoRA on the float model (``qlora.prepare(...,
   base="float")``: what the 4-bit base costs), with the same A matrices and windows of the
   *prose* half of the train split; prose and code test perplexity before and after (each
   window's mean NLL kept), trainable parameters, the bytes of training state (parameters,
   gradients, AdamW moments; full fine-tuning measured by one step of it) and the merge.

Every row keeps each test window's mean negative log-likelihood (``window_nll``), so that two
rows can be compared with a paired interval (``qcourse.evaluation.paired_difference``; the run
recorded on 2026-11-30 predates this and has perplexities only).

Writes benchmarks/results/qat-<machine>-<date>.json with the run's record (qcourse.bench.record:
CPU model, threads, load average at start and end, library versions).
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import pathlib
import sys

from qcourse.bench import record

# this folder's kernels.py would stand in for the optional `kernels` package bitsandbytes seeks
record.leave_script_folder_off_sys_path(__file__)

import torch  # noqa: E402

from qcourse import data, evaluation, gptq, models, ptq, qat, qlora, training  # noqa: E402
from qcourse.quant import QuantScheme  # noqa: E402
from qcourse.references import peft_qlora  # noqa: E402
from qcourse.references.torchao import qat as torchao_qat  # noqa: E402

WIDTHS = ((4, 128), (3, 128), (2, 64))
SWEEP = (8, 4, 2)       # the STE run is also scored after 1/8, 1/4 and 1/2 of its steps
STATS_LAYER = "model.layers.3.mlp.down_proj"   # the layer whose weights the notebook pictures


def measured(fn) -> tuple[object, float, int]:
    """``(result, seconds, peak resident memory growth in bytes)`` of ``fn()``."""
    (result, peak), seconds = record.timed(lambda: evaluation.peak_memory(fn))
    return result, seconds, peak


class Run:
    """One benchmark run: the model, the scoring, the QAT options, the rows collected."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.base, self.tok = models.load()
        self.windows = args.max_windows
        self.train = dict(lr=args.lr, batch_size=args.batch_size, seq_len=args.seq_len, seed=0,
                          schedule="constant", progress=False)
        self.rows: list[dict] = []

    def ppl(self, model, domain=None) -> float:
        return round(evaluation.perplexity(model, self.tok, max_windows=self.windows,
                                      domain=domain), 3)

    def add(self, width: str, method: str, model, *, tokens: int, seconds: float, peak: int,
            **extra) -> dict:
        """Score ``model`` and record its row: the perplexity and each window's mean NLL
        (``window_nll``: what a paired interval between two rows needs)."""
        protocol = evaluation.WHOLE if self.windows is None else \
            evaluation.Protocol("bounded", self.windows)
        scored = evaluation.score(model, self.tok, protocol)
        row = {"width": width, "method": method, "ppl": round(scored.perplexity, 3),
               "window_nll": [round(v, 6) for v in scored.nll.tolist()],
               "training_tokens": tokens, "seconds": round(seconds, 1),
               "peak_memory_mb": round(peak / 2**20, 1), **extra}
        self.rows.append(row)
        print(f"{width:9s} {method:28s} ppl {row['ppl']:8.3f}  tokens {tokens:>9,}  "
              f"{row['seconds']:7.1f} s  {row['peak_memory_mb']:7.1f} MB", flush=True)
        return row

    def qat_row(self, width, method, bits, group_size, *, symmetric=False, learn_scales=False,
                distill=False, sweep=False, stats=False):
        model = qat.prepare(copy.deepcopy(self.base), bits, group_size, symmetric=symmetric,
                            learn_scales=learn_scales)
        scores, checkpoints = {}, {self.args.steps // n for n in SWEEP} if sweep else set()

        def score(step, m):
            if step in checkpoints:
                scores[step * self.args.batch_size * self.args.seq_len] = self.ppl(m)

        log, _, peak = measured(lambda: qat.train(
            model, self.tok, self.args.steps, distill=distill, callback=score,
            scale_lr=self.args.scale_lr if learn_scales else None, **self.train))
        extra = {"tokens_per_second": round(log["tokens_per_second"]),
                 "final_loss": round(sum(log["loss"][-10:]) / len(log["loss"][-10:]), 4),
                 "training_state_mb": round(log["training_state_bytes"] / 2**20, 1)}
        if sweep:
            extra["sweep"] = scores
        if stats:
            extra["layer"] = layer_stats(self.base, model, STATS_LAYER,
                                         QuantScheme(bits, group_size, symmetric))
        converted = qat.convert(model)
        return self.add(width, method, converted, tokens=log["tokens"], seconds=log["seconds"],
                        peak=peak, **extra)

    def fine_tune_all(self, model) -> tuple[dict, int]:
        """Every parameter of ``model`` trained with the QAT runs' loop, data and tokens:
        ``(log, peak memory growth)``."""
        params = [{"params": list(model.parameters()), "lr": self.args.lr}]
        options = {k: v for k, v in self.train.items() if k != "lr"}
        log, _, peak = measured(lambda: training.fine_tune(model, self.tok, self.args.steps, params,
                                                      **options))
        return log, peak

    def float_control(self):
        """The float model fine-tuned like every QAT run: how much of QAT's gain is just more
        training."""
        model = copy.deepcopy(self.base)
        log, peak = self.fine_tune_all(model)
        return self.add("float", "float, fine-tuned alike", model, tokens=log["tokens"],
                        seconds=log["seconds"], peak=peak,
                        tokens_per_second=round(log["tokens_per_second"]))

    def torchao_row(self, width, bits, group_size):
        model = torchao_qat.prepare(copy.deepcopy(self.base), bits, group_size)
        log, peak = self.fine_tune_all(model)
        converted = torchao_qat.convert(model, bits, group_size)
        return self.add(width, "torchao QAT (symmetric)", converted, tokens=log["tokens"],
                        seconds=log["seconds"], peak=peak,
                        tokens_per_second=round(log["tokens_per_second"]))

    def width(self, bits: int, group_size: int, samples: torch.Tensor) -> None:
        name = f"W{bits} g{group_size}"
        model, seconds, peak = measured(lambda: ptq.quantize_rtn(copy.deepcopy(self.base), bits,
                                                                 "group", group_size))
        self.add(name, "RTN", model, tokens=0, seconds=seconds, peak=peak)
        model, seconds, peak = measured(lambda: gptq.quantize_model(
            copy.deepcopy(self.base), samples, bits, group_size, progress=False))
        self.add(name, "GPTQ", model, tokens=0, seconds=seconds, peak=peak,
                 calibration_tokens=samples.numel())
        del model
        self.qat_row(name, "QAT (STE)", bits, group_size, sweep=True, stats=True)
        self.qat_row(name, "QAT (LSQ)", bits, group_size, learn_scales=True)
        self.qat_row(name, "QAT (STE) + distillation", bits, group_size, distill=True)
        self.qat_row(name, "QAT (STE, symmetric)", bits, group_size, symmetric=True)
        self.torchao_row(name, bits, group_size)


def layer_stats(base, trained, name: str, scheme: QuantScheme) -> dict:
    """Distances to the nearest grid point (20 bins over [0, 0.5] steps) of one layer's
    weights before and after QAT, and the fraction of codes that changed by starting distance
    (four bins of 1/8 step)."""
    d0, c0 = qat.grid_position(base.get_submodule(name).weight, scheme)
    d1, c1 = qat.grid_position(trained.get_submodule(name).weight, scheme)
    bins = torch.clamp((d0 / 0.125).long(), max=3)
    changed = c1 != c0
    return {"name": name,
            "histogram_before": torch.histc(d0, 20, 0, 0.5).int().tolist(),
            "histogram_after": torch.histc(d1, 20, 0, 0.5).int().tolist(),
            "codes_changed": round(changed.float().mean().item(), 5),
            "codes_changed_by_start": [round(changed[bins == b].float().mean().item(), 5)
                                       for b in range(4)]}


def tokens_to_beat_gptq(rows: list[dict]) -> dict:
    """Per width: the fewest training tokens (of the sweep and the full run) at which QAT (STE)
    scored below GPTQ, or None."""
    found = {}
    for width in dict.fromkeys(r["width"] for r in rows if r["width"] != "float"):
        gptq_ppl = next(r["ppl"] for r in rows if r["width"] == width and r["method"] == "GPTQ")
        ste = next(r for r in rows if r["width"] == width and r["method"] == "QAT (STE)")
        points = sorted({**{int(k): v for k, v in ste["sweep"].items()},
                         ste["training_tokens"]: ste["ppl"]}.items())
        found[width] = next((tokens for tokens, ppl in points if ppl < gptq_ppl), None)
    return found


def halves(run: Run, model) -> dict:
    """Perplexity on the prose and the code half of the test split, and each window's mean NLL
    (``window_nll``, for paired intervals)."""
    scores, nlls = {}, {}
    for domain in ("prose", "code"):
        batches = evaluation.windows(data.token_ids(run.tok, "test", domain), 512)[:run.windows]
        nll = evaluation.nll_per_window(model, batches,
                                        evaluation.batch_size_for(run.tok, 512)) / 511
        scores[domain] = round(math.exp(nll.double().mean().item()), 3)
        nlls[domain] = [round(v, 6) for v in nll.tolist()]
    return {**scores, "window_nll": nlls}


def qlora_comparison(run: Run) -> dict:
    """Ours and peft's QLoRA, and LoRA on the float model (the control), on the prose half of
    the train split (same A, same windows)."""
    args, tok = run.args, run.tok
    options = dict(lr=args.qlora_lr, batch_size=args.batch_size, seq_len=args.seq_len, seed=0,
                   domain="prose", progress=False)
    before = halves(run, run.base)
    theirs = peft_qlora.load_qlora(rank=args.rank)
    ours = qlora.prepare(copy.deepcopy(run.base), rank=args.rank)
    control = qlora.prepare(copy.deepcopy(run.base), rank=args.rank, base="float")
    for name, (a, b) in peft_qlora.lora_weights(theirs).items():   # the same starting point
        for model in (ours, control):
            layer = model.get_submodule(name)
            layer.lora_A.data.copy_(a)
            layer.lora_B.data.copy_(b)
    trained = {"ours": (ours, qlora.train), "peft": (theirs, peft_qlora.train),
               "float_lora": (control, qlora.train)}
    start = {name: halves(run, model) for name, (model, _) in trained.items()}
    result = {"float": before, "start": start, "steps": args.qlora_steps}
    for name, (model, train) in trained.items():
        log, seconds, peak = measured(lambda: train(model, tok, args.qlora_steps, **options))
        result[name] = {**halves(run, model),
                        "training_tokens": log["tokens"], "seconds": round(log["seconds"], 1),
                        "peak_memory_mb": round(peak / 2**20, 1),
                        "trainable_parameters": log["trainable_parameters"],
                        "training_state_bytes": log["training_state_bytes"]}
    full = copy.deepcopy(run.base)
    log = training.fine_tune(full, tok, 1, [{"params": list(full.parameters()), "lr": 1e-5}],
                        **{k: v for k, v in options.items() if k != "lr"})
    result["full_fine_tuning"] = {"trainable_parameters": log["trainable_parameters"],
                                  "training_state_bytes": log["training_state_bytes"]}
    x = data.calibration_samples(tok, 2, 128, seed=1, split="test")
    with torch.no_grad():
        adapters = ours(x).logits
        merged = qlora.merge(ours)(x).logits
        peft_before = theirs(x).logits
        peft_merged = peft_qlora.merge(theirs)(x).logits
    result["merge_max_logit_change"] = {"ours": (merged - adapters).abs().max().item(),
                                        "peft": (peft_merged - peft_before).abs().max().item()}
    print(json.dumps(without_window_nll(result), indent=1), flush=True)
    return result


def without_window_nll(value):
    """``value`` with every ``window_nll`` entry of its dicts left out (to print)."""
    if not isinstance(value, dict):
        return value
    return {k: without_window_nll(v) for k, v in value.items() if k != "window_nll"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few steps, 4 test windows")
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--scale-lr", type=float, default=1e-4)
    parser.add_argument("--samples", type=int, default=128, help="GPTQ calibration windows")
    parser.add_argument("--qlora-steps", type=int, default=32)
    parser.add_argument("--qlora-lr", type=float, default=1e-3)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--max-windows", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--qlora-only", action="store_true",
                        help="only the QLoRA comparison, to benchmarks/results/qat-qlora-*.json")
    parser.add_argument("--out", type=pathlib.Path, default=None)
    args = parser.parse_args()
    if args.quick:
        args.steps, args.qlora_steps, args.samples = 8, 4, 4
        args.max_windows = args.max_windows or 4
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    result = record.start(("torchao", "peft", "bitsandbytes"))
    run = Run(args)
    result.update({"test_windows": args.max_windows or "all",
              "qlora_settings": {"steps": args.qlora_steps, "lr": args.qlora_lr,
                                 "rank": args.rank, "batch_size": args.batch_size,
                                 "seq_len": args.seq_len},
              "command": " ".join(["python", "benchmarks/qat.py", *sys.argv[1:]]),
              "quick": args.quick, "qlora_only": args.qlora_only})
    out = args.out or record.result_path("qat-qlora" if args.qlora_only else "qat",
                                         suffix="-quick" if args.quick else "")
    if args.qlora_only:
        result["qlora"] = qlora_comparison(run)
        result["complete"] = True
        record.write(record.finish(result), out)
        print(f"wrote {out}")
        return
    result.update({"qat": {"steps": args.steps, "batch_size": args.batch_size,
                           "seq_len": args.seq_len, "lr": args.lr, "scale_lr": args.scale_lr,
                           "schedule": "warm-up 10 %, then constant", "optimizer": "AdamW"},
                   "gptq_calibration_windows": args.samples})
    result["rows"] = run.rows
    result["complete"] = False          # saved after every width: a stopped run keeps its rows
    run.add("float", "float (fp32)", run.base, tokens=0, seconds=0.0, peak=0)
    run.float_control()
    samples = data.calibration_samples(run.tok, args.samples, 512, seed=0)
    for bits, group_size in WIDTHS:
        run.width(bits, group_size, samples)
        record.write(record.finish(result), out)   # the load average so far: end, until the end
    result["tokens_to_beat_gptq"] = tokens_to_beat_gptq(run.rows)
    print("tokens QAT (STE) needs to beat GPTQ:", result["tokens_to_beat_gptq"], flush=True)
    result["qlora"] = qlora_comparison(run)
    result["complete"] = True
    record.write(record.finish(result), out)
    print(f"wrote {out}")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()

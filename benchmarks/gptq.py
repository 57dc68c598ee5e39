"""GPTQ on the whole of qcourse-tiny: ours vs llm-compressor, time and test perplexity; or
GPTQ against RTN on the real model, SmolLM2-135M, with KL divergence from the model as released.

    python benchmarks/gptq.py [--samples 128] [--seq-len 512] [--max-windows N]
    python benchmarks/gptq.py --model smollm2-135m [--windows 4] [--samples 16] [--seq-len 512]
                              [--bits 4 3] [--threads N]

Both quantize the same model with the same calibration samples (4-bit, asymmetric, group 128,
no act-order, damp 0.01, block 128) in one process, one run each; the script prints the wall
times and their ratio, then the test perplexity (whole split unless ``--max-windows``) of the
float model, RTN, ours and llm-compressor at 4 bits, and RTN and ours at 3 bits. Results go to
``benchmarks/results/gptq-<machine>-<date>.json`` with the run's record (qcourse.bench.record:
CPU model, threads, load average at start and end, versions).

``--model smollm2-135m``: RTN and our GPTQ (asymmetric, groups of 64: 128 does not divide the
hidden size 576; no act-order, damp 0.01) at 4 and 3 bits, each against the model as released
(its Q4_1 weights dequantized to float32, ``qcourse.models.smollm2``) on the first ``--windows``
test windows of 512 tokens: per-window NLL (perplexity, paired intervals), KL divergence from the
released model and top-1 agreement (:mod:`qcourse.evaluation.hidden`: window by window, one model
in memory, quantized in place and reloaded between methods), bits per weight of the linear
layers, and the wall time of each quantization. Calibration: ``--samples`` (default 16) windows
of ``--seq-len`` train tokens. Results go to
``benchmarks/results/gptq-smollm2-135m-<machine>-<date>[-w<bits>].json`` (rewritten after each
row; ``--bits 4`` and ``--bits 3`` can run as two processes, each file with its own record).
"""
from __future__ import annotations

import argparse
import copy
import os
import pathlib

from qcourse.bench import record

record.leave_script_folder_off_sys_path(__file__)   # its gguf.py is not the gguf library

import torch  # noqa: E402

from qcourse import data, evaluation, gptq, models, ptq  # noqa: E402
from qcourse.references import llm_compressor  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=None,
                        help="calibration windows (default 128; smollm2-135m: 16)")
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--max-windows", type=int, default=None)
    parser.add_argument("--out", type=pathlib.Path, default=None)
    parser.add_argument("--model", choices=("qcourse-tiny", "smollm2-135m"), default="qcourse-tiny")
    parser.add_argument("--windows", type=int, default=4,
                        help="smollm2-135m: score the first N test windows")
    parser.add_argument("--bits", type=int, nargs="+", default=[4, 3],
                        help="smollm2-135m: the bit widths to run (a run of one writes its file "
                             "with the suffix -w<bits>)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.model == "smollm2-135m":
        return real_model(args)

    torch.manual_seed(0)
    args.samples = args.samples or 128
    base, tok = models.load()
    samples = data.calibration_samples(tok, args.samples, args.seq_len, seed=0)
    ppl = lambda m: evaluation.perplexity(m, tok, max_windows=args.max_windows)  # noqa: E731
    result = {**record.start(("llmcompressor",)), "samples": args.samples,
              "seq_len": args.seq_len, "bits": 4, "group_size": 128,
              "max_windows": args.max_windows}

    ours, result["ours_seconds"] = record.timed(lambda: gptq.quantize_model(
        copy.deepcopy(base), samples, 4, 128, progress=False))
    print(f"ours: {result['ours_seconds']:.1f} s")
    # the same without re-collecting Hessians inside a block (llm-compressor's schedule)
    _, result["ours_one_pass_seconds"] = record.timed(lambda: gptq.quantize_model(
        copy.deepcopy(base), samples, 4, 128, progress=False, true_sequential=False))
    print(f"ours, one calibration pass per block: {result['ours_one_pass_seconds']:.1f} s")
    reason = llm_compressor.unavailable_reason()
    reference = None
    if reason is None:
        reference, result["reference_seconds"] = record.timed(lambda: llm_compressor.quantize_model(
            copy.deepcopy(base), samples, 4, 128))
        result["time_ratio_ours_over_reference"] = \
            result["ours_seconds"] / result["reference_seconds"]
        print(f"llm-compressor: {result['reference_seconds']:.1f} s; ours / llm-compressor = "
              f"{result['time_ratio_ours_over_reference']:.2f}")
    else:
        result["reference_skipped"] = reason
        print(f"llm-compressor skipped: {reason}")

    table = {"float": ppl(base),
             "rtn_4bit_g128": ppl(ptq.quantize_rtn(copy.deepcopy(base), 4, "group", 128)),
             "gptq_4bit_g128": ppl(ours)}
    if reference is not None:
        table["llmcompressor_4bit_g128"] = ppl(reference)
    del ours, reference
    table["rtn_3bit_g128"] = ppl(ptq.quantize_rtn(copy.deepcopy(base), 3, "group", 128))
    table["gptq_3bit_g128"] = ppl(gptq.quantize_model(copy.deepcopy(base), samples, 3, 128,
                                                      progress=False))
    result["perplexity"] = table
    for name, value in table.items():
        print(f"{name:26s} {value:8.2f}")
    if "llmcompressor_4bit_g128" in table:
        gap = table["gptq_4bit_g128"] / table["llmcompressor_4bit_g128"] - 1
        result["ours_vs_reference_ppl"] = gap
        print(f"ours vs llm-compressor perplexity: {gap:+.2%}")

    out = record.write(record.finish(result), args.out or record.result_path("gptq"))
    print(f"wrote {out}")


def real_model(args: argparse.Namespace) -> None:
    """RTN against GPTQ on SmolLM2-135M at 4 and 3 bits, groups of 64 (module docstring)."""
    import gc

    from qcourse import bench
    from qcourse.evaluation import hidden
    from qcourse.layers import QuantLinear
    from qcourse.models import decoder_layers, mapped, smollm2

    args.samples = args.samples or 16
    torch.manual_seed(0)
    model, tok = models.load(smollm2.NAME)
    samples = data.calibration_samples(tok, args.samples, args.seq_len, seed=0)
    protocol = (evaluation.REAL_QUICK if args.windows == 4
                else evaluation.Protocol("real-model", args.windows))
    result = {**record.start(), "model": smollm2.NAME, "samples": args.samples,
              "seq_len": args.seq_len, "group_size": 64, "symmetric": False,
              "protocol": {"name": protocol.name, "windows": protocol.windows,
                           "seq_len": protocol.seq_len, "split": protocol.split},
              "reference": "the model as released: Q4_1 weights dequantized to float32"}
    with mapped.streaming(model):
        ref = hidden.hidden_reference(model, tok, protocol)
    result["float"] = {"perplexity": ref.score.perplexity, "nll": ref.score.nll.tolist()}
    print(f"as released: {ref.score}")

    def rtn(bits):
        for block in decoder_layers(model):       # block by block, each block's float pages
            ptq.quantize_rtn(block, bits, "group", 64)   # given back once it is packed
            mapped.release(model)

    def gptq_(bits):
        with mapped.streaming(model):
            gptq.quantize_model(model, samples, bits, 64, progress=False)

    table = result["table"] = {}
    suffix = f"-w{args.bits[0]}" if len(args.bits) == 1 else ""
    out = args.out or record.result_path("gptq-smollm2-135m", suffix=suffix)
    for bits in args.bits:
        for label, quantize in (("RTN", rtn), ("GPTQ", gptq_)):
            _, seconds = record.timed(lambda: quantize(bits))
            layers = [layer for layer in model.modules() if isinstance(layer, QuantLinear)]
            weights = sum(layer.in_features * layer.out_features for layer in layers)
            stored = sum(evaluation.model_size_bytes(layer) for layer in layers)
            bench.dequantize_weights(model)        # the same logits, without unpacking per call
            with mapped.streaming(model):
                found = hidden.compare(model, ref)
            table[f"{label} W{bits} g64"] = {
                "bits": bits, "perplexity": found.score.perplexity,
                "nll": found.score.nll.tolist(), "kl": found.kl.tolist(),
                "top1": found.top1.tolist(), "kl_mean": found.kl_divergence,
                "top1_mean": found.top1_agreement, "layers": len(layers),
                "bits_per_weight": 8 * stored / weights, "seconds": seconds}
            print(f"{label} W{bits} g64: {found.score}, KL {found.kl_divergence:.4f}, top-1 "
                  f"{found.top1_agreement:.3f}, {8 * stored / weights:.2f} bits/weight, "
                  f"{len(layers)} layers, {seconds:.0f} s")
            record.write(record.finish(result), out)     # after every row: a partial run counts
            model = None                           # reload the released weights
            gc.collect()
            model, _ = models.load(smollm2.NAME)
    print(f"wrote {out}")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()

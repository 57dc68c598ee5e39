"""AWQ: our implementation against AutoAWQ 0.2.9 on qcourse-tiny, on the CPU, in one run.

    python benchmarks/awq.py              # timing + the quality table on the whole test split
    python benchmarks/awq.py --quick      # 4 calibration windows, 8 test windows, 4-bit only
    python benchmarks/awq.py --paired     # RTN, ours, GPTQ at 4 and 3 bits, per-window scores
    python benchmarks/awq.py --model smollm2-135m --windows 16 --samples 4   # SmolLM2-135M

1. Wall time of one whole-model quantization (4-bit, groups of 128, zero point), ours
   (``qcourse.awq.quantize_model``) and AutoAWQ's (``AutoAWQForCausalLM.quantize``, with the CPU
   fix of ``qcourse.references.autoawq.copying_quantizer``), on the same calibration windows; ratio printed.
2. Test perplexity (whole split unless ``--windows``) and real size at 4 and 3 bits for: RTN,
   ours, AutoAWQ (with the CPU fix) and GPTQ (``qcourse.gptq.quantize_model``) when it imports;
   ``--extra`` adds ours with AutoAWQ's ``duo_scaling`` (AutoAWQ's default, so that row and
   AutoAWQ's compare like with like) and AutoAWQ as released (4-bit, without the CPU fix).
3. The two clip searches on one layer (``model.layers.1.mlp.down_proj``, 3-bit g128, on the
   same calibration inputs): ours (``qcourse.awq.search_clip``: the group's min and max both
   multiplied by r) and AutoAWQ's own ``AwqQuantizer._compute_best_clip`` (w clamped to
   ±r·max|w| per group, then quantized min-max), each measured by the layer's output error.
4. ``--paired`` (alone): fp32, RTN, ours and GPTQ at 4 and 3 bits, on the same calibration
   windows, each scored on the whole test split with its negative log-likelihood kept per
   window (``qcourse.evaluation.score``), so that two rows can be compared pairwise
   (``qcourse.evaluation.paired_difference``); written as ``awq_paired-<machine>-<date>.json``.
5. ``--model smollm2-135m`` (alone): SmolLM2-135M as released (its Q4_1 weights dequantized to
   float32) against RTN and ours at 4 and 3 bits with groups of 64 (128 does not divide its
   hidden size, 576), each method on the same calibration windows and each quantized block by
   block in place on the memory-mapped model (AWQ through ``qcourse.models.unmapped``, so its
   folded scales write no page of the file), then dequantized once for scoring
   (``qcourse.bench.dequantize_weights``: the same logits). Per window: negative log-likelihood,
   KL divergence from the released model and top-1 agreement
   (``qcourse.evaluation.hidden``: the released model kept as its final hidden states); the α
   AWQ chose for every group; written as ``awq_smollm2-<machine>-<date>.json``.
Writes benchmarks/results/awq-<machine>-<date>.json with the run's record (qcourse.bench.record:
CPU model, threads, load average at start and end: wall times from a busy machine are not speed
figures).
"""
from __future__ import annotations

import argparse
import copy

from qcourse.bench import record

record.leave_script_folder_off_sys_path(__file__)   # this file is awq.py: `import awq` is AutoAWQ

import torch  # noqa: E402

from qcourse import awq, blocks, data, evaluation, models, paths, ptq  # noqa: E402
from qcourse.quant import QuantScheme  # noqa: E402
from qcourse.references import autoawq  # noqa: E402


def gptq_or_none(model, samples, bits):
    try:
        from qcourse import gptq
        return gptq.quantize_model(model, samples, bits, 128, progress=False)
    except Exception as err:  # GPTQ is another module's job; the table says when it is missing
        print(f"  GPTQ unavailable: {type(err).__name__}: {err}")
        return None


def output_error(x: torch.Tensor, w: torch.Tensor, w_hat: torch.Tensor) -> float:
    """Mean squared error of the layer's outputs over the tokens of ``x [T, K]``."""
    return ((x @ (w - w_hat).t()) ** 2).mean().item()


@torch.no_grad()
def clip_comparison(model, samples, bits: int = 3, group_size: int = 128,
                    layer: str = "model.layers.1.mlp.down_proj") -> dict:
    """One layer, the same inputs: output error without clipping, with our clip search and with
    AutoAWQ 0.2.9's (its ``_compute_best_clip`` and ``pseudo_quantize_tensor``, called on a
    quantizer object holding only the three fields they read: w_bit, group_size, zero_point)."""
    from awq.quantize.quantizer import AwqQuantizer  # AutoAWQ, as in qcourse.references.autoawq

    index = int(layer.split(".")[2])
    block, name = model.model.layers[index], layer.split(".", 3)[3]
    inputs = blocks.capture_block_inputs(model, samples)
    x = torch.cat(awq.capture_linear_inputs(block, inputs, [name])[name]).flatten(0, -2).float()
    w = block.get_submodule(name).weight.detach().float()
    n, k = w.shape
    scheme = QuantScheme(bits, group_size, symmetric=False)
    ratio = awq.search_clip(w, x, scheme)                                   # [N, K / g]
    ours = scheme.fake_quantize(w, clip_ratio=ratio)
    theirs = AwqQuantizer.__new__(AwqQuantizer)
    theirs.w_bit, theirs.group_size, theirs.zero_point = bits, group_size, True
    best_max = theirs._compute_best_clip(w, x)                              # [N, K / g, 1]
    clamped = torch.clamp(w.reshape(n, -1, group_size), -best_max, best_max).reshape(n, k)
    autoawq = theirs.pseudo_quantize_tensor(clamped)[0]
    plain = theirs.pseudo_quantize_tensor(w)[0]
    base = output_error(x, w, scheme.fake_quantize(w))
    return {
        "layer": layer, "bits": bits, "group_size": group_size, "tokens": x.shape[0],
        "ours": {"rule": "min and max of the group both multiplied by r, r in 1..0.55",
                 "groups_clipped": round((ratio < 1).float().mean().item(), 3),
                 "output_error_vs_no_clip": round(output_error(x, w, ours) / base, 3)},
        "autoawq": {"rule": "w clamped to ±r·max|w| of the group, r in 1..0.55, then min-max",
                    "groups_clipped": round((best_max.squeeze(-1) < w.reshape(
                        n, -1, group_size).abs().amax(-1)).float().mean().item(), 3),
                    "output_error_vs_no_clip": round(
                        output_error(x, w, autoawq) / output_error(x, w, plain), 3)},
    }


def paired_run(args) -> None:
    """Section 4 of the module docstring: every row's per-window scores on the whole split."""
    torch.manual_seed(0)
    torch.set_num_threads(1)   # as the recorded tables: one thread
    this_run = record.start()
    model, tok = models.load()
    samples = data.calibration_samples(tok, args.samples, 512, seed=0)
    runs = {"fp32": lambda bits: model,
            "RTN": lambda bits: ptq.quantize_rtn(copy.deepcopy(model), bits, "group", 128),
            "AWQ (ours)": lambda bits: awq.quantize_model(copy.deepcopy(model), samples, bits,
                                                          128, progress=False),
            "GPTQ": lambda bits: gptq_or_none(copy.deepcopy(model), samples, bits)}
    rows = {}
    for bits in args.bits:
        for name, run in runs.items():
            label = name if name == "fp32" else f"{name} {bits}-bit"
            if label in rows:
                continue
            quantized = run(bits)
            if quantized is None:
                continue
            scored = evaluation.score(quantized, tok, evaluation.WHOLE)
            rows[label] = {"ppl": round(scored.perplexity, 3),
                           "bytes": evaluation.model_size_bytes(quantized),
                           "nll": [round(v, 6) for v in scored.nll.tolist()]}
            print(f"{label}: ppl {rows[label]['ppl']} over {len(scored.nll)} windows", flush=True)
    result = {**record.finish(this_run), "device": "cpu",
              "calibration": f"{args.samples} x 512 tokens",
              "test_windows": f"all ({evaluation.WHOLE.label(len(scored.nll))})",
              "nll_unit": "mean nats per predicted token, one value per window, in order",
              "note": "quality only (no timings): the scores do not depend on the machine's load",
              "rows": rows}
    out = record.write(result, record.result_path("awq_paired"))  # not matched by "awq-*.json"
    print(f"wrote {out}")


def real_run(args) -> None:
    """Section 5 of the module docstring: SmolLM2-135M, RTN and ours at 4 and 3 bits, g64."""
    import gc

    from qcourse.bench import dequantize_weights
    from qcourse.evaluation.hidden import compare, hidden_reference
    from qcourse.layers import QuantLinear
    from qcourse.models import mapped, smollm2
    from qcourse.models.unmapped import copied_when_run

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    this_run = record.start()
    model, tok = models.load(smollm2.NAME)
    protocol = (evaluation.WHOLE if args.windows is None
                else evaluation.Protocol(f"first {args.windows} test windows", args.windows))
    samples = data.calibration_samples(tok, args.samples, 512, seed=0)
    with mapped.streaming(model):
        reference, seconds = record.timed(lambda: hidden_reference(model, tok, protocol))
    label = protocol.label(len(reference.windows))
    print(f"released model: {reference.score} ({seconds:.0f} s)", flush=True)
    rows = {"released (float32)": {"ppl": round(reference.score.perplexity, 4),
                                   "nll": [round(v, 6) for v in reference.score.nll.tolist()],
                                   "seconds": round(seconds, 1)}}
    del model
    for bits in args.bits:
        for method in ("RTN", "AWQ (ours)"):
            fresh, _ = models.load(smollm2.NAME)      # the released weights, mapped afresh
            alphas: dict = {}

            def quantize():
                if method == "RTN":               # ptq.quantize_rtn, one block at a time
                    for block in models.decoder_layers(fresh):
                        ptq.quantize_rtn(block, bits, "group", args.group_size)
                        mapped.release(fresh)
                else:
                    with copied_when_run(fresh):
                        awq.quantize_model(fresh, samples, bits, args.group_size,
                                           progress=False, report=alphas)
            _, quantize_seconds = record.timed(quantize)
            stored = [m for m in fresh.modules() if isinstance(m, QuantLinear)]
            weights = sum(m.in_features * m.out_features for m in stored)
            linear_bytes = sum(evaluation.model_size_bytes(m) for m in stored)
            size = evaluation.model_size_bytes(fresh)
            dequantize_weights(fresh)
            with mapped.streaming(fresh):
                found, seconds = record.timed(lambda: compare(fresh, reference))
            name = f"{method} {bits}-bit g{args.group_size}"
            rows[name] = {
                "ppl": round(found.score.perplexity, 4),
                "nll": [round(v, 6) for v in found.score.nll.tolist()],
                "kl": round(found.kl_divergence, 6),
                "kl_per_window": [round(v, 7) for v in found.kl.tolist()],
                "top1": round(found.top1_agreement, 5),
                "bytes": size, "linear_bits_per_weight": round(8 * linear_bytes / weights, 4),
                "quantize_seconds": round(quantize_seconds, 1), "score_seconds": round(seconds, 1)}
            if alphas:
                rows[name]["alphas"] = {n: round(s.alpha, 2) for n, s in alphas.items()}
            print(f"{name}: {found} ({quantize_seconds:.0f} s + {seconds:.0f} s)", flush=True)
            del fresh, stored
            gc.collect()
    result = {**record.finish(this_run), "device": "cpu", "model": smollm2.NAME,
              "gguf": smollm2.GGUF_FILE, "test_windows": label,
              "calibration": f"{args.samples} x 512 tokens", "group_size": args.group_size,
              "nll_unit": "mean nats per predicted token, one value per window, in order",
              "kl_unit": "KL(released || quantized), mean nats per predicted token",
              "note": "quality only: the seconds are wall times on a shared machine",
              "rows": rows}
    out = record.write(result, record.result_path("awq_smollm2"))  # not matched by "awq-*.json"
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=16, help="calibration windows of 512")
    parser.add_argument("--windows", type=int, default=None, help="test windows (default: all)")
    parser.add_argument("--bits", type=int, nargs="+", default=[4, 3])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--extra", action="store_true",
                        help="also ours with duo_scaling, and AutoAWQ as released (4-bit)")
    parser.add_argument("--paired", action="store_true",
                        help="fp32, RTN, ours and GPTQ with per-window scores (whole split)")
    parser.add_argument("--model", default="qcourse-tiny", choices=["qcourse-tiny", "smollm2-135m"],
                        help="smollm2-135m: RTN and ours against the released model (section 5)")
    parser.add_argument("--group-size", type=int, default=64, help="smollm2-135m: inputs per scale")
    parser.add_argument("--threads", type=int, default=1, help="smollm2-135m: torch threads")
    args = parser.parse_args()
    if args.model == "smollm2-135m":
        return real_run(args)
    if args.paired:
        return paired_run(args)
    if args.quick:
        args.samples, args.windows, args.bits = 4, 8, [4]
    torch.manual_seed(0)
    this_run = record.start(("autoawq",))   # timings mean little on a busy machine: the load
    model, tok = models.load()
    samples = data.calibration_samples(tok, args.samples, 512, seed=0)

    def ppl(m):
        return round(evaluation.perplexity(m, tok, max_windows=args.windows), 3)

    rows, timing = {"fp32": {"ppl": ppl(model), "bytes": evaluation.model_size_bytes(model)}}, {}
    print(f"fp32: {rows['fp32']}", flush=True)
    for bits in args.bits:
        runs = {
            "RTN": lambda: ptq.quantize_rtn(copy.deepcopy(model), bits, "group", 128),
            "AWQ (ours)": lambda: awq.quantize_model(copy.deepcopy(model), samples, bits, 128,
                                                     progress=False),
            "AutoAWQ (CPU fix)": lambda: autoawq.quantize_model(paths.TINY_DIR, samples, bits),
            "GPTQ": lambda: gptq_or_none(copy.deepcopy(model), samples, bits),
        }
        if args.extra:
            runs["AWQ (ours, duo_scaling)"] = lambda: awq.quantize_model(
                copy.deepcopy(model), samples, bits, 128, progress=False, duo_scaling=True)
        if args.extra and bits == 4:
            runs["AutoAWQ (as released)"] = lambda: autoawq.quantize_model(
                paths.TINY_DIR, samples, bits, fix_cpu_copy=False)
        for name, run in runs.items():
            quantized, seconds = record.timed(run)
            if quantized is None:
                continue
            timing[f"{name} {bits}-bit"] = round(seconds, 1)
            size = evaluation.model_size_bytes(quantized) if "AutoAWQ" not in name else None
            rows[f"{name} {bits}-bit"] = {"ppl": ppl(quantized), "bytes": size,
                                          "seconds": round(seconds, 1)}
            print(f"{name} {bits}-bit: {rows[f'{name} {bits}-bit']}", flush=True)
            del quantized
    clip = clip_comparison(model, samples)
    print(f"clip searches on {clip['layer']}: {clip}", flush=True)
    ours, ref = timing.get("AWQ (ours) 4-bit"), timing.get("AutoAWQ (CPU fix) 4-bit")
    ratio = round(ref / ours, 2) if ours and ref else None
    print(f"\nwall time, whole model, 4-bit g128: ours {ours} s, AutoAWQ {ref} s: "
          f"AutoAWQ / ours = {ratio}")
    result = {**record.finish(this_run), "device": "cpu",
              "calibration": f"{args.samples} x 512 tokens", "test_windows": args.windows or "all",
              "rows": rows, "time_ratio_autoawq_over_ours": ratio, "clip_search": clip}
    out = record.write(result, record.result_path("awq", suffix="-quick" if args.quick else ""))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

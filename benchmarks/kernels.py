"""Benchmark the quantized matmul kernels against fp16 ``F.linear`` on one GPU, in one run.

    python benchmarks/kernels.py            # full run, about 3-5 minutes on an H100
    python benchmarks/kernels.py --quick    # one shape, to check the set-up

For each weight shape N×K (4096×4096, 14336×4096, 4096×14336) and rows M, it times fp16
F.linear (cuBLAS), the Triton W4A16 kernel, the CUDA W4A16 GEMV (M ≤ 16) and the Triton W8A8
GEMM (the int8 matmul alone: quantizing the activations is not timed) with
``triton.testing.do_bench`` (median, L2 flushed between calls) twice: as an eager Python call, and
replayed from a CUDA graph (GPU time alone, as a serving engine's decode loop runs; speed-ups and
bandwidth use these). It checks each result against the PyTorch reference first, and reports
speed-ups over fp16, achieved bandwidth on the bytes each
kernel must read (qcourse.kernels.roofline) against the card's spec-sheet peak, and the targets
of issue 7. Writes benchmarks/results/kernels-<device>-<date>.json and a roofline PNG.
"""
from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import platform
import re
import sys

import torch
import torch.nn.functional as F

from qcourse import kernels
from qcourse.kernels import roofline

SHAPES = [(4096, 4096), (14336, 4096), (4096, 14336)]      # (N, K): Llama-3-8B-sized layers
M_VALUES = [1, 16, 64, 256]
W8A8_EXTRA_M = [2048, 4096]                                 # the compute-bound regime
GROUP_SIZE = 128
RESULTS = pathlib.Path(__file__).parent / "results"
# issue 7's targets on H100/H200: (kernel, M, minimum speed-up over fp16, minimum % of peak BW)
TARGETS = [("w4a16_triton", 1, 2.5, 65.0), ("w4a16_triton", 16, 1.8, None),
           ("w8a8_triton", 2048, 1.3, None), ("w8a8_triton", 4096, 1.3, None)]


def bench_ms(fn) -> float:
    """Median time of one call in ms (triton.testing.do_bench: L2 cleared before each call)."""
    import triton.testing
    result = triton.testing.do_bench(fn, warmup=25, rep=200, quantiles=[0.5])
    return float(result[0] if isinstance(result, (list, tuple)) else result)


def bench_graph_ms(fn) -> float:
    """The same, with ``fn`` captured once in a CUDA graph and replayed: GPU time without the
    Python launch overhead (argument checks, Triton's launcher), as a server's decode loop runs
    kernels. For kernels of a few microseconds, the eager time above is mostly that overhead."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):                      # warm-up outside the graph (compiles, allocates)
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return bench_ms(graph.replay)


def check(name: str, got: torch.Tensor, expected: torch.Tensor) -> float:
    """Relative max error against the reference; refuses to time a wrong kernel."""
    err = ((got.float() - expected.float()).abs().max() / expected.float().abs().max()).item()
    if not err < 2e-2:
        raise RuntimeError(f"{name} disagrees with its reference: relative max error {err:.3g}")
    return err


def w8a8_operands(x: torch.Tensor, weight: torch.Tensor):
    """Per-token int8 activations and per-channel int8 weights (absmax, symmetric)."""
    from qcourse.quant import quantize
    xq, xs, _ = quantize(x, 8, symmetric=True, granularity="channel", axis=0)
    wq, ws, _ = quantize(weight, 8, symmetric=True, granularity="channel", axis=0)
    return xq, wq, xs.reshape(-1), ws.reshape(-1)


def run_shape(n: int, k: int, m_values: list[int], gpu, cuda_ok: bool) -> list[dict]:
    gen = torch.Generator(device="cuda").manual_seed(0)
    weight = torch.randn(n, k, device="cuda", generator=gen, dtype=torch.float16) * 0.02
    qweight, scales, zeros = kernels.prepare_w4a16(weight, GROUP_SIZE)
    rows = []
    for m in m_values:
        x = torch.randn(m, k, device="cuda", generator=gen, dtype=torch.float16)
        fp16_ms = (bench_ms(lambda: F.linear(x, weight)),
                   bench_graph_ms(lambda: F.linear(x, weight)))
        candidates = {}
        if m in M_VALUES:
            ref = kernels.w4a16_reference(x, qweight, scales, zeros, GROUP_SIZE)
            candidates["w4a16_triton"] = (
                lambda: kernels.w4a16_matmul(x, qweight, scales, zeros, GROUP_SIZE), ref,
                roofline.bytes_w4a16(m, n, k, GROUP_SIZE), False)
            if cuda_ok and m <= 16:
                candidates["w4a16_cuda"] = (
                    lambda: kernels.cuda.w4a16_gemv(x, qweight, scales, zeros, GROUP_SIZE), ref,
                    roofline.bytes_w4a16(m, n, k, GROUP_SIZE), False)
        x_int8, w_int8, x_scale, w_scale = w8a8_operands(x, weight)
        candidates["w8a8_triton"] = (
            lambda: kernels.w8a8_matmul(x_int8, w_int8, x_scale, w_scale),
            kernels.w8a8_reference(x_int8, w_int8, x_scale, w_scale),
            roofline.bytes_w8a8(m, n, k), True)
        flops = roofline.matmul_flops(m, n, k)
        rows.append(row("fp16_linear", m, n, k, fp16_ms, fp16_ms, roofline.bytes_fp16(m, n, k),
                        flops, gpu, 0.0, False))
        for name, (fn, ref, nbytes, int8) in candidates.items():
            err = check(name, fn(), ref)
            times = (bench_ms(fn), bench_graph_ms(fn))
            rows.append(row(name, m, n, k, times, fp16_ms, nbytes, flops, gpu, err, int8))
        for r in rows[-1 - len(candidates):]:
            print(format_row(r), flush=True)
    return rows


def row(kernel, m, n, k, times, fp16_times, nbytes, flops, gpu, err, int8) -> dict:
    """``times``/``fp16_times``: (eager ms, CUDA-graph ms); rates and speed-ups use graph times."""
    (eager_ms, ms), (fp16_eager_ms, fp16_ms) = times, fp16_times
    seconds = ms / 1e3
    r = {"kernel": kernel, "M": m, "N": n, "K": k, "ms": round(ms, 5),
         "speedup_vs_fp16": round(fp16_ms / ms, 3), "eager_ms": round(eager_ms, 5),
         "eager_speedup_vs_fp16": round(fp16_eager_ms / eager_ms, 3), "bytes": nbytes, "flops": flops,
         "GBps": round(nbytes / seconds / 1e9, 1), "TFLOPS": round(flops / seconds / 1e12, 2),
         "rel_error_vs_reference": err}
    if gpu is not None:
        r["pct_peak_bandwidth"] = round(100 * nbytes / seconds / 1e9 / gpu.bandwidth_gbs, 1)
        r["roofline_ms"] = round(1e3 * roofline.roofline_seconds(flops, nbytes, gpu, int8), 5)
    return r


def format_row(r: dict) -> str:
    peak = f"{r['pct_peak_bandwidth']:5.1f}%" if "pct_peak_bandwidth" in r else "   n/a"
    return (f"{r['kernel']:13s} M={r['M']:5d} N={r['N']:6d} K={r['K']:6d}  {r['ms'] * 1e3:9.1f} us"
            f"  x{r['speedup_vs_fp16']:5.2f} vs fp16  {r['GBps']:7.0f} GB/s ({peak} of peak)"
            f"  {r['TFLOPS']:7.1f} TFLOPS  | eager {r['eager_ms'] * 1e3:7.1f} us"
            f" x{r['eager_speedup_vs_fp16']:5.2f}")


def verdicts(rows: list[dict]) -> list[str]:
    lines = []
    for kernel, m, speedup, pct in TARGETS:
        for r in (r for r in rows if r["kernel"] == kernel and r["M"] == m):
            ok = r["speedup_vs_fp16"] >= speedup and (pct is None or
                                                      r.get("pct_peak_bandwidth", 0) >= pct)
            want = f"x{speedup}" + (f" and {pct}% of peak" if pct else "")
            lines.append(f"{'PASS' if ok else 'MISS'} {kernel} M={m} {r['N']}x{r['K']}: "
                         f"x{r['speedup_vs_fp16']:.2f}, {r.get('pct_peak_bandwidth', 'n/a')}% "
                         f"of peak (target {want})")
    return lines


def plot(rows: list[dict], gpu, path: pathlib.Path, device: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if gpu is not None:
        bw = gpu.bandwidth_gbs * 1e9
        for peak, label in ((gpu.fp16_tflops, "FLOPS fp16"), (gpu.int8_tops, "OPS int8")):
            xs = [0.1, peak * 1e12 / bw, 1e4]                     # the ridge point in the middle
            ax.plot(xs, [min(a * bw / 1e12, peak) for a in xs], "--", lw=1,
                    label=f"roof: {gpu.bandwidth_gbs:.0f} GB/s, {peak:.0f} T{label}")
    for kernel, marker in (("fp16_linear", "o"), ("w4a16_triton", "s"), ("w4a16_cuda", "^"),
                           ("w8a8_triton", "D")):
        pts = [r for r in rows if r["kernel"] == kernel]
        if pts:
            ax.scatter([r["flops"] / r["bytes"] for r in pts], [r["TFLOPS"] for r in pts],
                       marker=marker, label=kernel, s=22)
    ax.set(xscale="log", yscale="log", xlabel="arithmetic intensity (FLOP / byte moved)",
           ylabel="achieved TFLOPS (TOPS for int8)", title=f"Roofline: {device}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one shape only")
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("benchmarks/kernels.py needs a CUDA GPU (torch.cuda.is_available() is "
                         "False here). Nothing was measured. The CPU tests "
                         "(pytest tests/test_kernels.py) check correctness without one.")
    import triton
    device = torch.cuda.get_device_name()
    gpu = roofline.lookup_gpu(device)
    print(f"{device}: " + (f"peak {gpu.bandwidth_gbs:.0f} GB/s, {gpu.fp16_tflops:.0f} TFLOPS fp16 "
                           f"({gpu.source})" if gpu else "not in the spec table: no % of peak"))
    cuda_ok, cuda_error = True, None
    try:
        kernels.load_cuda()
    except Exception as err:  # report and carry on with the Triton kernels
        cuda_ok, cuda_error = False, f"{type(err).__name__}: {err}"
        print(f"CUDA extension not built: {cuda_error}")
    rows = []
    for n, k in SHAPES[:1] if args.quick else SHAPES:
        rows += run_shape(n, k, M_VALUES + W8A8_EXTRA_M, gpu, cuda_ok)
    lines = verdicts(rows)
    print("\n".join(["", "Targets of issue 7:"] + lines))
    stamp = datetime.datetime.now(datetime.timezone.utc)
    slug = re.sub(r"[^a-z0-9]+", "-", device.lower()).strip("-")
    args.out.mkdir(parents=True, exist_ok=True)
    base = args.out / f"kernels-{slug}-{stamp:%Y-%m-%d}"
    record = {"device": device, "date": stamp.isoformat(timespec="seconds"),
              "gpu_spec": None if gpu is None else gpu.__dict__, "torch": torch.__version__,
              "triton": triton.__version__, "cuda": torch.version.cuda,
              "python": platform.python_version(), "group_size": GROUP_SIZE,
              "quick": args.quick, "cuda_extension_error": cuda_error,
              "timing": "triton.testing.do_bench median, L2 flushed, warmup 25 ms, rep 200 ms; "
                        "ms/speedup: one CUDA-graph replay per call (GPU time); eager_ms: "
                        "the Python call as a user makes it (launch overhead included)",
              "targets": lines, "rows": rows}
    base.with_suffix(".json").write_text(json.dumps(record, indent=1))
    plot(rows, gpu, base.with_suffix(".png"), device)
    print(f"wrote {base}.json and {base}.png")


if __name__ == "__main__":
    sys.exit(main())

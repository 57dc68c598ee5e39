"""Count the bytes the W4A16 kernels ask memory for, old and new, on Llama-7B/8B-sized layers.

    python benchmarks/kernel_traffic.py      # a couple of minutes on a CPU; no GPU needed

A decoding kernel is memory-bound: it can be no faster than the bytes it moves. This script
counts, in Triton's interpreter (``qcourse.kernels.traffic``), the bytes each kernel requests
from every tensor, with the launch an H100 (132 SMs) would get, and compares them with the
ideal (``qcourse.kernels.w4a16_traffic``): qweight, scales and zeros once each. Issue 27's
target: within 1.15× of that at M = 1 and M = 16, group size 128, for the redesigned kernels;
the first kernels (``triton_w4a16_v1``, timed on an H100 on 2026-11-27) are counted beside them.

Big layers are counted by ``traffic.estimate`` (the first, one interior and the last program per
grid axis, scaled); the script first checks, on a mid-size layer, that the estimate equals the
full count for every kernel. Counts are deterministic: the same on any machine, busy or not (the
load average is recorded anyway). Writes ``benchmarks/results/kernel_traffic-<arch>-<date>.json``
through ``qcourse.bench.record``.
"""
from __future__ import annotations

import argparse
import pathlib
import sys

from qcourse.bench import record as run_record

SHAPES = [(4096, 4096), (14336, 4096), (4096, 14336)]     # (N, K): Llama-7B/8B linear layers
M_VALUES = [1, 16]
GROUP_SIZE = 128
CHECK = [(1, 1000, 2048), (16, 1000, 2048)]               # (M, N, K): estimate == full count
TARGET = 1.15
RESULTS = pathlib.Path(__file__).parent / "results"


def mb(nbytes: int) -> str:
    return f"{nbytes / 1e6:9.2f}"


def report(r) -> str:
    parts = "  ".join(f"{name} {mb(req)}/{mb(ideal).strip()}" for name, (req, ideal) in
                      r.parts.items())
    return (f"{r.kernel:3s} M={r.m:2d} {r.n:5d}x{r.k:<5d} weights x{r.weight_ratio:6.3f} of ideal"
            f" | MB requested/ideal: {parts}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS)
    args = parser.parse_args(argv)
    from qcourse import kernels
    kernels.device()            # before triton is imported: the interpreter on a CPU
    from qcourse.kernels.w4a16_traffic import H100_SMS, KERNELS, requested_bytes
    record = run_record.start(["triton"])

    checks = []
    for m, n, k in CHECK:
        for kernel in KERNELS:
            full = requested_bytes(kernel, m, n, k, GROUP_SIZE, sample=False)
            sampled = requested_bytes(kernel, m, n, k, GROUP_SIZE, sample=True)
            checks.append({"kernel": kernel, "M": m, "N": n, "K": k,
                           "estimate_equals_full_count": sampled.parts == full.parts})
            print(f"check {kernel} M={m} {n}x{k}: estimate == full count: "
                  f"{sampled.parts == full.parts}", flush=True)
    if not all(c["estimate_equals_full_count"] for c in checks):
        raise SystemExit("the estimate differs from the full count: not recording")

    rows, verdicts = [], []
    for n, k in SHAPES:
        for m in M_VALUES:
            for kernel in KERNELS:
                r = requested_bytes(kernel, m, n, k, GROUP_SIZE)
                print(report(r), flush=True)
                rows.append({"kernel": kernel, "M": m, "N": n, "K": k,
                             "weight_ratio": round(r.weight_ratio, 4),
                             "bytes": {name: {"requested": req, "ideal": ideal}
                                       for name, (req, ideal) in r.parts.items()},
                             "launches": r.launches})
                if kernel == "new":
                    verdicts.append(f"{'PASS' if r.weight_ratio <= TARGET else 'MISS'} new M={m} "
                                    f"{n}x{k}: weights requested x{r.weight_ratio:.3f} of ideal "
                                    f"(target <= x{TARGET})")
    print("\n".join(["", f"Targets of issue 27 (g = {GROUP_SIZE}):"] + verdicts))
    record.update({
        "group_size": GROUP_SIZE, "sms": H100_SMS,
        "counted": "bytes requested by tl.load/tl.store/atomics in Triton's interpreter "
                   "(masked-off elements not counted, repeats counted; atomics as a read "
                   "and a write), with the launch a 132-SM H100 gets; big layers by "
                   "traffic.estimate, checked against the full count first",
        "kernels": {"old": "qcourse.kernels.triton_w4a16_v1 (timed on an H100, 2026-11-27)",
                    "new": "qcourse.kernels.triton_w4a16"},
        "estimate_checks": checks, "targets": verdicts, "rows": rows})
    out = run_record.write(run_record.finish(record),
                           run_record.result_path("kernel_traffic", folder=args.out))
    print(f"load average at start {record['load_average']['start']}, at end "
          f"{record['load_average']['end']}; wrote {out}")


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark GGUF quantization and llama.cpp decoding on this machine's CPU, in one run.

    python benchmarks/gguf.py            # about 2-4 minutes on 2 CPU cores
    python benchmarks/gguf.py --quick    # three types, to check the set-up

1. Time to quantize every 2-D weight of qcourse-tiny (5.77M parameters) to each block type:
   ``qcourse.gguf.quantize`` (vectorised numpy), llama.cpp's quantizer (``llama_model_quantize``,
   pure, 1 thread; it also reads and writes the files), and gguf-py's numpy quantizer where it has
   one (legacy types only). Best of ``--repeats`` runs.
2. Greedy decoding speed in llama.cpp (1 thread, 64 new tokens after "def ", best of 3) for the
   F16, Q8_0 and Q4_K_M files.

Prints ratios from this one run and writes benchmarks/results/gguf-<machine>-<date>.json with the
run's record (qcourse.bench.record: CPU model, threads, load average at start and end, versions).
"""
from __future__ import annotations

from qcourse.bench import record

# this file is called gguf.py: `import gguf` must find gguf-py, not this script
record.leave_script_folder_off_sys_path(__file__)

import argparse  # noqa: E402
import pathlib  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from qcourse import models  # noqa: E402
from qcourse.gguf import export, llamacpp, quantize, read_gguf  # noqa: E402
from qcourse.gguf.mixes import GGML_TYPES  # noqa: E402

PURE_FTYPE = {"Q8_0": "Q8_0", "Q4_0": "Q4_0", "Q4_1": "Q4_1", "Q5_0": "Q5_0", "Q5_1": "Q5_1",
              "Q2_K": "Q2_K", "Q3_K": "Q3_K_M", "Q4_K": "Q4_K_M", "Q5_K": "Q5_K_M", "Q6_K": "Q6_K"}


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def gguf_py_quantizer(qtype: str):
    """gguf-py's numpy quantizer for ``qtype``, or None where it has none (the K-quants)."""
    import gguf
    import gguf.quants

    probe = np.zeros((1, 256), dtype=np.float32)
    try:
        gguf.quants.quantize(probe, gguf.GGMLQuantizationType(GGML_TYPES[qtype]))
    except NotImplementedError:
        return None
    return lambda a: gguf.quants.quantize(a, gguf.GGMLQuantizationType(GGML_TYPES[qtype]))


def quantize_times(f32_path: pathlib.Path, workdir: pathlib.Path, qtypes, repeats: int) -> list[dict]:
    source = read_gguf(f32_path)
    weights = [source.tensor(n) for n, i in source.tensors.items() if len(i.shape) == 2]
    rows = []
    for qtype in qtypes:
        ours = best_of(lambda: [quantize(w, qtype) for w in weights], repeats)
        dst = workdir / f"{qtype}.gguf"
        theirs = best_of(lambda: llamacpp.quantize_file(f32_path, dst, PURE_FTYPE[qtype], pure=True),
                         repeats)
        reference = gguf_py_quantizer(qtype)
        gguf_py = best_of(lambda: [reference(w) for w in weights], repeats) if reference else None
        rows.append({"qtype": qtype, "ours_s": ours, "llama_cpp_s": theirs, "gguf_py_s": gguf_py})
        ratio = f"{gguf_py / theirs:7.1f}x" if gguf_py else "      -"
        print(f"{qtype:6s} ours {ours:7.3f} s  llama.cpp {theirs:6.3f} s  gguf-py "
              f"{'%7.3f s' % gguf_py if gguf_py else '      -  '}   ours/llama.cpp "
              f"{ours / theirs:6.1f}x   gguf-py/llama.cpp {ratio}", flush=True)
    return rows


def decode_speeds(model, tok, workdir: pathlib.Path, ftypes, n_threads: int) -> list[dict]:
    rows = []
    for ftype in ftypes:
        path = workdir / f"mix-{ftype}.gguf"
        export(model, tok, path, ftype)
        llm = llamacpp.load(path, n_threads=n_threads)
        speed = llamacpp.tokens_per_second(llm, new_tokens=64, repeats=3)
        rows.append({"ftype": ftype, "tokens_per_s": speed, "file_bytes": path.stat().st_size})
    base = rows[0]["tokens_per_s"]
    for row in rows:
        speed = row["tokens_per_s"]
        print(f"{row['ftype']:7s} {speed:8.0f} tokens/s  ({speed / base:4.2f}x "
              f"{rows[0]['ftype']})  file {row['file_bytes'] / 1e6:5.2f} MB", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="three block types, one repeat")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp threads for decoding")
    args = parser.parse_args()
    this_run = record.start(("llama_cpp", "gguf"), threads=args.threads)
    qtypes = ["Q8_0", "Q4_0", "Q4_K"] if args.quick else list(PURE_FTYPE)
    repeats = 1 if args.quick else args.repeats
    model, tok = models.load()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = pathlib.Path(tmp)
        f32_path = workdir / "tiny-F32.gguf"
        export(model, tok, f32_path, "F32")
        print(f"quantizing the 43 weight matrices of qcourse-tiny (best of {repeats}):")
        quant_rows = quantize_times(f32_path, workdir, qtypes, repeats)
        print(f"\nllama.cpp greedy decoding, {args.threads} thread(s):")
        decode_rows = decode_speeds(model, tok, workdir, ["F16", "Q8_0", "Q4_K_M"], args.threads)
    result = {**record.finish(this_run), "model": "qcourse-tiny",
              "note": "llama.cpp quantize time includes reading/writing the files",
              "quantize": quant_rows, "decode": decode_rows}
    out = record.write(result, record.result_path("gguf"))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()

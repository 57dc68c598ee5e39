"""The ``qcourse`` command line: ``qcourse tour``, ``qcourse train-tiny``, ``qcourse grade``, and
the commands chapters add (:data:`CHAPTER_COMMANDS`)."""
from __future__ import annotations

import argparse
import importlib
import sys
import time


def tour(args: argparse.Namespace) -> None:
    """Load the embedded model, print its size at each precision, its test perplexity and a sample."""
    from qcourse import data, evaluation, formats, models

    start = time.time()
    model, tokenizer = models.load(args.model)
    n = models.parameter_count(model)
    print(f"model: {args.model}, {n:,} parameters")
    print(f"corpus test split: {len(data.corpus('test')):,} characters")
    print("size of the weights at each precision:")
    for name, bits, group in [("FP32", 32, None), ("FP16/BF16", 16, None), ("INT8", 8, None),
                              ("INT4, group 128 (+fp16 scale, zero)", 4, 128)]:
        size = formats.memory_bytes(n, bits, group, 16, 16 if group else 0)
        print(f"  {name:<38} {formats.human_bytes(size):>10}")
    ppl = evaluation.perplexity(model, tokenizer, "test")
    print(f"test perplexity (seq_len 512): {ppl:.2f}")
    prompt = "def read_file(path):\n"
    print(f"greedy sample:\n{prompt}{evaluation.generate(model, tokenizer, prompt, 48)}")
    print(f"done in {time.time() - start:.0f}s")


def train_tiny(args: argparse.Namespace) -> None:
    from qcourse.models import train
    train.main(args.rest)


def grade(args: argparse.Namespace) -> None:
    from qcourse import grading
    grading.main(args.folder, args.timeout, args.memory_mb, args.out)


def release(args: argparse.Namespace) -> None:
    from qcourse import grading
    for path in grading.release(args.notebooks, args.out, keep_outputs=args.keep_outputs,
                                graded=not args.no_graded):
        print(f"wrote {path}")


# Chapters that add commands of their own: each module has ``add_commands(subparsers)`` and
# imports its heavy dependencies only inside the command functions, so `qcourse --help` is quick.
CHAPTER_COMMANDS = (
    "qcourse.deploy.commands",     # serve, loadtest, export-deploy (notebook 08)
    "qcourse.bench",               # compare (notebook 09)
)


def main(argv: list[str] | None = None) -> int | None:
    parser = argparse.ArgumentParser(prog="qcourse", description="qcourse: an open course on LLM quantization.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("tour", help="load the embedded model; print its sizes, perplexity and a sample")
    p.add_argument("--model", default="qcourse-tiny")
    p.set_defaults(func=tour)
    p = sub.add_parser("train-tiny", help="train qcourse-tiny from scratch (options: --help)", add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=train_tiny)
    p = sub.add_parser("grade", help="grade a folder of submitted notebooks: roster and summaries")
    p.add_argument("folder", help="notebooks in it (student = file name) or in one subfolder each "
                                  "(student = folder name)")
    p.add_argument("--timeout", type=int, default=600, help="seconds per cell (default 600)")
    p.add_argument("--memory-mb", type=int, default=3000, help="memory per notebook (default 3000)")
    p.add_argument("--out", help="where roster.csv/.json and summary.md/.html go "
                                 "(default FOLDER/grades)")
    p.set_defaults(func=grade)
    p = sub.add_parser("release", help="student copies of course notebooks (graded mode on)")
    p.add_argument("notebooks", nargs="+")
    p.add_argument("--out", required=True, help="folder for the copies")
    p.add_argument("--keep-outputs", action="store_true", help="keep the cells' outputs")
    p.add_argument("--no-graded", action="store_true", help="leave solution() available")
    p.set_defaults(func=release)
    for name in CHAPTER_COMMANDS:
        importlib.import_module(name).add_commands(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

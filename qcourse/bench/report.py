"""The comparison as a Markdown table, a CSV file and a Pareto plot (size against quality)."""
from __future__ import annotations

import csv
import math
import os


def _get(key: str, scale: float = 1.0):
    return lambda r: r.get(key, math.nan) / scale


def _task(name: str):
    return lambda r: r.get("tasks", {}).get(name, {}).get("acc", math.nan)


COLUMNS = [  # (heading, row -> value, format)
    ("method", lambda r: r["method"], "{}"),
    ("runtime", lambda r: r["runtime"], "{}"),
    ("size MB", _get("size_bytes", 1e6), "{:.2f}"),
    ("bits/w", _get("bits_per_weight"), "{:.2f}"),
    ("PPL", _get("perplexity"), "{:.2f}"),
    ("KL", _get("kl_divergence"), "{:.4f}"),
    ("top-1", _get("top1_agreement"), "{:.3f}"),
    ("greedy", _get("greedy_match"), "{:.1f}"),
    ("next-line", _task("qcourse_next_line"), "{:.3f}"),
    ("cloze", _task("qcourse_docstring_cloze"), "{:.3f}"),
    ("quant s", _get("quantize_seconds"), "{:.1f}"),
    ("tok/s", _get("tokens_per_second"), "{:.1f}"),
    ("peak MB", _get("peak_memory_bytes", 1e6), "{:.0f}"),
]
TIMING_FIELDS = ("quantize_seconds", "tokens_per_second", "peak_memory_bytes", "load_seconds")


def merge_timings(result: dict, timings: dict) -> dict:
    """``result`` (a quality run) with the speed and memory columns of ``timings`` (a
    ``--timings`` run of the same model, e.g. on a quiet machine) in each row of the same
    method; ``timings_from`` says which run they come from (date, machine, load average)."""
    if result["model"] != timings["model"]:
        raise ValueError(f"timings of {timings['model']} cannot go with a run of {result['model']}")
    found = {r["method"]: r for r in timings["rows"] if r["status"] == "ok"}
    rows = []
    for row in result["rows"]:
        row = {k: v for k, v in row.items() if k not in TIMING_FIELDS}
        row.update({k: found[row["method"]][k] for k in TIMING_FIELDS
                    if row["method"] in found and k in found[row["method"]]})
        rows.append(row)
    return {**result, "rows": rows,
            "timings_from": {k: timings.get(k) for k in ("date", "machine", "load_average",
                                                          "threads")}}


def table_rows(result: dict) -> list[list[str]]:
    """The comparison as text cells, one list per method (failed and skipped rows say why)."""
    out = []
    for row in result["rows"]:
        if row["status"] != "ok":
            out.append([row["method"], row["runtime"], f"{row['status']}: {row['error']}"])
            continue
        out.append([fmt.format(get(row)) for _, get, fmt in COLUMNS])
    return out


def format_table(result: dict) -> str:
    """The comparison as a Markdown table, with the settings and machine above it."""
    heading = [h for h, _, _ in COLUMNS]
    lines = ["| " + " | ".join(heading) + " |", "|" + "---|" * len(heading)]
    for cells in table_rows(result):
        lines.append("| " + " | ".join(cells) + " |")
    m = result["machine"]
    timed = result.get("timings_from")
    timings = "" if not timed else (
        f"\nquant s, tok/s and peak MB: the --timings run of {timed['date'][:10]} on "
        f"{timed['machine']['cpu']}, load average {timed['load_average']['start'][0]:.1f} at "
        f"its start")
    return (f"{'quick' if result['quick'] else 'full'} comparison of {result['model']}: "
            f"{result['settings_text']}\nmachine: {m['cpu']}, {m['cores']} cores; "
            f"{result['date']}{timings}\n\n" + "\n".join(lines))


def write_csv(result: dict, path: str | os.PathLike) -> None:
    """One line per method: every measured field (task scores flattened)."""
    fields = ["method", "label", "runtime", "status", "size_bytes", "bits_per_weight",
              "perplexity", "kl_divergence", "top1_agreement", "greedy_match",
              "quantize_seconds", "tokens_per_second", "peak_memory_bytes", "error"]
    tasks = sorted({t for r in result["rows"] for t in r.get("tasks", {})})
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(fields + [f"{t}_{m}" for t in tasks for m in ("acc", "acc_norm")])
        for row in result["rows"]:
            scores = row.get("tasks", {})
            writer.writerow([row.get(k, "") for k in fields]
                            + [scores.get(t, {}).get(m, "") for t in tasks
                               for m in ("acc", "acc_norm")])


def pareto_front(points: dict[str, tuple[float, float]]) -> list[str]:
    """Names of the points no other point beats on both coordinates (both lower is better):
    ``{"a": (1, 5), "b": (2, 3), "c": (3, 4)}`` -> ``["a", "b"]``, sorted by the first."""
    front = [name for name, (x, y) in points.items()
             if not any((x2 <= x and y2 <= y) and (x2, y2) != (x, y)
                        for other, (x2, y2) in points.items() if other != name)]
    return sorted(front, key=lambda n: points[n])


def plot(result: dict, path: str | os.PathLike | None = None):
    """Pareto plot: size against perplexity and against KL divergence, the front joined."""
    import matplotlib.pyplot as plt

    rows = [r for r in result["rows"] if r["status"] == "ok"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key, label in ((axes[0], "perplexity", "test perplexity (lower is better)"),
                           (axes[1], "kl_divergence", "KL(float || method) per token")):
        points = {r["method"]: (r["size_bytes"] / 1e6, r[key]) for r in rows}
        front = pareto_front(points)
        for name, (x, y) in points.items():
            ax.scatter(x, y, color="C3" if name in front else "C0", zorder=3)
            ax.annotate(name, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.plot(*zip(*(points[n] for n in front)), color="C3", lw=1, label="Pareto front")
        ax.set(xscale="log", xlabel="size of the artifact (MB, log scale)", ylabel=label)
        if key == "kl_divergence":
            ax.set_yscale("symlog", linthresh=1e-3)
        ax.legend(fontsize=8)
    m = result["machine"]
    fig.suptitle(f"{result['model']}, {'quick subset' if result['quick'] else 'whole test split'}"
                 f" — {m['cpu']}, {result['date'][:10]}", fontsize=9)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
        plt.close(fig)
    return fig


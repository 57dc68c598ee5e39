import subprocess
import sys

from qcourse import paths


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "qcourse.cli", *args], capture_output=True,
                          text=True, timeout=300)


def test_help_lists_the_commands():
    out = run_cli("--help")
    assert out.returncode == 0
    for command in ("tour", "train-tiny", "grade", "release"):
        assert command in out.stdout


def test_unknown_command_fails_with_usage():
    out = run_cli("fly")
    assert out.returncode != 0 and "invalid choice" in out.stderr


def test_cache_dir_honours_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("QCOURSE_CACHE", str(tmp_path / "c"))
    assert paths.cache_dir() == tmp_path / "c" and (tmp_path / "c").is_dir()

"""The sandbox a submission's kernel runs in (``qcourse grade --sandbox``): Linux namespaces.

Without a sandbox, a submitted notebook runs with the instructor's rights: its code can read and
write every file the instructor can (the package, the Python environment, other students'
notebooks, the grades and their cache), reach the network and signal other processes. The
grader never trusts what the kernel says about itself (it runs the checks on the answers and
compares in another process), but code that edits the package on disk changes what those
checks do.

With ``--sandbox`` the kernel starts through ``unshare`` (util-linux, on every Linux) and
:mod:`qcourse.grading.jail`:

* a **mount namespace** in which the whole file system is read-only except the submission's
  own scratch copy (and a private ``/dev/shm``); the course cache is an overlay whose writes
  stay in the scratch copy;
* a **network namespace** with no interface up: no address is reachable, 127.0.0.1 included;
* a **PID namespace** (it sees and can signal only its own processes) and an IPC namespace;
* **no privileges**: run as root, the kernel runs as ``nobody``; run as a user, in a user
  namespace with every capability dropped (``no_new_privs``), so the mounts cannot be undone.

The kernel talks to the grader over Unix sockets in the scratch folder (the network namespace
has no TCP). What the sandbox does not stop: using CPU and memory (the grader's time and memory
limits do), reading files that are readable to everyone (the course, the package: nothing
secret), lying through its own output (the grader never trusts it), and kernel exploits.

Availability: ``unshare`` must be allowed to create these namespaces, i.e. Linux, and either
root (a container needs ``CAP_SYS_ADMIN``, e.g. ``docker run --cap-add SYS_ADMIN``, or
``--privileged``) or unprivileged user namespaces (on by default on Debian, Fedora, Arch;
Ubuntu 24.04 restricts them through AppArmor). :func:`status` probes it once.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import pathlib
import shutil
import stat
import subprocess
import sys
import tempfile

from qcourse import paths

NOBODY = 65534
JAIL = pathlib.Path(__file__).with_name("jail.py")
KERNEL_NAME = "qcourse-sandbox"

WITHOUT_SANDBOX = ("each notebook's code runs with your rights: it can change files you can "
                   "change (the package, other submissions, the grades) and reach the network")

PROBE = """
import os, socket, sys
try:
    open(os.path.join(sys.argv[1], ".qcourse-sandbox-probe"), "w")
    sys.exit("the package folder is writable")
except OSError:
    pass
try:
    socket.create_connection(("127.0.0.1", 9), timeout=2)
    sys.exit("127.0.0.1 is reachable")
except ConnectionRefusedError:
    sys.exit("127.0.0.1 is reachable (a port answered 'refused')")
except OSError:
    pass
print("sandboxed")
"""


@dataclasses.dataclass(frozen=True)
class Status:
    """Whether the sandbox works here, and in words how (or why not)."""

    available: bool
    how: str


def _is_root() -> bool:
    return os.geteuid() == 0


def jail_command(scratch: pathlib.Path, *, cache: pathlib.Path | None = None,
                 protect: tuple[pathlib.Path, ...] = ()) -> list[str]:
    """The command prefix that runs what follows it inside the sandbox, with ``scratch`` its
    only writable folder (and ``cache`` an overlay over the real cache)."""
    userns = [] if _is_root() else ["--user", "--map-root-user"]
    drop = ["--uid", str(NOBODY), "--gid", str(NOBODY)] if _is_root() else []
    return ["unshare", *userns, "--net", "--mount", "--pid", "--ipc", "--fork", "--kill-child",
            "--", sys.executable, "-I", "-S", str(JAIL), "--scratch", str(scratch),
            *(["--cache", str(cache)] if cache else []),
            *[a for p in protect for a in ("--protect", str(p))], *drop, "--"]


@functools.cache
def status() -> Status:
    """Probe the sandbox once: run a short script in it that must neither write the package
    folder nor reach 127.0.0.1."""
    if sys.platform != "linux" or shutil.which("unshare") is None or shutil.which("setpriv") is None:
        return Status(False, "it needs Linux with util-linux's unshare and setpriv")
    scratch = pathlib.Path(tempfile.mkdtemp(prefix="qcourse-sandbox-probe-"))
    try:
        os.chmod(scratch, 0o755)
        command = jail_command(scratch, protect=(paths.PACKAGE_DIR,)) + [
            sys.executable, "-I", "-S", "-c", PROBE, str(paths.PACKAGE_DIR)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        except subprocess.TimeoutExpired:
            return Status(False, "the probe did not finish within 60 s")
    finally:
        remove_tree(scratch)
    if done.returncode == 0 and done.stdout.strip() == "sandboxed":
        how = ("as root: each kernel runs as nobody" if _is_root()
               else "in a user namespace, without capabilities")
        return Status(True, f"Linux namespaces through unshare, {how}; read-only files, "
                            "no network, its own processes")
    reason = (done.stderr.strip().splitlines() or [done.stdout.strip() or "no output"])[-1]
    return Status(False, f"unshare could not build it here ({reason})")


def kernel_manager(scratch: pathlib.Path, *, protect: tuple[pathlib.Path, ...] = ()):
    """A Jupyter kernel manager whose kernel starts inside the sandbox, talking over Unix
    sockets in ``scratch`` (its working folder)."""
    from jupyter_client import AsyncKernelManager
    from jupyter_client.kernelspec import KernelSpecManager

    specs = scratch / "kernels"
    argv = jail_command(scratch / "work", cache=paths.cache_dir().resolve(), protect=protect) + [
        sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (specs / KERNEL_NAME).mkdir(parents=True, exist_ok=True)
    (specs / KERNEL_NAME / "kernel.json").write_text(json.dumps(
        {"argv": argv, "display_name": "qcourse sandbox", "language": "python"}))
    manager = AsyncKernelManager(kernel_name=KERNEL_NAME,
                                 kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(specs)]),
                                 transport="ipc", ip=str(scratch / "work" / "kernel"))
    manager.connection_file = str(scratch / "work" / "kernel.json")
    return manager


def environment(scratch: pathlib.Path, base: dict[str, str]) -> dict[str, str]:
    """The kernel's environment in the sandbox: home, temporary and tool folders in the
    scratch copy, the course cache where the grader has it, no network-hungry libraries."""
    home = scratch / "work" / ".home"
    for folder in (home, scratch / "work" / ".tmp"):
        folder.mkdir(parents=True, exist_ok=True)
    return {**base, "HOME": str(home), "TMPDIR": str(scratch / "work" / ".tmp"),
            "IPYTHONDIR": str(home / ".ipython"), "MPLCONFIGDIR": str(home / ".matplotlib"),
            "XDG_CACHE_HOME": str(home / ".cache"), "QCOURSE_CACHE": str(paths.cache_dir().resolve()),
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def remove_tree(folder: pathlib.Path) -> None:
    """Delete ``folder``, including folders a kernel or the overlay left without permissions
    (each folder is made accessible before it is entered)."""
    for root, dirs, _ in os.walk(folder):
        for name in dirs:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                os.chmod(path, stat.S_IRWXU)
    shutil.rmtree(folder, ignore_errors=True)

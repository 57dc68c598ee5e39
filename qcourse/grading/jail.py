"""Inside fresh Linux namespaces, lock the file system and drop privileges, then run a command.

Run by :mod:`qcourse.grading.sandbox` as ``unshare [--user --map-root-user] --net --mount --pid
--ipc --fork --kill-child -- python -I -S jail.py OPTIONS -- COMMAND...``: a standalone script
(nothing from qcourse is imported, so nothing on disk that a learner could have changed runs
before the lock). As root of the new mount namespace it

1. makes every mount read-only (the whole file system: the package, the Python environment,
   the submissions, the grades) except ``--scratch`` (the submission's working copy);
2. mounts ``--cache`` as an overlay whose writes land in the scratch folder (the learner's code
   reads the course cache and may add to it; nothing it writes reaches the real cache), or
   leaves it read-only where overlays are not allowed;
3. gives the command its own ``/dev/shm`` and ``/proc`` (it sees only its own processes);
4. checks that each ``--protect`` path is now read-only, and stops if one is not;
5. drops privileges for good: as real root, to uid/gid ``--uid``/``--gid`` (nobody); in a user
   namespace, every capability (so the mounts cannot be undone), with ``no_new_privs``.

The network namespace has no interface up: no address, not even 127.0.0.1, is reachable.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys

PSEUDO = ("/proc", "/sys", "/dev")   # kernel file systems: remounted or left to permissions


def mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode == 0


def mount_points() -> list[str]:
    """Every mount point of this namespace (``/proc/self/mountinfo``, octal escapes undone)."""
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        points = {line.split()[4].encode().decode("unicode_escape") for line in f}
    return sorted(points)


def under(path: str, roots: tuple[str, ...]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def lock(scratch: str, cache: str | None) -> list[str]:
    """Steps 1-3; returns what could not be done (notes for the grader's log)."""
    notes = []
    if not mount("--make-rprivate", "/"):
        raise SystemExit("jail: could not make the mounts private (no mount namespace?)")
    if not mount("--bind", scratch, scratch):
        raise SystemExit(f"jail: could not bind the scratch folder {scratch}")
    writable = [scratch]
    if cache and os.path.isdir(cache):
        upper, work = os.path.join(scratch, ".cache-upper"), os.path.join(scratch, ".cache-work")
        os.makedirs(upper, exist_ok=True)
        os.makedirs(work, exist_ok=True)
        if mount("-t", "overlay", "overlay", "-o",
                 f"lowerdir={cache},upperdir={upper},workdir={work}", cache):
            writable.append(cache)
        else:
            notes.append(f"the cache {cache} is read-only (no overlay file system here)")
    for point in mount_points():
        if under(point, tuple(writable)) or under(point, PSEUDO):
            continue
        if not mount("-o", "remount,bind,ro", point):
            notes.append(f"could not make {point} read-only")
    mount("-t", "tmpfs", "-o", "size=512m,mode=1777", "tmpfs", "/dev/shm")
    if not mount("-t", "proc", "proc", "/proc"):
        notes.append("could not mount a private /proc")
    return notes


def check_read_only(paths: list[str]) -> None:
    """Step 4: stop unless every path is on a read-only mount now."""
    for path in paths:
        if os.path.exists(path) and not os.statvfs(path).f_flag & os.ST_RDONLY:
            raise SystemExit(f"jail: {path} is still writable; refusing to run the submission")


def drop_privileges(scratch: str, uid: int | None, gid: int | None) -> list[str]:
    """Step 5, as the ``setpriv`` arguments that end in the command (``uid`` None: root of a
    user namespace, which keeps its uid and loses its capabilities)."""
    common = ["--no-new-privs", "--bounding-set=-all", "--inh-caps=-all"]
    if uid is None:
        return ["setpriv", *common, "--"]
    for root, dirs, files in os.walk(scratch):         # real root: hand the scratch to nobody
        os.chown(root, uid, gid)
        for name in files:
            os.chown(os.path.join(root, name), uid, gid, follow_symlinks=False)
    return ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", *common, "--"]


def main(argv: list[str]) -> None:
    if "--" not in argv:
        raise SystemExit("usage: jail.py --scratch DIR [--cache DIR] [--protect PATH]... -- CMD...")
    split = argv.index("--")
    parser = argparse.ArgumentParser(prog="jail.py")
    parser.add_argument("--scratch", required=True)
    parser.add_argument("--cache")
    parser.add_argument("--protect", action="append", default=[])
    parser.add_argument("--uid", type=int, help="drop to this uid (real root only)")
    parser.add_argument("--gid", type=int)
    args = parser.parse_args(argv[:split])
    command = argv[split + 1:]
    for note in lock(os.path.realpath(args.scratch), args.cache and os.path.realpath(args.cache)):
        print(f"jail: {note}", file=sys.stderr)
    check_read_only(args.protect)
    setpriv = drop_privileges(os.path.realpath(args.scratch), args.uid, args.gid)
    os.execvp(setpriv[0], setpriv + command)


if __name__ == "__main__":
    main(sys.argv[1:])

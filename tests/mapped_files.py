"""Helpers of the memory-map tests (test_mapped.py, test_unmapped.py): what /proc/self/smaps says
about one file's mappings, and a private copy of qcourse-tiny's checkpoint to map."""
import pathlib
import shutil

from qcourse import models


def mapping_bytes(path: str, field: str) -> int:
    """The sum of ``field`` (``"Rss"``: pages resident; ``"Anonymous"``: pages written in place,
    each now a private copy) over every mapping of ``path``, in bytes, from /proc/self/smaps."""
    total, inside = 0, False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            fields = line.split()
            if "-" in fields[0] and len(fields) >= 5 and ":" not in fields[0]:
                inside = len(fields) == 6 and fields[5] == path
            elif inside and fields[0] == f"{field}:":
                total += int(fields[1]) * 1024
    return total


def private_tiny(folder: pathlib.Path):
    """qcourse-tiny loaded from a private copy of its checkpoint under ``folder``: the kernel
    reclaims only pages that one mapping alone uses, and other tests of the session keep their
    own qcourse-tiny (the same file) mapped."""
    copy = shutil.copytree(models.resolve(models.DEFAULT_MODEL), folder / "qcourse-tiny")
    return models.load(str(copy))

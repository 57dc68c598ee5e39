"""The cache of ``qcourse compare``: a row is stored under a key of everything it depends on, so a
rerun recomputes only what changed."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib

from qcourse.paths import DATA_DIR, PACKAGE_DIR

from .record import library_versions
from .registry import Method, Settings

CACHE_VERSION = 1
COMMON_MODULES = ("qcourse.bench", "qcourse.evaluation", "qcourse.data", "qcourse.tasks",
                  "qcourse.references.lm_eval")


def source_hash(modules) -> str:
    """sha1 of the source files of ``modules`` (every file of a package)."""
    digest = hashlib.sha1()
    for module in sorted(set(modules)):
        relative = pathlib.Path(*module.split(".")[1:])
        folder, file = PACKAGE_DIR / relative, (PACKAGE_DIR / relative).with_suffix(".py")
        files = sorted(folder.rglob("*.py")) if folder.is_dir() else [file] if file.exists() else []
        for path in files:
            digest.update(path.relative_to(PACKAGE_DIR).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def cache_key(method: Method, s: Settings) -> str:
    """What a cached row depends on: the method, its options, the settings, the sources of the
    code it runs, the library versions, the model's weights and the task files."""
    weights = DATA_DIR / "qcourse-tiny" / "model.safetensors"
    task_files = sorted((DATA_DIR / "tasks").glob("*.jsonl"))
    payload = {
        "version": CACHE_VERSION, "method": method.name, "options": method.options,
        "settings": dataclasses.asdict(s),
        "code": source_hash(method.modules + COMMON_MODULES),
        "libraries": library_versions(("lm_eval",) + method.libraries),
        "data": [hashlib.sha1(p.read_bytes()).hexdigest() for p in [weights] + task_files
                 if p.exists()],
    }
    return hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

"""The caches of ``qcourse compare``: a rerun recomputes only what changed.

Two levels, each a JSON file per key in the cache folder:

    row      one method's whole row, keyed by the method, its options, the settings, the
             sources of the code it runs, the library versions, the float model and the test
             data (:func:`cache_key`): nothing is recomputed, not even the quantization
    quality  the quality measurements of one artifact (per-window NLL, KL and top-1, greedy
             match per prompt, task answers per question), keyed by the artifact's own
             :func:`fingerprint` (its weights and layer types, or its file's bytes), the float
             model's, the test data and the evaluation code (:func:`quality_key`)

The quality level is what makes a rerun cheap when a method's code changes but its output does
not (the same weights give the same fingerprint), and it is shared: any benchmark that measures a
model with :func:`qcourse.bench.comparison.quality` (the same settings and scoring code) reuses
what another run measured of bit-identical weights, whichever chapter quantized them.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib

from qcourse.paths import DATA_DIR, PACKAGE_DIR

from .record import library_versions
from .registry import Method, Settings

CACHE_VERSION = 2
COMMON_MODULES = ("qcourse.bench", "qcourse.evaluation", "qcourse.data", "qcourse.tasks",
                  "qcourse.references.lm_eval")
# the code a quality measurement runs: scoring, tasks, and the forward of the course's layers
QUALITY_MODULES = ("qcourse.evaluation", "qcourse.data", "qcourse.tasks",
                   "qcourse.references.lm_eval", "qcourse.layers", "qcourse.quant",
                   "qcourse.gguf.llamacpp")
QUALITY_SETTINGS = ("windows", "compare_windows", "prompts", "new_tokens", "task_limit")


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


def fingerprint(obj) -> str:
    """16 hex digits of sha1 over what decides an artifact's outputs:

    * an ``nn.Module``: the class of every submodule, and every tensor of its state dict (name,
      dtype, shape, bytes);
    * a tensor: its dtype, shape and bytes;
    * a file path (a GGUF file): its bytes.
    """
    import torch
    from torch import nn

    digest = hashlib.sha1()

    def add_tensor(name: str, t: torch.Tensor) -> None:
        t = t.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())

    if isinstance(obj, nn.Module):
        for name, module in obj.named_modules():
            digest.update(f"{name}:{type(module).__module__}.{type(module).__qualname__}".encode())
        for name, tensor in obj.state_dict().items():
            add_tensor(name, tensor)
    elif isinstance(obj, torch.Tensor):
        add_tensor("", obj)
    elif isinstance(obj, (str, os.PathLike)):
        with open(obj, "rb") as f:
            for block in iter(lambda: f.read(1 << 24), b""):
                digest.update(block)
    else:
        raise TypeError(f"cannot fingerprint a {type(obj).__name__}: pass a model, a tensor or "
                        "a file path")
    return digest.hexdigest()[:16]


def _task_files() -> list[str]:
    return [hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted((DATA_DIR / "tasks").glob("*.jsonl"))]


def cache_key(method: Method, s: Settings, model_key: str = "") -> str:
    """What a cached row depends on: the method, its options, the settings, the sources of the
    code it runs, the library versions, the float model and its test data (``model_key``:
    :meth:`~qcourse.bench.registry.Context.model_key`) and the task files."""
    payload = {
        "version": CACHE_VERSION, "method": method.name, "options": method.options,
        "settings": dataclasses.asdict(s),
        "code": source_hash(method.modules + COMMON_MODULES),
        "libraries": library_versions(("lm_eval",) + method.libraries),
        "model": model_key, "tasks": _task_files(),
    }
    return hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def quality_key(artifact_fingerprint: str, model_key: str, s: Settings) -> str:
    """What the quality of an artifact depends on: its :func:`fingerprint`, the float model and
    test data it is compared with (``model_key``), the quality settings, the scoring code, the
    task files and the library versions."""
    payload = {
        "version": CACHE_VERSION, "artifact": artifact_fingerprint, "model": model_key,
        "settings": {k: getattr(s, k) for k in QUALITY_SETTINGS},
        "code": source_hash(QUALITY_MODULES), "tasks": _task_files(),
        "libraries": library_versions(("lm_eval", "llama_cpp")),
    }
    return hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

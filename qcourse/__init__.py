"""qcourse: the package behind an open course on LLM quantization.

The package mirrors the course. It is a building of rooms, bottom to top (:data:`ROOMS`): a
module imports from its own room and the rooms below it, never above. This map is the one
statement of the layout: ``tests/test_architecture.py`` checks every import against it and that
every module of the tree is in it, and that the README's and ARCHITECTURE.md's tables list the
same modules. Learner-facing imports stay short: ``from qcourse import gptq``.

Importing ``qcourse`` imports nothing else (no torch, no submodule).
"""
from __future__ import annotations

from typing import NamedTuple


class Room(NamedTuple):
    """A floor of the package: its ``name``, what lives there, and its ``modules`` (each module
    or subpackage of ``qcourse`` with what it holds)."""

    name: str
    holds: str
    modules: dict[str, str]


ROOMS: tuple[Room, ...] = (
    Room("foundations", "number formats, the quantization formulas, bit packing, hardware specs", {
        "paths": "where the package, its data and its cache live",
        "formats": "number formats and their memory",
        "quant": "`QuantScheme`, the quantization formulas",
        "pack": "bit packing",
        "nf4": "NF4 block quantization",
        "mx": "FP8, MX and NVFP4",
        "transforms": "equivalence transforms",
        "hardware": "the GPU spec table",
    }),
    Room("data and models", "the corpus, the models, measuring them, fine-tuning them", {
        "data": "corpus, calibration windows",
        "models": "loader, qcourse-tiny, the Llama block, MiniLM, layer helpers",
        "evaluation": "perplexity from any runtime, KL, greedy agreement, speed, memory",
        "eval": "the former name of `evaluation`",
        "training": "the fine-tuning loop",
        "tasks": "evaluation tasks built from the corpus",
    }),
    Room("building blocks", "what the methods are built from", {
        "calib": "range observers, activation statistics",
        "blocks": "block-by-block runner",
        "layers": "`QuantLinear` and the other quantized layers",
    }),
    Room("methods", "one algorithm per module, and the experiments that motivate them", {
        "ptq": "RTN, W8A8, LLM.int8(), NF4",
        "smoothquant": "SmoothQuant",
        "gptq": "GPTQ and OBQ",
        "awq": "AWQ",
        "qat": "quantization-aware training",
        "qlora": "QLoRA",
        "hqq": "HQQ",
        "rotate": "QuaRot rotations",
        "kvcache": "KV-cache quantization",
        "experiments": "AWQ's salient weights, rotations at 4 bits",
    }),
    Room("formats and runtimes", "files people deploy and the code that runs and serves them", {
        "gptq_checkpoint": "GPTQ checkpoints",
        "gguf": "GGUF, K-quants, llama.cpp",
        "kernels": "Triton and CUDA kernels, roofline",
        "deploy": "serving, load tests, runtimes, deployment files",
    }),
    Room("references", "the production libraries we cross-check against, imported only here", {
        "references": "llm-compressor, AutoAWQ, bitsandbytes, torchao, peft, hqq, "
                      "ONNX Runtime, transformers' loaders, lm-eval",
    }),
    Room("measurement", "every method on the same model and data, memory and money, diagnosis", {
        "bench": "`qcourse compare`, benchmark records",
        "cost": "memory and money",
        "diagnose": "diagnosing a quantized model",
    }),
    Room("course", "what learners and instructors touch", {
        "exercises": "exercises with `check()`",
        "grading": "grading submitted notebooks",
        "viz": "widgets and plots",
        "cli": "the `qcourse` command",
        "doctor": "`qcourse doctor`: what this environment can run",
        "colab": "the installer of every notebook's Colab cell",
    }),
)


def room_of(module: str) -> int:
    """The floor (0 = foundations) of ``qcourse.<module>`` or of any module inside it
    (``"gguf.writer"`` is in the room of ``gguf``); KeyError for a module in no room."""
    top = module.removeprefix("qcourse.").split(".")[0]
    for level, room in enumerate(ROOMS):
        if top in room.modules:
            return level
    raise KeyError(f"qcourse.{top} is in no room: add it to qcourse.ROOMS")

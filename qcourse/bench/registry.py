"""What a comparison is made of: the evaluation :class:`Settings`, the :class:`Method` registry
(:data:`METHODS`), the :class:`Artifact` a method produces and the :class:`Context` methods share.

Imports only the standard library at import time (``qcourse --help`` stays quick).
"""
from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable

TEST_WINDOWS_QUICK = 16


@dataclasses.dataclass(frozen=True)
class Settings:
    """What every method is measured on. :func:`settings` gives the full and the quick ones."""

    windows: int | None          # test windows of 512 tokens for PPL (None: all of them)
    compare_windows: int         # of those, the first ones on which KL and top-1 are measured
    prompts: int                 # greedy-continuation prompts (64 tokens each, test split)
    new_tokens: int              # tokens of each greedy continuation
    task_limit: int | None       # examples per task (None: all)
    decode_tokens: int           # tokens decoded to time the runtime
    gptq_samples: tuple[int, int]    # calibration windows (count, length)
    awq_samples: tuple[int, int]
    qat_steps: int
    threads: int = 1
    runtime: bool = True         # measure decode speed and peak memory (a fresh process each)
    quality: bool = True         # measure perplexity, KL, greedy match and tasks

    def describe(self) -> str:
        windows = "all test windows" if self.windows is None else \
            f"the first {self.windows} test windows"
        tasks = "all examples" if self.task_limit is None else f"{self.task_limit} examples"
        speed = f"decode speed over {self.decode_tokens} tokens" if self.runtime else \
            "no speed or memory measurement"
        quality = (f"PPL on {windows} of 512 tokens, KL and top-1 on the first "
                   f"{self.compare_windows}; greedy match over {self.prompts} prompts x "
                   f"{self.new_tokens} tokens; tasks on {tasks} each; ") if self.quality else \
            "no quality measurement; "
        return (f"{quality}GPTQ calibration {self.gptq_samples[0]}x{self.gptq_samples[1]}, AWQ "
                f"{self.awq_samples[0]}x{self.awq_samples[1]} tokens; {speed}; "
                f"{self.threads} thread(s)")


def settings(quick: bool = False, threads: int = 1) -> Settings:
    """The full evaluation (the recorded run) or ``quick``: a subset of the test windows, of the
    prompts and of the task examples, and smaller calibration sets (stated in the output)."""
    if quick:
        return Settings(windows=TEST_WINDOWS_QUICK, compare_windows=TEST_WINDOWS_QUICK,
                        prompts=4, new_tokens=16, task_limit=25, decode_tokens=8,
                        gptq_samples=(16, 256), awq_samples=(8, 256), qat_steps=20,
                        threads=threads)
    return Settings(windows=None, compare_windows=32, prompts=16, new_tokens=32, task_limit=100,
                    decode_tokens=16, gptq_samples=(64, 512), awq_samples=(16, 512),
                    qat_steps=100, threads=threads)


@dataclasses.dataclass
class Artifact:
    """What a method produced. ``scorer``: what quality is measured on (anything
    :func:`qcourse.evaluation.logits_fn` takes); ``runtime`` and ``served``: how a fresh process
    loads it to decode (:func:`~qcourse.bench.runtime_probe.probe`): ``"torch"`` and the model,
    ``"bnb"`` and the mode, or ``"gguf"`` and the file."""

    scorer: object
    size_bytes: int
    runtime: str
    served: object
    fingerprint: str = ""        # what the quality cache knows it by (caching.fingerprint)


@dataclasses.dataclass(frozen=True)
class Method:
    """A row of the comparison: ``quantize(context) -> Artifact`` for the float model of the
    context. ``modules``: the qcourse modules it runs (their sources key the cache);
    ``libraries``: the other libraries whose versions key it."""

    name: str
    label: str
    runtime: str
    quantize: Callable[[Context], Artifact]
    modules: tuple[str, ...]
    options: dict = dataclasses.field(default_factory=dict)
    libraries: tuple[str, ...] = ()


METHODS: dict[str, Method] = {}
# What ``qcourse compare --model NAME`` runs by default, in the order a recorded run measures
# them (most telling first): SmolLM2's hidden size 576 takes groups of 64 or 32, not 128, and a
# QAT or bitsandbytes row of it would take hours here or does not apply.
DEFAULT_METHODS: dict[str, tuple[str, ...]] = {
    "qcourse-tiny": ("fp32", "rtn-channel", "rtn-g128", "gptq", "awq", "nf4", "bnb-nf4", "w8a8",
                     "llm-int8", "gguf-Q4_K_M", "gguf-Q8_0", "gguf-Q2_K", "gguf-Q6_K",
                     "gguf-Q5_K_M", "gguf-Q3_K_M", "qat"),
    "smollm2-135m": ("fp32", "w8a8-tensor", "w8a8", "llm-int8", "rtn-g64", "gptq-g64",
                     "awq-g64", "gguf-Q8_0", "gguf-Q4_K_M", "gguf-Q2_K", "nf4", "rtn-channel",
                     "gguf-Q6_K", "gguf-Q3_K_M", "gguf-Q5_K_M", "rtn-g32"),
}


def default_methods(model_name: str) -> list[str]:
    """The methods ``qcourse compare`` runs on ``model_name`` when none are named (every
    registered method for a model without a list)."""
    return list(DEFAULT_METHODS.get(model_name, METHODS))


def register(method: Method) -> Method:
    """Add ``method`` to :data:`METHODS` (a later chapter registers its method in one line)."""
    METHODS[method.name] = method
    return method


def check_methods(names) -> list[str]:
    """``names`` if every one is registered, else ValueError listing the known ones."""
    names = list(names)
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(unknown)}: choose from "
                         f"{', '.join(METHODS)}")
    if not names:
        raise ValueError("no method to compare")
    return names


class Context:
    """The float model and everything methods share: tokenizer, settings, calibration samples,
    the float model's GGUF file and its greedy continuations (each made once, on demand)."""

    def __init__(self, model, tokenizer, settings: Settings, workdir: pathlib.Path,
                 model_name: str = "qcourse-tiny", progress: bool = True) -> None:
        self.model, self.tokenizer, self.settings = model, tokenizer, settings
        self.model_name, self.progress = model_name, progress
        self.workdir = workdir
        self._made: dict = {}

    def once(self, key, make):
        if key not in self._made:
            self._made[key] = make()
        return self._made[key]

    def calibration(self, count: int, length: int):
        from qcourse import data
        return self.once(("calib", count, length),
                         lambda: data.calibration_samples(self.tokenizer, count, length, seed=0))

    def float_gguf(self) -> tuple[pathlib.Path, bool]:
        """The GGUF file llama.cpp quantizes the model from, and whether it is already quantized
        (llama.cpp then dequantizes each tensor first): the real model's released file
        (``smollm2-135m``: Q4_1, the very weights of the float model), else the float model
        written as an F32 file."""
        from qcourse import gguf
        from qcourse.models import smollm2

        def write():
            if self.model_name == smollm2.NAME:
                return smollm2.gguf_path(), True
            path = self.workdir / f"{pathlib.Path(self.model_name).name}-F32.gguf"
            gguf.export(self.model, self.tokenizer, path, "F32")
            return path, False
        return self.once("f32", write)

    def model_key(self) -> str:
        """What identifies the float model and its test data: a fingerprint of its weights and
        of the test windows its tokenizer makes (:func:`qcourse.bench.caching.fingerprint`)."""
        from qcourse import evaluation

        from .caching import fingerprint
        return self.once("model_key", lambda: fingerprint(self.model) + "-" + fingerprint(
            evaluation.evaluation_windows(self.tokenizer)))

    def window(self) -> list[int]:
        """The first test window (512 tokens): what the runtime probe processes at once."""
        from qcourse import evaluation
        return self.once("window", lambda: evaluation.evaluation_windows(
            self.tokenizer, max_windows=1)[0].tolist())

    def prompts(self):
        from qcourse import evaluation
        return self.once("prompts", lambda: evaluation.continuation_prompts(
            self.tokenizer, self.settings.prompts))

    def float_continuations(self) -> list[list[int]]:
        from qcourse import evaluation
        return self.once("continuations", lambda: evaluation.greedy_continuations(
            self.model, self.prompts(), self.settings.new_tokens))


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

    def describe(self) -> str:
        windows = "all test windows" if self.windows is None else \
            f"the first {self.windows} test windows"
        tasks = "all examples" if self.task_limit is None else f"{self.task_limit} examples"
        speed = f"decode speed over {self.decode_tokens} tokens" if self.runtime else \
            "no speed or memory measurement"
        return (f"PPL on {windows} of 512 tokens, KL and top-1 on the first "
                f"{self.compare_windows}; greedy match over {self.prompts} prompts x "
                f"{self.new_tokens} tokens; tasks on {tasks} each; GPTQ calibration "
                f"{self.gptq_samples[0]}x{self.gptq_samples[1]}, AWQ {self.awq_samples[0]}x"
                f"{self.awq_samples[1]} tokens; {speed}; {self.threads} thread(s)")


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
    the float model's GGUF export and its greedy continuations (each made once, on demand)."""

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

    def float_gguf(self) -> pathlib.Path:
        """The float model written as an F32 GGUF file (llama.cpp quantizes from it)."""
        from qcourse import gguf

        def write():
            path = self.workdir / "qcourse-tiny-F32.gguf"
            gguf.export(self.model, self.tokenizer, path, "F32")
            return path
        return self.once("f32", write)

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


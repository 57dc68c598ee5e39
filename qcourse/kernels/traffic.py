"""Count the bytes a Triton launch asks memory for, by running it in Triton's interpreter.

A memory-bound kernel (decoding: about 1 FLOP per byte) is as fast as the bytes it moves, so the
first question about such a kernel is not "how fast?" but "how many bytes does it ask for?", and
that can be answered on a CPU. In the interpreter every ``tl.load``, ``tl.store`` and atomic
passes through one builder method with the addresses of all its elements and its mask; the
counter adds, for each of them,

    bytes = element size × (number of elements the mask lets through)

What it counts, exactly:

* **requested bytes**: masked-off elements are not requested and not counted; an address asked
  for twice (two elements of one load, two loads, two programs) counts twice. This is what the
  code asks for, not what reaches DRAM: a GPU's caches may serve a repeat, so the count is an
  upper bound on DRAM traffic, and the traffic itself for code that asks for each byte once;
* an atomic read-modify-write (``tl.atomic_add``) counts as a load *and* a store of its bytes;
* **per tensor**: :meth:`Traffic.loaded_from` / :meth:`Traffic.stored_to` sum the bytes whose
  addresses fell inside a tensor's memory. Attribution is by address, for the tensors passed to
  ``fn`` or to a kernel launch while counting (alive during the count);
* only Triton kernels: PyTorch operations around them (a ``.contiguous()`` copy, zeroing an
  output buffer, a final cast) are not counted.

:func:`measure` runs every program of every launch. :func:`estimate` runs, along each axis of
the grid, only the first, one interior and the last program, and counts the interior one as many
times as there are interior programs: exact when a program's traffic depends on its position
only through the edges of the grid (partial tiles at the end, a shorter last K slice), as in a
rectangular tiling like this course's kernels (the tests check it against :func:`measure`).
Its ``result`` is None: the programs it skips never wrote their outputs.

Compiled kernels (triton imported on a GPU machine, without ``TRITON_INTERPRET``) are run by an
interpreted twin of the same Python source, so the counter works there too, on CPU tensors.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import types
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from .backend import interpreting_twins

_TOP = np.uint64(2**64 - 1)


@dataclasses.dataclass
class Launch:
    """One kernel launch: its grid, how many programs ran, and the bytes per address interval
    (``edges`` cut the address space; interval j is ``[edges[j-1], edges[j])``)."""
    kernel: str
    grid: tuple[int, ...]
    programs: int
    programs_run: int
    edges: np.ndarray
    loaded: np.ndarray
    stored: np.ndarray


@dataclasses.dataclass
class Traffic:
    """Bytes requested by the Triton launches of one call (see the module docstring)."""
    launches: list[Launch]
    result: Any = None
    sampled: bool = False

    @property
    def loaded(self) -> int:
        """Bytes requested by loads (and the read half of atomics), all tensors together."""
        return int(sum(int(launch.loaded.sum()) for launch in self.launches))

    @property
    def stored(self) -> int:
        """Bytes requested by stores (and the write half of atomics)."""
        return int(sum(int(launch.stored.sum()) for launch in self.launches))

    def loaded_from(self, tensor: torch.Tensor) -> int:
        """Bytes loaded from addresses inside ``tensor``'s memory."""
        return self._inside(tensor, "loaded")

    def stored_to(self, tensor: torch.Tensor) -> int:
        """Bytes stored to addresses inside ``tensor``'s memory."""
        return self._inside(tensor, "stored")

    def _inside(self, tensor: torch.Tensor, kind: str) -> int:
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"expected a torch.Tensor, got {type(tensor).__name__}")
        lo, hi = _extent(tensor)
        total = 0
        for launch in self.launches:
            counts = getattr(launch, kind)
            starts = np.concatenate(([np.uint64(0)], launch.edges))
            ends = np.concatenate((launch.edges, [_TOP]))
            inside = (starts >= lo) & (ends <= hi)
            straddles = ~inside & (starts < hi) & (ends > lo) & (counts > 0)
            if straddles.any():
                raise ValueError("this tensor's memory only partly covers bytes the kernels "
                                 "touched: pass a tensor that was an argument of fn or of a "
                                 "launch (a view of part of one cannot be told apart)")
            total += int(counts[inside].sum())
        return total


def measure(fn: Callable, *args, **kwargs) -> Traffic:
    """Run ``fn(*args, **kwargs)`` with every Triton launch in it counted, program by program.
    Tensors must be on the CPU; ``Traffic.result`` is what ``fn`` returned."""
    return _count(fn, args, kwargs, sample=False)


def estimate(fn: Callable, *args, **kwargs) -> Traffic:
    """As :func:`measure`, running only edge and one interior program per grid axis and scaling
    (exact for rectangular tilings; see the module docstring). For shapes too big to interpret."""
    return _count(fn, args, kwargs, sample=True)


def program_weight(index: tuple[int, ...], grid: tuple[int, ...]) -> int:
    """How many programs the program at ``index`` stands for when sampling: along an axis of
    size s, programs 0 and s-1 count once, program 1 counts s - 2 times (every interior
    program), the others are skipped (0)."""
    weight = 1
    for i, s in zip(index, grid):
        weight *= 1 if i in (0, s - 1) else s - 2 if i == 1 else 0
    return weight


def _extent(t: torch.Tensor) -> tuple[np.uint64, np.uint64]:
    """``[first byte, one past the last byte)`` of a tensor (a view: of the elements it spans)."""
    if t.numel() == 0:
        return np.uint64(t.data_ptr()), np.uint64(t.data_ptr())
    span = sum((size - 1) * abs(stride) for size, stride in zip(t.shape, t.stride())) + 1
    return np.uint64(t.data_ptr()), np.uint64(t.data_ptr() + span * t.element_size())


def _tensors(obj) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for item in obj for t in _tensors(item)]
    if isinstance(obj, dict):
        return [t for item in obj.values() for t in _tensors(item)]
    return []


class _Counter:
    """Collects one call's launches; the builder hooks below report every memory operation."""

    def __init__(self, known: list[torch.Tensor], sample: bool) -> None:
        self.known, self.sample = known, sample
        self.launches: list[Launch] = []
        self.weight = 1

    def start(self, kernel: str, launch_args: list[torch.Tensor]) -> None:
        for t in (*self.known, *launch_args):
            if t.device.type != "cpu":
                raise ValueError(f"the byte counter runs kernels in Triton's interpreter on CPU "
                                 f"tensors; got one on {t.device}")
        edges = np.unique(np.array([e for t in (*self.known, *launch_args) for e in _extent(t)],
                                   dtype=np.uint64))
        zeros = np.zeros(len(edges) + 1, dtype=np.int64)
        self.launches.append(Launch(kernel, (), 0, 0, edges, zeros, zeros.copy()))

    def enter_program(self, index: tuple[int, int, int], grid: tuple[int, int, int]) -> bool:
        launch = self.launches[-1]
        launch.grid, launch.programs = grid, int(np.prod(grid))
        self.weight = program_weight(index, grid) if self.sample else 1
        launch.programs_run += bool(self.weight)
        return bool(self.weight)

    def add(self, kind: str, ptrs, mask) -> None:
        addresses = ptrs.data if mask is None else \
            ptrs.data[np.broadcast_to(mask.data, ptrs.data.shape)]
        size = max(1, ptrs.get_element_ty().primitive_bitwidth // 8)
        launch = self.launches[-1]
        interval = np.searchsorted(launch.edges, addresses.reshape(-1).astype(np.uint64),
                                   side="right")
        counts = np.bincount(interval, minlength=len(launch.edges) + 1)
        getattr(launch, kind)[:] += counts * (size * self.weight)


_active: _Counter | None = None


def _count(fn: Callable, args: tuple, kwargs: dict, sample: bool) -> Traffic:
    global _active
    if _active is not None:
        raise RuntimeError("the byte counter is already counting (measure calls do not nest)")
    _active = _Counter(_tensors(args) + _tensors(kwargs), sample)
    try:
        with _hooks(), interpreting_twins():
            result = fn(*args, **kwargs)
        return Traffic(_active.launches, None if sample else result, sample)
    finally:
        _active = None


def _run_counted(kernel, args: tuple, grid, kwargs: dict):
    """``kernel[grid](*args, **kwargs)`` for an interpreted kernel, each program gated by the
    counter (the three lines of ``InterpretedFunction.run``, with the gate added)."""
    from triton.runtime.interpreter import GridExecutor, interpreter_builder
    fn, counter = kernel.rewrite(), _active

    def program(**program_args):
        index, grid_now = interpreter_builder.grid_idx, interpreter_builder.grid_dim
        if counter.enter_program(tuple(index), tuple(grid_now)):
            fn(**program_args)

    # The interpreter patches triton.language in the kernel function's globals, and reads its
    # signature and annotations: the gate shares all three.
    gate = types.FunctionType(program.__code__, fn.__globals__, fn.__name__, None,
                              program.__closure__)
    functools.update_wrapper(gate, fn)
    gate.__signature__ = inspect.signature(fn)
    counter.start(fn.__name__, _tensors(args) + _tensors(kwargs))
    return GridExecutor(gate, kernel.arg_names, grid, kernel.pre_run_hooks)(*args, **kwargs)


@contextlib.contextmanager
def _hooks():
    """Route every launch through :func:`_run_counted` (compiled kernels through an interpreted
    twin) and report the builder's loads, stores and atomics to the active counter."""
    from triton.runtime import interpreter, jit
    builder = interpreter.interpreter_builder
    twins: dict[int, Any] = {}

    def twin(jit_fn):
        if id(jit_fn) not in twins:
            twins[id(jit_fn)] = interpreter.InterpretedFunction(jit_fn.fn)
        return twins[id(jit_fn)]

    def masked_load(ptrs, mask, *rest, **options):
        _active.add("loaded", ptrs, mask)
        return type(builder).create_masked_load(builder, ptrs, mask, *rest, **options)

    def masked_store(ptrs, value, mask, *rest, **options):
        _active.add("stored", ptrs, mask)
        return type(builder).create_masked_store(builder, ptrs, value, mask, *rest, **options)

    def atomic_rmw(op, ptr, value, mask, *rest, **options):
        _active.add("loaded", ptr, mask)
        _active.add("stored", ptr, mask)
        return type(builder).create_atomic_rmw(builder, op, ptr, value, mask, *rest, **options)

    def atomic_cas(ptr, *rest, **options):
        _active.add("loaded", ptr, None)
        _active.add("stored", ptr, None)
        return type(builder).create_atomic_cas(builder, ptr, *rest, **options)

    patches = [(builder, "create_masked_load", masked_load),
               (builder, "create_masked_store", masked_store),
               (builder, "create_atomic_rmw", atomic_rmw),
               (builder, "create_atomic_cas", atomic_cas),
               (interpreter.InterpretedFunction, "run",
                lambda self, *args, grid, warmup, **kwargs:
                None if warmup else _run_counted(self, args, grid, kwargs)),
               (jit.JITFunction, "run",
                lambda self, *args, grid, warmup, **kwargs:
                None if warmup else _run_counted(twin(self), args, grid, kwargs)),
               (jit.JITFunction, "__call__", lambda self, *args, **kwargs: twin(self)(*args, **kwargs))]
    saved = [(owner, name, owner.__dict__.get(name)) for owner, name, _ in patches]
    try:
        for owner, name, new in patches:
            setattr(owner, name, new)
        yield
    finally:
        for owner, name, old in saved:
            if old is None:
                delattr(owner, name)
            else:
                setattr(owner, name, old)

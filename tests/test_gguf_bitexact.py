"""qcourse.gguf.quantize/dequantize against llama.cpp itself, byte for byte.

The referee is ``ggml_quantize_chunk`` (and ``to_float``) from the ggml library that
llama-cpp-python ships, called through ``qcourse.gguf.ggml``. Every type is compared on weights of
qcourse-tiny and on adversarial random tensors, with and without an importance vector; the counts
of equal bytes per type are printed at the end of the module (they must be 100%).
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from qcourse.gguf import QTYPES, TYPE_SIZE, dequantize, quantize
from qcourse.gguf import ggml

if not ggml.available():
    pytest.skip("llama-cpp-python (llama.cpp's ggml library) is not installed",
                allow_module_level=True)

ROWS_PER_TENSOR = 8
EQUAL_BYTES: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # "Q4_K +imatrix" -> [equal, total]


def _record(label: str, ours: np.ndarray, ref: np.ndarray) -> None:
    EQUAL_BYTES[label][0] += int((ours == ref).sum())
    EQUAL_BYTES[label][1] += ref.size


def _assert_same_bytes(ours: np.ndarray, ref: np.ndarray, qtype: str, what: str) -> None:
    assert ours.shape == ref.shape and ours.dtype == ref.dtype == np.uint8
    if not np.array_equal(ours, ref):
        blocks_ours = ours.reshape(-1, TYPE_SIZE[qtype])
        blocks_ref = ref.reshape(-1, TYPE_SIZE[qtype])
        bad = np.flatnonzero((blocks_ours != blocks_ref).any(axis=1))
        pytest.fail(f"{qtype} {what}: {bad.size} of {len(blocks_ref)} blocks differ "
                    f"(first {bad[0]}: ours {blocks_ours[bad[0]]} llama.cpp {blocks_ref[bad[0]]})")


@pytest.fixture(scope="module")
def tiny_weights(tiny):
    """Rows from every 2-D weight of qcourse-tiny (all linear layers and embed_tokens), grouped by
    row length: ``{n: [rows, n]}``. Rows are spread over each tensor (first, last, in between)."""
    model, _ = tiny
    groups: dict[int, list[np.ndarray]] = defaultdict(list)
    names = []
    for name, param in model.named_parameters():
        if param.dim() != 2:
            continue
        w = param.detach().float().numpy()
        rows = np.linspace(0, w.shape[0] - 1, ROWS_PER_TENSOR).round().astype(int)
        groups[w.shape[1]].append(w[rows])
        names.append(name)
    assert any("embed_tokens" in n for n in names) and sum("proj" in n for n in names) == 42
    return {n: np.concatenate(parts) for n, parts in groups.items()}


def adversarial_rows(seed: int, n: int = 768) -> np.ndarray:
    """Rows llama.cpp handles with special cases: zeros, constants, outliers, one sign only,
    tiny (subnormal) and huge (x² overflows float32) magnitudes, integers, heavy tails."""
    rng = np.random.default_rng(seed)
    base = lambda: rng.standard_normal(n)  # noqa: E731
    rows = [
        np.zeros(n), np.full(n, 1.5), np.full(n, -0.25), -np.zeros(n),
        np.where(np.arange(n) < 300, 0, base()),                  # leading zero blocks
        np.where(rng.random(n) < 0.5, 0, base()),                  # sparse
        base() * np.where(np.arange(n) % 7 == 0, 80, 1),           # outliers every 7th
        np.where(np.arange(n) == 5, 1e3, base()),                  # one huge outlier
        np.abs(base()), -np.abs(base()),                           # one sign only
        rng.integers(-3, 4, n), rng.standard_t(1.5, n),            # integers, heavy tails
        base() * 1e-6, base() * 1e-30, base() * 1e-40,             # tiny, subnormal
        rng.integers(-5, 5, n) * 1e-45,                            # smallest subnormals
        base() * 1e4, base() * 1e30, rng.choice([-3e38, 3e38], n),  # huge, near FLT_MAX
        base() * rng.uniform(0.01, 3),
    ]
    return np.stack(rows).astype(np.float32)


@pytest.mark.parametrize("qtype", QTYPES)
def test_tiny_weights_bit_exact(qtype, tiny_weights):
    rng = np.random.default_rng(1)
    for n, rows in tiny_weights.items():
        importance = rng.random(n).astype(np.float32) + np.float32(1e-3)
        for label, imp in ((qtype, None), (f"{qtype} +importance", importance)):
            ref = ggml.quantize(rows, qtype, imp)
            ours = quantize(rows, qtype, imp)
            _record(f"{label} (tiny)", ours, ref)
            _assert_same_bytes(ours, ref, qtype, f"qcourse-tiny weights, n={n}, {label}")


@pytest.mark.parametrize("qtype", QTYPES)
def test_adversarial_bit_exact(qtype):
    for seed in (0, 1):
        a = adversarial_rows(seed)
        rng = np.random.default_rng(100 + seed)
        importances = [rng.random(a.shape[1]).astype(np.float32) * np.float32(scale)
                       for scale in (1e-3, 1.0, 1e3)]
        importances[0][::5] = 0  # zero importance for some columns
        for label, imp in [(qtype, None)] + [(f"{qtype} +importance", i) for i in importances]:
            ref = ggml.quantize(a, qtype, imp)
            ours = quantize(a, qtype, imp)
            _record(f"{label} (adversarial)", ours, ref)
            _assert_same_bytes(ours, ref, qtype, f"adversarial rows seed {seed}, {label}")


@pytest.mark.parametrize("qtype", QTYPES)
def test_dequantize_matches_llama_cpp(qtype, tiny_weights):
    for a in (tiny_weights[256], adversarial_rows(2, 256)):
        blocks = ggml.quantize(a, qtype)
        ours = dequantize(blocks, qtype, a.shape)
        ref = ggml.dequantize(blocks, qtype, a.shape)
        assert ours.dtype == np.float32 and ours.shape == a.shape
        # compare bit patterns: NaN/Inf from near-FLT_MAX rows and -0.0 must match as well
        assert np.array_equal(ours.view(np.uint32), ref.view(np.uint32)), qtype


def test_importance_changes_the_result_where_llama_cpp_uses_it(tiny_weights):
    """Guards the comparison above: with importance the bytes do change (so the importance path
    was exercised), except for the types where llama.cpp ignores it."""
    rows = tiny_weights[256]
    importance = np.random.default_rng(3).random(256).astype(np.float32)
    for qtype in QTYPES:
        with_importance = ggml.quantize(rows, qtype, importance)
        changed = not np.array_equal(ggml.quantize(rows, qtype), with_importance)
        assert changed == (qtype not in ("F32", "F16", "BF16", "Q8_0")), qtype


def test_report_equal_bytes(capsys):
    """Prints the bit-exact tally (run after the comparisons above)."""
    if not EQUAL_BYTES:
        pytest.skip("no comparison ran")
    with capsys.disabled():
        print("\nbytes equal to llama.cpp's ggml_quantize_chunk:")
        for label, (equal, total) in sorted(EQUAL_BYTES.items()):
            print(f"  {label:38s} {equal:>9d} / {total:<9d} ({100 * equal / total:.2f}%)")
    assert all(equal == total for equal, total in EQUAL_BYTES.values())

"""Exercises of notebook 01: each check accepts a right answer and rejects typical mistakes."""
import torch

from qcourse.exercises import ex01


def verdict(question, answer):
    return question.check(answer).status


# --- 01.1 asymmetric quantization ------------------------------------------------------------

def asym(x, bits, *, levels=None, rounding=torch.round, clamp=True, include_zero=True,
         round_zero=True):
    """A learner's asymmetric quantizer, with switches for the usual mistakes."""
    lo, hi = x.min(), x.max()
    if include_zero:
        lo, hi = lo.clamp(max=0), hi.clamp(min=0)
    scale = (hi - lo) / (levels if levels is not None else 2**bits - 1)
    zero = -lo / scale
    if round_zero:
        zero = torch.round(zero)
    q = rounding(x / scale + zero)
    if clamp:
        q = q.clamp(0, 2**bits - 1)
    return q, scale, zero


def test_asymmetric_quantize_verdicts():
    q = ex01.asymmetric_quantize
    assert verdict(q, ...) == "not attempted"
    assert verdict(q, lambda x, bits: ...) == "not attempted"
    assert verdict(q, asym) == "correct"
    assert verdict(q, lambda x, b: tuple(t for t in asym(x, b))) == "correct"
    assert verdict(q, lambda x, b: asym(x, b, rounding=torch.floor)) == "wrong"
    assert verdict(q, lambda x, b: asym(x, b, levels=2**b)) == "wrong"       # off by one level
    assert verdict(q, lambda x, b: asym(x, b, clamp=False)) == "wrong"
    assert verdict(q, lambda x, b: asym(x, b, include_zero=False)) == "wrong"
    assert verdict(q, lambda x, b: asym(x, b, round_zero=False)) == "wrong"
    assert verdict(q, lambda x, b: asym(x, b)[0]) == "wrong"                  # only q


def test_missing_clamp_is_caught_by_a_named_case(capsys):
    ex01.asymmetric_quantize.check(lambda x, b: asym(x, b, clamp=False))
    assert "Case 6" in capsys.readouterr().out  # the [-1.5, 1.5] case: only the clamp fails it


# --- 01.2 per-group scales -------------------------------------------------------------------

def group_scales(W, bits, group_size, *, qmax=None, absolute=True, transpose=False):
    N, K = W.shape
    if transpose:  # groups along the output dimension, shaped like the right answer
        groups = W.T.reshape(K, N // group_size, group_size)
    else:
        groups = W.reshape(N, K // group_size, group_size)
    if absolute:
        groups = groups.abs()
    return groups.amax(dim=-1) / (qmax if qmax is not None else 2 ** (bits - 1) - 1)


def test_group_scales_verdicts():
    q = ex01.group_scales
    assert verdict(q, ...) == "not attempted"
    assert verdict(q, group_scales) == "correct"
    assert verdict(q, lambda W, b, g: group_scales(W, b, g, qmax=2 ** (b - 1))) == "wrong"
    assert verdict(q, lambda W, b, g: group_scales(W, b, g, absolute=False)) == "wrong"
    assert verdict(q, lambda W, b, g: group_scales(W, b, g, transpose=True)) == "wrong"
    assert verdict(q, lambda W, b, g: W.abs().amax(dim=1, keepdim=True) / (2 ** (b - 1) - 1)) \
        == "wrong"                                                             # per-channel


# --- 01.3 4-bit packing ----------------------------------------------------------------------

def pack4(values, *, reverse=False, signed_fix=True):
    runs = values.long().reshape(*values.shape[:-1], -1, 8)
    shifts = 4 * torch.arange(8)
    if reverse:
        shifts = shifts.flip(0)
    words = (runs << shifts).sum(dim=-1)
    if signed_fix:
        words = torch.where(words >= 2**31, words - 2**32, words)
    return words.to(torch.int32)


def pack4_bytes_high_nibble_first(values):
    """bitsandbytes' byte layout (first value in the high nibble) glued into words."""
    pairs = values.long().reshape(*values.shape[:-1], -1, 4, 2)
    bytes_ = (pairs[..., 0] << 4) | pairs[..., 1]
    words = (bytes_ << (8 * torch.arange(4))).sum(dim=-1)
    return torch.where(words >= 2**31, words - 2**32, words).to(torch.int32)


def test_pack4_verdicts():
    q = ex01.pack4
    assert verdict(q, ...) == "not attempted"
    assert verdict(q, pack4) == "correct"
    assert verdict(q, lambda v: pack4(v, signed_fix=False)) == "correct"   # .to wraps the same
    assert verdict(q, lambda v: pack4(v).long()) == "correct"
    assert verdict(q, lambda v: pack4(v, reverse=True)) == "wrong"         # nibble order
    assert verdict(q, pack4_bytes_high_nibble_first) == "wrong"
    assert verdict(q, lambda v: pack4(v.movedim(-1, 0).reshape(v.shape))) == "wrong"
    assert verdict(q, lambda v: (v.long().reshape(*v.shape[:-1], -1, 8)
                                 << (4 * torch.arange(8))).sum(-1).clamp(max=2**31 - 1)
                   .to(torch.int32)) == "wrong"                            # saturated sign bit


def test_solutions_pass_their_own_checks():
    for question in (ex01.asymmetric_quantize, ex01.group_scales, ex01.pack4):
        namespace = {"torch": torch}
        exec(question.solution_text, namespace)
        function = next(v for k, v in namespace.items() if k != "torch" and callable(v)
                        and not k.startswith("__"))
        assert verdict(question, function) == "correct", question.name

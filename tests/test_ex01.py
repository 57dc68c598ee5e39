"""Exercises of notebook 01: each check accepts a right answer and rejects typical mistakes."""
import math

import pytest
import torch

from qcourse.exercises import ex01


def verdict(question, answer):
    return question.check(answer).status


# --- 01.2 asymmetric quantization ------------------------------------------------------------

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


# --- 01.4 per-group scales -------------------------------------------------------------------

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


# --- 01.6 4-bit packing ----------------------------------------------------------------------

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


# --- 01.1 decoding a float ---------------------------------------------------------------------

def float_value(sign, exponent, mantissa, e_bits, m_bits, *, bias_offset=-1, subnormal=True,
                subnormal_exponent=1):
    """A learner's decoder, with switches for the usual mistakes."""
    bias = 2 ** (e_bits - 1) + bias_offset
    fraction = mantissa / 2**m_bits
    if exponent == 0 and subnormal:
        value = 2.0 ** (subnormal_exponent - bias) * fraction
    else:
        value = 2.0 ** (exponent - bias) * (1 + fraction)
    return -value if sign else value


TORCH_FLOATS = {(4, 3): torch.float8_e4m3fn, (5, 2): torch.float8_e5m2,
                (5, 10): torch.float16, (8, 7): torch.bfloat16}


def torch_value(sign, exponent, mantissa, e_bits, m_bits):
    """What torch's own dtype stores for that bit pattern (a shortcut that knows 4 formats)."""
    pattern = sign << (e_bits + m_bits) | exponent << m_bits | mantissa
    int_dtype = torch.uint8 if e_bits + m_bits == 7 else torch.int16
    bits = torch.tensor([pattern - (65536 if pattern >= 32768 and int_dtype == torch.int16
                                    else 0)], dtype=torch.int32).to(int_dtype)
    return bits.view(TORCH_FLOATS[(e_bits, m_bits)]).item()


def test_the_reference_decodes_like_torch_pattern_by_pattern():
    for (e_bits, m_bits), dtype in TORCH_FLOATS.items():
        total = 1 + e_bits + m_bits
        step = 1 if total == 8 else 97             # every FP8 pattern, a spread of 16-bit ones
        for pattern in range(0, 2**total, step):
            sign, exponent = pattern >> (total - 1), (pattern >> m_bits) & (2**e_bits - 1)
            mantissa = pattern & (2**m_bits - 1)
            want = torch_value(sign, exponent, mantissa, e_bits, m_bits)
            if not math.isfinite(want):            # inf / NaN encodings: not asked
                continue
            got = ex01._float_value_reference(sign, exponent, mantissa, e_bits, m_bits)
            assert got == want, (dtype, pattern)


def test_float_value_verdicts():
    q = ex01.float_value
    assert verdict(q, ...) == "not attempted"
    assert verdict(q, float_value) == "correct"
    assert verdict(q, lambda *a: float_value(*a, bias_offset=0)) == "wrong"        # bias 2^(E-1)
    assert verdict(q, lambda *a: float_value(*a, subnormal=False)) == "wrong"      # hidden 1
    assert verdict(q, lambda *a: float_value(*a, subnormal_exponent=0)) == "wrong"  # 2^-bias
    assert verdict(q, lambda s, e, m, eb, mb: float_value(s, e, m, eb, mb) * (1 - 2 * s)
                   ) == "wrong"                                                    # sign twice
    assert verdict(q, torch_value) == "wrong"      # the torch-dtype shortcut knows no FP6/FP4


# --- answers that call the package's own implementation ---------------------------------------

def test_answers_that_call_the_package_are_wrong():
    from qcourse import pack, quant

    cheats = [
        (ex01.asymmetric_quantize, [
            lambda x, b: quant.quantize(x, b, symmetric=False, granularity="tensor"),
            lambda x, b: quant.QuantScheme(b, None, False).quantize(x.reshape(1, -1))]),
        (ex01.group_scales, [
            lambda W, b, g: quant.quantize(W, b, symmetric=True, granularity="group",
                                           group_size=g)[1],
            lambda W, b, g: quant.scale_and_zero(-W.abs().reshape(W.shape[0], -1, g).amax(-1),
                                                 W.abs().reshape(W.shape[0], -1, g).amax(-1),
                                                 b, True)[0]]),
        (ex01.pack4, [lambda v: pack.pack_int32(v, 4),
                      lambda v: pack.pack_bits(v, 4, -1, 32)]),
        (ex01.float_value, [lambda s, e, m, eb, mb:
                            ex01.formats.representable_values("FP16")[0].item()]),
    ]
    for question, answers in cheats:
        for answer in answers:
            result = question.judge(answer)
            assert result.status == "wrong" and "course's own" in result.message, question.name


# --- predictions -------------------------------------------------------------------------------

def test_prediction_verdicts():
    assert verdict(ex01.asymmetric_on_silu, "c") == "correct"
    assert verdict(ex01.asymmetric_on_silu, "d") == verdict(ex01.asymmetric_on_silu, "b") \
        == "wrong"
    assert verdict(ex01.mse_drop_per_bit, 4) == "correct"
    assert verdict(ex01.mse_drop_per_bit, 4.4) == "correct"      # "about"
    assert verdict(ex01.mse_drop_per_bit, 2) == "wrong"          # halving the step, not its square
    assert verdict(ex01.mse_drop_per_bit, 8) == "wrong"
    assert verdict(ex01.mse_drop_per_bit, ...) == "not attempted"


QUESTIONS = [q for q in vars(ex01).values() if isinstance(q, ex01.Question)]


def test_every_question_has_progressive_hints_short_of_the_solution(hints_and_solutions):
    hints_and_solutions(ex01)


@pytest.mark.slow
def test_the_silu_prediction_matches_the_notebooks_measurement():
    from qcourse import data, models, quant

    model, tok = models.load()
    captured = {}
    hook = models.get_module(model, "model.layers.0.mlp.act_fn").register_forward_hook(
        lambda m, i, o: captured.update(x=o.detach().reshape(-1, o.shape[-1])))
    with torch.no_grad():
        model(data.calibration_samples(tok, 2, 128, seed=0))
    hook.remove()
    acts = captured["x"]
    sym, asym = (quant.quantization_error(acts, quant.fake_quantize(
        acts, 4, symmetric=s, granularity="tensor")) for s in (True, False))
    assert 2 <= sym / asym <= 4                                  # answer c

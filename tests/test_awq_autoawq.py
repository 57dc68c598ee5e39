"""Cross-check against AutoAWQ 0.2.9 (deprecated, still runs on CPU): same quantizer formula,
its packed format read back correctly, and our AWQ within 1 % of its perplexity (or better)."""
import copy
from types import SimpleNamespace

import pytest
import torch
from torch import nn

pytestmark = pytest.mark.slow  # runs a production library on the whole model

pytest.importorskip("awq", reason="autoawq is not installed (pip install autoawq==0.2.9)")

from awq.modules.linear import WQLinear_GEMM  # noqa: E402
from awq.quantize.quantizer import AwqQuantizer  # noqa: E402
from awq.utils.packing_utils import dequantize_gemm  # noqa: E402

from qcourse import awq, data, paths  # noqa: E402
from qcourse.references import autoawq  # noqa: E402
from qcourse import eval as ev  # noqa: E402
from qcourse.quant import fake_quantize  # noqa: E402


def autoawq_fake_quantize(w, bits, group_size):
    settings = SimpleNamespace(group_size=group_size, zero_point=True, w_bit=bits)
    return AwqQuantizer.pseudo_quantize_tensor(settings, w)


@pytest.mark.parametrize("bits", [4, 3])
def test_same_asymmetric_group_quantizer(bits):
    w = torch.randn(64, 256, generator=torch.Generator().manual_seed(bits))
    theirs, _, _ = autoawq_fake_quantize(w, bits, 128)
    ours = fake_quantize(w, bits, symmetric=False, granularity="group", group_size=128)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


def autoawq_packed(seed: int):
    """A 64x256 layer fake-quantized by AutoAWQ (4 bits, groups of 128) and packed by its own
    WQLinear_GEMM: (the fake-quantized fp16 weight, the packed layer)."""
    torch.manual_seed(seed)
    linear = nn.Linear(256, 64, bias=False)
    w, scales, zeros = autoawq_fake_quantize(linear.weight.data.half(), 4, 128)
    linear = linear.half()
    linear.weight.data = w
    return w, WQLinear_GEMM.from_linear(linear, 4, 128, scales=scales.t().contiguous(),
                                        zeros=zeros.t().contiguous())


def test_reading_back_autoawq_gemm_packing():
    w, packed = autoawq_packed(seed=0)
    back = dequantize_gemm(packed.qweight, packed.qzeros, packed.scales, 4, 128).t()
    torch.testing.assert_close(back.float(), w.float(), rtol=0, atol=1e-3)


def test_autoawq_gemm_bytes_read_through_the_kernels_layout():
    """AutoAWQ's GEMM packs along N in the order 0 2 4 6 1 3 5 7: its own bytes, read back by
    qcourse.kernels.layout.from_awq_gemm, give AutoAWQ's own dequantization, and packing them
    again with to_awq_gemm gives the same bytes."""
    from qcourse.kernels import layout

    _, packed = autoawq_packed(seed=1)
    assert packed.qweight.shape == (256, 64 // 8)                            # [K, N/8]
    ours = layout.from_awq_gemm(packed.qweight, packed.qzeros, packed.scales)
    theirs = dequantize_gemm(packed.qweight, packed.qzeros, packed.scales, 4, 128).t()
    assert torch.equal(layout.dequantize_w4a16(*ours, group_size=128).half(), theirs.half())
    again = layout.to_awq_gemm(*ours)
    assert torch.equal(again[0], packed.qweight) and torch.equal(again[1], packed.qzeros)


def test_fixed_autoawq_scaling_keeps_the_float_function(tiny):
    """AutoAWQ's search mutates its saved weights on a CPU; with the fix, scaling alone (no
    clipping, no quantization) leaves the logits unchanged, as it must."""
    from awq import AutoAWQForCausalLM

    model, tok = tiny
    samples = data.calibration_samples(tok, 2, 64, seed=0)
    wrapper = AutoAWQForCausalLM.from_pretrained(str(paths.TINY_DIR), torch_dtype=torch.float32)
    config = {"zero_point": True, "q_group_size": 128, "w_bit": 4, "version": "GEMM"}
    wrapper.quantize(tok, quant_config=config, calib_data=samples.tolist(), max_calib_samples=2,
                     max_calib_seq_len=64, export_compatible=True, apply_clip=False,
                     quantizer_cls=autoawq.copying_quantizer())
    with torch.no_grad():
        torch.testing.assert_close(wrapper.model(samples).logits, model(samples).logits,
                                   rtol=1e-4, atol=1e-4)


def test_ours_is_within_one_percent_of_autoawq(tiny):
    model, tok = tiny
    samples = data.calibration_samples(tok, 4, 512, seed=0)
    theirs = autoawq.quantize_model(paths.TINY_DIR, samples, 4, 128)
    ours = awq.quantize_model(copy.deepcopy(model), samples, 4, 128, progress=False)
    ppl_theirs = ev.perplexity(theirs, tok, max_windows=16)
    ppl_ours = ev.perplexity(ours, tok, max_windows=16)
    print(f"perplexity: ours {ppl_ours:.3f}, AutoAWQ {ppl_theirs:.3f}")
    assert ppl_ours <= 1.01 * ppl_theirs

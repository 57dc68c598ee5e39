"""NF4 (QLoRA's 4-bit NormalFloat): the codec of qcourse.nf4 and the NF4Linear layer."""
import pytest
import torch
from torch import nn

from qcourse import nf4
from qcourse.eval import model_size_bytes
from qcourse.formats import NF4_CODE
from qcourse.layers import NF4Linear


def test_nf4_round_trip_picks_the_nearest_code():
    torch.manual_seed(0)
    w = torch.randn(8, 128)
    codes, absmax = nf4.quantize_nf4(w)
    assert codes.dtype == torch.uint8 and codes.shape == w.shape and int(codes.max()) <= 15
    assert absmax.shape == (16,)
    blocks = w.reshape(-1, 64)
    assert torch.equal(absmax, blocks.abs().amax(1))
    # brute force: the code nearest to w / absmax
    distances = (blocks[..., None] / absmax[:, None, None] - NF4_CODE).abs()
    assert torch.equal(codes.reshape(-1, 64).long(), distances.argmin(-1))
    back = nf4.dequantize_nf4(codes, absmax)
    assert torch.equal(back.reshape(-1, 64).abs().amax(1), absmax)  # block maxima are exact


def test_nf4_layer_size_and_output():
    torch.manual_seed(0)
    linear = nn.Linear(256, 128, bias=False)
    layer = NF4Linear.from_float(linear)
    assert model_size_bytes(layer) == 256 * 128 // 2 + 4 * 256 * 128 // 64  # 4.5 bits per weight
    x = torch.randn(3, 256)
    assert torch.allclose(layer(x), x @ nf4.fake_nf4(linear.weight.detach()).t(), atol=1e-6)
    assert "NF4" in repr(layer)


def test_nf4_bad_inputs():
    with pytest.raises(ValueError, match="multiple of the block size"):
        nf4.quantize_nf4(torch.randn(100))
    with pytest.raises(TypeError):
        nf4.quantize_nf4(torch.arange(64))
    with pytest.raises(ValueError, match="NaN"):
        nf4.quantize_nf4(torch.full((64,), float("inf")))
    codes, absmax = nf4.quantize_nf4(torch.zeros(64))  # an all-zero block
    assert torch.equal(nf4.dequantize_nf4(codes, absmax), torch.zeros(64))

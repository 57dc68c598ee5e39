"""Cross-check of qcourse.qat against torchao 0.18's QAT (QATConfig prepare/convert) on the
CPU: the same grid and rounding on a shared scale, the one difference (torchao multiplies by
1/s) bounded, the two scale rules bounded, per-token int8 activations equal, and a short QAT run
with each landing within a stated tolerance of the other."""
import copy

import pytest
import torch

from qcourse import eval as qeval, qat
from qcourse.quant import QuantScheme
from qcourse.references.torchao import qat as ao

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model(tiny):
    return tiny[0]


@pytest.mark.parametrize("bits, group_size", [(4, 32), (3, 128), (2, 64)])
def test_same_grid_and_rounding_on_a_shared_scale(model, bits, group_size):
    """Given torchao's own scale, our fake quantizer reproduces torchao's weights except at
    ties: torchao computes u = w·(1/s), we compute u = w/s, which can differ in the last bit,
    so a u within float rounding of a half-integer may round the other way. The group's absmax
    weight is always such a tie (u = ±(qmax - qmin)/2, ±7.5 at 4 bits); other ties are rare.
    Each difference is one step."""
    prepared = ao.prepare(copy.deepcopy(model), bits, group_size)
    scheme = QuantScheme(bits, group_size, symmetric=True)
    for name, layer in ao.fake_quantized_layers(prepared).items():
        theirs, scale = ao.fake_quantized_weight(layer)
        w = layer.weight.detach().reshape(layer.out_features, -1, group_size)   # [N, G, g]
        ours = qat.fake_quantize(w, scale[..., None], torch.zeros(()), scheme).reshape(theirs.shape)
        differ = (ours != theirs).reshape(w.shape)
        u = w / scale[..., None]
        ties = ((u - u.floor()) - 0.5).abs() < 1e-5
        assert not (differ & ~ties).any(), name
        assert differ.float().mean() < 0.01, name                       # rare
        step = scale[..., None].expand_as(w)[differ]
        torch.testing.assert_close((ours - theirs).abs().reshape(w.shape)[differ], step)


def test_backward_differs_only_within_half_a_step_beyond_the_grid(model):
    """torchao clamps after rounding: its gradient passes for qmax < u < qmax + 1/2 (and the
    mirror image below qmin), where our clipped STE blocks it; everywhere else the gradients
    on a shared scale are equal."""
    prepared = ao.prepare(copy.deepcopy(model), 4, 32)
    layer = prepared.model.layers[1].self_attn.o_proj
    upstream = torch.randn(layer.weight.shape, generator=torch.Generator().manual_seed(0))
    (layer.weight_fake_quantizer(layer.weight) * upstream).sum().backward()
    _, scale = ao.fake_quantized_weight(layer)
    w = layer.weight.detach().reshape(layer.out_features, -1, 32).clone().requires_grad_(True)
    scheme = QuantScheme(4, 32, symmetric=True)
    ours = qat.fake_quantize(w, scale[..., None], torch.zeros(()), scheme)
    (ours.reshape(upstream.shape) * upstream).sum().backward()
    # torchao's gradient is upstream·(1/s)·s (its STE runs through u = w·(1/s) and back), equal
    # to ours up to float rounding where both pass it: compare to a relative 1e-5
    differ = ~torch.isclose(layer.weight.grad.reshape(w.shape), w.grad, rtol=1e-5, atol=0)
    u = w.detach() / scale[..., None]
    beyond = ((u > scheme.qmax) & (u <= scheme.qmax + 0.5)) | \
             ((u < scheme.qmin) & (u >= scheme.qmin - 0.5))
    tie = (u.abs() - 7.5).abs() < 1e-5          # torchao's u = w·(1/s) may fall either side
    assert differ.any()
    assert not (differ & ~beyond).any()
    assert not (beyond & ~tie & ~differ).any()


@pytest.mark.parametrize("bits, group_size", [(4, 32), (2, 64)])
def test_the_two_scale_rules_bounded(model, bits, group_size):
    """torchao's symmetric scale is max|w| / ((qmax - qmin)/2), ours max|w| / qmax stored in
    fp16: the ratio is qmax/((qmax - qmin)/2) (7/7.5 at 4 bits, 1/1.5 at 2 bits) up to the fp16
    rounding, and each weight lands within half of its step (ours) plus half of theirs."""
    prepared = ao.prepare(copy.deepcopy(model), bits, group_size)
    ours_model = qat.prepare(copy.deepcopy(model), bits, group_size, symmetric=True)
    scheme = QuantScheme(bits, group_size, symmetric=True)
    expected_ratio = scheme.qmax / ((scheme.qmax - scheme.qmin) / 2)
    for name, layer in ao.fake_quantized_layers(prepared).items():
        theirs, s_theirs = ao.fake_quantized_weight(layer)
        mine = ours_model.get_submodule(name)
        with torch.no_grad():
            ours = mine.fake_weight()
            s_ours = mine.params()[0]
        torch.testing.assert_close(s_theirs / s_ours, torch.full_like(s_ours, expected_ratio),
                                   rtol=1e-3, atol=0)
        bound = (s_ours + s_theirs).repeat_interleave(group_size, dim=1) / 2
        assert ((ours - theirs).abs() <= bound * (1 + 1e-5)).all(), name


def test_int8_token_activations_equal(model):
    prepared = ao.prepare(copy.deepcopy(model), 4, 32, mode="int8-activations")
    layer = prepared.model.layers[2].mlp.down_proj
    x = torch.randn(3, 17, 768, generator=torch.Generator().manual_seed(0)) * 4
    x[0, 0, :5] = torch.tensor([50.0, -80.0, 0.0, 0.0, 1e-3])            # an outlier token
    assert torch.equal(qat.fake_quantize_tokens(x.reshape(-1, 768)).reshape(x.shape),
                       ao.fake_quantized_input(layer, x))


@pytest.mark.parametrize("mode", ["weight-only", "int8-activations"])
def test_torchao_converted_model_computes_its_fake_quantized_forward(model, mode):
    prepared = ao.prepare(copy.deepcopy(model), 4, 32, mode=mode)
    x = torch.randint(0, 4096, (2, 48), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        fake = prepared(x).logits
        converted = ao.convert(prepared, 4, 32, mode=mode)(x).logits
    torch.testing.assert_close(converted, fake, rtol=0, atol=1e-5)


def test_a_short_qat_run_with_each_lands_close(model, tiny):
    """The same 30 steps (same windows, optimizer and learning rate) with our QAT and with
    torchao's, symmetric 4-bit groups of 32, weights only: both models moved, and their
    perplexities (first 16 test windows) after training agree within 1 %. (Neither needs to
    improve: at 4 bits this model loses little to rounding, and 30 steps of fine-tuning add
    about as much noise as they remove; see benchmarks/qat.py.)"""
    tokenizer = tiny[1]
    ppl = lambda m: qeval.perplexity(m, tokenizer, max_windows=16)   # noqa: E731
    options = dict(lr=1e-4, batch_size=4, seq_len=128, seed=0, progress=False)
    ours = qat.prepare(copy.deepcopy(model), 4, 32, symmetric=True)
    theirs = ao.prepare(copy.deepcopy(model), 4, 32)
    start = {"ours": ppl(ours), "torchao": ppl(theirs)}
    qat.train(ours, tokenizer, 30, **options)
    qat.fine_tune(theirs, tokenizer, 30, [{"params": list(theirs.parameters()), "lr": 1e-4}],
                  **{k: v for k, v in options.items() if k != "lr"})
    end = {"ours": ppl(qat.convert(ours)), "torchao": ppl(ao.convert(theirs, 4, 32))}
    assert abs(end["ours"] - start["ours"]) > 1e-3 and abs(end["torchao"] - start["torchao"]) > 1e-3
    assert end["ours"] == pytest.approx(end["torchao"], rel=0.01)

import copy

import pytest
import torch

from qcourse import calib, data
from qcourse import eval as ev
from qcourse.layers import W8A8Linear
from qcourse.smoothquant import smooth_llama, smoothing_scales, smoothquant


def test_smoothing_scales_formula():
    act = torch.tensor([16.0, 1.0, 4.0])
    w1 = torch.tensor([[1.0, -4.0, 0.25], [0.5, 1.0, -1.0]])
    w2 = torch.tensor([[-2.0, 0.5, 0.5]])
    # max|W_j| over the rows of both weights: [2, 4, 1]
    s = smoothing_scales(act, [w1, w2], alpha=0.5)
    assert torch.allclose(s, torch.tensor([16 ** 0.5 / 2 ** 0.5, 1 / 4 ** 0.5, 4 ** 0.5 / 1]))
    assert torch.allclose(smoothing_scales(act, [w1, w2], alpha=1.0), act)
    assert torch.allclose(smoothing_scales(act, [w1, w2], alpha=0.0), 1 / torch.tensor([2., 4, 1]))
    with pytest.raises(ValueError, match="alpha"):
        smoothing_scales(act, [w1], alpha=1.5)
    with pytest.raises(ValueError, match="input columns"):
        smoothing_scales(act, [torch.ones(2, 4)])


@pytest.fixture(scope="module")
def calibrated(tiny):
    model, tokenizer = tiny
    samples = data.calibration_samples(tokenizer, 4, 128, seed=0)
    return samples, calib.collect_activation_stats(model, samples)


@pytest.mark.parametrize("include_down", [False, True])
def test_smoothing_leaves_the_float_model_unchanged(tiny, calibrated, include_down):
    model, tokenizer = tiny
    samples, stats = calibrated
    smoothed = copy.deepcopy(model)
    scales = smooth_llama(smoothed, stats, alpha=0.5, include_down=include_down)
    assert len(scales) == 6 * (3 if include_down else 2)
    ids = samples[:2]
    with torch.no_grad():
        before, after = model(ids).logits, smoothed(ids).logits
    assert not torch.equal(model.model.layers[0].input_layernorm.weight,
                           smoothed.model.layers[0].input_layernorm.weight)
    assert torch.allclose(before, after, rtol=1e-4, atol=1e-4)


def test_the_default_mapping_is_the_papers_and_llm_compressors(tiny, calibrated):
    """q/k/v through the attention norm, gate/up through the MLP norm; down_proj untouched
    (llm-compressor's DEFAULT_SMOOTHQUANT_MAPPINGS for LlamaForCausalLM)."""
    model, _ = tiny
    _, stats = calibrated
    smoothed = copy.deepcopy(model)
    scales = smooth_llama(smoothed, stats, alpha=0.5)
    assert {name.rsplit(".", 2)[-2] + "." + name.rsplit(".", 1)[-1] for name in scales} == {
        "self_attn.q_proj", "mlp.gate_proj"}
    for i, (before, after) in enumerate(zip(model.model.layers, smoothed.model.layers)):
        assert torch.equal(before.mlp.down_proj.weight, after.mlp.down_proj.weight), i
        assert torch.equal(before.mlp.up_proj.weight, after.mlp.up_proj.weight) is False, i


def test_smoothing_divides_activations_by_s(tiny, calibrated):
    model, _ = tiny
    samples, stats = calibrated
    smoothed = copy.deepcopy(model)
    scales = smooth_llama(smoothed, stats, alpha=0.5, include_down=True)
    new_stats = calib.collect_activation_stats(smoothed, samples)
    for name, s in scales.items():
        assert torch.allclose(new_stats[name].absmax, stats[name].absmax / s, rtol=1e-3, atol=1e-5)
        # with alpha = 0.5, max|X_j / s_j| = max|W_j · s_j| = sqrt(max|X_j| · max|W_j|)
    name = "model.layers.3.mlp.down_proj"
    w_absmax = smoothed.model.layers[3].mlp.down_proj.weight.abs().amax(0)
    assert torch.allclose(new_stats[name].absmax, w_absmax, rtol=1e-3)


def test_smoothquant_model_quality(tiny, calibrated):
    model, tokenizer = tiny
    samples, _ = calibrated
    quantized = smoothquant(copy.deepcopy(model), samples, alpha=0.5)
    assert sum(isinstance(m, W8A8Linear) for m in quantized.modules()) == 42
    fp32 = ev.perplexity(model, tokenizer, max_windows=4)
    assert ev.perplexity(quantized, tokenizer, max_windows=4) == pytest.approx(fp32, rel=0.05)


def test_smoothquant_needs_calibration_data(tiny):
    model, _ = tiny
    with pytest.raises(ValueError, match="empty"):
        smoothquant(copy.deepcopy(model), torch.zeros(0, 16, dtype=torch.long))

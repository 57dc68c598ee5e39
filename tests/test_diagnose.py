"""qcourse.diagnose on hand-built models whose statistics are known, and on qcourse-tiny."""
import copy
import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from qcourse import data, models
from qcourse.diagnose import (bits_per_weight, diagnose, mixed_precision, short_name,
                              stored_bytes)
from qcourse.evaluation import model_size_bytes
from qcourse.layers import QuantLinear, W8A8Linear
from qcourse.quant import QuantScheme

SAMPLES = torch.arange(16).repeat(2, 2)         # [2, 32]: every token id 0..15, twice


class ToyLM(nn.Module):
    """embed (one-hot rows, row 3 scaled by 40) -> up -> relu -> down -> lm_head.
    Widths are multiples of 16 so that 2-bit QuantLinear can pack them."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(16, 16)
        self.up = nn.Linear(16, 32, bias=False)
        self.down = nn.Linear(32, 16, bias=False)
        self.lm_head = nn.Linear(16, 16, bias=False)
        with torch.no_grad():
            self.embed.weight.copy_(torch.eye(16))
            self.embed.weight[3, 3] = 40.0                 # channel 3 of up's input: 40, others 1
            gen = torch.Generator().manual_seed(0)
            self.up.weight.copy_(torch.randn(32, 16, generator=gen).clamp(-1, 1))
            self.up.weight[:, 7] = 10.0                    # column 7: max |W| 10, the others <= 1
            self.up.weight[0, :7] = 1.0                    # so every other column's max is 1
            self.up.weight[0, 8:] = 1.0
            self.down.weight.copy_(torch.randint(0, 4, (16, 32), generator=gen).float())
            self.lm_head.weight.copy_(torch.randn(16, 16, generator=gen))

    def forward(self, ids):
        h = self.embed(ids)
        return SimpleNamespace(logits=self.lm_head(self.down(torch.relu(self.up(h)))))


class ToyEncoder(ToyLM):
    def forward(self, ids):
        h = self.embed(ids)
        return SimpleNamespace(last_hidden_state=self.down(torch.relu(self.up(h))))


def test_activation_and_weight_ratios_of_a_known_model():
    report = diagnose(ToyLM(), samples=SAMPLES, quantize=QuantScheme(4, None))
    assert [layer.name for layer in report.layers] == ["up", "down"]     # not the head
    up = report["up"]
    assert up.in_features == 16
    assert up.act_absmax == pytest.approx(40.0)
    assert up.act_ratio == pytest.approx(40.0)       # 40 / median of fifteen 1s and one 40
    assert up.top_channels[0] == 3
    expected_absmax = torch.ones(16)
    expected_absmax[3] = 40.0
    assert torch.equal(up.input_absmax, expected_absmax)
    assert up.weight_ratio == pytest.approx(10.0)    # column maxima: fifteen 1s and one 10
    # max |y| of up: the largest |W[:, i]| · emb_i over tokens: column 3 times 40 or column 7
    w = ToyLM().up.weight
    expected = max(40 * w[:, 3].abs().max().item(), w[:, 7].abs().max().item())
    assert up.output_absmax == pytest.approx(expected)
    assert up.nonfinite == 0


def test_a_layer_already_on_the_grid_is_not_sensitive():
    # down's weights are integers 0..3: exactly the 2-bit asymmetric grid of every row that
    # holds both a 0 and a 3 (scale 1, zero 0), so quantizing it alone changes nothing
    model = ToyLM()
    with torch.no_grad():
        model.down.weight[:, 0], model.down.weight[:, 1] = 0.0, 3.0
    report = diagnose(model, samples=SAMPLES, quantize=QuantScheme(2, None))
    assert report["down"].sensitivity == pytest.approx(0.0, abs=1e-12)
    assert report["up"].sensitivity > 1e-4
    assert report.metric == "KL"
    assert [l.name for l in report.most_sensitive(2)] == ["up", "down"]


def test_a_custom_quantizer_and_an_encoder():
    calls = []

    def identity(name, linear):
        calls.append(name)
        return copy.deepcopy(linear)

    report = diagnose(ToyEncoder(), samples=SAMPLES, quantize=identity)
    assert report.metric == "rel. error"
    assert calls == ["up", "down"]
    assert all(layer.sensitivity == 0.0 for layer in report.layers)
    report = diagnose(ToyEncoder(), samples=SAMPLES,
                      quantize=lambda n, l: W8A8Linear.from_float(l))
    assert all(0 < layer.sensitivity < 1e-2 for layer in report.layers)


def test_nan_weights_are_found_and_do_not_crash():
    model = ToyLM()
    with torch.no_grad():
        model.down.weight[2, 5] = float("nan")
    report = diagnose(model, samples=SAMPLES, quantize=QuantScheme(4, None))
    assert report["down"].nonfinite_weights == 1
    assert report.nonfinite_parameters["down.weight"] == 1
    assert report.nonfinite_parameters["up.weight"] == 0
    assert math.isnan(report["down"].sensitivity)            # the quantizer refuses NaN
    assert report["down"].nonfinite_outputs > 0
    assert "NaN/Inf: 1 values in 1 parameters (down.weight)" in report.summary()
    assert "first layer whose activations are not finite: down" in report.summary()


def test_float16_overflow_is_flagged():
    model = ToyLM()
    with torch.no_grad():
        model.embed.weight[3, 3] = 70000.0
    report = diagnose(model, samples=SAMPLES, sensitivity=False)
    assert [l.name for l in report.fp16_overflows()][0] == "up"
    assert "float16 overflow" in report.summary()
    assert report["up"].sensitivity is None


def test_the_model_is_left_as_it_was():
    model = ToyLM()
    before = copy.deepcopy(model.state_dict())
    diagnose(model, samples=SAMPLES, quantize=QuantScheme(2, None))
    assert isinstance(model.up, nn.Linear) and isinstance(model.down, nn.Linear)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_table_and_plot():
    report = diagnose(ToyLM(), samples=SAMPLES, quantize=QuantScheme(4, None))
    lines = report.table().splitlines()
    assert len(lines) == 2 + 2 and lines[2].startswith("up")
    assert report.table(top=1, sort="sensitivity").splitlines()[2].split()[0] == \
        report.most_sensitive(1)[0].name
    fig = report.plot("toy")
    assert len(fig.axes) == 2
    with pytest.raises(ValueError, match="sort"):
        report.table(sort="size")
    with pytest.raises(KeyError):
        report["nope"]
    by_ratio = report.table(sort="ratio").splitlines()[2:]
    assert [line.split()[0] for line in by_ratio] == ["up", "down"]     # r_x 40 before down's


# ---- sizes and the mixed-precision plan -------------------------------------------------------

def test_stored_bytes_counts_the_packed_layer():
    linear = nn.Linear(128, 64, bias=False)
    # 2-bit codes, fp16 scales and packed 2-bit zeros per group of 32, int32 g_idx per input
    expected = 128 * 64 * 2 // 8 + (128 // 32) * 64 * 2 + (128 // 32) * 64 * 2 // 8 + 128 * 4
    assert stored_bytes(linear, QuantScheme(2, 32)) == expected
    assert stored_bytes(linear, QuantScheme(2, 32)) == model_size_bytes(
        QuantLinear.from_float(linear, QuantScheme(2, 32)))
    assert stored_bytes(linear) == 128 * 64 * 4                          # float32 as it is


def test_bits_per_weight_of_a_plan():
    layers = {"a": nn.Linear(256, 64, bias=False), "b": nn.Linear(256, 192, bias=False)}
    two, eight = QuantScheme(2, 64), QuantScheme(8, 64)
    uniform = bits_per_weight(layers, dict.fromkeys(layers, two))
    # codes, fp16 scales and 2-bit zeros per group of 64 (18/64 bit), 32-bit g_idx per input
    # column of each layer (32 / out_features bits per weight)
    assert uniform == pytest.approx(2 + 18 / 64 + 32 * 256 * 2 / (256 * 256))
    assert bits_per_weight(layers) == pytest.approx(32.0)      # as stored: float32
    mixed = bits_per_weight(layers, {"a": eight, "b": two})
    # a quarter of the weights at 8 bits instead of 2: about 6/4 bits more per weight
    assert mixed - uniform == pytest.approx(0.25 * 6, rel=0.02)


def test_mixed_precision_keeps_the_most_sensitive_layers_that_fit():
    layers = {name: nn.Linear(256, out, bias=False)
              for name, out in (("big", 256), ("small", 32), ("mid", 64))}
    two, eight = QuantScheme(2, 64), QuantScheme(8, 64)
    base = bits_per_weight(layers, dict.fromkeys(layers, two))
    # room for "small" and "mid" at 8 bits, not for "big": big is skipped although first
    room = bits_per_weight(layers, {"big": two, "small": eight, "mid": eight})
    plan = mixed_precision(["big", "small", "mid"], layers, two, eight, budget=room)
    assert plan == {"big": two, "small": eight, "mid": eight}
    assert mixed_precision(["small", "mid"], layers, two, eight, budget=base) == \
        dict.fromkeys(layers, two)
    with pytest.raises(ValueError, match="budget"):
        mixed_precision(["big"], layers, two, eight, budget=base - 0.1)
    with pytest.raises(ValueError, match="not in layers"):
        mixed_precision(["nope"], layers, two, eight, budget=room)


def test_short_names():
    assert short_name("model.layers.3.self_attn.q_proj") == "L3.q_proj"
    assert short_name("encoder.layer.0.attention.self.query") == "L0.query"
    assert short_name("up") == "up"


def test_a_model_without_linear_layers_is_refused():
    with pytest.raises(ValueError, match="no linear layers"):
        diagnose(nn.Sequential(nn.Embedding(8, 4), nn.ReLU()), samples=SAMPLES)


def test_bad_arguments():
    with pytest.raises(ValueError, match="tokenizer"):
        diagnose(ToyLM())
    with pytest.raises(TypeError, match="quantize must be"):
        diagnose(ToyLM(), samples=SAMPLES, quantize="rtn")
    with pytest.raises(ValueError, match="calibration set is empty"):
        diagnose(ToyLM(), samples=[])


def test_outlier_channels_of_the_outlier_model(tiny):
    model, tokenizer = tiny
    samples = data.calibration_samples(tokenizer, 2, 64, seed=0)
    outlier = models.with_outliers(model)
    plain = diagnose(model, samples=samples, sensitivity=False)
    found = diagnose(outlier, samples=samples, sensitivity=False)
    assert plain.outlier_layers(20.0) == []
    readers = [l for l in found.layers if l.name.endswith(("q_proj", "k_proj", "v_proj",
                                                           "gate_proj", "up_proj"))]
    assert {l.name for l in found.outlier_layers(20.0)} == {l.name for l in readers}
    assert all(l.top_channels[0] in outlier.outlier_channels for l in readers)
    assert "30 of 42 layers" in found.summary()


@pytest.mark.slow
def test_w8a8_sensitivity_rises_on_the_outlier_layers(tiny):
    model, tokenizer = tiny
    samples = data.calibration_samples(tokenizer, 2, 64, seed=0)
    as_w8a8 = lambda name, linear: W8A8Linear.from_float(linear)  # noqa: E731
    plain = diagnose(model, samples=samples, quantize=as_w8a8)
    outlier = diagnose(models.with_outliers(model), samples=samples, quantize=as_w8a8)
    for name in ("model.layers.0.self_attn.v_proj", "model.layers.2.mlp.gate_proj"):
        assert outlier[name].sensitivity > 10 * plain[name].sensitivity
    # layers that do not read the residual stream are as before
    name = "model.layers.2.mlp.down_proj"
    assert outlier[name].sensitivity == pytest.approx(plain[name].sensitivity, rel=0.2)


def test_without_sensitivities_a_large_vocabulary_llama_is_diagnosed_without_its_head():
    """SmolLM2's case: the statistics of every linear layer are those of the full forward pass,
    the output head (not diagnosed) never runs, so its logits are never in memory."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=20_000, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)).eval()
    ids = torch.randint(0, 20_000, (1, 512), generator=torch.Generator().manual_seed(0))
    calls = []
    handle = model.lm_head.register_forward_hook(lambda module, args, out: calls.append(1))
    try:
        fast = diagnose(model, samples=ids, sensitivity=False)
    finally:
        handle.remove()
    assert calls == []
    with torch.no_grad():                                    # the whole model, head included
        watched = {}
        hooks = [layer.register_forward_hook(
            lambda m, a, out, name=name: watched.__setitem__(name, out.abs().max().item()))
            for name, layer in model.named_modules() if name.endswith("down_proj")]
        model(ids)
        for h in hooks:
            h.remove()
    assert fast.metric == "KL"
    for name, value in watched.items():
        assert fast[name].output_absmax == pytest.approx(value, rel=1e-6)

"""qcourse.diagnose on hand-built models whose statistics are known, and on qcourse-tiny."""
import copy
import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from qcourse import data, models
from qcourse.diagnose import diagnose, short_name
from qcourse.layers import W8A8Linear
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

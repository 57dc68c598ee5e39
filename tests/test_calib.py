import numpy as np
import pytest
import torch
from torch import nn

from qcourse import calib, data, models
from qcourse.quant import fake_quantize


def test_minmax_and_percentile_ranges():
    x = torch.linspace(-1, 1, 10001)
    x[0], x[-1] = -50.0, 100.0  # two outliers
    assert calib.minmax_range(x) == (-50.0, 100.0)
    lo, hi = calib.percentile_range(x, 99.0)
    ref = np.percentile(x.numpy(), [1.0, 99.0])
    assert lo == pytest.approx(ref[0], abs=1e-3) and hi == pytest.approx(ref[1], abs=1e-3)
    ratio = calib.percentile_clip_ratio(x, 99.0)
    assert ratio == pytest.approx(0.99 / 100.0, rel=0.01)
    assert calib.percentile_clip_ratio(torch.zeros(8), 99.0) == 1.0


def brute_force_best_ratio(row, bits, ratios):
    errors = [(row - fake_quantize(row, bits, symmetric=True, granularity="tensor",
                                   clip_ratio=r)).pow(2).sum().item() for r in ratios]
    return ratios[int(np.argmin(errors))], min(errors)


def test_mse_clip_ratio_per_channel_matches_brute_force():
    torch.manual_seed(0)
    w = torch.randn(6, 128)
    w[0, 3] = 8.0                                    # one outlier in row 0
    ratios = torch.linspace(0.1, 1.0, 19)
    best = calib.mse_clip_ratio(w, 3, symmetric=True, granularity="channel", ratios=ratios)
    assert best.shape == (6, 1)
    for i in range(6):
        r, _ = brute_force_best_ratio(w[i], 3, ratios.tolist())
        assert best[i, 0].item() == pytest.approx(r)
    assert best[0, 0] < 0.8                          # row 0 clips its outlier


def test_mse_clip_ratio_never_worse_than_minmax():
    torch.manual_seed(1)
    w = torch.randn(16, 256) ** 3                    # heavy tails
    for granularity, g in (("group", 64), ("channel", None), ("tensor", None)):
        ratio = calib.mse_clip_ratio(w, 3, symmetric=False, granularity=granularity, group_size=g)
        kwargs = dict(symmetric=False, granularity=granularity, group_size=g)
        clipped = (w - fake_quantize(w, 3, clip_ratio=ratio, **kwargs)).pow(2).sum()
        full = (w - fake_quantize(w, 3, **kwargs)).pow(2).sum()
        assert clipped < full
        assert ((ratio > 0) & (ratio <= 1)).all()
    assert calib.mse_clip_ratio(w, 3, symmetric=False, granularity="group",
                                group_size=64).shape == (16, 4)


def test_observer_bad_inputs():
    with pytest.raises(TypeError):
        calib.minmax_range(torch.arange(4))
    with pytest.raises(ValueError, match="empty"):
        calib.minmax_range(torch.zeros(0))
    with pytest.raises(ValueError, match="NaN"):
        calib.percentile_range(torch.tensor([1.0, float("nan")]))
    with pytest.raises(ValueError, match="percentile"):
        calib.percentile_range(torch.ones(4), 120)
    with pytest.raises(ValueError, match="ratios"):
        calib.mse_clip_ratio(torch.ones(4, 4), 4, symmetric=True, granularity="tensor", ratios=[])


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.fc1, self.fc2 = nn.Linear(4, 8), nn.Linear(8, 3)

    def forward(self, ids):
        return self.fc2(torch.relu(self.fc1(self.embed(ids))))


def test_activation_stats_of_a_toy_model_match_direct_computation():
    torch.manual_seed(0)
    toy = Toy()
    samples = torch.randint(0, 10, (5, 7))
    stats = calib.collect_activation_stats(toy, samples, batch_size=2)
    assert set(stats) == {"fc1", "fc2"}
    x1 = toy.embed(samples).reshape(-1, 4).detach()
    x2 = torch.relu(toy.fc1(x1)).detach()
    for name, x in (("fc1", x1), ("fc2", x2)):
        s = stats[name]
        assert s.tokens == 35
        assert torch.allclose(s.absmax, x.abs().amax(0))
        assert torch.allclose(s.mean_abs, x.abs().mean(0), atol=1e-6)
        assert torch.allclose(s.mean_sq, x.pow(2).mean(0), atol=1e-6)
    assert not toy.fc1._forward_hooks  # hooks removed


def test_activation_stats_of_every_linear_layer_of_tiny(tiny):
    model, tokenizer = tiny
    samples = data.calibration_samples(tokenizer, 2, 64, seed=0)
    stats = calib.collect_activation_stats(model, samples)
    assert set(stats) == set(models.linear_layers(model))
    assert len(stats) == 6 * 7
    down = stats["model.layers.0.mlp.down_proj"]
    assert down.absmax.shape == (768,) and down.tokens == 128
    for s in stats.values():
        assert (s.absmax >= s.mean_abs).all() and (s.mean_sq >= s.mean_abs.pow(2) - 1e-5).all()
    # a list of unequal-length samples works too
    ragged = calib.collect_activation_stats(model, [samples[0, :10], samples[1, :20]])
    assert ragged["model.layers.0.mlp.down_proj"].tokens == 30


def test_activation_stats_bad_samples():
    toy = Toy()
    with pytest.raises(ValueError, match="empty"):
        calib.collect_activation_stats(toy, torch.zeros(0, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="empty"):
        calib.collect_activation_stats(toy, [])
    with pytest.raises(TypeError, match="integer token ids"):
        calib.collect_activation_stats(toy, torch.rand(2, 8))
    with pytest.raises(ValueError, match="shape"):
        calib.collect_activation_stats(toy, torch.zeros(2, 3, 4, dtype=torch.long))
    with pytest.raises(TypeError):
        calib.collect_activation_stats(toy, "some text")

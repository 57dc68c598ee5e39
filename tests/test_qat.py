"""QAT: the straight-through estimator and LSQ's gradients (hand-computed cases, finite
differences, the rule at the clip edges), prepare/train/convert on a small Llama, bad input."""
import copy
import math

import pytest
import torch
from hypothesis import given, settings, strategies as st
from transformers import AutoTokenizer

from qcourse import qat
from qcourse.layers import QuantizedInput, QuantLinear
from qcourse.paths import TINY_DIR
from qcourse.quant import QuantScheme


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(TINY_DIR)


pytestmark = pytest.mark.usefixtures("one_thread")



def tokens(seed: int = 0, shape=(2, 24)) -> torch.Tensor:
    return torch.randint(0, 4096, shape, generator=torch.Generator().manual_seed(seed))


SIGNED3 = QuantScheme(3, None, symmetric=True)           # q in [-4, 3]


# ------------------------------------------------------------------ the STE, by hand

def test_forward_and_gradients_by_hand():
    # s = 0.5, z = 0, 3-bit signed: u = x/s = [0.52, -2.2, 1.48, 6.0, -5.0]
    x = torch.tensor([0.26, -1.1, 0.74, 3.0, -2.5], dtype=torch.float64, requires_grad=True)
    s = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    z = torch.tensor(0.0, dtype=torch.float64)
    y = qat.fake_quantize(x, s, z, SIGNED3, grad_scale=0.1)
    # round: [1, -2, 1, 6 -> clamp 3, -5 -> clamp -4]
    assert y.tolist() == [0.5, -1.0, 0.5, 1.5, -2.0]
    y.backward(torch.ones_like(y))
    assert x.grad.tolist() == [1.0, 1.0, 1.0, 0.0, 0.0]          # clipped STE
    # LSQ: round(u) - u inside, qmax - z above, qmin - z below; times g = 0.1
    expected = 0.1 * ((1 - 0.52) + (-2 + 2.2) + (1 - 1.48) + 3 + (-4))
    assert s.grad.item() == pytest.approx(expected, abs=1e-12)


def test_zero_point_gradient_is_minus_scale_outside_and_zero_inside():
    scheme = QuantScheme(2, None, symmetric=False)           # q in [0, 3]
    x = torch.tensor([0.1, 0.6, 5.0, -3.0], dtype=torch.float64)
    s = torch.tensor(0.5, dtype=torch.float64)
    z = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    # u = x/s + z = [1.2, 2.2, 11 (above), -5 (below)]
    y = qat.fake_quantize(x, s, z, scheme, grad_scale=1.0)
    assert y.tolist() == [0.0, 0.5, 1.0, -0.5]
    y.backward(torch.tensor([1.0, 1.0, 1.0, 2.0], dtype=torch.float64))
    assert z.grad.item() == pytest.approx(-0.5 * 1 - 0.5 * 2)    # only the two clipped values


@pytest.mark.parametrize("u, passes", [(3.0, True), (-4.0, True), (3.25, False), (-4.25, False),
                                       (2.75, True), (-3.75, True), (3.5, False)])
def test_gradient_rule_at_the_clip_edges(u, passes):
    """The STE passes the gradient for qmin <= x/s + z <= qmax (edges included) and blocks it
    beyond, even where rounding alone would land on the edge value (3.25 rounds to 3)."""
    x = torch.tensor([u * 0.5], dtype=torch.float64, requires_grad=True)
    s = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    y = qat.fake_quantize(x, s, torch.tensor(0.0, dtype=torch.float64), SIGNED3)
    y.sum().backward()
    assert x.grad.item() == (1.0 if passes else 0.0)
    expected_ds = (round(u) - u) if passes else (3.0 if u > 0 else -4.0)
    assert s.grad.item() == pytest.approx(expected_ds, abs=1e-12)


# ------------------------------------------------------------------ finite differences

def true_fake_quant(x, s, z, scheme):
    return (torch.clamp(torch.round(x / s + z), scheme.qmin, scheme.qmax) - z) * s


@settings(max_examples=20, deadline=None)
@given(bits=st.integers(2, 8), symmetric=st.booleans(), seed=st.integers(0, 10_000))
def test_gradients_match_finite_differences_where_differentiable(bits, symmetric, seed):
    """Beyond the grid the fake quantizer is differentiable: constant in x, linear in s
    ((qmax - z)·s or (qmin - z)·s). Its finite differences there equal the STE/LSQ gradients."""
    scheme = QuantScheme(bits, None, symmetric)
    gen = torch.Generator().manual_seed(seed)
    s = torch.rand((), generator=gen, dtype=torch.float64) + 0.1
    z = torch.tensor(0.0 if symmetric else float(2 ** (bits - 1)), dtype=torch.float64)
    # values well beyond the grid on both sides
    side = torch.where(torch.rand(32, generator=gen) < 0.5, -1.0, 1.0).double()
    u = torch.where(side > 0, scheme.qmax + 1 + torch.rand(32, generator=gen).double() * 3,
                    scheme.qmin - 1 - torch.rand(32, generator=gen).double() * 3)
    x = ((u - z) * s).requires_grad_(True)
    s_ = s.clone().requires_grad_(True)
    y = qat.fake_quantize(x, s_, z, scheme)
    weights = torch.randn(32, generator=gen, dtype=torch.float64)
    (y * weights).sum().backward()
    eps = 1e-6
    fd_s = ((true_fake_quant(x.detach(), s + eps, z, scheme)
             - true_fake_quant(x.detach(), s - eps, z, scheme)) * weights).sum() / (2 * eps)
    assert s_.grad.item() == pytest.approx(fd_s.item(), rel=1e-6, abs=1e-9)
    fd_x = (true_fake_quant(x.detach() + eps, s, z, scheme)
            - true_fake_quant(x.detach() - eps, s, z, scheme)) / (2 * eps)
    assert torch.equal(x.grad, fd_x * weights)                       # both zero


def test_gradcheck_of_the_scale_beyond_the_grid():
    """torch.autograd.gradcheck where the function is differentiable in s (all values clipped)."""
    x = torch.tensor([[5.0, -7.0, 9.0, -6.5]], dtype=torch.float64)
    z = torch.zeros(1, 1, dtype=torch.float64)
    s = torch.full((1, 1), 0.7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda s_: qat.fake_quantize(x, s_, z, SIGNED3), (s,))


@settings(max_examples=20, deadline=None)
@given(bits=st.integers(2, 8), seed=st.integers(0, 10_000))
def test_inside_the_grid_lsq_is_the_derivative_with_the_rounding_offset_held(bits, seed):
    """Inside the grid, round's STE makes ∂ŵ/∂s the derivative of ŵ = (u + c - z)·s with the
    rounding offset c = round(u) - u held fixed: finite differences of that surrogate agree,
    and ∂ŵ/∂x is the surrogate's slope 1."""
    scheme = QuantScheme(bits, None, symmetric=True)
    gen = torch.Generator().manual_seed(seed)
    s = torch.rand((), generator=gen, dtype=torch.float64) + 0.05
    u = scheme.qmin + torch.rand(16, generator=gen, dtype=torch.float64) * (scheme.qmax - scheme.qmin)
    x = (u * s).requires_grad_(True)
    s_ = s.clone().requires_grad_(True)
    qat.fake_quantize(x, s_, torch.tensor(0.0, dtype=torch.float64), scheme).sum().backward()
    offset = torch.round(u) - u
    surrogate = lambda x_, s2: ((x_ / s2 + offset) * s2).sum()     # noqa: E731
    eps = 1e-6
    fd_s = (surrogate(x.detach(), s + eps) - surrogate(x.detach(), s - eps)) / (2 * eps)
    assert s_.grad.item() == pytest.approx(fd_s.item(), rel=1e-6, abs=1e-9)
    assert torch.equal(x.grad, torch.ones_like(x))


# ------------------------------------------------------------------ LSQ's numbers

def test_lsq_gradient_scale_and_initialisation_by_hand():
    assert qat.lsq_grad_scale(128, 4) == pytest.approx(1 / math.sqrt(128 * 7))
    assert qat.lsq_grad_scale(64, 2) == pytest.approx(1 / 8)
    w = torch.tensor([[[1.0, -1.0, 3.0, -3.0]]])                       # one group, mean|w| = 2
    s, z = qat.lsq_init(w, QuantScheme(4, 4, symmetric=True))
    assert s.item() == pytest.approx(4 / math.sqrt(7)) and z.item() == 0
    s, z = qat.lsq_init(w, QuantScheme(4, 4, symmetric=False))
    assert s.item() == pytest.approx(4 / math.sqrt(7)) and z.item() == 8   # centred on 0


def test_stored_scale_is_fp16_and_passes_gradients_straight_through():
    scheme = QuantScheme(4, None, symmetric=False)
    scale = torch.tensor([0.1234567, 1e-9], requires_grad=True)
    zero = torch.tensor([7.4, 20.0], requires_grad=True)
    s, z = qat.as_stored(scale, zero, scheme)
    assert s[0].item() == torch.tensor(0.1234567).half().float().item()
    assert s[1].item() == 2.0**-24                                     # kept positive
    assert z.tolist() == [7.0, 15.0]                                   # integer, on the grid
    (s.sum() + 2 * z.sum()).backward()
    assert scale.grad.tolist() == [1.0, 1.0] and zero.grad.tolist() == [2.0, 2.0]


def test_per_token_activation_grid():
    x = torch.randn(15, 64, generator=torch.Generator().manual_seed(0))
    y = qat.fake_quantize_tokens(x)
    rows, ys = x, y
    step = (rows.amax(1).clamp(min=0) - rows.amin(1).clamp(max=0)) / 255
    assert ((rows - ys).abs() <= step[:, None] / 2 + 1e-6).all()
    assert all(len(row.unique()) <= 256 for row in ys)
    x.requires_grad_(True)
    qat.fake_quantize_tokens(x).sum().backward()
    # the min-max grid covers every value except, by less than half a step, a row's extreme on
    # the side the rounded zero point shortened: only a row's min or max can be clipped
    blocked = (x.grad.reshape(-1, 64) == 0)
    extremes = (rows == rows.amax(1, keepdim=True)) | (rows == rows.amin(1, keepdim=True))
    assert not (blocked & ~extremes).any()
    assert x.grad.reshape(-1, 64)[~extremes].eq(1).all()


# ------------------------------------------------------------------ prepare / convert

@pytest.mark.parametrize("bits, group_size, symmetric, learn, activations", [
    (4, 32, False, False, None), (3, 32, True, False, None), (2, 64, False, True, None),
    (8, None, True, True, None), (4, 32, True, False, "int8")])
def test_converted_logits_equal_the_fake_quantized_model(small_llama, bits, group_size, symmetric, learn,
                                                         activations):
    model = qat.prepare(small_llama(), bits, group_size, symmetric=symmetric, learn_scales=learn,
                        activations=activations)
    if learn:   # move the learned grid away from its start, as training would
        with torch.no_grad():
            for layer in qat.fake_quantized_layers(model).values():
                layer.scale.mul_(1.1)
                layer.zero.add_(0.6 if not symmetric else 0.0)
    x = tokens()
    with torch.no_grad():
        fake = model(x).logits
        converted = qat.convert(model)
        real = converted(x).logits
    assert not qat.fake_quantized_layers(converted)
    layers = [m for m in converted.modules() if isinstance(m, QuantLinear)]
    assert len(layers) == 2 * 7
    assert all(m.bits == bits for m in layers)
    wrapped = [m for m in converted.modules() if isinstance(m, QuantizedInput)]
    assert len(wrapped) == (14 if activations else 0)
    assert torch.equal(fake, real)


def test_step_zero_is_round_to_nearest(small_llama):
    """Before training, min-max QAT computes RTN's grid (up to the fp16 rounding of the scale,
    which moves a code only for a weight within that rounding of a half step)."""
    float_model = small_llama()
    model = qat.convert(qat.prepare(copy.deepcopy(float_model), 4, 32))
    rtn = QuantLinear.from_float(float_model.model.layers[0].mlp.up_proj, 4, 32)
    q_qat, _ = model.model.layers[0].mlp.up_proj.integers()
    q_rtn, _ = rtn.integers()
    assert (q_qat != q_rtn).float().mean() < 1e-3
    assert ((q_qat.int() - q_rtn.int()).abs() <= 1).all()


def test_prepare_keeps_parameters_and_skips_the_head(small_llama):
    model = small_llama()
    weight = model.model.layers[1].self_attn.o_proj.weight
    qat.prepare(model, 4, 32)
    layer = model.model.layers[1].self_attn.o_proj
    assert isinstance(layer, qat.FakeQuantLinear) and layer.weight is weight
    assert isinstance(model.lm_head, torch.nn.Linear)
    assert len(qat.fake_quantized_layers(model)) == 14


# ------------------------------------------------------------------ training

def test_training_lowers_the_loss_and_moves_weights(small_llama, tokenizer):
    model = qat.prepare(small_llama(), 4, 32, learn_scales=True)
    scales = {n: m.scale.detach().clone() for n, m in qat.fake_quantized_layers(model).items()}
    weight = model.model.layers[0].mlp.down_proj.weight.detach().clone()
    log = qat.train(model, tokenizer, 12, lr=3e-3, batch_size=4, seq_len=32, progress=False)
    assert len(log["loss"]) == 12 and log["tokens"] == 12 * 4 * 32
    assert sum(log["loss"][-3:]) < sum(log["loss"][:3]) - 3 * 0.25       # it learns
    assert not torch.equal(weight, model.model.layers[0].mlp.down_proj.weight)
    moved = [not torch.equal(scales[n], m.scale) for n, m in qat.fake_quantized_layers(model).items()]
    assert all(moved)
    assert not model.training


def test_frozen_scales_do_not_move(small_llama, tokenizer):
    model = qat.freeze_scales(qat.prepare(small_llama(), 4, 32, learn_scales=True))
    layers = qat.fake_quantized_layers(model)
    scales = {n: m.scale.detach().clone() for n, m in layers.items()}
    qat.train(model, tokenizer, 3, lr=1e-3, batch_size=2, seq_len=16, progress=False)
    assert all(torch.equal(scales[n], m.scale) for n, m in layers.items())


def test_same_seed_same_run(small_llama, tokenizer):
    logs = [qat.train(qat.prepare(small_llama(), 3, 32), tokenizer, 3, lr=1e-3, batch_size=2,
                      seq_len=16, seed=5, progress=False)["loss"] for _ in range(2)]
    assert logs[0] == logs[1]


def test_distillation_starts_from_the_kl_to_the_float_model(small_llama, tokenizer):
    float_model = small_llama()
    model = qat.prepare(copy.deepcopy(float_model), 2, 32)
    log = qat.train(model, tokenizer, 1, lr=1e-12, batch_size=2, seq_len=16, seed=3,
                    distill=True, progress=False)
    from qcourse import data
    x = qat.random_windows(data.token_ids(tokenizer, "train"), 2, 16,
                           torch.Generator().manual_seed(3))
    with torch.no_grad():
        student = qat.prepare(copy.deepcopy(float_model), 2, 32)(x).logits.log_softmax(-1)
        teacher = float_model(x).logits.log_softmax(-1)
    kl = (teacher.exp() * (teacher - student)).sum(-1).mean()
    assert kl > 1e-3
    assert log["loss"][0] == pytest.approx(kl.item(), rel=1e-4)
    assert log["distill"]


def test_distillation_loss_by_hand():
    student = torch.tensor([[[0.0, 0.0]]])
    teacher = torch.log(torch.tensor([[[0.9, 0.1]]]))
    expected = 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)
    assert qat.distillation_loss(student, teacher).item() == pytest.approx(expected, rel=1e-5)
    assert qat.distillation_loss(teacher, teacher).item() == pytest.approx(0.0, abs=1e-7)


# ------------------------------------------------------------------ bad input

@pytest.mark.parametrize("bits", [1, 9, 0, 4.0, True])
def test_bits_outside_2_to_8_are_refused(small_llama, bits):
    with pytest.raises(ValueError, match="bits"):
        qat.prepare(small_llama(), bits, 32)


def test_unpackable_width_is_refused_before_training(small_llama):
    with pytest.raises(ValueError, match=r"one of \(2, 3, 4, 8\)"):
        qat.prepare(small_llama(), 5, 32)


def test_group_size_that_does_not_divide_changes_nothing(small_llama):
    model = small_llama()
    with pytest.raises(ValueError, match="group_size 48 does not divide the 64 inputs of "
                                         "model.layers.0.self_attn.q_proj"):
        qat.prepare(model, 4, 48)
    assert not qat.fake_quantized_layers(model)


@pytest.mark.parametrize("kwargs, match", [({"activations": "int4"}, "activations"),
                                           ({"init": "mse"}, "init"),
                                           ({"learn_scales": "yes"}, "learn_scales")])
def test_bad_options(small_llama, kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        qat.prepare(small_llama(), 4, 32, **kwargs)


def test_prepare_twice_train_before_prepare_convert_without_fake_layers(small_llama, tokenizer):
    model = qat.prepare(small_llama(), 4, 32)
    with pytest.raises(ValueError, match="already prepared"):
        qat.prepare(model, 4, 32)
    with pytest.raises(ValueError, match="call qat.prepare"):
        qat.train(small_llama(), tokenizer, 2, progress=False)
    with pytest.raises(ValueError, match="no fake-quantized layer"):
        qat.convert(small_llama())
    with pytest.raises(ValueError, match="steps"):
        qat.train(model, tokenizer, 0, progress=False)


def test_nan_loss_stops_with_the_step_and_leaves_the_model_as_before_it(small_llama, tokenizer):
    model = qat.prepare(small_llama(), 4, 32)
    calls, before = [], {}

    def poison(module, args, output):
        calls.append(1)
        if len(calls) == 3:     # the forward pass of step 3
            before.update({k: v.clone() for k, v in model.state_dict().items()})
            return output * float("nan")
        return output

    model.model.norm.register_forward_hook(poison)
    with pytest.raises(FloatingPointError, match=r"step 3: .*after step 2.*Lower the learning"):
        qat.train(model, tokenizer, 5, lr=1e-3, batch_size=2, seq_len=16, progress=False)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)

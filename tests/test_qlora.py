"""QLoRA: our LoRA over NF4Linear (forward, what trains, memory, merge, bad input) and, slow,
peft's LoRA on a bitsandbytes NF4 base with double quantization, on the CPU."""
import copy

import pytest
import torch
from torch import nn
from transformers import AutoTokenizer

from qcourse import data, eval as qeval, qat, qlora
from qcourse.layers import NF4Linear
from qcourse.nf4 import NF4_CODE
from qcourse.paths import TINY_DIR


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(TINY_DIR)


pytestmark = pytest.mark.usefixtures("one_thread")



def tokens(seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 4096, (2, 24), generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------ the layer

def test_lora_layer_is_its_base_plus_the_low_rank_update():
    gen = torch.Generator().manual_seed(0)
    base = NF4Linear.from_float(nn.Linear(64, 32))
    layer = qlora.LoRALinear(base, rank=4, alpha=8, generator=gen)
    x = torch.randn(3, 5, 64, generator=gen)
    with torch.no_grad():
        assert torch.equal(layer(x), base(x))                    # B = 0 at the start
        layer.lora_B.normal_(generator=gen)
        expected = x @ base.weight().t() + base.bias + 2.0 * (x @ layer.lora_A.t()) @ layer.lora_B.t()
        torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(layer.merged()(x), expected, rtol=1e-5, atol=1e-5)
    assert layer.lora_A.abs().max() <= 1 / 8                     # kaiming-uniform bound 1/√K


def test_prepare_freezes_everything_but_the_adapters(small_llama):
    model = qlora.prepare(small_llama(), rank=4)
    adapters = qlora.adapters(model)
    assert len(adapters) == 14 and all(isinstance(a.base, NF4Linear) for a in adapters.values())
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(n.endswith(("lora_A", "lora_B")) for n in trainable)
    expected = sum(4 * (a.base.in_features + a.base.out_features) for a in adapters.values())
    assert sum(p.numel() for p in qlora.adapter_parameters(model)) == expected


def test_training_moves_only_the_adapters_and_lowers_the_loss(small_llama, tokenizer):
    model = qlora.prepare(small_llama(), rank=8)
    frozen = {k: v.clone() for k, v in model.state_dict().items() if "lora_" not in k}
    x = qat.random_windows(data.token_ids(tokenizer, "train"), 8, 32,
                             torch.Generator().manual_seed(99))      # held-out windows
    with torch.no_grad():
        start = model(x, labels=x).loss.item()
    log = qlora.train(model, tokenizer, 12, lr=1e-2, batch_size=4, seq_len=32, progress=False)
    with torch.no_grad():
        end = model(x, labels=x).loss.item()
    after = model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in frozen.items())
    assert not all(torch.equal(a.lora_B, torch.zeros_like(a.lora_B))
                   for a in qlora.adapters(model).values())
    assert end < start - 0.01          # a random model's logits are small: a small but real drop
    # what training kept for them: each value, its gradient and AdamW's two moments, 4 bytes
    # each, plus AdamW's step counter (a 4-byte tensor) per parameter tensor
    params = qlora.adapter_parameters(model)
    n = sum(p.numel() for p in params)
    assert log["trainable_parameters"] == n
    assert log["training_state_bytes"] == 16 * n + 4 * len(params)


def test_merge_gives_float_layers_with_the_same_logits(small_llama, tokenizer):
    model = qlora.prepare(small_llama(), rank=4)
    qlora.train(model, tokenizer, 3, lr=1e-2, batch_size=2, seq_len=16, progress=False)
    x = tokens()
    with torch.no_grad():
        before = model(x).logits
        merged = qlora.merge(model)
        after = merged(x).logits
    assert not qlora.adapters(merged)
    assert isinstance(merged.model.layers[0].mlp.down_proj, nn.Linear)
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)


def test_float_base_is_plain_lora_with_the_same_adapters(small_llama, tokenizer):
    """base="float": the frozen layers stay the model's own nn.Linear (same function at the
    start), the A matrices are the NF4 version's, and merging adds (α/r)·B·A to the float
    weight."""
    float_model, nf4_model = small_llama(), small_llama()
    x = tokens()
    with torch.no_grad():
        expected = float_model(x).logits
    lora = qlora.prepare(float_model, rank=4, base="float")
    qlora.prepare(nf4_model, rank=4)
    ours, theirs = qlora.adapters(lora), qlora.adapters(nf4_model)
    assert all(type(a.base) is nn.Linear and not a.base.weight.requires_grad for a in ours.values())
    assert all(torch.equal(ours[n].lora_A, theirs[n].lora_A) for n in ours)
    with torch.no_grad():
        torch.testing.assert_close(lora(x).logits, expected)           # B = 0: the float model
    qlora.train(lora, tokenizer, 2, lr=1e-2, batch_size=2, seq_len=16, progress=False)
    layer = next(iter(ours.values()))
    with torch.no_grad():
        before = lora(x).logits
        torch.testing.assert_close(layer.merged().weight, layer.base.weight + layer.delta())
        torch.testing.assert_close(qlora.merge(lora)(x).logits, before, rtol=1e-4, atol=1e-4)


def test_saved_activation_bytes_counts_what_backward_keeps(small_llama):
    """A frozen base keeps less for the backward pass than full fine-tuning (no weight
    gradients need the layers' inputs), more tokens keep proportionally more, the model's own
    weights are not counted, and the count does not change the model's mode."""
    from qcourse import training

    full = small_llama()
    x = torch.randint(0, 4096, (2, 16), generator=torch.Generator().manual_seed(0))
    one = training.saved_activation_bytes(full, x)
    two = training.saved_activation_bytes(full, torch.cat([x, x]))
    assert one > 0 and two == pytest.approx(2 * one, rel=0.05)
    assert one < sum(p.numel() * 4 for p in full.parameters())    # tiny batch, no weights
    assert not full.training
    lora = qlora.prepare(small_llama(), rank=4, base="float")
    assert training.saved_activation_bytes(lora, x) < one


def test_storage_bits_with_and_without_double_quantization():
    from qcourse.eval import model_size_bytes

    layer = NF4Linear.from_float(nn.Linear(256, 128, bias=False))
    assert qlora.storage_bits() == 8 * model_size_bytes(layer) / (256 * 128) == 4.5
    # QLoRA, section 2: 32/64 = 0.5 bits per weight of constants, 8/64 + 32/(64·256) ≈ 0.127 with
    # double quantization
    assert qlora.storage_bits(64, 256) == pytest.approx(4 + 0.127, abs=5e-4)
    assert qlora.storage_bits(64) - qlora.storage_bits(64, 256) == pytest.approx(0.373, abs=5e-4)
    for bad in (0, -64, 64.0, True):
        with pytest.raises(ValueError, match="block_size"):
            qlora.storage_bits(bad)
        with pytest.raises(ValueError, match="double_quant_block"):
            qlora.storage_bits(64, bad)


def test_bad_input(small_llama, tokenizer):
    base = NF4Linear.from_float(nn.Linear(64, 32))
    for rank in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="rank"):
            qlora.LoRALinear(base, rank=rank)
    with pytest.raises(ValueError, match="exceeds"):
        qlora.LoRALinear(base, rank=33)
    with pytest.raises(ValueError, match="qlora.prepare"):
        qlora.train(small_llama(), tokenizer, 1, progress=False)
    with pytest.raises(ValueError, match="no LoRA adapters to merge"):
        qlora.merge(small_llama())
    with pytest.raises(ValueError, match="no nn.Linear"):
        qlora.prepare(nn.Sequential(nn.ReLU()))
    with pytest.raises(ValueError, match="base must be one of"):
        qlora.prepare(small_llama(), base="int4")


# ------------------------------------------------------------------ peft + bitsandbytes (slow)

@pytest.fixture(scope="module")
def peft_model():
    from qcourse.references import peft_qlora
    return peft_qlora.load_qlora(rank=8)


@pytest.mark.slow
def test_peft_qlora_has_our_adapters_and_our_nf4_up_to_double_quantization(tiny, peft_model):
    from qcourse.references import bnb, peft_qlora

    ours = qlora.prepare(copy.deepcopy(tiny[0]), rank=8)
    layers = peft_qlora.lora_layers(peft_model)
    assert set(layers) == set(qlora.adapters(ours))
    assert sum(p.numel() for p in peft_qlora.trainable_parameters(peft_model)) == \
        sum(p.numel() for p in qlora.adapter_parameters(ours))
    assert not peft_qlora.repacked_layers(peft_model)
    # one NF4 level: the largest gap between neighbouring NF4 values (0.723 -> 1.0)
    level = NF4_CODE.sort().values.diff().max().item()
    total = beyond = 0
    for name, layer in layers.items():
        theirs = bnb.dequantized_nf4_weight(layer.base_layer).reshape(-1, 64)
        mine = ours.get_submodule(name).base.weight().reshape(-1, 64)
        absmax = tiny[0].get_submodule(name).weight.detach().reshape(-1, 64).abs().amax(1, True)
        relative = (theirs - mine).abs() / absmax
        # double quantization stores each block's absmax in 8 bits: a weight moves by its code
        # (|c| <= 1) times that error, under 1.5 % of the block's absmax; a weight a hair from
        # an NF4 rounding boundary may land on the neighbouring level: rare, one level at most
        beyond += (relative > 0.015).sum().item()
        total += relative.numel()
        assert (relative <= level + 1e-6).all(), name
    assert beyond <= 1e-5 * total, (beyond, total)


@pytest.mark.slow
def test_peft_and_ours_train_alike_and_merge(tiny, peft_model):
    """Same A matrices, same prose windows, same loop: prose perplexity (16 test windows)
    after 20 steps within 1 % of each other, both below where they started; peft's merge (into
    NF4 again) moves the logits by no more than twice what the first NF4 rounding did."""
    from qcourse.references import peft_qlora

    model, tokenizer = tiny
    ours = qlora.prepare(copy.deepcopy(model), rank=8)
    for name, (a, b) in peft_qlora.lora_weights(peft_model).items():
        ours.get_submodule(name).lora_A.data.copy_(a)
        ours.get_submodule(name).lora_B.data.copy_(b)
    ppl = lambda m: qeval.perplexity(m, tokenizer, max_windows=16, domain="prose")  # noqa: E731
    start = ppl(ours)
    options = dict(lr=1e-3, batch_size=4, seq_len=128, domain="prose", progress=False)
    qlora.train(ours, tokenizer, 20, **options)
    peft_qlora.train(peft_model, tokenizer, 20, **options)
    assert peft_model.training and not peft_qlora.repacked_layers(peft_model)
    mine, theirs = ppl(ours), ppl(peft_model)
    assert mine < start and theirs < start
    assert mine == pytest.approx(theirs, rel=0.01)

    x = torch.randint(0, 4096, (1, 48), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        adapters = peft_model(x).logits
        merged = peft_qlora.merge(peft_model)(x).logits
        # the first NF4 rounding (float -> NF4 base, adapters still zero) on the same tokens
        first = (qlora.prepare(copy.deepcopy(model), rank=8)(x).logits - model(x).logits)
    change = (merged - adapters).abs().max().item()
    # peft's merge rounds W' + BA to NF4 again: a second rounding of the same kind, which moves
    # the logits by the same order as the first one did
    assert change < 2 * first.abs().max().item(), (change, first.abs().max().item())


@pytest.mark.slow
def test_peft_merge_refuses_weights_bitsandbytes_repacked(tiny):
    from qcourse.references import peft_qlora

    model = peft_qlora.load_qlora(rank=4).eval()
    with torch.no_grad():
        model(torch.randint(0, 4096, (2, 16)))        # eval mode, no grad: bitsandbytes repacks
    if not peft_qlora.repacked_layers(model):
        pytest.skip("this CPU has no AVX512-BF16: bitsandbytes does not repack here")
    with pytest.raises(RuntimeError, match="training mode"):
        peft_qlora.merge(model)

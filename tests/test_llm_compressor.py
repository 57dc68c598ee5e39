"""Cross-check of qcourse.gptq against llm-compressor's GPTQ (same W and H; same model and
calibration samples). Skipped, with the reason, where llm-compressor cannot be imported."""
import copy
import math

import pytest

from qcourse import blocks, data, eval as qeval, gptq, ptq
from qcourse.references import llm_compressor

REASON = llm_compressor.unavailable_reason()
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(REASON is not None, reason=f"llm-compressor: {REASON}")]

LAYERS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
          "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")


@pytest.fixture(scope="module")
def problems(tiny):
    """(name, W, H) for every linear layer of blocks 0 and 3 of qcourse-tiny, H from 4096
    calibration tokens."""
    model, tok = tiny
    inputs = blocks.capture_block_inputs(model, data.calibration_samples(tok, 16, 256, seed=0))
    found = []
    for index, block in enumerate(model.model.layers[:4]):
        if index in (0, 3):
            hessians = gptq.collect_hessians(block, inputs, list(LAYERS))
            found += [(f"{index}.{name}", block.get_submodule(name).weight.detach(),
                       hessians[name].matrix) for name in LAYERS]
        inputs = blocks.BlockInputs(blocks.run_block(block, inputs), inputs.kwargs)
    return found


def error_ratios(problems, bits, act_order, **ours):
    """Our tr(ΔHΔᵀ) over llm-compressor's, per layer."""
    ratios = {}
    for name, W, H in problems:
        theirs = llm_compressor.quantize_layer(W, H, bits, 128, act_order=act_order)
        mine = gptq.gptq_quantize_layer(W, H, bits, 128, act_order=act_order, **ours)[0]
        ratios[name] = gptq.hessian_error(W, mine, H) / gptq.hessian_error(W, theirs, H)
    return ratios


@pytest.mark.parametrize("bits", [4, 3])
@pytest.mark.parametrize("act_order", [False, True])
def test_same_algorithm_same_error(problems, bits, act_order):
    """llm-compressor takes every group's scale from the original weights: with
    static_groups=True ours runs the same algorithm and lands on the same error."""
    ratios = error_ratios(problems, bits, act_order, static_groups=True)
    assert all(abs(r - 1) < 2e-3 for r in ratios.values()), ratios


@pytest.mark.parametrize("bits", [4, 3])
@pytest.mark.parametrize("act_order", [False, True])
def test_default_groups_close_to_the_reference(problems, bits, act_order):
    """Our default recomputes each group's scale from the updated weights (as the original
    GPTQ, AutoGPTQ and GPTQModel do). Against llm-compressor's static groups it measures, as
    a geometric mean over 14 layers, 0.99-1.00 at 4 bits and 1.01-1.02 at 3 bits (the larger
    range of the updated weights costs a little at 3 bits); the bounds leave a small margin."""
    ratios = error_ratios(problems, bits, act_order)
    mean = math.exp(sum(math.log(r) for r in ratios.values()) / len(ratios))
    assert mean < (1.005 if bits == 4 else 1.025), ratios
    assert max(ratios.values()) < (1.04 if bits == 4 else 1.07), ratios


def test_model_perplexity_matches_llm_compressor_and_beats_rtn(tiny):
    """Same model, same calibration samples, 4-bit groups of 128: our test perplexity is
    within 1 % of llm-compressor's; at 4 and 3 bits it is below RTN's."""
    model, tok = tiny
    samples = data.calibration_samples(tok, 32, 256, seed=0)
    ppl = lambda m: qeval.perplexity(m, tok, max_windows=16)  # noqa: E731
    ours = ppl(gptq.quantize_model(copy.deepcopy(model), samples, 4, 128, progress=False))
    theirs = ppl(llm_compressor.quantize_model(copy.deepcopy(model), samples, 4, 128))
    assert abs(ours / theirs - 1) < 0.01, (ours, theirs)
    assert ours < ppl(ptq.quantize_rtn(copy.deepcopy(model), 4, "group", 128))
    ours3 = ppl(gptq.quantize_model(copy.deepcopy(model), samples, 3, 128, progress=False))
    assert ours3 < ppl(ptq.quantize_rtn(copy.deepcopy(model), 3, "group", 128))

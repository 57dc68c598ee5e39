"""Layer-by-layer processing replays exactly what the full forward pass computes."""
import pytest
import torch

from qcourse import blocks, data


@pytest.fixture(scope="module")
def samples(tiny):
    _, tok = tiny
    return data.calibration_samples(tok, 3, 64, seed=1)


def test_sequential_without_changes_reproduces_the_forward_pass(tiny, samples):
    model, _ = tiny
    seen = []

    def process(index, block, inputs):
        seen.append((index, inputs.tokens))

    inputs = blocks.capture_block_inputs(model, samples, batch_size=2)
    assert [h.shape[0] for h in inputs.hidden] == [2, 1]
    blocks.sequential(model, samples, process, batch_size=2, progress=False)
    assert seen == [(i, 3 * 64) for i in range(model.config.num_hidden_layers)]

    hidden = inputs
    for block in model.model.layers:
        hidden = blocks.BlockInputs(blocks.run_block(block, hidden), hidden.kwargs)
    logits = model.lm_head(model.model.norm(torch.cat(hidden.hidden)))
    with torch.no_grad():
        expected = model(samples).logits
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)


def test_a_process_that_changes_a_block_changes_what_later_blocks_see(tiny, samples):
    model, _ = tiny
    model = type(model)(model.config)  # a fresh copy with random weights, not the shared fixture
    first_inputs = []

    def zero_first_block_mlp(index, block, inputs):
        first_inputs.append(inputs.hidden[0].clone())
        if index == 0:
            torch.nn.init.zeros_(block.mlp.down_proj.weight)
            torch.nn.init.zeros_(block.self_attn.o_proj.weight)

    blocks.sequential(model, samples, zero_first_block_mlp, progress=False)
    # a block whose residual branches output zero passes its input through unchanged
    torch.testing.assert_close(first_inputs[1], first_inputs[0])


def test_empty_calibration_set_is_refused(tiny):
    model, _ = tiny
    with pytest.raises(ValueError, match="empty"):
        blocks.capture_block_inputs(model, torch.zeros(0, 8, dtype=torch.long))

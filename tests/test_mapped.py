"""qcourse.models.mapped: giving a mapped checkpoint's pages back changes memory, never values."""
import copy
import sys

import pytest
import torch

from qcourse.models import mapped

from mapped_files import mapping_bytes, private_tiny

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="madvise and /proc are Linux")


def resident_bytes(path: str) -> int:
    return mapping_bytes(path, "Rss")


@pytest.fixture()
def tiny(tmp_path):
    model, tokenizer = private_tiny(tmp_path)
    ids = torch.randint(0, len(tokenizer), (1, 64), generator=torch.Generator().manual_seed(0))
    return model, ids


@linux
def test_tiny_model_weights_are_mapped_from_its_checkpoint(tiny):
    model, _ = tiny
    assert mapped.weights_file(model).endswith("model.safetensors")


@linux
def test_release_gives_pages_back_and_keeps_every_value(tiny):
    model, ids = tiny
    with torch.no_grad():
        before = model(ids).logits
    path = mapped.weights_file(model)
    resident = resident_bytes(path)
    assert resident > 10e6                       # the forward pass read the 23 MB of weights
    assert mapped.release(model) > 0
    assert resident_bytes(path) < resident / 2
    with torch.no_grad():
        assert torch.equal(model(ids).logits, before)


@linux
def test_release_never_discards_a_weight_written_in_place(tiny):
    model, _ = tiny
    weight = model.model.layers[0].mlp.up_proj.weight
    with torch.no_grad():
        expected = weight * 2
        weight.mul_(2)
    mapped.release(model)
    assert torch.equal(weight, expected)


@linux
def test_streaming_gives_the_same_logits_with_fewer_pages_resident(tiny):
    model, ids = tiny
    with torch.no_grad():
        before = model(ids).logits
    with mapped.streaming(model) as works:
        assert works
        with torch.no_grad():
            streamed = model(ids).logits
        resident = resident_bytes(mapped.weights_file(model))
    assert torch.equal(streamed, before)
    assert resident < 10e6                    # the last block's pages and the head's, not all
    assert not model.model.layers[0]._forward_hooks      # hooks removed on leaving


def test_a_model_in_ordinary_memory_is_left_alone(tiny):
    model, ids = tiny
    copied = copy.deepcopy(model)                # deepcopy allocates: nothing is mapped
    assert mapped.weights_file(copied) is None
    assert mapped.release(copied) == 0
    with mapped.streaming(copied) as works:
        assert not works


def test_release_rejects_what_is_not_a_module():
    with pytest.raises(TypeError, match="torch.nn.Module"):
        mapped.release(torch.zeros(3))

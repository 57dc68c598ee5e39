"""qcourse.models.unmapped: a block copied out of its memory map when it first runs, so that
writing into it in place leaves no private copy of the file's pages behind."""
import sys

import pytest
import torch

from qcourse import awq, data, models
from qcourse.models import mapped
from qcourse.models.unmapped import copied_when_run

from mapped_files import mapping_bytes, private_tiny

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="madvise and /proc are Linux")
pytestmark = pytest.mark.usefixtures("one_thread")


def private_copy_bytes(path: str) -> int:
    """Pages of ``path``'s mappings written in place, each now a private copy (Anonymous;
    Private_Dirty would also count pages of a file copied a moment ago, only read here)."""
    return mapping_bytes(path, "Anonymous")


@pytest.fixture()
def tiny(tmp_path):
    return private_tiny(tmp_path)


@linux
def test_a_block_that_runs_is_copied_out_with_the_same_values(tiny):
    model, tokenizer = tiny
    ids = torch.randint(0, len(tokenizer), (1, 32), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = model(ids).logits
    blocks = list(models.decoder_layers(model))
    with copied_when_run(model):
        with torch.no_grad():
            during = model(ids).logits
        assert all(mapped.mapping_of(p.detach()) is None for b in blocks for p in b.parameters())
        assert mapped.mapping_of(model.model.embed_tokens.weight.detach()) is not None
    assert torch.equal(during, before)
    assert not any(b._forward_pre_hooks for b in blocks)          # the hooks are gone


@linux
def test_a_block_that_never_runs_stays_mapped(tiny):
    model, _ = tiny
    with copied_when_run(model):
        pass
    block = next(models.decoder_layers(model))
    assert mapped.mapping_of(block.mlp.up_proj.weight.detach()) is not None
    assert not block._forward_pre_hooks


@linux
def test_writing_a_copied_block_in_place_leaves_the_file_pages_clean(tiny):
    model, tokenizer = tiny
    path = mapped.weights_file(model)
    ids = torch.randint(0, len(tokenizer), (1, 16), generator=torch.Generator().manual_seed(0))
    with copied_when_run(model), torch.no_grad():
        model(ids)
        for block in models.decoder_layers(model):
            for parameter in block.parameters():
                parameter.mul_(2)
    assert private_copy_bytes(path) < 1e5          # none of the 23 MB written in the mapping
    written, _ = models.load(str(path).rsplit("/", 1)[0])   # the same file, not copied out
    with torch.no_grad():
        for parameter in written.model.layers.parameters():
            parameter.mul_(2)
    assert private_copy_bytes(path) > 1e7          # every page written stays as a private copy


@linux
def test_awq_in_place_on_a_mapped_model_writes_none_of_its_pages(tiny):
    model, tokenizer = tiny
    path = mapped.weights_file(model)
    samples = data.calibration_samples(tokenizer, 1, 32, seed=0)
    with copied_when_run(model):
        awq.quantize_model(model, samples, 4, 64, progress=False)   # folds scales in place
    assert private_copy_bytes(path) < 1e5


def test_only_a_module_is_accepted():
    with pytest.raises(TypeError, match="torch.nn.Module"):
        with copied_when_run("model"):
            pass

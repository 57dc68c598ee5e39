"""The byte-level BPE tokenizer of ``qcourse-tiny``.

GPT-2 style: text is split with GPT-2's pre-tokenization regex, each piece is mapped to bytes
(shown as printable characters), and BPE merges are learned on the train split until the
vocabulary holds ``vocab_size`` entries (256 byte symbols + merges + one special token).
Because it is a plain GPT-2-type tokenizer, llama.cpp can load it as tokenizer model "gpt2".
"""
from __future__ import annotations

import pathlib

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from qcourse import data

EOS_TOKEN = "<|endoftext|>"


def train_tokenizer(vocab_size: int = 4096) -> PreTrainedTokenizerFast:
    """Learn a byte-level BPE vocabulary of ``vocab_size`` on the train split."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator((d.text for d in data.documents("train")), trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=EOS_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
        model_max_length=512,
        clean_up_tokenization_spaces=False,
    )


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, out_dir: pathlib.Path) -> None:
    """Write tokenizer.json and its config so ``AutoTokenizer.from_pretrained`` loads it."""
    tokenizer.save_pretrained(out_dir)

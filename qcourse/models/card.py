"""Write ``MODEL_CARD.md`` and ``loss_curve.png`` for a trained ``qcourse-tiny`` from measurements.

    python -m qcourse.models.card           (run after qcourse train-tiny)
"""
from __future__ import annotations

import json
import pathlib
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from qcourse import data, evaluation, models  # noqa: E402
from qcourse.paths import TINY_DIR  # noqa: E402

PROMPTS = ["Return the number of", "def read_config(path):\n", "class Stack:\n    \"\"\"",
           "The with statement"]


def plot_loss(log: dict, path: pathlib.Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 3.2))
    steps, losses = zip(*log["train"])
    ax.plot(steps, losses, lw=0.6, alpha=0.6, label="train (batch)")
    steps, losses = zip(*log["validation"])
    ax.plot(steps, losses, "o-", ms=3, label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_ylim(top=min(8.5, max(losses) + 1))
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_card(folder: pathlib.Path = TINY_DIR) -> str:
    torch.manual_seed(0)
    log = json.loads((folder / "train_log.json").read_text())
    model, tokenizer = models.load(str(folder))
    cfg = log["config"]
    n_params = models.parameter_count(model)
    ppl = {split: evaluation.perplexity(model, tokenizer, split) for split in ("validation", "test")}
    ppl_domain = {d: evaluation.perplexity(model, tokenizer, "test", domain=d) for d in data.DOMAINS}
    unigram = evaluation.unigram_perplexity(tokenizer)
    train_tokens = len(data.token_ids(tokenizer, "train"))
    seen = log["best"]["step"] * cfg["batch"] * cfg["seq_len"]
    plot_loss(log, folder / "loss_curve.png")
    samples = "\n\n".join(
        f"```\n{p}{evaluation.generate(model, tokenizer, p, 48)}\n```" for p in PROMPTS
    )
    card = f"""# qcourse-tiny

The embedded default model of the qcourse course: a small Llama-architecture causal language model
trained from scratch, on a CPU, by this project (`qcourse train-tiny`). It exists so that every
notebook runs offline with a real language model whose quality can be measured as it is quantized.

## Architecture
`LlamaForCausalLM`: {model.config.num_hidden_layers} layers, hidden size {model.config.hidden_size},
{model.config.num_attention_heads} attention heads (head dim {model.config.head_dim}),
{model.config.num_key_value_heads} key/value heads, MLP {model.config.intermediate_size} (SiLU-gated),
RMSNorm, RoPE (θ = {model.config.rope_parameters["rope_theta"]:g}), vocabulary {model.config.vocab_size}, context
{model.config.max_position_embeddings}, input and output embeddings tied.
**{n_params:,} parameters.** Weights: fp32 safetensors.

## Tokenizer
Byte-level BPE (GPT-2 pre-tokenization, byte-to-unicode mapping, no normalisation) with 4,096
entries (256 bytes, 3,839 merges, `<|endoftext|>`), trained with Hugging Face `tokenizers` on the
train split. Loadable with `AutoTokenizer`; a "gpt2"-type tokenizer for llama.cpp.

## Training data
The course corpus (`qcourse.data`), built from the Python {sys.version_info.major}.{sys.version_info.minor}
standard library on the user's machine: documentation (`pydoc_data.topics` and docstrings extracted
with `ast`) and source code (`.py` files, without test suites and GUI/demo packages). Documents are
split into train/validation/test by a stable hash of the module or topic name. Train split:
{train_tokens:,} tokens.

## Training run
Seed {cfg['seed']}; {cfg['steps']:,} steps of {cfg['batch']} random windows × {cfg['seq_len']} tokens
({cfg['tokens']:,} tokens, {cfg['tokens'] / train_tokens:.1f} passes over the train split); AdamW
(β = 0.9/0.95, weight decay 0.1 on matrices), peak learning rate {cfg['lr']:g}, {cfg['warmup']} warm-up
steps, cosine decay to 10 %, gradient clipping 1.0, fp32 {'with' if cfg['autocast'] else 'without'}
bf16 autocast. Validation loss every {log['validation'][0][0]} steps on 64 fixed windows; the best
checkpoint (step {log['best']['step']:,}, {seen:,} tokens seen, validation loss
{log['best']['validation_loss']:.3f}) is the one shipped. Wall time {log['train_seconds'] / 60:.0f} min on
{log['machine']}.

![loss curve](loss_curve.png)

## Evaluation (`qcourse.evaluation.perplexity`, non-overlapping windows of 512 tokens)
| split | perplexity |
|---|---|
| validation | {ppl['validation']:.2f} |
| test | {ppl['test']:.2f} |
| test, documentation only | {ppl_domain['prose']:.2f} |
| test, code only | {ppl_domain['code']:.2f} |
| test, unigram baseline of the same tokenizer (train-split token frequencies) | {unigram:.2f} |
| test, uniform guess | {model.config.vocab_size} |

## Sample generations (greedy)
{samples}

## Limits
A teaching model: 6 M parameters trained on 13 MB of text. It writes plausible-looking Python and
documentation but not correct programs, and greedy decoding soon falls into loops, as the
samples above show. It is not meant for any use beyond the course.
"""
    (folder / "MODEL_CARD.md").write_text(card)
    return card


if __name__ == "__main__":
    print(write_card(pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else TINY_DIR))

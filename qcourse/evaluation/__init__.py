"""Measuring a model: how good (perplexity, divergence from the float model, greedy agreement),
how fast it decodes, and how much memory it takes.

    scoring      logits_fn (any model or runtime -> logits), windows, perplexity
    divergence   KL divergence, top-1 agreement, logit agreement between runtimes
    decoding     greedy continuations, match length, generation, tokens per second
    resources    bytes of a model's tensors, resident memory now and at its peak
    protocol     which windows a perplexity scores (WHOLE, QUICK, REAL_QUICK), per-window scores
                 and paired intervals between two models

(``qcourse.eval`` is the same module under its former name.)
"""
from .decoding import (continuation_prompts, generate, greedy_continuations, greedy_match_length,
                       greedy_tokens, match_length, token_agreement, tokens_per_second)
from .divergence import (Divergence, divergence, kl_divergence, kl_per_token, logit_agreement,
                         top1_agreement)
from .protocol import (QUICK, REAL_QUICK, WHOLE, PairedDifference, Protocol, Score,
                       paired_difference, score)
from .resources import (current_rss, model_size_bytes, peak_memory, peak_rss, process_peak_rss,
                        reset_peak_rss, tensor_bytes)
from .scoring import (LogitsFn, batch_size_for, evaluation_windows, logits_fn, nll_per_window, perplexity,
                      unigram_perplexity, window_nll, windows)

__all__ = ["LogitsFn", "logits_fn", "batch_size_for", "windows", "evaluation_windows", "window_nll",
           "nll_per_window", "perplexity", "unigram_perplexity", "kl_per_token",
           "logit_agreement", "Divergence", "divergence", "kl_divergence", "top1_agreement",
           "generate", "tokens_per_second", "match_length", "token_agreement", "greedy_tokens",
           "greedy_continuations", "continuation_prompts", "greedy_match_length",
           "tensor_bytes", "model_size_bytes", "current_rss", "peak_memory", "process_peak_rss",
           "reset_peak_rss", "peak_rss", "Protocol", "WHOLE", "QUICK", "REAL_QUICK", "Score",
           "score", "PairedDifference", "paired_difference"]

"""Diagnosing a model before (or after) quantizing it: where are the outliers, which layers
break, where are the NaN/Inf?

For every linear layer (float ``nn.Linear`` or a quantized layer of :mod:`qcourse.layers`; not
the output head), over a few calibration windows:

    activation outlier ratio   r_x = max_j a_j / median_j a_j,    a_j = max_t |x_tj|
    weight outlier ratio       r_w = max_j c_j / median_j c_j,    c_j = max_n |W_nj|
    output range               max_t,n |y_tn|   (float16 overflows beyond 65504)
    non-finite values          NaN/Inf counted in the weight, the inputs and the outputs

(j: input channel, t: token, n: output channel), and its **sensitivity**: quantize this layer
alone (round-to-nearest with a :class:`~qcourse.quant.QuantScheme`, default 4-bit groups of
128, or any ``make(name, linear) -> module``), run the model, and measure how far its output
moves from the unquantized model's,

    KL = mean_t Σ_v p(v | x_<t) · (log p(v | x_<t) − log q(v | x_<t))    (causal LMs)
    relative error = ‖h' − h‖² / ‖h‖²                                     (encoders: last hidden states)

A layer with a large ratio has outlier channels; a layer with a large sensitivity is the one to
keep at higher precision, protect (AWQ, SmoothQuant) or quantize with more care (GPTQ).

:func:`mixed_precision` turns the sensitivities into a plan: every layer at a low-bit scheme,
then, most sensitive first, each layer that still fits a size budget at a high-bit one. Sizes are
those of the packed :class:`~qcourse.layers.QuantLinear` (its integers, fp16 scales, packed zeros
and ``g_idx``), counted over the linear layers only (the embedding and output head are the same
in every plan):

    bits per weight = 8 · Σ_layers bytes(layer, scheme) / Σ_layers N·K

:func:`compare_gguf_to_model` checks a GGUF file against the model and tokenizer it was made from: the
tokenizer it declares, llama.cpp's tokenization of a text against the tokenizer's, and
llama.cpp's logits against the model's (a wrong q/k permutation for RoPE shows only there).
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

from qcourse import data
from qcourse.calib import check_samples
from qcourse.evaluation import kl_per_token, logit_agreement, match_length, model_size_bytes
from qcourse.evaluation.scoring import sliced_head
from qcourse.layers import QuantLinear, QuantizedLinear
from qcourse.models import set_module
from qcourse.quant import QuantScheme

FP16_MAX = 65504.0
DEFAULT_SCHEME = QuantScheme(4, 128)
Make = Callable[[str, nn.Linear], nn.Module]


@dataclasses.dataclass
class LayerDiagnosis:
    """What :func:`diagnose` found in one linear layer (see the module docstring)."""

    name: str
    in_features: int
    act_absmax: float           # max |x| over every input channel and token
    act_ratio: float            # r_x: largest channel max / median channel max
    top_channels: list[int]     # the input channels with the largest max |x|, largest first
    weight_ratio: float         # r_w: largest column max / median column max
    output_absmax: float        # max |y|
    nonfinite_weights: int
    nonfinite_inputs: int
    nonfinite_outputs: int
    input_absmax: torch.Tensor  # [K] max |x| of each input channel
    sensitivity: float | None   # output error with only this layer quantized (None: not run)

    @property
    def nonfinite(self) -> int:
        return self.nonfinite_weights + self.nonfinite_inputs + self.nonfinite_outputs


def short_name(name: str) -> str:
    """``model.layers.3.self_attn.q_proj`` -> ``L3.q_proj``; ``encoder.layer.0.attention.self.query``
    -> ``L0.query`` (for tables and plot labels)."""
    for prefix in ("model.layers.", "encoder.layer.", "transformer.h."):
        if name.startswith(prefix):
            index, _, rest = name[len(prefix):].partition(".")
            return f"L{index}.{rest.rsplit('.', 1)[-1] if rest else ''}"
    return name


@dataclasses.dataclass
class Diagnosis:
    """The report of :func:`diagnose`: one :class:`LayerDiagnosis` per linear layer, in forward
    order, and the non-finite values of every parameter and buffer of the model."""

    layers: list[LayerDiagnosis]
    nonfinite_parameters: dict[str, int]
    metric: str                 # "KL" or "rel. error"
    quantizer: str              # what the sensitivity quantized each layer with
    tokens: int

    def __getitem__(self, name: str) -> LayerDiagnosis:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"no linear layer {name!r} in this diagnosis")

    def most_sensitive(self, k: int = 5) -> list[LayerDiagnosis]:
        """The ``k`` layers whose quantization alone moves the output most (NaN counts as most)."""
        measured = [l for l in self.layers if l.sensitivity is not None]
        key = lambda l: math.inf if math.isnan(l.sensitivity) else l.sensitivity  # noqa: E731
        return sorted(measured, key=key, reverse=True)[:k]

    def outlier_layers(self, ratio: float = 20.0) -> list[LayerDiagnosis]:
        """The layers whose activation outlier ratio r_x exceeds ``ratio``."""
        return [l for l in self.layers if l.act_ratio > ratio]

    def fp16_overflows(self) -> list[LayerDiagnosis]:
        """The layers whose inputs or outputs exceed float16's largest value, 65504."""
        return [l for l in self.layers if max(l.act_absmax, l.output_absmax) > FP16_MAX]

    def summary(self, ratio: float = 20.0) -> str:
        """Three lines: non-finite values, outlier layers (and their top channels), the most
        sensitive layers."""
        bad = {n: c for n, c in self.nonfinite_parameters.items() if c}
        bad_layers = [l.name for l in self.layers if l.nonfinite_inputs or l.nonfinite_outputs]
        lines = [f"NaN/Inf: {sum(bad.values())} values in {len(bad)} parameters"
                 + (f" ({', '.join(list(bad)[:3])}{', ...' if len(bad) > 3 else ''})" if bad else "")
                 + (f"; first layer whose activations are not finite: {bad_layers[0]}"
                    if bad_layers else "")]
        outliers = self.outlier_layers(ratio)
        channels = sorted({c for l in outliers for c in l.top_channels[:1]})
        lines.append(f"outliers: {len(outliers)} of {len(self.layers)} layers have a channel "
                     f"> {ratio:g}x the median channel"
                     + (f" (largest channels: {channels[:8]})" if outliers else ""))
        top = self.most_sensitive(3)
        if top:
            lines.append(f"most sensitive ({self.metric}, {self.quantizer}): " + ", ".join(
                f"{short_name(l.name)} {l.sensitivity:.2g}" for l in top))
        overflow = self.fp16_overflows()
        if overflow:
            lines.append(f"float16 overflow: {len(overflow)} layers see values > {FP16_MAX:g} "
                         f"(first: {overflow[0].name})")
        return "\n".join(lines)

    def table(self, top: int | None = None, sort: str = "order") -> str:
        """A text table, one row per layer: in forward order (``sort="order"``), most
        sensitive first (``"sensitivity"``) or largest activation outlier ratio first
        (``"ratio"``), the first ``top`` rows."""
        orders = {"order": lambda: self.layers,
                  "sensitivity": lambda: self.most_sensitive(len(self.layers)),
                  "ratio": lambda: sorted(self.layers, key=lambda l: l.act_ratio, reverse=True)}
        if sort not in orders:
            raise ValueError(f"sort must be one of {tuple(orders)}, got {sort!r}")
        rows = orders[sort]()
        rows = rows[:top] if top else rows
        head = (f"{'layer':14} {'max|x|':>8} {'r_x':>6} {'top ch':>7} {'r_w':>5} {'max|y|':>8} "
                f"{self.metric:>10} {'NaN/Inf':>7}")
        lines = [head, "-" * len(head)]
        for l in rows:
            sens = "-" if l.sensitivity is None else f"{l.sensitivity:.2e}"
            lines.append(f"{short_name(l.name):14} {l.act_absmax:8.3g} {l.act_ratio:6.1f} "
                         f"{l.top_channels[0] if l.top_channels else '-':>7} {l.weight_ratio:5.1f} "
                         f"{l.output_absmax:8.3g} {sens:>10} {l.nonfinite:7d}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary() + "\n\n" + self.table()

    def plot(self, title: str = ""):
        """A figure: the outlier ratios r_x and r_w per layer (log scale) above the sensitivity
        of each layer. Returns the matplotlib ``Figure``."""
        import matplotlib.pyplot as plt

        names = [short_name(l.name) for l in self.layers]
        x = range(len(names))
        fig, axes = plt.subplots(2, 1, figsize=(max(6.0, 0.2 * len(names)), 4.6), sharex=True)
        axes[0].bar(x, [l.act_ratio for l in self.layers], color="tab:blue",
                    label="activations r_x")
        axes[0].plot(x, [l.weight_ratio for l in self.layers], "o", ms=3, color="tab:orange",
                     label="weights r_w")
        axes[0].set(yscale="log", ylabel="max / median channel", title=title or None)
        axes[0].legend(fontsize=7)
        sens = [float("nan") if l.sensitivity is None else l.sensitivity for l in self.layers]
        axes[1].bar(x, sens, color="tab:red")
        axes[1].set(ylabel=f"sensitivity ({self.metric})")
        axes[1].set_xticks(list(x), names, rotation=90, fontsize=6)
        fig.tight_layout()
        return fig


# ---------------------------------------------------------------------------------------------
# measuring


@dataclasses.dataclass
class WeightSummary:
    """What :func:`diagnose` reads from a layer's weight: its shape ``[N, K]``, the outlier
    ratio of its per-input-column maxima and how many of its values are NaN/Inf."""
    shape: tuple[int, int]
    ratio: float
    nonfinite: int

    @classmethod
    def of(cls, layer: nn.Module) -> "WeightSummary":
        weight = layer_weight(layer)
        finite = torch.isfinite(weight)
        columns = weight.abs().where(finite, torch.zeros_like(weight)).amax(0)     # [K]
        return cls(tuple(weight.shape), channel_ratio(columns), int((~finite).sum()))


class _LayerWatch:
    """Forward hook: per-input-channel max |x|, max |y|, non-finite counts, and the layer's
    :class:`WeightSummary`, read while the layer runs (a model whose weights are given back
    block by block, :func:`qcourse.models.mapped.streaming`, is not read a second time)."""

    def __init__(self) -> None:
        self.absmax: torch.Tensor | None = None
        self.out_absmax = 0.0
        self.nonfinite_in = self.nonfinite_out = 0
        self.weight: WeightSummary | None = None

    def __call__(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if self.weight is None:
            self.weight = WeightSummary.of(module)
        x = inputs[0].detach().reshape(-1, inputs[0].shape[-1]).float()      # [tokens, K]
        y = output.detach().float()
        finite_x, finite_y = torch.isfinite(x), torch.isfinite(y)
        self.nonfinite_in += int((~finite_x).sum())
        self.nonfinite_out += int((~finite_y).sum())
        absmax = x.abs().where(finite_x, torch.zeros_like(x)).amax(0)       # [K]
        self.absmax = absmax if self.absmax is None else torch.maximum(self.absmax, absmax)
        if finite_y.any():
            self.out_absmax = max(self.out_absmax, y.abs()[finite_y].max().item())


def diagnosed_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The linear layers :func:`diagnose` looks at: every ``nn.Linear`` and quantized layer,
    not the output head."""
    return {name: m for name, m in model.named_modules()
            if isinstance(m, (nn.Linear, QuantizedLinear)) and not name.endswith("lm_head")}


def layer_weight(layer: nn.Module) -> torch.Tensor:
    """The (dequantized) weight ``[N, K]`` of a float or quantized linear layer."""
    return (layer.weight if isinstance(layer, nn.Linear) else layer.weight()).detach().float()


def nonfinite_count(t: torch.Tensor, chunk: int = 1 << 20) -> int:
    """How many NaN/Inf ``t`` holds, counted ``chunk`` elements at a time: ``torch.isfinite`` of
    a whole tensor allocates a float copy and several masks its size (for SmolLM2's embedding,
    113 MB of float32, about 200 MB at once)."""
    flat = t.detach().reshape(-1)
    return sum(int((~torch.isfinite(part)).sum()) for part in flat.split(chunk))


def channel_ratio(absmax: torch.Tensor) -> float:
    """``max / median`` of per-channel maxima (inf if the median is 0 but the max is not)."""
    median, top = absmax.median().item(), absmax.max().item()
    return top / median if median > 0 else (math.inf if top > 0 else 1.0)


METRICS = {"logits": "KL", "last_hidden_state": "rel. error"}


def model_outputs(model: nn.Module, ids: torch.Tensor) -> tuple[torch.Tensor, str]:
    """``(outputs, metric)`` for ``ids [b, T]``: the logits of a causal LM (compared by KL) or
    the last hidden states of an encoder (compared by relative squared error), float32."""
    out = model(ids)
    for field, metric in METRICS.items():
        value = getattr(out, field, None)
        if value is not None:
            return value.float(), metric
    raise TypeError(f"{type(model).__name__} returns neither logits nor last_hidden_state")


def output_error(outputs: torch.Tensor, reference: torch.Tensor, metric: str) -> torch.Tensor:
    """Summed error of a batch: KL per token summed, or squared difference summed."""
    if metric == "KL":
        return kl_per_token(outputs, reference).sum()
    return (outputs.double() - reference.double()).pow(2).sum()


def as_make(quantize: QuantScheme | Make | None) -> tuple[Make, str]:
    """A ``make(name, linear)`` and its description, from a scheme (RTN into a
    :class:`QuantLinear`, per output channel where the group size does not divide), a callable,
    or None (4-bit, groups of 128)."""
    if quantize is None:
        quantize = DEFAULT_SCHEME
    if isinstance(quantize, QuantScheme):
        scheme = quantize

        def make(name: str, linear: nn.Linear) -> nn.Module:
            divides = scheme.group_size is None or linear.in_features % scheme.group_size == 0
            fallback = QuantScheme(scheme.bits, None, scheme.symmetric)
            return QuantLinear.from_float(linear, scheme if divides else fallback)

        group = f"g{scheme.group_size}" if scheme.group_size else "per channel"
        return make, f"RTN {scheme.bits}-bit {group}{' sym' if scheme.symmetric else ''}"
    if callable(quantize):
        return quantize, getattr(quantize, "__name__", "custom")
    raise TypeError(f"quantize must be a QuantScheme, a function make(name, linear) -> module, "
                    f"or None, got {type(quantize).__name__}")


@torch.no_grad()
def diagnose(model: nn.Module, tokenizer=None, *, samples=None, quantize=None,
             sensitivity: bool = True, n: int = 4, seq_len: int = 128, seed: int = 0,
             batch_size: int = 4) -> Diagnosis:
    """Diagnose every linear layer of ``model`` (see the module docstring) on calibration
    ``samples`` (token ids ``[n, T]`` or a list of ``[T]`` / ``[b, T]`` tensors; default: ``n``
    windows of ``seq_len`` train tokens drawn with ``seed``, which needs ``tokenizer``).

    ``quantize``: how each float layer is quantized for its sensitivity: a
    :class:`~qcourse.quant.QuantScheme` (round-to-nearest, default 4-bit groups of 128) or a
    function ``make(name, linear) -> module`` (e.g. ``lambda n, l: W8A8Linear.from_float(l)``).
    ``sensitivity=False`` skips that part (one forward pass instead of one per layer).
    The model is left as it was. Returns a :class:`Diagnosis` (``print`` it, ``.plot()`` it).
    """
    layers = diagnosed_layers(model)
    if not layers:
        raise ValueError(f"{type(model).__name__} has no linear layers (nn.Linear or quantized): "
                         "there is nothing to diagnose")
    if samples is None:
        if tokenizer is None:
            raise ValueError("pass calibration samples, or a tokenizer to draw them from the "
                             "corpus (qcourse.data.calibration_samples)")
        samples = data.calibration_samples(tokenizer, n, seq_len, seed)
    batches = [chunk for batch in check_samples(samples) for chunk in batch.split(batch_size)]
    make, described = as_make(quantize)

    watches = {name: _LayerWatch() for name in layers}
    handles = [layer.register_forward_hook(watches[name]) for name, layer in layers.items()]
    reference = []      # the outputs the sensitivities compare with; only kept when needed
    # without sensitivities nothing reads the outputs: a large-vocabulary Llama skips its head
    # (the output head is not diagnosed), and its logits are never in memory
    body = None if sensitivity else (sliced_head(model, max(b.shape[-1] for b in batches))
                                     or (None,))[0]
    try:
        for ids in batches:
            if body is not None:
                body(ids, use_cache=False)
                metric = "KL"
                continue
            outputs, metric = model_outputs(model, ids)
            if sensitivity:
                reference.append(outputs)
            del outputs
    finally:
        for handle in handles:
            handle.remove()
    norm = sum(r.shape[0] * r.shape[1] for r in reference) if metric == "KL" else \
        sum(r.double().pow(2).sum().item() for r in reference)

    report = []
    for name, layer in layers.items():
        watch = watches[name]
        weight = watch.weight or WeightSummary.of(layer)          # a layer the pass never ran
        absmax = watch.absmax if watch.absmax is not None else torch.zeros(weight.shape[1])
        sens = None
        if sensitivity and isinstance(layer, nn.Linear):
            sens = _sensitivity(model, name, layer, make, batches, reference, metric) / norm
        report.append(LayerDiagnosis(
            name, weight.shape[1], absmax.max().item(), channel_ratio(absmax),
            absmax.topk(min(3, absmax.numel())).indices.tolist(), weight.ratio,
            watch.out_absmax, weight.nonfinite, watch.nonfinite_in, watch.nonfinite_out,
            absmax, sens))
    counted = {f"{name}.weight": watches[name].weight.nonfinite for name, layer in layers.items()
               if isinstance(layer, nn.Linear) and watches[name].weight is not None}
    tensors = dict(model.named_parameters()) | dict(model.named_buffers())
    nonfinite = {name: counted[name] if name in counted else nonfinite_count(t)
                 for name, t in tensors.items() if t.is_floating_point()}
    tokens = sum(ids.numel() for ids in batches)
    return Diagnosis(report, nonfinite, metric, described, tokens)


def _sensitivity(model: nn.Module, name: str, layer: nn.Linear, make: Make,
                 batches: list[torch.Tensor], reference: tuple[torch.Tensor, ...], metric: str
                 ) -> float:
    """Summed output error over ``batches`` with only ``name`` replaced by ``make(name, layer)``."""
    if not torch.isfinite(layer.weight).all():   # a broken layer: no quantizer takes it
        return math.nan
    quantized = make(name, layer)
    set_module(model, name, quantized)
    try:
        return sum(output_error(model_outputs(model, ids)[0], ref, metric).item()
                   for ids, ref in zip(batches, reference))
    finally:
        set_module(model, name, layer)


# ---------------------------------------------------------------------------------------------
# sizes, and a mixed-precision plan within a size budget


def stored_bytes(layer: nn.Module, scheme: QuantScheme | None = None) -> int:
    """Bytes of the linear ``layer`` ``[N, K]`` stored as a packed
    :class:`~qcourse.layers.QuantLinear` with ``scheme``; ``None``: as it is stored now (float32
    weights, or a quantized layer's own tensors)."""
    if scheme is None:
        return model_size_bytes(layer)
    packed = QuantLinear(layer.in_features, layer.out_features, scheme.bits, scheme.group_size,
                         bias=getattr(layer, "bias", None) is not None)
    return model_size_bytes(packed)


def bits_per_weight(layers: Mapping[str, nn.Module],
                    plan: Mapping[str, QuantScheme | None] | None = None) -> float:
    """``8 · Σ bytes / Σ weights`` over ``layers`` (name -> linear layer), each stored with
    ``plan[name]`` (missing or None: as it is stored now; see :func:`stored_bytes`)."""
    plan = plan or {}
    total = sum(stored_bytes(layer, plan.get(name)) for name, layer in layers.items())
    weights = sum(layer.in_features * layer.out_features for layer in layers.values())
    return 8 * total / weights


def mixed_precision(order: Sequence[str], layers: Mapping[str, nn.Module], low: QuantScheme,
                    high: QuantScheme, budget: float) -> dict[str, QuantScheme]:
    """A plan (layer name -> scheme) for ``layers``: every layer at ``low``; then, in ``order``
    (layer names, most sensitive first: ``[l.name for l in diagnosis.most_sensitive(n)]``),
    each layer moves to ``high`` if the whole still fits ``budget`` bits per weight
    (:func:`bits_per_weight`); a layer that does not fit is skipped and the next one tried.
    ValueError if even all-``low`` exceeds the budget, or ``order`` names an unknown layer."""
    plan = {name: low for name in layers}
    sizes = {name: stored_bytes(layer, low) for name, layer in layers.items()}
    allowed = budget * sum(l.in_features * l.out_features for l in layers.values()) / 8
    if sum(sizes.values()) > allowed:
        raise ValueError(f"every layer at {low} already takes {bits_per_weight(layers, plan):.3f} "
                         f"bits per weight, more than the budget of {budget}")
    unknown = [name for name in order if name not in layers]
    if unknown:
        raise ValueError(f"order names layers that are not in layers: {unknown[:3]}")
    used = sum(sizes.values())
    for name in order:
        extra = stored_bytes(layers[name], high) - sizes[name]
        if used + extra <= allowed:
            plan[name], used = high, used + extra
    return plan


# ---------------------------------------------------------------------------------------------
# a GGUF file against its source


@torch.no_grad()
def compare_gguf_to_model(path, model: nn.Module, tokenizer, *, text: str | None = None,
               prompt_tokens: int = 64) -> dict:
    """Check the GGUF file ``path`` against the Hugging Face ``model`` and ``tokenizer`` it was
    exported from. Returns a dict:

    ``tokenizer_model``, ``pre_tokenizer``   what the file declares (``read_gguf`` metadata)
    ``same_tokens``        how many leading tokens of ``text`` llama.cpp and ``tokenizer`` agree
                           on, and ``tokens`` how many the tokenizer makes (equal = identical)
    ``max_logit_diff``     max |logit difference| between llama.cpp and ``model`` on the first
                           ``prompt_tokens`` tokens of ``text`` (the tokenizer's ids)
    ``top1_agreement``     fraction of those positions where both predict the same token

    ``text``: default, the first 4,000 characters of the test split. A correct F32 file agrees
    to ~1e-3; quantization moves logits a little, a wrong RoPE permutation a lot."""
    from qcourse.gguf import llamacpp, reader

    text = text if text is not None else data.corpus("test")[:4000]
    metadata = reader.read_gguf(path).metadata
    ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]  # no length warning
    llm = llamacpp.load(path, n_ctx=max(512, prompt_tokens))
    try:
        theirs = llamacpp.tokenize(llm, text)
        window = ids[:prompt_tokens]
        cpp = llamacpp.window_logits(llm, window)                           # [T, V]
    finally:
        llm.close()
    ours = model(torch.tensor([window])).logits[0].float()                 # [T, V]
    agreement = logit_agreement(cpp, ours)
    return {"tokenizer_model": metadata.get("tokenizer.ggml.model"),
            "pre_tokenizer": metadata.get("tokenizer.ggml.pre"),
            "same_tokens": match_length(theirs, ids), "tokens": len(ids),
            "max_logit_diff": agreement["max_abs"], "top1_agreement": agreement["top1"]}


check_gguf = compare_gguf_to_model   # its former name (notebook 10, exercise 10)

"""The cost panel: an ipywidgets view of :func:`~qcourse.cost.planning.plan` (JupyterLab)."""
from __future__ import annotations

import warnings
from collections.abc import Mapping

from .footprint import model_shape, shipped_configs
from .planning import RentedGPU, plan

SERVING = {"one sequence at a time": 1, "batched (as many as fit)": "max"}


def panel(gpus: Mapping[str, RentedGPU], *, efficiency, api_usd_per_million, one_time_usd,
          models=None, formats=("fp16", "int8", "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "int4-g128",
                                "nf4-dq", "Q3_K_M", "Q2_K"),
          model: str = "Llama-3.1-8B", weights: str = "Q4_K_M", gpu: str | None = None,
          context: int = 4096, tokens_per_month: float = 1e8, batch: int | str = 1,
          compute_efficiency=0.5):
    """An ipywidgets panel (JupyterLab): pick the model, format, card, serving mode, context and
    monthly load; it shows :func:`plan`'s memory fit, speed, cost per month against the API and
    the break-even of quantizing. The context slider stops at the chosen model's
    ``max_position_embeddings``. Every price and throughput comes in through the arguments
    (quotes with source and date); the other arguments are the starting values."""
    import ipywidgets as w

    models = list(models or shipped_configs())
    cards = list(gpus)
    if model not in models or weights not in formats:
        raise ValueError(f"the starting model and format must be among {models} and {formats}")
    gpu = gpu if gpu is not None else next((c for c in cards if "L40S" in c), cards[0])
    if gpu not in cards:
        raise ValueError(f"unknown card {gpu!r}: choose one of {cards}")
    serving = next((k for k, v in SERVING.items() if v == batch), None)
    if serving is None:
        raise ValueError(f"batch must be 1 or 'max', got {batch!r}")
    pick_model = w.Dropdown(options=models, value=model, description="model")
    pick_format = w.Dropdown(options=list(formats), value=weights, description="format")
    pick_gpu = w.Dropdown(options=cards, value=gpu, description="GPU")
    pick_serving = w.Dropdown(options=list(SERVING), value=serving, description="serving")
    slider = w.IntSlider(value=context, min=512, max=131072, step=512, description="context")
    load = w.FloatLogSlider(value=tokens_per_month, base=10, min=6, max=11,
                            description="tokens/month")
    out = w.Output()

    def clamp_context(*_):
        longest = model_shape(pick_model.value).max_context or 131072
        slider.max = longest                     # ipywidgets clamps the value with it
        slider.value = min(slider.value, longest)

    def show(*_):
        out.clear_output()
        with out, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            card = gpus[pick_gpu.value]
            try:
                p = plan(pick_model.value, card, weights=pick_format.value, context=slider.value,
                         tokens_per_month=load.value, efficiency=efficiency,
                         api_usd_per_million=api_usd_per_million, one_time_usd=one_time_usd,
                         batch=SERVING[pick_serving.value], compute_efficiency=compute_efficiency)
            except ValueError as err:
                print(f"cannot serve: {err}")
                return
            m = p["memory"]
            print(f"memory {m['total'] / 1e9:.1f} GB (weights {m['weights'] / 1e9:.1f}, KV cache "
                  f"{m['kv_cache'] / 1e9:.1f}, activations {m['activations'] / 1e9:.1f}) on "
                  f"{card.memory_bytes / 2**30:.0f} GiB: {'fits' if p['fits'] else 'does NOT fit'}")
            print(f"decode bound ≈ {p['tokens_per_second']:,.0f} tokens/s for {p['batch']} "
                  f"sequence(s) ({p['bound']}-bound, {float(efficiency):.0%} of the bandwidth); "
                  f"${p['usd_per_million']:.2f} per 1M tokens")
            print(f"per month: self-host ${p['self_host_usd']:,.0f} on {p['replicas']} card(s) "
                  f"vs API ${p['api_usd']:,.0f} -> {p['cheaper']} is cheaper")
            if p["break_even_tokens_per_month"] is None:
                print("this card's cost per token is above the API's: the API is cheaper at "
                      "every load")
            if p.get("break_even_tokens"):
                print(f"quantizing (${float(one_time_usd):,.0f}) pays back after "
                      f"{p['break_even_tokens'] / 1e6:,.0f} M tokens against fp16")
            for warning in caught:
                print(f"warning: {warning.message}")

    pick_model.observe(clamp_context, names="value")
    for control in (pick_model, pick_format, pick_gpu, pick_serving, slider, load):
        control.observe(show, names="value")
    clamp_context()
    show()
    return w.VBox([w.HBox([pick_model, pick_format, pick_gpu]),
                   w.HBox([pick_serving, slider, load]), out])

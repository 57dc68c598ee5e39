"""The cost panel: an ipywidgets view of :func:`~qcourse.cost.planning.plan` (JupyterLab)."""
from __future__ import annotations

import warnings
from collections.abc import Mapping

from .footprint import shipped_configs
from .planning import RentedGPU, plan


def panel(gpus: Mapping[str, RentedGPU], *, efficiency, api_usd_per_million, one_time_usd,
          models=None, formats=("fp16", "int8", "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "int4-g128",
                                "nf4-dq", "Q3_K_M", "Q2_K")):
    """An ipywidgets panel (JupyterLab): pick the model, format, card, context and monthly load;
    it shows :func:`plan`'s memory fit, speed, cost per month against the API and break-even.
    Every price and throughput comes in through the arguments (quotes with source and date)."""
    import ipywidgets as w

    models = list(models or shipped_configs())
    pick_model = w.Dropdown(options=models, value=models[0], description="model")
    pick_format = w.Dropdown(options=list(formats), value="Q4_K_M", description="format")
    pick_gpu = w.Dropdown(options=list(gpus), description="GPU")
    context = w.IntSlider(value=8192, min=512, max=131072, step=512, description="context")
    load = w.FloatLogSlider(value=1e8, base=10, min=6, max=11, description="tokens/month")
    out = w.Output()

    def show(*_):
        out.clear_output()
        with out, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gpu = gpus[pick_gpu.value]
            p = plan(pick_model.value, gpu, weights=pick_format.value, context=context.value,
                     tokens_per_month=load.value, efficiency=efficiency,
                     api_usd_per_million=api_usd_per_million, one_time_usd=one_time_usd)
            m = p["memory"]
            print(f"memory {m['total'] / 1e9:.1f} GB (weights {m['weights'] / 1e9:.1f}, KV cache "
                  f"{m['kv_cache'] / 1e9:.1f}, activations {m['activations'] / 1e9:.1f}) on "
                  f"{gpu.memory_bytes / 2**30:.0f} GiB: {'fits' if p['fits'] else 'does NOT fit'}")
            print(f"decode ≈ {p['tokens_per_second']:.0f} tokens/s per sequence "
                  f"({efficiency:.0%} of the bandwidth bound); ${p['usd_per_million']:.2f} per "
                  f"1M tokens")
            print(f"per month: self-host ${p['self_host_usd']:,.0f} on {p['replicas']} card(s) "
                  f"vs API ${p['api_usd']:,.0f} -> {p['cheaper']} is cheaper")
            if p.get("break_even_tokens"):
                print(f"quantizing (${float(one_time_usd):,.0f}) pays back after "
                      f"{p['break_even_tokens'] / 1e6:,.0f} M tokens against fp16")

    for control in (pick_model, pick_format, pick_gpu, context, load):
        control.observe(show, names="value")
    show()
    return w.VBox([w.HBox([pick_model, pick_format, pick_gpu]), w.HBox([context, load]), out])

"""Pictures for the course: number-format grids, quantization error panels and a live explorer.

Figures are built with ``matplotlib.figure.Figure`` (not pyplot), so they are not kept open by
pyplot, work with any backend (tests use Agg), and a notebook shows one by leaving it as the
last expression of a cell (or passing it to ``IPython.display.display``). The explorer draws
PNG images into an ``ipywidgets.Output``, so it works in JupyterLab and leaves a static picture
for viewers without widgets.
"""
from __future__ import annotations

import base64
import functools
import io

import torch
from matplotlib.figure import Figure

from qcourse.formats import canonical_name, representable_values
from qcourse.quant import GRANULARITIES, dequantize, quantization_error, quantize

SCHEMES = ("symmetric", "asymmetric")


def format_grid_figure(names: list[str], lo: float = -4.0, hi: float = 4.0,
                       absmax: float = 4.0) -> Figure:
    """One row of tick marks per format: the values it can represent in ``[lo, hi]``.

    Integer and NF4 grids need a scale: they are drawn for a tensor whose absmax is ``absmax``
    (INT: ``k · absmax / qmax``; NF4: ``code · absmax``), the floats as they are.
    """
    fig = Figure(figsize=(8, 0.55 * len(names) + 0.8), layout="constrained")
    ax = fig.subplots()
    for row, name in enumerate(names):
        values = representable_values(name).double()
        name = canonical_name(name)
        if name.startswith("INT"):
            values = values * absmax / values.max()
        elif name == "NF4":
            values = values * absmax
        shown = values[(values >= lo) & (values <= hi)]
        ax.vlines(shown.numpy(), row - 0.35, row + 0.35, linewidth=0.8)
        ax.text(hi + 0.02 * (hi - lo), row, f"  {len(shown)} values", va="center", fontsize=8)
    ax.set_yticks(range(len(names)), [canonical_name(n) for n in names])
    margin = 0.02 * (hi - lo)  # so that ticks at exactly lo and hi stay visible
    ax.set_xlim(lo - margin, hi + margin)
    ax.invert_yaxis()
    ax.set_xlabel("value")
    ax.set_title(f"Representable values in [{lo:g}, {hi:g}] (INT and NF4 scaled to absmax "
                 f"{absmax:g})", fontsize=10)
    return fig


def error_panels(W: torch.Tensor, bits: int = 4, symmetric: bool = True,
                 granularity: str = "channel", group_size: int | None = None, *,
                 rows: int = 48, cols: int = 96) -> Figure:
    """Four panels for a weight matrix ``W [N, K]`` quantized with the given settings:
    original ``W``, integers ``q``, dequantized ``W' = (q - zero) · scale`` and error ``W - W'``.

    The whole matrix is quantized (so per-channel and per-group scales are the real ones); the
    top-left ``rows × cols`` corner is drawn so that single weights stay visible. The title gives
    the mean squared error over the whole matrix.
    """
    if W.dim() != 2:
        raise ValueError(f"W must be a 2-D weight matrix [N, K], got shape {tuple(W.shape)}")
    group_size = group_size if granularity == "group" else None  # ignored otherwise
    q, scale, zero = quantize(W, bits, symmetric=symmetric, granularity=granularity,
                              group_size=group_size)
    W_hat = dequantize(q, scale, zero, group_size=group_size)
    error = W.float() - W_hat
    corner = (slice(0, rows), slice(0, cols))
    limit = W.float()[corner].abs().max().item() or 1.0
    err_limit = error[corner].abs().max().item() or 1.0
    panels = [
        ("original W", W.float()[corner], "RdBu_r", -limit, limit),
        ("integers q", q[corner].float(), "viridis", None, None),
        ("dequantized W'", W_hat[corner], "RdBu_r", -limit, limit),
        ("error W - W'", error[corner], "PuOr_r", -err_limit, err_limit),
    ]
    fig = Figure(figsize=(11, 3.0), layout="constrained")
    for ax, (title, image, cmap, vmin, vmax) in zip(fig.subplots(1, 4), panels):
        shown = ax.imshow(image.numpy(), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto",
                          interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(shown, ax=ax, shrink=0.8)
    scheme = "symmetric" if symmetric else "asymmetric"
    where = f"group {group_size}" if granularity == "group" else f"per-{granularity}"
    fig.suptitle(f"{bits}-bit {scheme}, {where}: MSE {quantization_error(W.float(), W_hat):.3g} "
                 f"(corner {min(rows, W.shape[0])}×{min(cols, W.shape[1])} of "
                 f"{W.shape[0]}×{W.shape[1]})", fontsize=11)
    return fig


def group_size_choices(K: int) -> list[int]:
    """Group sizes offered by the explorer: the powers of two from 8 to 256 that divide K."""
    return [g for g in (8, 16, 32, 64, 128, 256) if g <= K and K % g == 0] or [K]


def png_bytes(fig: Figure, dpi: int = 80) -> bytes:
    """``fig`` rendered as PNG (Agg, whatever the notebook's backend)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def explorer(W: torch.Tensor, dpi: int = 80):
    """A widget that redraws :func:`error_panels` of ``W`` whenever the bits, scheme, granularity
    or group size change (see :class:`Explorer`)."""
    return _explorer_class()(W, dpi)


@functools.cache
def _explorer_class():
    import ipywidgets as widgets  # imported on first use: the package does not need it

    class Explorer(widgets.VBox):
        """Controls above an ``ipywidgets.Output`` holding the latest drawing as a PNG image.

        The image is written into the Output widget's state (not printed from a callback), so
        it shows in JupyterLab, in Jupyter Notebook and in a notebook saved with its widget
        state, and changes when a control moves. Displayed, the widget also carries the first
        drawing as a plain ``image/png``: viewers without widgets (GitHub, nbviewer without
        state) show that picture. Attributes: ``controls`` (by description: "bits", "scheme",
        "granularity", "group size"), ``output`` (the Output widget), ``figure`` (the latest
        Figure; ``result`` is the same), ``png`` (its picture) and ``first_png`` (the fallback
        picture)."""

        def __init__(self, W: torch.Tensor, dpi: int) -> None:
            choices = group_size_choices(W.shape[-1])
            self.W, self.dpi = W, dpi
            self.controls = {
                "bits": widgets.IntSlider(value=4, min=2, max=8, description="bits",
                                          continuous_update=False),
                "scheme": widgets.ToggleButtons(options=list(SCHEMES), value="symmetric",
                                                description="scheme"),
                "granularity": widgets.ToggleButtons(options=list(GRANULARITIES),
                                                     value="channel", description="granularity"),
                "group size": widgets.Dropdown(options=choices,
                                               value=128 if 128 in choices else choices[0],
                                               description="group size"),
            }
            self.output = widgets.Output()
            super().__init__([*self.controls.values(), self.output])
            self.add_class("qcourse-explorer")
            self.output.add_class("qcourse-explorer-output")
            self.figure: Figure | None = None
            self.redraw()
            self.first_png = self.png
            for control in self.controls.values():
                control.observe(self.redraw, names="value")

        @property
        def result(self) -> Figure | None:
            return self.figure

        def redraw(self, change=None) -> None:
            c = {name: control.value for name, control in self.controls.items()}
            self.figure = error_panels(self.W, c["bits"], c["scheme"] == "symmetric",
                                       c["granularity"], c["group size"])
            self.png = png_bytes(self.figure, self.dpi)
            self.output.outputs = ({
                "output_type": "display_data", "metadata": {},
                "data": {"image/png": base64.b64encode(self.png).decode("ascii"),
                         "text/plain": f"<{self.figure.get_suptitle()}>"}},)

        def _repr_mimebundle_(self, **kwargs):
            bundle = super()._repr_mimebundle_(**kwargs)
            data = bundle[0] if isinstance(bundle, tuple) else bundle
            data["image/png"] = base64.b64encode(self.first_png).decode("ascii")
            return bundle

    return Explorer

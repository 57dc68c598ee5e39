"""qcourse.viz: the pictures show what the package computes, and the explorer redraws live."""
import matplotlib

matplotlib.use("Agg")

import base64  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from qcourse import viz  # noqa: E402
from qcourse.quant import fake_quantize  # noqa: E402


@pytest.fixture
def W():
    return torch.randn(64, 256, generator=torch.Generator().manual_seed(0)) * 0.02


def panel_arrays(fig):
    return [torch.from_numpy(ax.images[0].get_array().data.astype("float32"))
            for ax in fig.axes if ax.images]


def test_error_panels_show_original_quantized_dequantized_error(W):
    fig = viz.error_panels(W, bits=3, symmetric=False, granularity="group", group_size=32,
                           rows=16, cols=64)
    assert isinstance(fig, Figure)
    original, q, dequantized, error = panel_arrays(fig)
    titles = [ax.get_title() for ax in fig.axes if ax.images]
    assert titles == ["original W", "integers q", "dequantized W'", "error W - W'"]
    expected = fake_quantize(W, 3, symmetric=False, granularity="group", group_size=32)
    assert torch.equal(original, W[:16, :64])
    assert torch.allclose(dequantized, expected[:16, :64])
    assert torch.allclose(error, (W - expected)[:16, :64])
    assert q.min() >= 0 and q.max() <= 7 and torch.equal(q, q.round())
    assert "3-bit asymmetric, group 32" in fig._suptitle.get_text()


def test_more_bits_and_finer_groups_shrink_the_shown_error(W):
    def max_error(**kw):
        return panel_arrays(viz.error_panels(W, **kw))[3].abs().max().item()

    assert max_error(bits=8, granularity="channel") < max_error(bits=2, granularity="channel")
    assert max_error(bits=4, granularity="group", group_size=8) < \
        max_error(bits=4, granularity="tensor")


def test_group_size_is_ignored_unless_granularity_is_group(W):
    fig = viz.error_panels(W, granularity="channel", group_size=3)  # 3 would not divide 256
    assert "per-channel" in fig._suptitle.get_text()


def test_bad_input_is_rejected(W):
    with pytest.raises(ValueError, match="2-D"):
        viz.error_panels(W[0])
    with pytest.raises(ValueError, match="does not divide"):
        viz.error_panels(W, granularity="group", group_size=3)


def test_explorer_redraws_when_a_control_changes(W):
    widget = viz.explorer(W)
    controls = {c.description: c for c in widget.children if hasattr(c, "description")}
    assert set(controls) >= {"bits", "scheme", "granularity", "group size"}
    first = widget.result
    assert first is widget.figure
    assert isinstance(first, Figure) and "4-bit symmetric, per-channel" in first._suptitle.get_text()
    controls["bits"].value = 2
    controls["scheme"].value = "asymmetric"
    controls["granularity"].value = "group"
    controls["group size"].value = 32
    latest = widget.result
    assert latest is not first
    assert "2-bit asymmetric, group 32" in latest._suptitle.get_text()
    expected = fake_quantize(W, 2, symmetric=False, granularity="group", group_size=32)
    assert torch.allclose(panel_arrays(latest)[2], expected[:48, :96])


def shown_png(widget) -> bytes:
    """The picture the explorer's Output widget holds now (what JupyterLab draws)."""
    (output,) = widget.output.outputs
    assert output["output_type"] == "display_data"
    return base64.b64decode(output["data"]["image/png"])


def test_explorer_draws_a_png_into_its_output_widget_and_changes_it(W):
    import ipywidgets

    widget = viz.explorer(W)
    assert isinstance(widget.output, ipywidgets.Output) and widget.output in widget.children
    first = shown_png(widget)
    assert first.startswith(b"\x89PNG") and first == widget.first_png
    widget.controls["bits"].value = 2
    second = shown_png(widget)
    assert second.startswith(b"\x89PNG") and second != first
    assert "2-bit" in widget.output.outputs[0]["data"]["text/plain"]
    widget.controls["bits"].value = 4                 # back to the start: the same picture
    assert shown_png(widget) == first


def test_explorer_leaves_a_static_picture_for_viewers_without_widgets(W):
    widget = viz.explorer(W)
    widget.controls["granularity"].value = "tensor"   # the fallback stays the first drawing
    bundle = widget._repr_mimebundle_()
    data = bundle[0] if isinstance(bundle, tuple) else bundle
    assert "application/vnd.jupyter.widget-view+json" in data
    assert base64.b64decode(data["image/png"]) == widget.first_png != shown_png(widget)


def test_group_size_choices_divide_the_width():
    assert viz.group_size_choices(256) == [8, 16, 32, 64, 128, 256]
    assert viz.group_size_choices(96) == [8, 16, 32]
    assert viz.group_size_choices(5) == [5]


def test_format_grid_figure_counts_values():
    fig = viz.format_grid_figure(["INT4", "NF4", "FP8 E4M3"], lo=-4, hi=4, absmax=4)
    labels = [t.get_text() for t in fig.axes[0].texts]
    assert labels[0].strip() == "15 values"   # k · 4/7 for k = -7..7; -8 · 4/7 is below -4
    assert labels[1].strip() == "16 values"
    e4m3_in_range = sum(1 for v in viz.representable_values("FP8 E4M3").tolist() if -4 <= v <= 4)
    assert labels[2].strip() == f"{e4m3_in_range} values"

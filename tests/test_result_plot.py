"""LAMResult.plot: lam.png's panels as a matplotlib Figure, from Python."""
from __future__ import annotations

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from PIL import Image
from test_render import make_result

from lam_trt.render import render_lam


def test_plot_is_the_figure_lam_png_shows(tmp_path):
    """The returned Figure draws exactly what render_lam writes (same pixels), and path= saves it."""
    result = make_result()
    fig = result.plot(path=tmp_path / "plot.png", dpi=60)
    assert isinstance(fig, Figure)
    written = render_lam(result, tmp_path / "lam.png", dpi=60)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "plot.png")), np.asarray(Image.open(written)))
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    np.testing.assert_array_equal(rgba[..., :3], np.asarray(Image.open(written).convert("RGB")))


def test_plot_map_panel_holds_the_saliency():
    """The map panel is the result's own abs-normalised map (not a copy drawn elsewhere)."""
    result = make_result(seed=1)
    fig = result.plot()
    shown = [im.get_array() for ax in fig.axes for im in ax.get_images()
             if im.get_array().ndim == 2 and im.get_array().shape == result.saliency.shape]
    assert len(shown) == 1
    np.testing.assert_array_equal(np.asarray(shown[0]), result.saliency)


def test_plot_off_screen_unless_shown(tmp_path, monkeypatch):
    """plot() leaves pyplot alone; show=True draws on a pyplot figure and calls plt.show() once."""
    import matplotlib.pyplot as plt

    matplotlib.use("Agg")
    before = set(plt.get_fignums())
    result = make_result(seed=2)
    result.plot()
    assert set(plt.get_fignums()) == before
    shown = []
    monkeypatch.setattr(plt, "show", lambda *a, **k: shown.append(True))
    fig = result.plot(show=True, path=tmp_path / "lam.svg")
    assert shown == [True] and fig.number in plt.get_fignums()
    assert (tmp_path / "lam.svg").read_text().lstrip().startswith("<?xml")
    plt.close(fig)

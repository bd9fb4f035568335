"""The window type and the receptive-field crop, against hand-computed regions and a toy network."""
from __future__ import annotations

import numpy as np
import pytest

from lam_trt.crop import Crop
from lam_trt.errors import InputError
from lam_trt.window import Window, centre_window


def test_window_gives_both_orders_and_checks_bounds():
    w = Window.resolve((5, 7), 4, (3, 32, 40))
    assert w.xy_size == (5, 7, 4) and w.graph == (7, 5, 4, 4)
    assert Window.resolve(None, 8, (3, 32, 40)).xy_size == (*centre_window((32, 40), 8), 8)
    with pytest.raises(InputError, match="outside the SR output 40x32"):
        Window.resolve((36, 0), 4, (3, 32, 40))
    with pytest.raises(InputError, match="must be integers"):
        Window.resolve((1.5, 0), 4, (3, 32, 40))


def test_one_window_crops_its_footprint_plus_the_field():
    # scale 2, window x=20..27 (+1 detector column) -> LR columns 10..14; field 3 -> margin 4
    crop = Crop.plan((40, 40), [Window(20, 30, 8)], 2, 3)
    assert crop.applied and (crop.top, crop.left, crop.margin) == (15 - 4, 10 - 4, 4)
    assert (crop.top + crop.height, crop.left + crop.width) == (20 + 4, 15 + 4)


def test_several_windows_share_the_union_of_their_regions():
    a, b = Window(8, 8, 4), Window(40, 20, 4)
    ca, cb, both = (Crop.plan((64, 64), ws, 2, 2) for ws in ([a], [b], [a, b]))
    assert both.applied and (both.top, both.left) == (min(ca.top, cb.top), min(ca.left, cb.left))
    assert both.top + both.height == max(ca.top + ca.height, cb.top + cb.height)
    assert both.left + both.width == max(ca.left + ca.width, cb.left + cb.width)
    assert not Crop.plan((64, 64), [Window(0, 0, 4), Window(120, 120, 4)], 2, 2).applied  # most of the image


@pytest.mark.parametrize("field, reason", [("global", "whole-image"), (None, "whole-image")])
def test_no_crop_without_a_finite_field(field, reason):
    crop = Crop.plan((64, 64), [Window(8, 8, 4)], 2, field)
    assert not crop.applied and reason in crop.reason


def upscale(images: np.ndarray) -> np.ndarray:
    """A local x2 network: each output pixel depends on one input pixel and its right neighbour."""
    shifted = np.concatenate([images[..., 1:], images[..., -1:]], axis=-1)
    return (images + 0.5 * shifted).repeat(2, axis=-2).repeat(2, axis=-1)


def test_cut_paste_and_verify_on_a_local_network():
    img = np.random.default_rng(0).random((3, 32, 32), dtype=np.float32)
    window = Window(20, 24, 6)
    crop = Crop.plan((32, 32), [window], 2, 2)
    full = upscale(img[None])[0]
    assert crop.verify(upscale, img, full, [window], 2) == crop
    inner = crop.window(window, 2)
    (cut,) = crop.cut(img[None])
    assert np.array_equal(upscale(cut)[0][:, inner.y:inner.y + 6, inner.x:inner.x + 6], full[:, 24:30, 20:26])
    pasted = crop.paste(np.ones(cut.shape[1:], np.float32), img.shape)
    assert pasted.sum() == cut.size and pasted[:, crop.top, crop.left].all() and not pasted[:, 0, 0].any()


def test_verify_refuses_a_network_that_sees_the_whole_image():
    img = np.random.default_rng(1).random((1, 32, 32), dtype=np.float32)
    global_net = lambda x: upscale(x) + x.mean(axis=(1, 2, 3), keepdims=True)  # noqa: E731
    window = Window(4, 4, 4)
    crop = Crop.plan((32, 32), [window], 2, 2).verify(global_net, img, global_net(img[None])[0], [window], 2)
    assert not crop.applied and "differs in the window" in crop.reason

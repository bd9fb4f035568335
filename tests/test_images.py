"""lam_trt.images against Pillow's own decoding and the LAM-SPEC conventions."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lam_trt.errors import InputError
from lam_trt.images import hr_to_lr, load_image, save_png

H, W = 12, 10
RNG = np.random.default_rng(0)
RGB8 = RNG.integers(0, 256, (H, W, 3), dtype=np.uint8)
ALPHA8 = RNG.integers(0, 256, (H, W), dtype=np.uint8)
GRAY8 = RNG.integers(0, 256, (H, W), dtype=np.uint8)
GRAY16 = RNG.integers(0, 65536, (H, W), dtype=np.uint16)


def luma(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma of [h, w, 3] floats, written out independently of lam_trt."""
    return 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]


def pil_image(mode: str) -> tuple[Image.Image, np.ndarray]:
    """A PIL image in ``mode`` and its expected colour content as float [h, w, 1 or 3]."""
    if mode == "L":
        return Image.fromarray(GRAY8), GRAY8[..., None] / 255.0
    if mode == "LA":
        img = Image.merge("LA", [Image.fromarray(GRAY8), Image.fromarray(ALPHA8)])
        return img, GRAY8[..., None] / 255.0
    if mode == "RGB":
        return Image.fromarray(RGB8), RGB8 / 255.0
    if mode == "RGBA":
        return Image.fromarray(np.dstack([RGB8, ALPHA8])), RGB8 / 255.0
    if mode == "P":
        img = Image.fromarray(RGB8).quantize(16)
        return img, np.asarray(img.convert("RGB")) / 255.0
    if mode == "I;16":
        return Image.fromarray(GRAY16), GRAY16[..., None] / 65535.0
    raise AssertionError(mode)


FORMATS = {"png": ["L", "LA", "RGB", "RGBA", "P", "I;16"], "tiff": ["L", "RGB", "RGBA", "I;16"],
           "bmp": ["L", "RGB", "P"], "jpeg": ["L", "RGB"]}
CASES = [(fmt, mode) for fmt, modes in FORMATS.items() for mode in modes]


@pytest.mark.parametrize("fmt,mode", CASES)
@pytest.mark.parametrize("channels", [1, 3])
def test_files_in_every_mode(tmp_path, fmt, mode, channels):
    img, expected = pil_image(mode)
    path = tmp_path / f"image.{fmt}"
    img.save(path)
    if fmt == "jpeg":  # lossy: compare against what Pillow decodes, not what was written
        with Image.open(path) as decoded:
            expected = np.asarray(decoded.convert("RGB" if mode == "RGB" else "L")) / 255.0
            expected = expected if expected.ndim == 3 else expected[..., None]
    out = load_image(path, channels)
    assert out.dtype == np.float32 and out.shape == (channels, H, W)
    if channels == 3 and expected.shape[2] == 1:
        expected = np.repeat(expected, 3, axis=2)
    if channels == 1 and expected.shape[2] == 3:
        expected = luma(expected)[..., None]
    np.testing.assert_allclose(out, expected.transpose(2, 0, 1), atol=1e-6)


def test_sixteen_bit_keeps_precision(tmp_path):
    path = tmp_path / "g16.png"
    Image.fromarray(GRAY16).save(path)
    out = load_image(path, 1)[0]
    np.testing.assert_array_equal(np.round(out.astype(np.float64) * 65535), GRAY16)


def test_pil_image_and_arrays_agree():
    reference = load_image(Image.fromarray(RGB8), 3)
    np.testing.assert_array_equal(load_image(RGB8, 3), reference)
    np.testing.assert_array_equal(load_image(RGB8.transpose(2, 0, 1).copy(), 3), reference)
    np.testing.assert_array_equal(load_image(RGB8.astype(np.float32) / 255, 3), reference)
    rgba = np.dstack([RGB8, ALPHA8])
    np.testing.assert_array_equal(load_image(rgba, 3), reference)
    u16 = RGB8.astype(np.uint16) * 257  # 8-bit k -> 16-bit k * 257: same value in [0, 1]
    np.testing.assert_allclose(load_image(u16, 3), reference, atol=1e-7)


def test_gray_arrays():
    out = load_image(GRAY8, 3)
    assert out.shape == (3, H, W)
    np.testing.assert_array_equal(out[0], out[2])
    np.testing.assert_array_equal(load_image(GRAY8[None], 1)[0], GRAY8 / np.float32(255))
    np.testing.assert_array_equal(load_image(GRAY8 > 127, 1)[0], (GRAY8 > 127).astype(np.float32))


def test_small_ambiguous_array_reads_as_chw():
    chw = RNG.random((3, 4, 4), dtype=np.float32)
    np.testing.assert_array_equal(load_image(chw, 3), chw)


@pytest.mark.parametrize("channels", [0, 2, 4])
def test_unsupported_model_channels(channels):
    with pytest.raises(InputError, match=f"{channels} input channels"):
        load_image(RGB8, channels)


@pytest.mark.parametrize("array,message", [
    (np.zeros((H, W, 2), np.uint8), "channels"),
    (np.zeros((2, H, W, 3), np.uint8), "2-D or 3-D"),
    (np.full((H, W), 2.0, np.float32), r"\[0, 1\]"),
    (np.full((H, W), np.nan, np.float32), "NaN"),
    (np.zeros((H, W), np.int64), "dtype"),
    (np.zeros((0, W), np.uint8), "empty"),
])
def test_bad_arrays(array, message):
    with pytest.raises(InputError, match=message):
        load_image(array, 3)


def test_bad_files(tmp_path):
    with pytest.raises(InputError, match="not found: .*missing.png"):
        load_image(tmp_path / "missing.png", 3)
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    with pytest.raises(InputError, match="notes.png"):
        load_image(text, 3)
    truncated = tmp_path / "cut.png"
    Image.fromarray(RGB8).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:60])
    with pytest.raises(InputError, match="cut.png"):
        load_image(truncated, 3)
    with pytest.raises(InputError, match="is a folder, not a file"):
        load_image(tmp_path, 3)
    with pytest.raises(InputError, match="list"):
        load_image([1, 2, 3], 3)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_hr_to_lr_matches_pil_rgb_resize(scale):
    hr8 = RNG.integers(0, 256, (29, 35, 3), dtype=np.uint8)
    h, w = 29 // scale, 35 // scale
    expected = np.asarray(Image.fromarray(hr8[:h * scale, :w * scale]).resize(
        (w, h), Image.BICUBIC)).transpose(2, 0, 1) / 255.0
    lr = hr_to_lr(hr8.transpose(2, 0, 1) / np.float32(255), scale)
    assert lr.shape == (3, h, w) and lr.dtype == np.float32
    assert np.abs(lr - expected).max() <= 1 / 255 + 1e-6


def test_hr_to_lr_keeps_sixteen_bit_precision():
    ramp = np.linspace(0.25, 0.25 + 16 / 65535, 64, dtype=np.float32)  # below one 8-bit step
    lr = hr_to_lr(np.tile(ramp, (1, 8, 1)), 4)
    assert np.all(np.diff(lr[0, 1, 1:-1]) > 0)  # every LR pixel still distinct and increasing


def test_hr_to_lr_errors():
    with pytest.raises(InputError, match="smaller than the scale"):
        hr_to_lr(np.zeros((3, 3, 3), np.float32), 4)
    with pytest.raises(InputError, match="positive integer"):
        hr_to_lr(np.zeros((3, 8, 8), np.float32), 0)


def test_save_png_round_trip(tmp_path):
    chw = RGB8.transpose(2, 0, 1) / np.float32(255)
    path = save_png(tmp_path / "sub" / "out.png", chw)
    with Image.open(path) as img:
        assert img.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(img), RGB8)
    save_png(tmp_path / "gray.png", GRAY8)
    with Image.open(tmp_path / "gray.png") as img:
        assert img.mode == "L"
        np.testing.assert_array_equal(np.asarray(img), GRAY8)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gray.png", "sub"]  # no temp files left


@pytest.mark.parametrize("mode", ["1", "CMYK", "YCbCr", "HSV", "PA", "RGBa"])
def test_other_pil_modes_go_through_pillow_rgb(mode):
    img = Image.fromarray(RGB8).convert(mode) if mode != "PA" else \
        Image.fromarray(RGB8).quantize(8).convert("PA")
    expected = np.asarray(img.convert("RGBA" if "A" in mode else "RGB"))[..., :3] / 255.0
    np.testing.assert_allclose(load_image(img, 3), expected.transpose(2, 0, 1), atol=1e-6)


def test_float_pil_image():
    values = RNG.random((H, W), dtype=np.float32)
    np.testing.assert_array_equal(load_image(Image.fromarray(values, mode="F"), 1)[0], values)


# ---- files as an image viewer shows them, and what was done to them (read_image.conversions)

@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_as_pillow_does(orientation: int, tmp_path) -> None:
    from PIL import ImageOps

    from lam_trt.images import read_image

    img = Image.fromarray(RGB8)
    exif = img.getexif()
    exif[0x0112] = orientation
    path = tmp_path / "photo.jpg"
    img.save(path, exif=exif, quality=100, subsampling=0)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB")) / 255.0
    loaded = read_image(path, 3)
    np.testing.assert_allclose(loaded.pixels.transpose(1, 2, 0), expected, atol=1e-6)
    said = [c for c in loaded.conversions if c.startswith("EXIF orientation")]
    assert said == ([] if orientation == 1 else [f"EXIF orientation {orientation} applied "
                                                 "(turned as image viewers show it)"])


def test_animated_image_gives_frame_0_and_says_so(tmp_path) -> None:
    from lam_trt.images import read_image

    frames = [Image.fromarray(np.full((H, W), v, np.uint8)) for v in (10, 200, 90)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    loaded = read_image(path, 1)
    np.testing.assert_allclose(loaded.pixels, np.full((1, H, W), 10 / 255.0), atol=1e-6)
    assert "frame 0 of 3 used (animated image)" in loaded.conversions


@pytest.mark.parametrize("planes, alpha", [(3, False), (4, True), (2, True)])
def test_sixteen_bit_colour_png_keeps_16_bits(planes: int, alpha: bool, tmp_path) -> None:
    import png  # pypng writes what Pillow cannot

    from lam_trt.images import read_image

    data = RNG.integers(0, 65536, (H, W, planes), dtype=np.uint16)
    path = tmp_path / "deep.png"
    png.Writer(W, H, greyscale=planes < 3, alpha=alpha, bitdepth=16).write(
        open(path, "wb"), data.reshape(H, W * planes))
    loaded = read_image(path, 3 if planes >= 3 else 1)
    colour = data[..., :planes - alpha] / 65535.0
    np.testing.assert_allclose(loaded.pixels.transpose(1, 2, 0), colour, atol=1e-7)  # 8 bits: 2e-3 off
    assert "16 bits per channel kept" in loaded.conversions
    assert ("alpha dropped" in loaded.conversions) == alpha


@pytest.mark.parametrize("mode, channels, said", [
    ("L", 3, {"gray -> RGB"}), ("RGBA", 3, {"alpha dropped"}), ("RGB", 1, {"RGB -> gray (BT.601 luma)"}),
    ("RGB", 3, set()), ("LA", 1, {"alpha dropped"}), ("I;16", 1, {"16 bits per channel kept"}),
])
def test_conversions_are_listed(mode: str, channels: int, said: set[str]) -> None:
    from lam_trt.images import read_image

    assert set(read_image(pil_image(mode)[0], channels).conversions) == said


def test_model_or_device_given_as_image(tmp_path) -> None:
    model = tmp_path / "net.onnx"
    model.write_bytes(b"\x08\x07\x12\x07pytorch")  # protobuf, not an image
    with pytest.raises(InputError, match="is an ONNX model, not an image: MODEL comes first"):
        load_image(model, 3)
    with pytest.raises(InputError, match="not a regular file"):
        load_image("/dev/zero", 3)


def test_a_very_large_image_gets_no_decompression_bomb_warning(tmp_path, monkeypatch) -> None:
    """Pillow warns above MAX_IMAGE_PIXELS; lam-trt checks memory against the model instead."""
    import warnings

    path = tmp_path / "large.png"
    Image.fromarray(RGB8).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", H * W // 2)  # this image is now "large" (< 2x the limit)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_image(path, 3).shape == (3, H, W)

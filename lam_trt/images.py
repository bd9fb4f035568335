"""Images in and out: any common file, PIL image or array -> float32 CHW in [0, 1], and HR -> LR.

Colour conventions (LAM-SPEC "Inputs and conventions"): alpha is dropped, gray is repeated to
three channels for an RGB model, and RGB is turned into one channel for a gray model with the
ITU-R BT.601 luma weights (Y = 0.299 R + 0.587 G + 0.114 B, as PIL's "L" conversion uses).

Files are read as an image viewer shows them: the EXIF orientation is applied, an animated image
(GIF, APNG, WebP) gives its first frame, and 16-bit files keep 16 bits (colour PNGs through pypng,
since Pillow reads those at 8 bits). ``read_image`` says which of these it did
(``LoadedImage.conversions``) so that a result can record it.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, UnidentifiedImageError

from lam_trt.errors import InputError
from lam_trt.filetypes import not_an_image_hint, regular_file
from lam_trt.io import atomic_write

ImageSource = Union[str, os.PathLike, Image.Image, np.ndarray]

BT601 = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_FLOAT_SLACK = 1e-3  # float inputs this far outside [0, 1] are rounding, and are clipped
_SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I"}
EXIF_ORIENTATION = 0x0112
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class LoadedImage:
    """An image as the model sees it, and what was done to the file's pixels to get there."""

    pixels: np.ndarray             # float32 [channels, h, w] in [0, 1]
    conversions: tuple[str, ...]   # e.g. "gray -> RGB", "alpha dropped", "EXIF orientation 6 applied"


def load_image(source: ImageSource, channels: int) -> np.ndarray:
    """``read_image(source, channels).pixels``: the float32 [channels, h, w] array alone."""
    return read_image(source, channels).pixels


def read_image(source: ImageSource, channels: int) -> LoadedImage:
    """Return ``source`` as float32 [channels, h, w] in [0, 1] for a model with ``channels`` inputs.

    ``source``: a path (PNG, JPEG, TIFF, BMP, ...; 8 or 16 bit; gray, gray+alpha, RGB, RGBA,
    palette), a PIL image, or an array [h, w], [h, w, c] or [c, h, w] with c in {1, 3, 4}
    (uint8 / 255, uint16 / 65535, bool, or float already in [0, 1]); a 3-D array whose first axis
    is at most 4 long is read as [c, h, w] (the project's layout), any other as [h, w, c].
    Alpha is dropped; gray -> RGB repeats the channel; RGB -> gray uses BT.601 luma.
    Files and PIL images are turned as their EXIF orientation says; animated ones give frame 0.
    Raises InputError for anything unusable, including ``channels`` other than 1 or 3.
    """
    if channels not in (1, 3):
        raise InputError(f"the model takes {channels} input channels; lam-trt supports "
                         "1 (gray) or 3 (RGB) channel images")
    notes: list[str] = []
    if isinstance(source, Image.Image):
        hwc = _pil_to_hwc(source, "the image", notes)
    elif isinstance(source, np.ndarray):
        hwc = _array_to_hwc(source, notes)
    elif isinstance(source, (str, os.PathLike)):
        hwc = _read_file(Path(source), notes)
    else:
        raise InputError(f"cannot use a {type(source).__name__} as an image; give a path, "
                         "a PIL image or a NumPy array")
    pixels = _match_channels(hwc, channels, notes).transpose(2, 0, 1).copy()
    return LoadedImage(pixels, tuple(notes))


def _read_file(path: Path, notes: list[str]) -> np.ndarray:
    regular_file(path, "image file")
    try:
        with warnings.catch_warnings():
            # between 89 and 179 megapixels Pillow warns of a "decompression bomb": lam-trt checks
            # the memory an image needs against the model before the work, and says it in one line
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if _is_sixteen_bit_colour_png(path):
                    return _orient(_read_png16(path, notes), _orientation(img), notes)
                img.load()
                return _pil_to_hwc(img, str(path), notes)
    except UnidentifiedImageError:
        hint = not_an_image_hint(path)
        raise InputError(hint or f"not an image (or a format Pillow cannot read): {path}") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise InputError(f"cannot read image {path}: {e}") from None


def _is_sixteen_bit_colour_png(path: Path) -> bool:
    """PNG with 16-bit RGB, RGBA or gray+alpha pixels (IHDR bit depth 16, colour type 2, 4 or 6)."""
    with open(path, "rb") as f:
        head = f.read(26)
    return head[:8] == _PNG_SIGNATURE and head[24] == 16 and head[25] in (2, 4, 6)


def _read_png16(path: Path, notes: list[str]) -> np.ndarray:
    """Float32 [h, w, 1 or 3] from a 16-bit colour PNG, all 16 bits kept, alpha dropped."""
    import png  # pypng: Pillow has no 16-bit colour mode

    try:
        width, height, rows, info = png.Reader(filename=str(path)).asDirect()
        data = np.vstack([np.asarray(row, dtype=np.uint16) for row in rows])
    except png.Error as e:
        raise InputError(f"cannot read image {path}: {e}") from None
    planes = info["planes"]
    data = data.reshape(height, width, planes)
    if info["alpha"]:
        data = data[..., :planes - 1]
        notes.append("alpha dropped")
    notes.append("16 bits per channel kept")
    return (data.astype(np.float64) / 65535.0).astype(np.float32)


def _pil_to_hwc(img: Image.Image, name: str, notes: list[str]) -> np.ndarray:
    """Float32 [h, w, 1 or 3] in [0, 1] from any PIL mode, alpha dropped, as a viewer shows it."""
    frames = getattr(img, "n_frames", 1)
    if frames > 1:
        img.seek(0)
        notes.append(f"frame 0 of {frames} used (animated image)")
    return _orient(_pixels(img, name, notes), _orientation(img), notes)


def _pixels(img: Image.Image, name: str, notes: list[str]) -> np.ndarray:
    mode = img.mode
    if mode in _SIXTEEN_BIT_MODES:
        data = np.asarray(img).astype(np.float64)
        if data.min() < 0 or data.max() > 65535:
            raise InputError(f"{name}: 32-bit integer pixels outside the 16-bit range")
        notes.append("16 bits per channel kept")
        return (data / 65535.0).astype(np.float32)[..., None]
    if mode == "F":
        return _float_to_unit(np.asarray(img, dtype=np.float32))[..., None]
    if "A" in mode or "a" in mode or (mode == "P" and "transparency" in img.info):
        notes.append("alpha dropped")
    if mode in ("1", "L", "LA", "La"):
        data = np.asarray(img.convert("LA"))[..., :1]  # premultiplied "La" only converts to "LA"
    else:  # RGB, RGBA, palette, CMYK, YCbCr, ...: Pillow knows how to get RGB
        try:
            data = np.asarray(img.convert("RGBA" if "A" in mode or mode == "P" else "RGB"))
        except ValueError:
            raise InputError(f"{name}: cannot convert Pillow image mode {mode!r} to RGB") from None
        if mode not in ("RGB", "RGBA", "RGBa", "RGBX"):
            notes.append(f"{mode} -> RGB")
        data = data[..., :3]
    return data.astype(np.float32) / 255.0


def _orientation(img: Image.Image) -> int:
    try:
        return int(img.getexif().get(EXIF_ORIENTATION, 1))
    except (ValueError, TypeError, OSError, SyntaxError):  # a damaged EXIF block: as stored
        return 1


# EXIF orientation -> the turn that shows the image upright (Pillow's ImageOps.exif_transpose)
_ORIENT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: np.rot90(a, 2).transpose(1, 0, 2),
    8: lambda a: np.rot90(a, 1),
}


def _orient(hwc: np.ndarray, orientation: int, notes: list[str]) -> np.ndarray:
    if orientation not in _ORIENT:
        return hwc
    notes.append(f"EXIF orientation {orientation} applied (turned as image viewers show it)")
    return np.ascontiguousarray(_ORIENT[orientation](hwc))


def _array_to_hwc(array: np.ndarray, notes: list[str] | None = None) -> np.ndarray:
    """Float32 [h, w, 1 or 3] in [0, 1] from an HW, HWC or CHW array."""
    if array.ndim == 2:
        array = array[..., None]
    elif array.ndim == 3:
        if array.shape[0] <= 4:
            array = array.transpose(1, 2, 0)
    else:
        raise InputError(f"an image array must be 2-D or 3-D, got shape {array.shape}")
    if array.shape[2] not in (1, 3, 4):
        raise InputError(f"an image array needs 1 (gray), 3 (RGB) or 4 (RGBA) channels, "
                         f"got shape {array.shape}")
    if min(array.shape[:2]) == 0:
        raise InputError(f"empty image array of shape {array.shape}")
    if array.shape[2] == 4 and notes is not None:
        notes.append("alpha dropped")
    return _to_unit(array[..., :3] if array.shape[2] == 4 else array)


def _to_unit(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype == np.uint16:
        return (array.astype(np.float64) / 65535.0).astype(np.float32)
    if array.dtype == np.bool_:
        return array.astype(np.float32)
    if np.issubdtype(array.dtype, np.floating):
        return _float_to_unit(array.astype(np.float32))
    raise InputError(f"unsupported image array dtype {array.dtype}; use uint8, uint16 or float "
                     "in [0, 1]")


def _float_to_unit(array: np.ndarray) -> np.ndarray:
    if not np.all(np.isfinite(array)):
        raise InputError("the image holds NaN or infinite values")
    lo, hi = float(array.min()), float(array.max())
    if lo < -_FLOAT_SLACK or hi > 1 + _FLOAT_SLACK:
        raise InputError(f"float image values must lie in [0, 1], got [{lo:g}, {hi:g}]; "
                         "divide 8-bit data by 255")
    return np.clip(array, 0.0, 1.0)


def _match_channels(hwc: np.ndarray, channels: int, notes: list[str]) -> np.ndarray:
    if hwc.shape[2] == channels:
        return hwc.astype(np.float32, copy=False)
    if channels == 3:
        notes.append("gray -> RGB")
        return np.repeat(hwc, 3, axis=2)
    notes.append("RGB -> gray (BT.601 luma)")
    return (hwc @ BT601)[..., None].astype(np.float32)


def hr_to_lr(hr: np.ndarray, scale: int) -> np.ndarray:
    """LAM-SPEC LR from an HR image [C, H, W] in [0, 1]: crop to a multiple of ``scale`` from the
    top-left, then PIL's antialiased BICUBIC resize to (W // scale, H // scale).

    Each channel is resized as a float ("F") image, so 16-bit precision survives; the result is
    clipped to [0, 1] as PIL's 8-bit resize clips, and matches it on 8-bit input within 1/255.
    """
    if not isinstance(scale, (int, np.integer)) or scale < 1:
        raise InputError(f"the scale must be a positive integer, got {scale!r}")
    hr = np.asarray(hr, dtype=np.float32)
    if hr.ndim != 3:
        raise InputError(f"hr_to_lr needs a [C, H, W] image, got shape {hr.shape}")
    h, w = hr.shape[1] // scale, hr.shape[2] // scale
    if h == 0 or w == 0:
        raise InputError(f"an HR image of {hr.shape[1]}x{hr.shape[2]} pixels is smaller than "
                         f"the scale {scale}")
    hr = hr[:, :h * scale, :w * scale]
    lr = [np.asarray(Image.fromarray(np.ascontiguousarray(ch), mode="F").resize(
        (w, h), Image.BICUBIC)) for ch in hr]
    return np.clip(np.stack(lr), 0.0, 1.0).astype(np.float32)


def save_png(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write an image array (HW, HWC or CHW; uint8, uint16 or float in [0, 1]) as an 8-bit gray
    or RGB PNG, atomically. Alpha is dropped; other data is rounded to the nearest 8-bit level."""
    hwc = np.round(_array_to_hwc(np.asarray(array)) * 255.0).astype(np.uint8)
    img = Image.fromarray(hwc[..., 0] if hwc.shape[2] == 1 else hwc)
    return atomic_write(path, lambda p: img.save(p, format="PNG"))

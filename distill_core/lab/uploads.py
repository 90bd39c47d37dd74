"""Turning a user's picture (an upload or a canvas drawing) into a model input of the dataset's shape.

Everything a user hands over is checked before it is decoded and converted the same way::

    x = image_to_input(png_bytes, info)            # (1, C, H, W) float32 in [0, 1]
    conv = convert_image(png_bytes, info)          # the same, plus what was done: conv.notes
    x = canvas_to_input(rgba, info)                # a drawable-canvas RGBA array (white ink on black)

Steps: refuse what is not a PNG / JPEG, too many bytes (> :data:`MAX_BYTES`) or too many pixels
(> :data:`MAX_PIXELS`, checked from the header before decoding, with PIL's decompression-bomb
guard as an error too); decode (a truncated file is an error); undo EXIF rotation; map every
mode to floats in [0, 1] (16-bit and 32-bit integer images by their own range, not clipped to
8 bits); composite transparency on the background that contrasts with the ink; grey
(ITU-R 601 luma, as PIL's ``L``) or RGB as the dataset wants; for one-channel datasets, whose
digits are white on black, invert a mostly bright image (``invert="auto"``: mean > 0.5), stretch
the contrast (background to 0, brightest ink to 1) and place it like MNIST's own preprocessing
(LeCun et al. 1998): the ink's bounding box scaled to fit a 20 x 20 box, keeping its aspect
ratio, then shifted so its centre of mass sits at the centre of the 28 x 28 frame; colour
datasets get the whole picture fitted into the frame, centred.
Nothing is unpickled; every problem is an :class:`ImageInputError` with a message for the user.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..data import DatasetInfo

MAX_BYTES = 10 * 1024 * 1024          # 10 MB: far above any digit photo, far below what hurts the server
MAX_PIXELS = 40_000_000               # 40 megapixels, checked from the header before decoding
FORMATS = ("PNG", "JPEG")
INK_THRESHOLD = 0.1                   # a pixel brighter than this (after inversion) counts as ink
MNIST_BOX = 20 / 28                   # MNIST digits fit a 20 x 20 box inside the 28 x 28 frame

Fit = Literal["auto", "digit", "pad"]


class ImageInputError(ValueError):
    """The picture cannot be used; the message says why, in words for the person who supplied it."""


@dataclass
class ConvertedImage:
    """A converted picture: the model input and what was done to get it."""

    x: torch.Tensor                        # (1, C, H, W) float32 in [0, 1]
    notes: list[str] = field(default_factory=list)
    inverted: bool = False
    source_mode: str = ""                  # the PIL mode (or array dtype) it came in
    source_size: tuple[int, int] = (0, 0)  # (width, height) as it came in


def _check_pixels(width: int, height: int) -> None:
    if width <= 0 or height <= 0:
        raise ImageInputError(f"The image has no pixels ({width} x {height}).")
    if width * height > MAX_PIXELS:
        raise ImageInputError(f"The image is too large: {width} x {height} = {width * height / 1e6:.1f} megapixels "
                              f"(the limit is {MAX_PIXELS / 1e6:.0f}). Scale it down and try again.")


def _open(data: bytes, formats: tuple[str, ...]) -> Image.Image:
    """Decode ``data`` after the size checks; PIL's decompression-bomb warning is an error here."""
    if len(data) == 0:
        raise ImageInputError("The file is empty.")
    if len(data) > MAX_BYTES:
        raise ImageInputError(f"The file is too large: {len(data) / 2**20:.1f} MB (the limit is "
                              f"{MAX_BYTES / 2**20:.0f} MB).")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data))
            if img.format not in formats:
                raise ImageInputError(f"{img.format} images are not supported: upload a {' or '.join(formats)} file.")
            _check_pixels(*img.size)
            img.load()
        except ImageInputError:
            raise
        except UnidentifiedImageError as e:
            raise ImageInputError(f"This is not an image PIL can read (expected {' or '.join(formats)}).") from e
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise ImageInputError("The image is too large (PIL refuses it as a possible decompression bomb).") from e
        except (OSError, SyntaxError, ValueError, EOFError) as e:
            raise ImageInputError(f"The image file is damaged or truncated and cannot be decoded ({e}).") from e
    return img


def _first_frame(img: Image.Image, notes: list[str]) -> Image.Image:
    if getattr(img, "n_frames", 1) > 1:
        img.seek(0)
        notes.append(f"Animated image: the first of its {img.n_frames} frames is used.")
    return img


def _pil_to_float(img: Image.Image, notes: list[str]) -> tuple[np.ndarray, np.ndarray | None]:
    """Pixels as float (H, W, 1 or 3) in [0, 1] and alpha (H, W) in [0, 1] or None, for any PIL mode."""
    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        a = np.asarray(img).astype(np.float64)
        if a.min() < 0 or a.max() > 65535:
            notes.append("32-bit integer image: values were clipped to the 16-bit range.")
        notes.append("16-bit image: scaled by its full range (0 - 65535).")
        return np.clip(a / 65535.0, 0.0, 1.0)[..., None], None
    if mode == "F":
        a = np.nan_to_num(np.asarray(img).astype(np.float64))
        scale = 1.0 if a.max() <= 1.0 else float(a.max())
        return np.clip(a / scale, 0.0, 1.0)[..., None], None
    if mode == "1":
        img = img.convert("L")
    elif mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif mode == "PA":
        img = img.convert("RGBA")
    elif mode not in ("L", "LA", "RGB", "RGBA"):
        img = img.convert("RGB")          # CMYK, YCbCr, LAB, HSV, RGBX, La, RGBa, ...
        notes.append(f"{mode} image converted to RGB.")
    a = np.asarray(img).astype(np.float64) / 255.0
    if img.mode == "L":
        return a[..., None], None
    if img.mode == "LA":
        return a[..., :1], a[..., 1]
    if img.mode == "RGBA":
        return a[..., :3], a[..., 3]
    return a, None


def _array_to_float(arr: np.ndarray, notes: list[str]) -> tuple[np.ndarray, np.ndarray | None]:
    """An (H, W), (H, W, 1/2/3/4) array as float pixels and alpha; uint8 / uint16 by their range, floats as [0, 1]."""
    a = np.asarray(arr)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4):
        raise ImageInputError(f"An image array must be (H, W) or (H, W, 1-4 channels); got shape {tuple(arr.shape)}.")
    _check_pixels(a.shape[1], a.shape[0])
    if a.dtype == np.bool_:
        a = a.astype(np.float64)
    elif a.dtype == np.uint8:
        a = a.astype(np.float64) / 255.0
    elif a.dtype == np.uint16:
        a = a.astype(np.float64) / 65535.0
    elif np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float64)
        if not np.isfinite(a).all():
            raise ImageInputError("The image array contains NaN or infinite values.")
        if a.min() < 0 or a.max() > 1:
            notes.append("Float pixels outside [0, 1] were clipped.")
        a = np.clip(a, 0.0, 1.0)
    else:
        raise ImageInputError(f"Unsupported pixel type {a.dtype}: use uint8, uint16 or floats in [0, 1].")
    if a.shape[2] == 2:
        return a[..., :1], a[..., 1]
    if a.shape[2] == 4:
        return a[..., :3], a[..., 3]
    return a, None


def _composite(pixels: np.ndarray, alpha: np.ndarray | None, notes: list[str]) -> np.ndarray:
    """Flatten transparency onto the background that contrasts with the ink.

    Dark ink on a transparent background (the usual exported drawing) goes on white, bright ink
    on black, so the strokes survive either way; the inversion step then fixes the polarity.
    """
    if alpha is None or alpha.min() >= 1.0:
        return pixels
    if alpha.max() <= 0.0:
        raise ImageInputError("The image is fully transparent: there is nothing to see.")
    ink = float((pixels.mean(-1) * alpha).sum() / alpha.sum())
    background = 1.0 if ink < 0.5 else 0.0
    notes.append(f"Transparent areas were filled with {'white' if background else 'black'} "
                 f"(the opposite of the {'dark' if background else 'bright'} ink).")
    return pixels * alpha[..., None] + background * (1.0 - alpha[..., None])


def _resize(a: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize (H, W, C) floats with PIL's antialiased bilinear filter, channel by channel."""
    width, height = max(1, width), max(1, height)
    chans = [np.asarray(Image.fromarray(a[..., c].astype(np.float32), mode="F").resize(
        (width, height), Image.Resampling.BILINEAR)) for c in range(a.shape[2])]
    return np.clip(np.stack(chans, -1), 0.0, 1.0)


def _fit_box(a: np.ndarray, box_h: int, box_w: int) -> np.ndarray:
    """Scale (H, W, C) to fit inside box_h x box_w keeping the aspect ratio."""
    h, w = a.shape[:2]
    scale = min(box_h / h, box_w / w)
    return _resize(a, round(w * scale), round(h * scale))


def _stretch_contrast(a: np.ndarray, notes: list[str]) -> np.ndarray:
    """Map the background level (the median: most of a digit picture is background) to 0 and the brightest
    ink to 1, as in MNIST; a photo of paper is grey, not black, once inverted."""
    bg, top = float(np.median(a)), float(a.max())
    if top - bg < 0.05 or (bg <= 0.02 and top >= 0.98):
        return a
    notes.append(f"Contrast stretched: the background level {bg:.2f} became 0 and the brightest ink {top:.2f} "
                 "became 1.")
    return np.clip((a - bg) / (top - bg), 0.0, 1.0)


def _place_digit(a: np.ndarray, height: int, width: int, notes: list[str]) -> np.ndarray:
    """MNIST's placement: crop to the ink, fit into the 20/28 box, centre of mass at the frame's centre."""
    a = _stretch_contrast(a, notes)
    grey = a.mean(-1)
    ink = grey > INK_THRESHOLD * max(float(grey.max()), 1e-12)
    rows, cols = np.nonzero(ink.any(1))[0], np.nonzero(ink.any(0))[0]
    if grey.max() > 0 and len(rows) and len(cols):
        a = a[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    box = height if height < 20 else round(height * MNIST_BOX), width if width < 20 else round(width * MNIST_BOX)
    small = _fit_box(a, *box)
    bh, bw = small.shape[:2]
    mass = small.mean(-1)
    total = float(mass.sum())
    if total > 0:
        cy = float((mass.sum(1) * np.arange(bh)).sum() / total)
        cx = float((mass.sum(0) * np.arange(bw)).sum() / total)
    else:
        cy, cx = (bh - 1) / 2, (bw - 1) / 2
    top = int(np.clip(round((height - 1) / 2 - cy), 0, height - bh))
    left = int(np.clip(round((width - 1) / 2 - cx), 0, width - bw))
    out = np.zeros((height, width, a.shape[2]))
    out[top:top + bh, left:left + bw] = small
    notes.append(f"Cropped to the ink, fitted into a {box[0]} x {box[1]} box and centred by its centre of mass "
                 f"in {height} x {width}, as MNIST was prepared.")
    return out


def _place_padded(a: np.ndarray, height: int, width: int, notes: list[str]) -> np.ndarray:
    small = _fit_box(a, height, width)
    bh, bw = small.shape[:2]
    out = np.zeros((height, width, a.shape[2]))
    top, left = (height - bh) // 2, (width - bw) // 2
    out[top:top + bh, left:left + bw] = small
    if (bh, bw) != (height, width):
        notes.append(f"Resized to {bh} x {bw} keeping the aspect ratio and centred on black in {height} x {width}.")
    return out


def _convert(pixels: np.ndarray, alpha: np.ndarray | None, info: DatasetInfo, invert: bool | str, fit: Fit,
             notes: list[str], source_mode: str, source_size: tuple[int, int]) -> ConvertedImage:
    if not info.is_image:
        raise ImageInputError(f"{info.name} is not an image dataset: pictures cannot be converted to its inputs.")
    channels, height, width = info.input_shape
    a = _composite(pixels, alpha, notes)
    if channels == 1:
        if a.shape[2] == 3:
            a = (a @ np.array([0.299, 0.587, 0.114]))[..., None]
            notes.append("Converted to grey (luma).")
    elif a.shape[2] == 1:
        a = np.repeat(a, channels, axis=2)
    elif a.shape[2] != channels:
        raise ImageInputError(f"Cannot map {a.shape[2]} channels to the {channels} of {info.name}.")
    inverted = False
    if invert == "auto":
        if channels == 1 and float(a.mean()) > 0.5:
            inverted = True
            notes.append(f"The image is mostly bright (mean {float(a.mean()):.2f} > 0.5) while {info.name} digits are "
                         "white on black, so it was inverted.")
    elif invert:
        inverted = True
        notes.append("Inverted.")
    if inverted:
        a = 1.0 - a
    if fit == "auto":
        fit = "digit" if channels == 1 else "pad"
    if fit == "digit":
        a = _place_digit(a, height, width, notes)
    elif fit == "pad":
        a = _place_padded(a, height, width, notes)
    else:
        raise ValueError(f"fit must be 'auto', 'digit' or 'pad', got {fit!r}")
    x = torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))).float().clamp(0, 1).unsqueeze(0)
    return ConvertedImage(x=x, notes=notes, inverted=inverted, source_mode=source_mode, source_size=source_size)


def convert_image(data: bytes | Image.Image | np.ndarray, info: DatasetInfo, invert: bool | str = "auto",
                  fit: Fit = "auto", formats: tuple[str, ...] = FORMATS) -> ConvertedImage:
    """Convert encoded bytes, a PIL image or an array into the dataset's input, saying what was done.

    ``data``: the bytes of a file (PNG or JPEG, see ``formats``), a ``PIL.Image`` in any mode
    (L, LA, 1, P, PA, RGB, RGBA, CMYK, I;16, I, F, ...) or an array (H, W) / (H, W, 1-4) of uint8,
    uint16 or floats in [0, 1]. ``invert``: ``"auto"`` (one-channel datasets: invert a mostly
    bright image, mean > 0.5), ``True`` or ``False``. ``fit``: ``"digit"`` (MNIST's crop, 20/28 box
    and centre of mass), ``"pad"`` (fit the whole picture, centred on black) or ``"auto"``
    (``"digit"`` for one channel, else ``"pad"``). Returns a :class:`ConvertedImage` whose ``x``
    is (1, C, H, W) float32 in [0, 1]. Raises :class:`ImageInputError` for anything unusable.
    """
    notes: list[str] = []
    if isinstance(data, (bytes, bytearray, memoryview)):
        img = _first_frame(_open(bytes(data), formats), notes)
        img = ImageOps.exif_transpose(img) or img
        mode, size = img.mode, img.size
        pixels, alpha = _pil_to_float(img, notes)
    elif isinstance(data, Image.Image):
        _check_pixels(*data.size)
        mode, size = data.mode, data.size
        pixels, alpha = _pil_to_float(_first_frame(data, notes), notes)
    elif isinstance(data, np.ndarray):
        mode, size = str(data.dtype), (int(data.shape[1]) if data.ndim > 1 else 0, int(data.shape[0]))
        pixels, alpha = _array_to_float(data, notes)
    else:
        raise ImageInputError(f"Expected image bytes, a PIL image or an array, got {type(data).__name__}.")
    return _convert(pixels, alpha, info, invert, fit, notes, mode, size)


def image_to_input(data: bytes | Image.Image | np.ndarray, info: DatasetInfo, invert: bool | str = "auto",
                   fit: Fit = "auto") -> torch.Tensor:
    """The model input (1, C, H, W) in [0, 1] for a picture; see :func:`convert_image` for the steps."""
    return convert_image(data, info, invert=invert, fit=fit).x


def canvas_to_input(rgba: np.ndarray | None, info: DatasetInfo, fit: Fit = "auto") -> ConvertedImage:
    """Convert a drawable-canvas image (H, W, 4) RGBA, white strokes on black, into the dataset's input.

    The canvas's polarity is known, so it is never inverted. An empty canvas (no stroke: every
    pixel black or transparent) raises :class:`ImageInputError` asking for a drawing.
    """
    if rgba is None:
        raise ImageInputError("The canvas is empty: draw a digit first.")
    a = np.asarray(rgba)
    if a.ndim != 3 or a.shape[2] != 4:
        raise ImageInputError(f"A canvas image is (H, W, 4) RGBA; got shape {tuple(a.shape)}.")
    notes: list[str] = []
    pixels, alpha = _array_to_float(a, notes)
    if float((pixels.max(-1) * (1.0 if alpha is None else alpha)).max()) <= INK_THRESHOLD:
        raise ImageInputError("The canvas is empty: draw a digit first.")
    return _convert(pixels, alpha, info, False, fit, notes, "canvas RGBA", (a.shape[1], a.shape[0]))

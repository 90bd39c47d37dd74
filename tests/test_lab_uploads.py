"""Uploads and canvas drawings to model inputs: every mode converts, every bad file is refused in words."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from distill_core.data import DatasetInfo
from distill_core.lab import uploads as images
from distill_core.lab.uploads import ImageInputError, canvas_to_input, convert_image, image_to_input

MNIST = DatasetInfo("mnist-5k", (1, 28, 28), 10, tuple("0123456789"), (0.13,), (0.31,), True)
DIGITS = DatasetInfo("digits", (1, 8, 8), 10, tuple("0123456789"), (0.3,), (0.38,), True)
CIFAR = DatasetInfo("cifar10", (3, 32, 32), 10, tuple("abcdefghij"), (0.5,) * 3, (0.25,) * 3, False,
                    default_eps=8 / 255)
MOONS = DatasetInfo("moons", (2,), 2, ("a", "b"), (0.5, 0.5), (0.2, 0.2), True)


def encode(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def bar_image(size=(60, 40), ink=255, background=0) -> np.ndarray:
    """A vertical bar (a '1') of value ``ink`` on ``background``, (H, W) uint8."""
    w, h = size
    a = np.full((h, w), background, np.uint8)
    a[5:35, 25:35] = ink
    return a


def check_input(x: torch.Tensor, info: DatasetInfo) -> None:
    assert x.shape == (1, *info.input_shape)
    assert x.dtype == torch.float32
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0


# ------------------------------------------------------------------ modes


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA", "P", "CMYK", "1", "I;16", "I", "F"])
def test_every_mode_gives_a_white_on_black_digit(mode: str) -> None:
    a = bar_image()
    if mode == "I;16":
        img = Image.fromarray(a.astype(np.uint16) * 257)
        assert img.mode == "I;16"
    elif mode == "I":
        img = Image.fromarray(a.astype(np.int32) * 257)
        assert img.mode == "I"
    elif mode == "F":
        img = Image.fromarray(a.astype(np.float32) / 255)
    else:
        img = Image.fromarray(a).convert(mode)
    conv = convert_image(encode(img) if mode in ("L", "LA", "RGB", "RGBA", "P", "1", "I;16") else img, MNIST)
    check_input(conv.x, MNIST)
    assert not conv.inverted
    x = conv.x[0, 0]
    # the bar is bright, centred, and the corners stay black
    assert float(x[10:18, 12:16].mean()) > 0.5
    assert float(x[:3, :3].max()) == 0.0 and float(x[-3:, -3:].max()) == 0.0
    # fitted into the 20 x 20 box: ink spans at most 20 rows
    rows = (x > 0.1).any(1).nonzero().flatten()
    assert rows[-1] - rows[0] + 1 <= 20


def test_sixteen_bit_uses_its_full_range_not_8_bits() -> None:
    a = (bar_image().astype(np.uint16) * 257 // 2)  # a mid-grey bar in 16 bits: 32767
    x = image_to_input(encode(Image.fromarray(a)), MNIST, fit="pad")
    assert 0.4 < float(x.max()) < 0.6          # PIL's convert("L") would clip it to 1.0


def test_jpeg_decodes_and_cmyk_jpeg_converts() -> None:
    x = image_to_input(encode(Image.fromarray(bar_image()).convert("RGB"), "JPEG"), MNIST)
    check_input(x, MNIST)
    x = image_to_input(encode(Image.fromarray(bar_image()).convert("CMYK"), "JPEG"), MNIST)
    check_input(x, MNIST)


def test_bright_image_is_inverted_and_says_so() -> None:
    conv = convert_image(encode(Image.fromarray(bar_image(ink=0, background=255))), MNIST)
    assert conv.inverted
    assert any("inverted" in n for n in conv.notes)
    assert float(conv.x[0, 0, :3, :3].max()) == 0.0 and float(conv.x.max()) > 0.5
    kept = convert_image(encode(Image.fromarray(bar_image(ink=0, background=255))), MNIST, invert=False)
    assert not kept.inverted and float(kept.x.max()) > 0.9 and float(kept.x[0, 0, 14, 14]) < 0.2


def test_dark_ink_on_transparent_is_composited_on_white_then_inverted() -> None:
    rgba = np.zeros((40, 60, 4), np.uint8)          # black ink, transparent elsewhere
    rgba[5:35, 25:35, 3] = 255
    conv = convert_image(encode(Image.fromarray(rgba, "RGBA")), MNIST)
    assert conv.inverted and float(conv.x[0, 0, 14, 14]) > 0.5
    assert any("white" in n for n in conv.notes)


def test_palette_with_transparency() -> None:
    img = Image.fromarray(bar_image()).convert("P")
    img.info["transparency"] = 0
    x = image_to_input(encode(img, transparency=0), MNIST)
    check_input(x, MNIST)
    assert float(x.max()) > 0.5


def test_mnist_like_placement_centres_an_off_centre_digit() -> None:
    a = np.zeros((100, 100), np.uint8)
    a[0:30, 0:10] = 255                                  # a bar in the top-left corner
    x = image_to_input(a, MNIST)[0, 0].numpy()
    ys, xs = np.nonzero(x)
    cy, cx = (x.sum(1) * np.arange(28)).sum() / x.sum(), (x.sum(0) * np.arange(28)).sum() / x.sum()
    assert abs(cy - 13.5) <= 1 and abs(cx - 13.5) <= 1
    assert ys.max() - ys.min() + 1 <= 20


def test_aspect_ratio_kept_when_padding() -> None:
    a = np.full((10, 40), 200, np.uint8)                 # wide grey rectangle
    x = image_to_input(a, CIFAR)
    check_input(x, CIFAR)
    filled = (x[0, 0] > 0).any(1).sum()
    assert 7 <= int(filled) <= 9                          # 32 * 10 / 40 = 8 rows, centred
    assert float(x[0, :, 0].max()) == 0.0


def test_small_dataset_shape_and_colour_dataset_replicates_grey() -> None:
    check_input(image_to_input(bar_image(), DIGITS), DIGITS)
    x = image_to_input(bar_image(), CIFAR)
    check_input(x, CIFAR)
    assert torch.equal(x[0, 0], x[0, 1]) and torch.equal(x[0, 1], x[0, 2])


def test_rgb_to_grey_uses_luma() -> None:
    a = np.zeros((28, 28, 3), np.uint8)
    a[..., 1] = 255                                       # pure green: luma 0.587
    x = image_to_input(a, MNIST, invert=False, fit="pad")
    assert abs(float(x.mean()) - 0.587) < 0.01


def test_canvas_white_on_black() -> None:
    rgba = np.zeros((280, 280, 4), np.uint8)
    rgba[..., 3] = 255
    rgba[60:220, 120:160, :3] = 255
    conv = canvas_to_input(rgba, MNIST)
    check_input(conv.x, MNIST)
    assert not conv.inverted and float(conv.x.max()) > 0.5 and float(conv.x[0, 0, 0, 0]) == 0.0


def test_canvas_transparent_background_and_empty_canvas() -> None:
    rgba = np.zeros((200, 200, 4), np.uint8)             # transparent, white strokes
    rgba[40:160, 90:110] = 255
    assert float(canvas_to_input(rgba, MNIST).x.max()) > 0.5
    with pytest.raises(ImageInputError, match="empty"):
        canvas_to_input(np.zeros((200, 200, 4), np.uint8), MNIST)
    black = np.zeros((200, 200, 4), np.uint8)
    black[..., 3] = 255
    with pytest.raises(ImageInputError, match="empty"):
        canvas_to_input(black, MNIST)
    with pytest.raises(ImageInputError, match="empty"):
        canvas_to_input(None, MNIST)
    with pytest.raises(ImageInputError, match="RGBA"):
        canvas_to_input(np.zeros((20, 20, 3), np.uint8), MNIST)


# ------------------------------------------------------------------ bad input


def test_not_an_image() -> None:
    with pytest.raises(ImageInputError, match="not an image"):
        convert_image(b"this is a text file, not a picture\n" * 10, MNIST)


def test_empty_file() -> None:
    with pytest.raises(ImageInputError, match="empty"):
        convert_image(b"", MNIST)


def test_truncated_png_and_jpeg() -> None:
    noise = np.random.default_rng(0).integers(0, 256, (200, 200), dtype=np.uint8)
    for fmt in ("PNG", "JPEG"):
        data = encode(Image.fromarray(noise), fmt)
        with pytest.raises(ImageInputError, match="damaged or truncated"):
            convert_image(data[: len(data) // 2], MNIST)


def test_too_many_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images, "MAX_BYTES", 1000)
    data = encode(Image.fromarray(np.random.default_rng(0).integers(0, 256, (100, 100), dtype=np.uint8)))
    assert len(data) > 1000
    with pytest.raises(ImageInputError, match="too large"):
        convert_image(data, MNIST)


def test_too_many_pixels_refused_from_the_header() -> None:
    # 8000 x 6000 = 48 MP, a few KB as a PNG of one colour: refused before decoding
    data = encode(Image.new("L", (8000, 6000)))
    assert len(data) < images.MAX_BYTES
    with pytest.raises(ImageInputError, match="megapixels"):
        convert_image(data, MNIST)
    with pytest.raises(ImageInputError, match="megapixels"):
        convert_image(Image.new("L", (8000, 6000)), MNIST)


def test_decompression_bomb_guard_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)    # PIL warns above this, refuses above twice this
    for side in (40, 100):                                   # 1,600 px: the warning; 10,000 px: the error
        data = encode(Image.new("L", (side, side)))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(ImageInputError, match="decompression bomb"):
                convert_image(data, MNIST)


def test_other_formats_refused() -> None:
    with pytest.raises(ImageInputError, match="not supported"):
        convert_image(encode(Image.fromarray(bar_image()), "BMP"), MNIST)


def test_bad_arrays_and_types() -> None:
    with pytest.raises(ImageInputError, match="shape"):
        image_to_input(np.zeros((2, 3, 4, 5)), MNIST)
    with pytest.raises(ImageInputError, match="NaN"):
        image_to_input(np.full((5, 5), np.nan), MNIST)
    with pytest.raises(ImageInputError, match="pixel type"):
        image_to_input(np.zeros((5, 5), np.int64), MNIST)
    with pytest.raises(ImageInputError, match="no pixels"):
        image_to_input(np.zeros((0, 5), np.uint8), MNIST)
    with pytest.raises(ImageInputError, match="Expected image bytes"):
        image_to_input("digit.png", MNIST)  # type: ignore[arg-type]
    with pytest.raises(ImageInputError, match="not an image dataset"):
        image_to_input(bar_image(), MOONS)
    with pytest.raises(ImageInputError, match="fully transparent"):
        image_to_input(np.zeros((10, 10, 4), np.uint8), MNIST)


def test_no_pickle_is_ever_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    import pickle

    def refuse(*a, **k):
        raise AssertionError("unpickling attempted")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    with pytest.raises(ImageInputError):
        convert_image(pickle.dumps({"evil": 1}), MNIST)
    with pytest.raises(ImageInputError):
        convert_image(b"PK\x03\x04" + b"\x00" * 100, MNIST)        # a zip, as torch.save writes


def test_grey_paper_is_stretched_to_black_and_white() -> None:
    a = np.full((80, 60), 200, np.uint8)                 # a photo: grey paper, dark-grey ink
    a[10:70, 25:35] = 60
    conv = convert_image(a, MNIST)
    assert conv.inverted and any("Contrast stretched" in n for n in conv.notes)
    x = conv.x[0, 0]
    assert float(x.max()) == pytest.approx(1.0) and float(x[0, 0]) == 0.0
    assert float(np.median(x.numpy())) == 0.0

"""read_image: every bit depth and channel layout reads as the 8-bit image it holds, or is refused by name."""
import logging
import warnings

import cv2
import numpy as np
import pytest
from PIL import Image

from maskrcnn_multi.config import UserError
from maskrcnn_multi.data import BadImageError, read_image
from maskrcnn_multi.data.image_io import apply_exif_orientation

_RNG = np.random.default_rng(7)
RGB8 = _RNG.integers(0, 256, (6, 9, 3), dtype=np.uint8)
GRAY8 = _RNG.integers(0, 256, (6, 9), dtype=np.uint8)


def _luma(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb).convert("L"))


def test_eight_bit_rgb_in_each_format(tmp_path):
    path = tmp_path / "rgb.png"
    Image.fromarray(RGB8).save(path)
    assert np.array_equal(read_image(str(path), "RGB"), RGB8)
    assert np.array_equal(read_image(str(path), "BGR"), RGB8[:, :, ::-1])
    gray = read_image(str(path), "L")
    assert gray.shape == (6, 9, 1) and gray.dtype == np.uint8 and np.array_equal(gray[:, :, 0], _luma(RGB8))


def test_sixteen_bit_grayscale_png_keeps_its_range(tmp_path):
    """Today's bug: PIL's conversion saturated every value above 255 (an all-white image). An 8-bit
    image stored at 16 bits (v * 257, the PNG rule) reads back exactly, in every format."""
    path = tmp_path / "gray16.png"
    assert cv2.imwrite(str(path), GRAY8.astype(np.uint16) * 257)
    with Image.open(path) as image:
        assert image.mode == "I;16"
    assert np.array_equal(read_image(str(path), "L")[:, :, 0], GRAY8)
    assert np.array_equal(read_image(str(path), "BGR"), np.repeat(GRAY8[:, :, None], 3, axis=2))
    values = np.array([[0, 255, 256, 40000, 65535]], dtype=np.uint16)
    assert cv2.imwrite(str(path), values)
    assert read_image(str(path), "L")[0, :, 0].tolist() == [0, 0, 1, 156, 255]  # the high byte


def test_sixteen_bit_grayscale_tiff_and_rgb_png(tmp_path):
    Image.fromarray(GRAY8.astype(np.uint16) * 257).save(tmp_path / "gray16.tif")
    assert np.array_equal(read_image(str(tmp_path / "gray16.tif"), "L")[:, :, 0], GRAY8)
    assert cv2.imwrite(str(tmp_path / "rgb16.png"), RGB8[:, :, ::-1].astype(np.uint16) * 257)
    assert np.array_equal(read_image(str(tmp_path / "rgb16.png"), "RGB"), RGB8)


def test_alpha_palette_bilevel_and_one_channel(tmp_path, capfd):
    rgba = np.dstack([RGB8, np.full(RGB8.shape[:2], 17, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    assert np.array_equal(read_image(str(tmp_path / "rgba.png"), "RGB"), RGB8)  # alpha dropped, as detectron2

    palette = Image.fromarray(RGB8).quantize(8)
    palette.save(tmp_path / "palette.png", transparency=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PIL's "Palette images with Transparency" warning must not escape
        assert np.array_equal(read_image(str(tmp_path / "palette.png"), "RGB"), np.asarray(palette.convert("RGB")))

    Image.fromarray(GRAY8 > 127).save(tmp_path / "bilevel.png")
    assert set(np.unique(read_image(str(tmp_path / "bilevel.png"), "BGR"))) <= {0, 255}

    Image.fromarray(GRAY8, "L").save(tmp_path / "gray.png")
    assert np.array_equal(read_image(str(tmp_path / "gray.png"), "RGB"), np.repeat(GRAY8[:, :, None], 3, axis=2))
    assert "Warning" not in capfd.readouterr().err


def test_cmyk_jpeg_matches_opencvs_decoder(tmp_path):
    cmyk = np.zeros((16, 16, 4), np.uint8)
    cmyk[..., 0], cmyk[..., 2], cmyk[..., 3] = 200, 60, 30
    path = tmp_path / "cmyk.jpg"
    Image.fromarray(cmyk, "CMYK").save(path, quality=95)
    ours = read_image(str(path), "BGR").astype(int)
    assert np.abs(ours - cv2.imread(str(path), cv2.IMREAD_COLOR).astype(int)).max() <= 3  # JPEG rounding


@pytest.mark.parametrize("orientation, transpose", [
    (3, lambda a: a[::-1, ::-1]),   # rotated 180
    (6, lambda a: np.rot90(a, -1)),  # shown rotated 90 clockwise: stored 90 counter-clockwise
    (8, lambda a: np.rot90(a, 1)),
    (2, lambda a: a[:, ::-1]),
])
def test_exif_orientation_as_detectron2(tmp_path, orientation, transpose):
    path = tmp_path / f"oriented{orientation}.png"
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(RGB8).save(path, exif=exif)
    assert np.array_equal(read_image(str(path), "RGB"), transpose(RGB8))


def test_unreadable_exif_is_ignored(monkeypatch):
    image = Image.fromarray(RGB8)

    def broken():
        raise SyntaxError("corrupt EXIF")

    monkeypatch.setattr(image, "getexif", broken)
    assert apply_exif_orientation(image) is image


@pytest.mark.parametrize("mode, values, kind", [
    ("F", _RNG.random((4, 5)).astype(np.float32), "floating-point"),
    ("I", _RNG.integers(0, 1 << 20, (4, 5)).astype(np.int32), "32-bit integer"),
])
def test_pixels_without_a_range_are_refused_by_name(tmp_path, mode, values, kind):
    path = tmp_path / f"{mode}.tif"
    Image.fromarray(values, mode).save(path)
    with pytest.raises(BadImageError, match=rf"image .*{mode}\.tif has {kind} pixels \(PIL mode {mode}\)"):
        read_image(str(path))


def test_missing_corrupt_and_folder_are_named(tmp_path, caplog):
    with pytest.raises(BadImageError, match="image not found: .*gone.jpg"):
        read_image(str(tmp_path / "gone.jpg"))
    (tmp_path / "text.jpg").write_text("not an image")
    with pytest.raises(BadImageError, match=r"cannot read image .*text.jpg: cannot identify image file"):
        read_image(str(tmp_path / "text.jpg"))
    with pytest.raises(BadImageError, match=f"cannot read image {tmp_path}"):
        read_image(str(tmp_path))
    truncated = tmp_path / "truncated.png"
    Image.fromarray(RGB8).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:60])
    with caplog.at_level(logging.WARNING), pytest.raises(BadImageError, match="truncated.png"):
        read_image(str(truncated))


def test_bad_image_error_is_a_user_error_and_an_oserror():
    assert issubclass(BadImageError, UserError) and issubclass(BadImageError, OSError)
    with pytest.raises(UserError, match="unsupported INPUT.FORMAT 'YUV'"):
        read_image("any.jpg", "YUV")

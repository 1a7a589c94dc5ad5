"""load_image: every mode to (3, H, W) uint8 RGB, orientation, frames, and one-line errors."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from frcnn.data import IMAGE_FORMATS, MAX_PIXELS, LoadedImage, image_to_numpy, load_image
from frcnn.errors import FrcnnError


def _encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def _pixel(loaded: LoadedImage, x: int, y: int) -> list[int]:
    return loaded.tensor[:, y, x].tolist()


def test_rgb_png_from_path_keeps_pixels_and_name(tmp_path: Path) -> None:
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 10  # (H=2, W=3, 3)
    path = tmp_path / "photo.png"
    Image.fromarray(rgb).save(path)
    loaded = load_image(path)
    assert loaded.name == "photo.png"
    assert loaded.tensor.dtype == torch.uint8 and loaded.tensor.shape == (3, 2, 3)
    assert (loaded.width, loaded.height) == (3, 2)
    assert np.array_equal(image_to_numpy(loaded.tensor), rgb)
    assert loaded.notes == ()
    assert load_image(str(path), name="given").name == "given"


def test_one_pixel_image_loads() -> None:
    loaded = load_image(_encode(Image.new("RGB", (1, 1), (1, 2, 3)), "PNG"))
    assert loaded.tensor.shape == (3, 1, 1) and _pixel(loaded, 0, 0) == [1, 2, 3]


@pytest.mark.parametrize(
    ("mode", "value", "fmt", "expected", "note"),
    [
        ("L", 77, "PNG", [77, 77, 77], "converted from grayscale"),
        ("1", 1, "PNG", [255, 255, 255], "converted from 1-bit black and white"),
        ("LA", (90, 10), "PNG", [90, 90, 90], "alpha dropped"),
        ("RGBA", (10, 20, 30, 0), "PNG", [10, 20, 30], "alpha dropped"),
        ("CMYK", (255, 0, 0, 0), "TIFF", [0, 255, 255], "converted from CMYK"),
        ("CMYK", (0, 0, 0, 0), "TIFF", [255, 255, 255], "converted from CMYK"),
        ("RGB", (5, 6, 7), "BMP", [5, 6, 7], None),
        ("RGB", (5, 6, 7), "WEBP", None, None),  # lossy by default: shape only
    ],
)
def test_modes_convert_to_rgb(
    mode: str, value, fmt: str, expected: list[int] | None, note: str | None
) -> None:
    kwargs = {"lossless": True} if fmt == "WEBP" else {}
    loaded = load_image(_encode(Image.new(mode, (3, 2), value), fmt, **kwargs))
    assert loaded.tensor.dtype == torch.uint8 and loaded.tensor.shape == (3, 2, 3)
    if expected is not None:
        assert _pixel(loaded, 2, 1) == expected
    if note is not None:
        assert note in loaded.notes


def test_palette_image_looks_up_colours() -> None:
    img = Image.new("P", (2, 1))
    img.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    img.putpixel((1, 0), 1)
    loaded = load_image(_encode(img, "PNG"))
    assert _pixel(loaded, 0, 0) == [0, 0, 0] and _pixel(loaded, 1, 0) == [200, 100, 50]
    assert "converted from a palette" in loaded.notes


def test_palette_with_transparency_drops_alpha() -> None:
    img = Image.new("P", (2, 1))
    img.putpalette([9, 8, 7, 200, 100, 50] + [0] * 762)
    img.putpixel((1, 0), 1)
    loaded = load_image(_encode(img, "PNG", transparency=0))
    assert _pixel(loaded, 0, 0) == [9, 8, 7] and "alpha dropped" in loaded.notes


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16_bit_is_divided_by_257(fmt: str) -> None:
    values = np.array([[0, 257, 1000, 65535]], dtype=np.uint16)  # 1000 / 257 = 3.89 -> 4
    loaded = load_image(_encode(Image.fromarray(values), fmt))
    assert loaded.tensor[0].tolist() == [[0, 1, 4, 255]]
    assert torch.equal(loaded.tensor[0], loaded.tensor[2])
    assert "16-bit scaled to 8-bit (divided by 257)" in loaded.notes


def test_float_image_is_scaled_by_its_range() -> None:
    values = np.array([[-1.0, 0.0, 1.0]], dtype=np.float32)
    loaded = load_image(_encode(Image.fromarray(values), "TIFF"))
    assert loaded.tensor[1].tolist() == [[0, 128, 255]]
    assert any("by its range [-1, 1]" in n for n in loaded.notes)


def test_exif_orientation_6_transposes() -> None:
    img = Image.new("RGB", (4, 2), (255, 0, 0))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    loaded = load_image(_encode(img, "JPEG", exif=exif.tobytes()))
    assert loaded.tensor.shape == (3, 4, 2)
    assert "EXIF orientation 6 applied" in loaded.notes


def test_exif_orientation_1_is_left_alone() -> None:
    img = Image.new("RGB", (4, 2))
    exif = img.getexif()
    exif[0x0112] = 1
    loaded = load_image(_encode(img, "JPEG", exif=exif.tobytes()))
    assert loaded.tensor.shape == (3, 2, 4) and loaded.notes == ()


def _frames() -> list[Image.Image]:
    return [Image.new("RGB", (4, 3), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]


@pytest.mark.parametrize(("fmt", "kwargs"), [("WEBP", {"lossless": True}), ("PNG", {}), ("TIFF", {}), ("GIF", {})])
def test_animated_or_multi_page_gives_first_frame(fmt: str, kwargs: dict) -> None:
    first, *rest = _frames()
    data = _encode(first, fmt, save_all=True, append_images=rest, duration=100, **kwargs)
    loaded = load_image(data)
    assert loaded.tensor.shape == (3, 3, 4)
    assert _pixel(loaded, 0, 0) == [255, 0, 0]
    assert any(n.startswith("first") and "(3 " in n for n in loaded.notes)


def test_bytes_file_object_and_path_agree(tmp_path: Path) -> None:
    data = _encode(Image.new("RGB", (5, 4), (1, 2, 3)), "PNG")
    path = tmp_path / "a.png"
    path.write_bytes(data)
    with open(path, "rb") as f:
        from_file = load_image(f)
    from_bytes = load_image(data)
    from_stream = load_image(io.BytesIO(data), name="upload.png")
    assert from_file.name == "a.png" and from_bytes.name == "image" and from_stream.name == "upload.png"
    for loaded in (from_file, from_bytes, from_stream):
        assert torch.equal(loaded.tensor, load_image(path).tensor)


def test_extension_that_lies_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "really_a_jpeg.png"
    path.write_bytes(_encode(Image.new("RGB", (6, 5)), "JPEG"))
    assert load_image(path).tensor.shape == (3, 5, 6)


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.png"
    with pytest.raises(FrcnnError, match=r"nope\.png: no such file$"):
        load_image(missing)


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    path.write_bytes(b"")
    with pytest.raises(FrcnnError, match=r"^photo\.jpg: empty file \(0 bytes\)$"):
        load_image(path)


@pytest.mark.parametrize(
    "data",
    [
        np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8).tobytes(),
        b"hello, this is text and not an image\n",
    ],
    ids=["random-bytes", "text"],
)
def test_not_an_image(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "x.png"
    path.write_bytes(data)
    with pytest.raises(FrcnnError, match=r"^x\.png: not an image \(or a format that is not supported: PNG"):
        load_image(path)


@pytest.mark.parametrize(("fmt", "kwargs"), [("ICO", {}), ("PCX", {}), ("PPM", {})])
def test_unsupported_formats_are_refused(fmt: str, kwargs: dict) -> None:
    data = _encode(Image.new("RGB", (16, 16), (1, 2, 3)), fmt, **kwargs)
    with pytest.raises(FrcnnError, match="not an image .*format that is not supported"):
        load_image(data, name="x.img")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_file(fmt: str) -> None:
    rng = np.random.default_rng(1)
    data = _encode(Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)), fmt)
    with pytest.raises(FrcnnError, match=r"^x\.img: truncated or corrupt image data"):
        load_image(data[: len(data) // 2], name="x.img")


def test_pixel_cap_names_the_cap() -> None:
    data = _encode(Image.new("RGB", (20, 20)), "PNG")
    with pytest.raises(FrcnnError, match=r"^big\.png: 20x20 = 400 pixels is over the cap of 100 pixels$"):
        load_image(data, name="big.png", max_pixels=100)
    assert load_image(data, max_pixels=400).tensor.shape == (3, 20, 20)


def test_pil_decompression_bomb_guard_becomes_cap_error(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _encode(Image.new("RGB", (20, 20)), "PNG")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50)  # PIL raises above 2 * 50
    with pytest.raises(FrcnnError, match="over the cap of 100 pixels"):
        load_image(data, max_pixels=10_000)


def test_constants() -> None:
    assert MAX_PIXELS == 40_000_000
    assert IMAGE_FORMATS == ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")


def test_image_to_numpy_layout() -> None:
    t = torch.arange(3 * 2 * 4, dtype=torch.uint8).reshape(3, 2, 4)
    a = image_to_numpy(t)
    assert a.shape == (2, 4, 3) and a.dtype == np.uint8
    assert a[1, 3].tolist() == t[:, 1, 3].tolist()
    with pytest.raises(ValueError):
        image_to_numpy(torch.zeros(2, 2, 3, dtype=torch.uint8))

"""Image loading: one loader for the CLI and the app, turning any accepted file into an RGB uint8 tensor.

Shapes: H, W are the image's height and width in pixels; an image is ``Tensor[3, H, W]`` (uint8, RGB,
channels first), the layout torchvision's detection models take after dividing by 255.

What the loader does, in order:

1. reads the whole source (path, bytes or binary file object) into memory, at most :data:`MAX_FILE_BYTES`;
   a zero-byte file is refused, and so is a path that is not a regular file (a directory, a device such as
   ``/dev/zero``, a FIFO or a socket), checked before anything is read so nothing can block or read forever;
2. opens it with PIL, letting PIL try only :data:`IMAGE_FORMATS` (sniffed from the content, never from
   the extension, so ``photo.png`` holding a JPEG is fine and a text file called ``x.png`` is not);
3. checks ``W * H`` against ``max_pixels`` and the sides' ratio against :data:`MAX_ASPECT` before any pixel
   is decoded (PIL knows the size after reading the header), and turns PIL's own decompression-bomb guard
   into the same one-line error;
4. keeps the first frame of an animated or multi-page image;
5. decodes every pixel (``img.load()``), so a truncated or corrupt file fails here, not later;
6. applies the EXIF orientation, so the tensor is upright the way a photo viewer shows it;
7. converts every mode to RGB, each conversion noted in :attr:`LoadedImage.notes`:
   grayscale ("L", "1") is repeated into three channels; palette ("P") is looked up; alpha ("RGBA",
   "LA", "PA") is dropped without compositing (the colour under a transparent pixel is kept);
   "CMYK", "YCbCr", "LAB", "HSV" use PIL's conversion; 16-bit integer ("I;16*", and "I" whose values
   lie in [0, 65535]) is divided by 257, which maps 0..65535 onto 0..255 exactly and keeps brightness
   comparable across images; wider integer ("I" outside [0, 65535]) and float ("F") images are scaled
   by their actual range, min -> 0 and max -> 255 (NaN -> 0).

Every failure is a :class:`~frcnn.errors.FrcnnError` with one line that names the file, running out of
memory while decoding included.
"""

from __future__ import annotations

import errno
import io
import os
import stat
import warnings
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from frcnn.errors import FrcnnError

MAX_PIXELS: int = 40_000_000  # pixel cap: larger images are refused with a message that names the cap
# bytes of one file a loader reads (an image or an annotation file): a 40 Mpx PNG of photo content is about
# 60-90 MB, uploads are capped at 25 MB by the server; a larger file is refused before it is read
MAX_FILE_BYTES: int = 100 * 2**20
MAX_ASPECT: int = 50  # longer side / shorter side: thinner images are refused (a 1-px line is not a picture)
IMAGE_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")  # PIL format names, sniffed
_FORMATS_TEXT = "PNG, JPEG, WebP, GIF, BMP, TIFF"  # IMAGE_FORMATS as users spell them, for messages

_UINT16_MAX = 65535
_UINT16_TO_UINT8 = 257  # 65535 / 255: maps 0..65535 onto 0..255 exactly
_MODE_NAMES = {
    "L": "grayscale",
    "1": "1-bit black and white",
    "P": "a palette",
    "CMYK": "CMYK",
    "YCbCr": "YCbCr",
    "LAB": "LAB",
    "HSV": "HSV",
}
_ALPHA_MODES = ("RGBA", "LA", "PA")

Source = str | os.PathLike | bytes | bytearray | BinaryIO


@dataclass(frozen=True, eq=False)
class LoadedImage:
    """An image ready for the model: ``tensor`` is ``Tensor[3, H, W]`` uint8 RGB.

    ``notes`` says what the loader did to get there, one short line each (empty when the file was
    already an upright, single-frame, 8-bit RGB image).
    """

    tensor: torch.Tensor  # uint8, (3, H, W), RGB
    name: str  # file name (or the name given to the loader)
    notes: tuple[str, ...] = ()

    @property
    def width(self) -> int:
        """W, in pixels."""
        return int(self.tensor.shape[2])

    @property
    def height(self) -> int:
        """H, in pixels."""
        return int(self.tensor.shape[1])


def load_image(source: Source, name: str | None = None, max_pixels: int = MAX_PIXELS) -> LoadedImage:
    """Load an image file as an RGB uint8 tensor, refusing anything unsafe or unreadable.

    Args:
        source: a path, the file's bytes, or a binary file object (e.g. an uploaded file).
        name: the name used in messages and in the result; by default the file's base name.
        max_pixels: images with more than this many pixels (W * H) are refused before decoding.

    Returns:
        LoadedImage with ``tensor`` ``Tensor[3, H, W]`` uint8 RGB and the notes of what was converted.

    Raises:
        FrcnnError: missing or empty file, not an image in one of :data:`IMAGE_FORMATS`, over the pixel
            cap, truncated or corrupt data. The message is one line starting with the file's name.
    """
    data, name = _read_bytes(source, name, default_name="image")
    with warnings.catch_warnings():
        # PIL warns above its decompression-bomb limit and raises above twice it. Our own cap is checked
        # right after open, with the real size in the message, so the warning is noise; the error is
        # turned into the cap message (naming PIL's limit where it is the lower one).
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        img = _open(data, name, max_pixels)
        try:
            notes = _first_frame(img)
            img.load()
            img, oriented = _exif_transpose(img)
            rgb, converted = _to_rgb(img)
            array = np.array(rgb, dtype=np.uint8)  # (H, W, 3), a writable copy
            tensor = torch.from_numpy(array).permute(2, 0, 1).contiguous()  # (3, H, W)
        except FrcnnError:
            raise
        except MemoryError:
            width, height = img.size
            raise FrcnnError(f"{name}: out of memory decoding a {width}x{height} image") from None
        except Image.DecompressionBombError as e:
            raise _bomb_error(name, max_pixels) from e
        except Exception as e:  # noqa: BLE001 - PIL's decoders raise many types on malformed data
            raise FrcnnError(f"{name}: truncated or corrupt image data ({_reason(e)})") from e
    notes = notes + oriented + converted
    return LoadedImage(tensor=tensor, name=name, notes=tuple(notes))


def image_to_numpy(t: torch.Tensor) -> np.ndarray:
    """``Tensor[3, H, W]`` uint8 -> ``ndarray[H, W, 3]`` uint8, for display."""
    if t.ndim != 3 or t.shape[0] != 3 or t.dtype != torch.uint8:
        raise ValueError(f"expected a uint8 tensor of shape (3, H, W), got {t.dtype} {tuple(t.shape)}")
    return t.detach().cpu().permute(1, 2, 0).contiguous().numpy()  # (H, W, 3)


def _read_bytes(
    source: Source, name: str | None, default_name: str, allow_empty: bool = False,
    max_bytes: int = MAX_FILE_BYTES,
) -> tuple[bytes, str]:
    """The whole content of ``source`` (at most ``max_bytes``) and the name to use in messages.

    Refuses missing files, paths that are not regular files, content over ``max_bytes`` (and empty content
    unless ``allow_empty``); a file object is read with ``read(max_bytes + 1)``, never to its end.
    """
    if isinstance(source, bytes | bytearray | memoryview):
        data, name = bytes(source), name or default_name
        if len(data) > max_bytes:
            raise _too_big(name, len(data), max_bytes)
    elif isinstance(source, str | os.PathLike):
        path = os.fspath(source)
        name = name or os.path.basename(path)
        data = _read_file(path, name, max_bytes)
    elif hasattr(source, "read"):
        name = name or os.path.basename(str(getattr(source, "name", "") or "")) or default_name
        try:
            data = source.read(max_bytes + 1)
        except OSError as e:
            raise FrcnnError(f"{name}: cannot read ({e.strerror or e})") from e
        except MemoryError:
            raise FrcnnError(f"{name}: out of memory reading it") from None
        data = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        if len(data) > max_bytes:
            raise _too_big(name, None, max_bytes)
    else:
        raise TypeError(f"expected a path, bytes or a binary file object, got {type(source).__name__}")
    if not data and not allow_empty:
        raise FrcnnError(f"{name}: empty file (0 bytes)")
    return data, name


def _read_file(path: str, name: str, max_bytes: int, follow_links: bool = True) -> bytes:
    """At most ``max_bytes`` of the regular file ``path``; a directory, device, FIFO or socket is refused
    before it is opened, and again on the opened descriptor (so a swap in between changes nothing).
    With ``follow_links=False`` a symbolic link as the last component is refused too."""
    try:
        st = os.stat(path) if follow_links else os.lstat(path)
    except FileNotFoundError:
        raise FrcnnError(f"{path}: no such file") from None
    except (OSError, ValueError) as e:  # ValueError: a NUL byte in the path
        raise FrcnnError(f"{path}: cannot read ({getattr(e, 'strerror', None) or e})") from None
    _check_regular(path, st, max_bytes)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    if not follow_links:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise FrcnnError(f"{path}: a symbolic link, refused") from None
        raise FrcnnError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        with os.fdopen(fd, "rb") as f:
            _check_regular(path, os.fstat(f.fileno()), max_bytes)
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise FrcnnError(f"{path}: cannot read ({e.strerror or e})") from None
    except MemoryError:
        raise FrcnnError(f"{path}: out of memory reading it") from None
    if len(data) > max_bytes:  # it grew after the size check
        raise _too_big(name, None, max_bytes)
    return data


def _check_regular(path: str, st: os.stat_result, max_bytes: int) -> None:
    if stat.S_ISDIR(st.st_mode):
        raise FrcnnError(f"{path}: is a directory, not a file")
    if stat.S_ISLNK(st.st_mode):
        raise FrcnnError(f"{path}: a symbolic link, refused")
    if not stat.S_ISREG(st.st_mode):
        raise FrcnnError(f"{path}: not a regular file (a device, FIFO or socket), refused")
    if st.st_size > max_bytes:
        raise _too_big(path, st.st_size, max_bytes)


def _too_big(name: str, size: int | None, max_bytes: int) -> FrcnnError:
    what = f"{size} bytes is" if size is not None else "it is"
    megabytes = f" ({max_bytes / 2**20:g} MB)" if max_bytes >= 2**20 else ""
    return FrcnnError(f"{name}: {what} over the limit of {max_bytes} bytes{megabytes}")


def _open(data: bytes, name: str, max_pixels: int) -> Image.Image:
    """Open (header only) and check the format and the pixel count."""
    try:
        img = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
    except Image.DecompressionBombError as e:
        raise _bomb_error(name, max_pixels) from e
    except MemoryError:
        raise FrcnnError(f"{name}: out of memory reading the image header") from None
    except UnidentifiedImageError as e:
        raise FrcnnError(f"{name}: not an image (or a format that is not supported: {_FORMATS_TEXT})") from e
    except Exception as e:  # noqa: BLE001 - a plugin may fail on a malformed header in many ways
        raise FrcnnError(f"{name}: truncated or corrupt image data ({_reason(e)})") from e
    if img.format not in IMAGE_FORMATS:  # formats= already restricts this; belt and braces
        raise FrcnnError(f"{name}: {img.format} images are not supported (use {_FORMATS_TEXT})")
    width, height = img.size
    if width <= 0 or height <= 0:
        raise FrcnnError(f"{name}: image has no pixels ({width}x{height})")
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise FrcnnError(f"{name}: {width}x{height} is too thin to detect objects in "
                         f"(sides more than {MAX_ASPECT}:1)")
    if width * height > max_pixels:
        raise FrcnnError(
            f"{name}: {width}x{height} = {width * height} pixels is over the cap of {max_pixels} pixels"
        )
    return img


def _bomb_error(name: str, max_pixels: int) -> FrcnnError:
    """PIL's decompression-bomb guard fired: report it as the pixel cap (PIL's limit when lower)."""
    pil_limit = Image.MAX_IMAGE_PIXELS
    cap = max_pixels if pil_limit is None else min(max_pixels, 2 * pil_limit)
    return FrcnnError(f"{name}: image is over the cap of {cap} pixels (possible decompression bomb)")


def _reason(e: BaseException) -> str:
    """A short one-line reason from a decoder exception."""
    text = " ".join(str(e).split())
    return (text[:120] + "...") if len(text) > 120 else (text or type(e).__name__)


def _first_frame(img: Image.Image) -> list[str]:
    """Stay on frame 0 of an animated or multi-page image; note it when there are more."""
    n_frames = getattr(img, "n_frames", 1)
    if n_frames <= 1:
        return []
    img.seek(0)
    if img.format == "TIFF":
        return [f"first page of a multi-page TIFF ({n_frames} pages)"]
    return [f"first frame of an animated image ({n_frames} frames)"]


def _exif_transpose(img: Image.Image) -> tuple[Image.Image, list[str]]:
    """Apply the EXIF orientation tag (2..8) so the pixels are upright; tag 1 or none: unchanged."""
    orientation = img.getexif().get(0x0112, 1)  # 0x0112: the EXIF Orientation tag
    if orientation not in (2, 3, 4, 5, 6, 7, 8):
        return img, []
    fixed = ImageOps.exif_transpose(img)
    return fixed, [f"EXIF orientation {orientation} applied"]


def _to_rgb(img: Image.Image) -> tuple[Image.Image, list[str]]:
    """Convert any PIL mode to "RGB" (see the module docstring for each rule) and say what was done."""
    mode = img.mode
    if mode == "RGB":
        return img, []
    if mode == "P" and "transparency" in img.info:
        return img.convert("RGBA").convert("RGB"), ["converted from a palette", "alpha dropped"]
    if mode in _ALPHA_MODES:
        base = mode[:-1]  # "RGBA" -> "RGB", "LA" -> "L", "PA" -> "P"
        notes = [f"converted from {_MODE_NAMES[base]}"] if base in _MODE_NAMES else []
        return img.convert("RGB"), [*notes, "alpha dropped"]
    if mode in _MODE_NAMES:
        return img.convert("RGB"), [f"converted from {_MODE_NAMES[mode]}"]
    if mode.startswith("I") or mode.startswith("F"):
        return _wide_to_rgb(img)
    return img.convert("RGB"), [f"converted from {mode}"]


def _wide_to_rgb(img: Image.Image) -> tuple[Image.Image, list[str]]:
    """16-bit, 32-bit integer or float single-channel -> 8-bit gray RGB (/257, or by the actual range)."""
    values = np.asarray(img).astype(np.float64)  # (H, W)
    is_16bit = img.mode.startswith("I;16") or (
        img.mode == "I" and values.size > 0 and values.min() >= 0 and values.max() <= _UINT16_MAX
    )
    if is_16bit:
        gray = np.rint(values / _UINT16_TO_UINT8)
        note = "16-bit scaled to 8-bit (divided by 257)"
    else:
        values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
        low, high = float(values.min()), float(values.max())
        gray = np.rint((values - low) * (255.0 / (high - low))) if high > low else np.zeros_like(values)
        kind = "float" if img.mode.startswith("F") else "32-bit"
        note = f"{kind} scaled to 8-bit by its range [{low:g}, {high:g}]"
    gray8 = np.clip(gray, 0, 255).astype(np.uint8)
    rgb = np.repeat(gray8[:, :, None], 3, axis=2)  # (H, W, 3)
    return Image.fromarray(rgb), [note]

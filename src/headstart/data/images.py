"""Decoding image files into RGB, with a clear reason for every file that cannot be used."""

from __future__ import annotations

import io
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from ..errors import BadImage

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})

SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}
MODES_WITH_ALPHA = {"RGBA", "LA", "PA", "RGBa", "La"}


def is_image_file(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def bad_image(path: str | os.PathLike, reason: str) -> BadImage:
    """A BadImage whose message is one line naming the file; `.path` and `.reason` keep the parts."""
    reason = " ".join(str(reason).split())
    error = BadImage(f"{path}: {reason}")
    error.path = str(path)
    error.reason = reason
    return error


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """Decode an image file fully and return it upright, in mode RGB. Raises BadImage if it cannot."""
    try:
        size = os.path.getsize(path)
    except OSError as e:
        raise bad_image(path, f"cannot read file ({e.strerror or e})") from None
    if size == 0:
        raise bad_image(path, "empty file (0 bytes)")
    return open_rgb(path, path)


def rgb_from_bytes(data: bytes, name: str = "upload") -> Image.Image:
    """load_rgb for an image held in memory (an upload); `name` is what errors call it."""
    if not data:
        raise bad_image(name, "empty file (0 bytes)")
    return open_rgb(io.BytesIO(data), name)


def open_rgb(source, name) -> Image.Image:
    """The decoding both share: `source` is a path or a binary file object, `name` names it in errors."""
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        # Some library switched this global on; truncated files would then load half grey, unreported.
        raise RuntimeError(
            "PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True; headstart needs it False to report truncated images"
        )
    try:
        with Image.open(source) as im:
            check_pixel_count(name, im)
            im.load()
            im = ImageOps.exif_transpose(im)
            return to_rgb(im)
    except BadImage:
        raise
    except Image.DecompressionBombError as e:
        raise bad_image(name, f"too many pixels, refused as a possible decompression bomb ({e})") from None
    except UnidentifiedImageError:
        raise bad_image(name, "not an image (the file's contents are not a format PIL can read)") from None
    except OSError as e:
        if "truncated" in str(e):
            raise bad_image(name, "truncated: the file ends before the image data does") from None
        raise bad_image(name, f"cannot decode image ({e})") from None
    except Exception as e:  # decoders raise SyntaxError, ValueError, struct.error, ... on corrupt data
        raise bad_image(name, f"cannot decode image ({type(e).__name__}: {e})") from None


def check_pixel_count(path, im: Image.Image) -> None:
    """Refuse images over PIL's own limit. Image.open raises above 2x MAX_IMAGE_PIXELS but only
    warns between 1x and 2x; we refuse that range too, without changing the limit."""
    limit = Image.MAX_IMAGE_PIXELS
    width, height = im.size
    if limit and width * height > limit:
        raise bad_image(
            path,
            f"image is {width}x{height} = {width * height} pixels, over PIL's limit of "
            f"{limit}; refused as a possible decompression bomb",
        )


def to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in SIXTEEN_BIT_MODES or im.mode in ("I", "F"):
        return Image.fromarray(scale_to_8_bits(im), "L").convert("RGB")
    if im.mode in MODES_WITH_ALPHA or "transparency" in im.info:
        return on_white(im.convert("RGBA"))
    if im.mode == "RGB":
        return im
    return im.convert("RGB")  # L, 1, P, CMYK, YCbCr, ...


def on_white(im: Image.Image) -> Image.Image:
    """Composite an RGBA image onto white, so transparent areas become white rather than
    whatever colour happened to be stored under alpha 0."""
    white = Image.new("RGBA", im.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, im).convert("RGB")


def scale_to_8_bits(im: Image.Image) -> np.ndarray:
    """High-bit-depth greyscale -> uint8 by the value range of its bit depth, not by clipping.

    16-bit modes use 0..65535. Mode I (32-bit int) is how PIL opens some 16-bit files, so values
    within 0..65535 are taken as 16 bits; anything outside is stretched from its own min to max.
    Mode F uses 0..1 when the values lie there, else its own min to max.
    """
    values = np.asarray(im).astype(np.float64)
    if im.mode in SIXTEEN_BIT_MODES:
        low, high = 0.0, 65535.0
    elif im.mode == "I" and values.min() >= 0 and values.max() <= 65535:
        low, high = 0.0, 65535.0
    elif im.mode == "F" and values.min() >= 0 and values.max() <= 1:
        low, high = 0.0, 1.0
    else:
        low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = (values - low) * (255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def resize_short_side(im: Image.Image, short_side: int) -> Image.Image:
    """Resize so the shorter side is `short_side`, keeping the aspect ratio.
    PIL's bilinear filter widens its support when shrinking, i.e. it is antialiased."""
    width, height = im.size
    scale = short_side / min(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if size == im.size:
        return im
    return im.resize(size, Image.Resampling.BILINEAR)


def decode_one(path: str, short_side: int) -> torch.Tensor:
    return as_tensor(resize_short_side(load_rgb(path), short_side))


def decode_bytes(data: bytes, short_side: int, name: str = "upload") -> torch.Tensor:
    """decode_one for an image held in memory."""
    return as_tensor(resize_short_side(rgb_from_bytes(data, name), short_side))


def as_tensor(im: Image.Image) -> torch.Tensor:
    """An RGB image as a uint8 tensor (3, H, W)."""
    return torch.from_numpy(np.array(im, dtype=np.uint8)).permute(2, 0, 1).contiguous()


def decode_images(
    paths, short_side: int, workers: int | None = None
) -> tuple[dict[str, torch.Tensor], list[tuple[str, str]]]:
    """Decode each image once and resize its short side to `short_side`.

    Returns ({path: uint8 tensor (3, H, W)} for the good files, [(path, reason)] for the bad ones),
    both in the order of `paths` whatever order the threads finish in.
    """
    if short_side < 1:
        raise ValueError(f"short_side must be at least 1, got {short_side}")
    unique_paths = list(dict.fromkeys(str(p) for p in paths))

    def attempt(path: str):
        try:
            return decode_one(path, short_side), None
        except BadImage as e:
            return None, e.reason

    # PIL releases the GIL while decoding and resizing, so threads give real parallelism.
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        results = list(pool.map(attempt, unique_paths))
    images: dict[str, torch.Tensor] = {}
    skipped: list[tuple[str, str]] = []
    for path, (tensor, reason) in zip(unique_paths, results):
        if tensor is None:
            skipped.append((path, reason))
        else:
            images[path] = tensor
    return images, skipped

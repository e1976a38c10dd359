"""Safe image loading and input tensors in the ``torchvision.transforms.ToTensor`` convention.

Only Pillow decodes files. Pillow's decompression-bomb guard stays on, truncated files fail
(``ImageFile.LOAD_TRUNCATED_IMAGES`` is never touched), EXIF orientation is applied (a bad
orientation tag is ignored with a note) and every source mode is reduced to 8-bit ``"L"`` or
``"RGB"``. Files are opened through :mod:`layerlab.core.safeio` (FIFOs never block, streams
and devices are read up to a cap), and the memory decoding will need is counted from the
header against a budget before any pixel is decoded. Any failure is one
:class:`ImageLoadError` whose message names the file.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, Literal

import numpy as np
from PIL import Image, ImageMode, ImageOps, UnidentifiedImageError

from . import safeio
from .image_errors import bomb_text, damage_text, unidentified_text

if TYPE_CHECKING:  # only to_tensor needs torch: decoding and previews need Pillow and numpy
    import torch

__all__ = [
    "ImageLoadError",
    "LoadedImage",
    "downscale_for_preview",
    "from_array",
    "load_image",
    "load_image_bytes",
    "to_tensor",
]

_ORIENTATION_TAG = 0x0112
_WHITE = 255
MAX_STREAM_BYTES = 256 * 1024**2  # what is read from a FIFO, a pipe or a device at most
DEFAULT_DECODE_BUDGET = 4 * 1024**3  # bytes a load may need, when memory is plentiful
# Per pixel besides the decoded raster: the 8-bit display copy (up to 3 bytes), its copy for
# the tensor (3) and the float32 RGB input tensor (12).
_BYTES_AFTER_DECODE = 3 + 3 + 12

class ImageLoadError(ValueError):
    """An image could not be loaded; the message is one sentence naming the file."""


@dataclass(frozen=True)
class LoadedImage:
    """A decoded image ready for :func:`to_tensor`.

    ``image`` is fully loaded, upright, mode ``"L"`` or ``"RGB"``; ``size`` is its (W, H);
    ``source_size`` is the (W, H) of the upright full-resolution source (differs from ``size``
    only for previews); ``notes`` lists every conversion that changed what the file holds.
    """

    image: Image.Image
    path: str | None
    original_mode: str
    size: tuple[int, int]
    notes: tuple[str, ...] = ()
    source_size: tuple[int, int] | None = None


def load_image(
    path: str | os.PathLike[str],
    *,
    max_pixels: int | None = None,
    draft_size: tuple[int, int] | None = None,
    memory_budget: int | None = None,
) -> LoadedImage:
    """Load an image file safely.

    ``max_pixels`` defaults to ``PIL.Image.MAX_IMAGE_PIXELS``; images declaring more pixels are
    refused before decoding (Pillow's own hard limit of twice its global still applies).
    ``draft_size`` asks for a cheap preview whose longest side is at most ``max(draft_size)``;
    JPEGs are then decoded at a reduced DCT scale. ``memory_budget`` (bytes; default
    :func:`default_memory_budget`) bounds what decoding and the input tensor will need,
    counted from the declared size before anything is decoded.

    A FIFO, a pipe or a device is read first, at most :data:`MAX_STREAM_BYTES`; opening never
    blocks on a FIFO without a writer.
    """
    path = os.fspath(path)
    label = os.path.basename(path) or path
    try:
        fp = safeio.open_for_decoding(path, MAX_STREAM_BYTES)
    except safeio.FileProblem as exc:
        if exc.kind == "directory":
            raise ImageLoadError(f"cannot open '{label}': it is a directory") from None
        if exc.kind == "permission":
            raise ImageLoadError(
                f"cannot open '{label}': it cannot be read: {exc.reason}"
            ) from None
        if exc.kind == "too-large":
            raise ImageLoadError(
                f"cannot open '{label}': it is not a regular file and {exc.reason.removeprefix('it ')}"
            ) from None
        raise ImageLoadError(f"cannot open '{label}': {exc.reason}") from None
    with fp:
        return _decode(fp, label, path, max_pixels, draft_size, "file", memory_budget)


def load_image_bytes(
    data: bytes,
    name: str = "clipboard",
    *,
    max_pixels: int | None = None,
    draft_size: tuple[int, int] | None = None,
    memory_budget: int | None = None,
) -> LoadedImage:
    """Load an encoded image from memory (paste, drag-and-drop payloads) with :func:`load_image`'s rules."""
    if not data:
        raise ImageLoadError(f"cannot open '{name}': the data is empty (0 bytes)")
    return _decode(io.BytesIO(bytes(data)), name, None, max_pixels, draft_size, "data",
                   memory_budget)


def from_array(array: np.ndarray, name: str = "array") -> LoadedImage:
    """Wrap a uint8 array shaped HxW, HxWx1, HxWx3 or HxWx4 (alpha composited on white)."""
    a = np.asarray(array)
    shape_ok = a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (1, 3, 4))
    if a.dtype != np.uint8 or not shape_ok or a.size == 0:
        raise ImageLoadError(
            f"cannot open '{name}': expected a non-empty uint8 array shaped HxW, HxWx3 or "
            f"HxWx4, got {a.dtype} {tuple(a.shape)}"
        )
    a = np.ascontiguousarray(a)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    im = Image.fromarray(a)  # uint8 HxW / HxWx3 / HxWx4 -> L / RGB / RGBA
    mode = im.mode
    notes: list[str] = []
    out = _to_display_mode(im, notes)
    return LoadedImage(out, None, mode, out.size, tuple(notes), out.size)


def to_tensor(
    image: Image.Image,
    mode: Literal["rgb", "gray"] = "rgb",
    resize: tuple[int, int] | list[int] | None = None,
) -> torch.Tensor:
    """Return a (1, C, H, W) float32 tensor in [0, 1], bit-identical to
    ``ToTensor()(image.convert("RGB" | "L")).unsqueeze(0)``.

    ``resize`` is ``[H, W]``, applied afterwards exactly like
    ``torchvision.transforms.functional.resize(t, [H, W], antialias=True)`` (bilinear).
    """
    import torch

    if mode not in ("rgb", "gray"):
        raise ValueError(f"input mode must be 'rgb' or 'gray', not {mode!r}")
    pil_mode = "RGB" if mode == "rgb" else "L"
    im = image if image.mode == pil_mode else image.convert(pil_mode)
    arr = np.asarray(im, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    # Same arithmetic as ToTensor: uint8 -> float32, then a true division by 255; done in
    # place in one C x H x W buffer (18 bytes a pixel at the peak instead of about 40).
    src = torch.from_numpy(arr.copy()).permute(2, 0, 1)
    t = torch.empty((1, *src.shape), dtype=torch.float32)
    t[0].copy_(src)
    del src
    t.div_(255)
    if resize is not None:
        h, w = (int(v) for v in resize)
        if h < 1 or w < 1:
            raise ValueError(f"resize must be two positive sizes [H, W], not {list(resize)}")
        if (h, w) != tuple(t.shape[-2:]):
            from torchvision.transforms import functional as tvf

            t = tvf.resize(t, [h, w], antialias=True).contiguous()
    return t


def downscale_for_preview(image: Image.Image, max_side: int) -> Image.Image:
    """Shrink ``image`` so its longest side is at most ``max_side``; small images come back as is."""
    if max_side < 1:
        raise ValueError(f"max_side must be at least 1, not {max_side}")
    w, h = image.size
    longest = max(w, h)
    if longest <= max_side:
        return image
    if (
        longest % max_side == 0
        and w % (longest // max_side) == 0
        and h % (longest // max_side) == 0
    ):
        return image.reduce(longest // max_side)  # exact integer factor: a box filter suffices
    scale = max_side / longest
    size = (max(1, min(max_side, round(w * scale))), max(1, min(max_side, round(h * scale))))
    # reducing_gap makes Pillow reduce() by an integer factor first, then resample the rest.
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=2.0)


# --------------------------------------------------------------------------- internals


def _decode(
    fp: BinaryIO,
    label: str,
    path: str | None,
    max_pixels: int | None,
    draft_size: tuple[int, int] | None,
    noun: str,
    memory_budget: int | None = None,
) -> LoadedImage:
    limit = Image.MAX_IMAGE_PIXELS if max_pixels is None else int(max_pixels)
    prefix = f"cannot open '{label}'"
    with warnings.catch_warnings(record=True):
        # Pillow warns (DecompressionBombWarning) between its limit and twice it; recording the
        # warning keeps it off stderr, and the declared size is checked against `limit` below.
        warnings.simplefilter("always", Image.DecompressionBombWarning)
        try:
            im = Image.open(fp)
        except Image.DecompressionBombError as exc:
            raise ImageLoadError(f"{prefix}: {bomb_text(str(exc), fp, limit)}") from None
        except UnidentifiedImageError:
            raise ImageLoadError(unidentified_text(fp, prefix)) from None
        except (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError) as exc:
            raise ImageLoadError(f"{prefix}: {damage_text(exc, noun)}") from None
    try:
        result = _finish(im, path, limit, draft_size, prefix, noun, memory_budget)
    except BaseException:
        im.close()
        raise
    if result.image is not im:
        im.close()  # release the decoder; an image returned as is keeps its loaded pixels
    return result


def _finish(
    im: Image.Image,
    path: str | None,
    limit: int | None,
    draft_size: tuple[int, int] | None,
    prefix: str,
    noun: str,
    memory_budget: int | None = None,
) -> LoadedImage:
    w, h = im.size
    if limit is not None and max(1, w) * max(1, h) > limit:
        raise ImageLoadError(
            f"{prefix}: it declares {w}x{h} pixels, more than the {limit}-pixel safety limit"
        )
    if w < 1 or h < 1:
        raise ImageLoadError(f"{prefix}: it declares an empty {w}x{h} image")
    original_mode = im.mode
    fmt = im.format or "image"
    notes: list[str] = []

    try:
        n_frames = int(getattr(im, "n_frames", 1))
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError) as exc:
        raise ImageLoadError(f"{prefix}: {damage_text(exc, noun)}") from None
    if n_frames > 1:
        kind = "animated" if fmt in ("GIF", "PNG", "WEBP") else "multi-frame"
        notes.append(f"{kind} {fmt}: using frame 1 of {n_frames}")

    # Modes such as RGB;16B are silently reduced by Pillow; say so.
    if any(";16" in str(t[3]) for t in (im.tile or ())) or original_mode.startswith("I;16"):
        notes.append("16-bit image reduced to 8 bits")

    if draft_size is not None and fmt == "JPEG":
        scale = _draft_scale(im.size, max(draft_size))
        if scale > 1:
            # libjpeg scales by 1/2, 1/4 or 1/8 while decoding (DCT domain); asking for
            # exactly size / scale makes Pillow pick that factor.
            im.draft(im.mode, (-(-w // scale), -(-h // scale)))
            if im.size != (w, h):
                notes.append(f"JPEG decoded at 1/{round(w / im.size[0])} scale for preview")

    _check_decode_memory(im, memory_budget, prefix)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        try:
            im.load()
        except Image.DecompressionBombError as exc:
            raise ImageLoadError(f"{prefix}: {bomb_text(str(exc), None, limit)}") from None
        except MemoryError:
            raise ImageLoadError(f"{prefix}: there is not enough memory to decode it") from None
        except (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError) as exc:
            raise ImageLoadError(f"{prefix}: {damage_text(exc, noun)}") from None
        orientation = _orientation(im, notes)

    if orientation in (2, 3, 4, 5, 6, 7, 8):
        # Transpose the decoded pixels before any mode conversion drops the EXIF block.
        im = ImageOps.exif_transpose(im)
        notes.append(f"rotated upright from EXIF orientation {orientation}")
    out = _to_display_mode(im, notes)
    source_size = (h, w) if orientation in (5, 6, 7, 8) else (w, h)
    if draft_size is not None:
        out = downscale_for_preview(out, max(draft_size))
        if out.size != source_size:
            notes.append(
                f"downscaled from {source_size[0]}x{source_size[1]} to "
                f"{out.size[0]}x{out.size[1]} for preview"
            )
    unique = tuple(dict.fromkeys(notes))
    return LoadedImage(out, path, original_mode, out.size, unique, source_size)


def available_memory() -> int | None:
    """Bytes of memory the system says are available (Linux ``MemAvailable``), or None."""
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f.read(65536).splitlines():
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def default_memory_budget() -> int:
    """What loading one image may need: 4 GB, or less when the machine has less to spare
    (three quarters of the available memory)."""
    avail = available_memory()
    if avail is None:
        return DEFAULT_DECODE_BUDGET
    return max(64 * 1024**2, min(DEFAULT_DECODE_BUDGET, avail * 3 // 4))


def decode_bytes(size: tuple[int, int], mode: str) -> int:
    """Bytes decoding an image of ``size`` (W, H) in Pillow ``mode`` and making its input
    tensor need: the raster, the 8-bit copy and the float32 RGB tensor."""
    try:
        m = ImageMode.getmode(mode)
        per_pixel = max(1, np.dtype(m.typestr).itemsize) * len(m.bands)
    except (KeyError, TypeError, ValueError):
        per_pixel = 4
    w, h = size
    return w * h * (per_pixel + _BYTES_AFTER_DECODE)


def _check_decode_memory(im: Image.Image, budget: int | None, prefix: str) -> None:
    budget = default_memory_budget() if budget is None else int(budget)
    need = decode_bytes(im.size, im.mode)
    if need > budget:
        w, h = im.size
        raise ImageLoadError(
            f"{prefix}: decoding its {w}x{h} pixels needs about {safeio.human_bytes(need)}, "
            f"more than the {safeio.human_bytes(budget)} memory budget"
        )


def _orientation(im: Image.Image, notes: list[str]) -> int:
    """The EXIF orientation 1..8 as Pillow's ``exif_transpose`` reads it; a tag of another
    type or value (UNDEFINED bytes, 6.5, a list) is ignored and said so, never an error."""
    try:
        value = im.getexif().get(_ORIENTATION_TAG)
    except Exception:  # noqa: BLE001 - damaged EXIF says nothing about the pixels
        notes.append("EXIF data unreadable: orientation ignored")
        return 1
    if value is None:
        return 1
    try:
        ok = not isinstance(value, bool) and value in (1, 2, 3, 4, 5, 6, 7, 8)
    except Exception:  # noqa: BLE001 - an odd type that refuses comparison
        ok = False
    if ok:
        return int(value)
    shown = repr(value)
    shown = shown if len(shown) <= 24 else shown[:21] + "..."
    notes.append(f"EXIF orientation {shown} is not a number from 1 to 8: ignored")
    return 1


def _draft_scale(size: tuple[int, int], max_side: int) -> int:
    """The smallest JPEG DCT scale (1, 2, 4 or 8) bringing the longest side to ``max_side``
    or below; 8 when even that is not enough (the rest is resampled)."""
    longest = max(size)
    for scale in (1, 2, 4, 8):
        if -(-longest // scale) <= max_side:
            return scale
    return 8


def _to_display_mode(im: Image.Image, notes: list[str]) -> Image.Image:
    """Return ``im`` as 8-bit ``"L"`` or ``"RGB"``, appending a note for each lossy step."""
    mode = im.mode
    if mode in ("L", "RGB"):
        return im
    if mode == "1":
        return im.convert("L")
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        a = np.asarray(im).astype(np.uint32)
        # Round v / 257: maps 0..65535 onto 0..255 and inverts the usual v8 * 257 widening.
        return Image.fromarray(((a + 128) // 257).astype(np.uint8))
    if mode == "I":
        a = np.asarray(im).astype(np.int64)
        lo, hi = int(a.min()), int(a.max())
        if lo >= 0 and hi <= 65535:
            if hi > 255:
                notes.append("16-bit image reduced to 8 bits")
                return Image.fromarray(((a + 128) // 257).astype(np.uint8))
            return Image.fromarray(a.astype(np.uint8))
        notes.append(f"32-bit integer image rescaled from [{lo}, {hi}] to 8 bits")
        return Image.fromarray(_rescale(a.astype(np.float64), lo, hi))
    if mode == "F":
        a = np.asarray(im).astype(np.float64)
        finite = a[np.isfinite(a)]
        lo = float(finite.min()) if finite.size else 0.0
        hi = float(finite.max()) if finite.size else 0.0
        if lo >= 0.0 and hi <= 1.0:
            notes.append("floating-point image in [0, 1] scaled to 8 bits")
            u8 = np.floor(np.nan_to_num(a, nan=0.0) * 255 + 0.5).clip(0, 255).astype(np.uint8)
            return Image.fromarray(u8)
        notes.append(f"floating-point image rescaled from [{lo:g}, {hi:g}] to 8 bits")
        return Image.fromarray(_rescale(np.nan_to_num(a, nan=lo, posinf=hi, neginf=lo), lo, hi))
    if mode == "CMYK":
        notes.append("CMYK converted to RGB")
        return im.convert("RGB")
    if mode == "P":
        if "transparency" in im.info:
            return _composite(im.convert("RGBA"), notes)
        return _gray_if_neutral(im.convert("RGB"), im)
    if mode == "PA":
        return _composite(im.convert("RGBA"), notes)
    if mode in ("LA", "La"):
        return _composite(im.convert("LA"), notes)
    if mode in ("RGBA", "RGBa"):
        return _composite(im.convert("RGBA"), notes)
    if mode == "RGBX":
        return im.convert("RGB")
    try:
        out = im.convert("RGB")
    except (ValueError, OSError):
        raise ImageLoadError(f"colour mode {mode} cannot be converted to RGB") from None
    notes.append(f"{mode} converted to RGB")
    return out


def _rescale(a: np.ndarray, lo: float, hi: float) -> np.ndarray:
    if hi <= lo:
        return np.zeros(a.shape, np.uint8)
    return np.floor((a - lo) / (hi - lo) * 255 + 0.5).clip(0, 255).astype(np.uint8)


def _gray_if_neutral(rgb: Image.Image, source: Image.Image) -> Image.Image:
    palette = source.getpalette() or []
    used = {c for _, c in (source.getcolors(256) or [])}
    neutral = all(
        palette[3 * i] == palette[3 * i + 1] == palette[3 * i + 2]
        for i in used
        if 3 * i + 2 < len(palette)
    )
    return rgb.convert("L") if neutral and used else rgb


def _composite(im: Image.Image, notes: list[str]) -> Image.Image:
    """Composite an LA/RGBA image over white (what a viewer shows on a light page)."""
    alpha = im.getchannel("A")
    base_mode = "L" if im.mode == "LA" else "RGB"
    if alpha.getextrema() == (255, 255):
        notes.append("alpha channel dropped (fully opaque)")
        return im.convert(base_mode)
    notes.append("alpha channel composited on white")
    white = _WHITE if base_mode == "L" else (_WHITE, _WHITE, _WHITE)
    out = Image.new(base_mode, im.size, white)
    out.paste(im.convert(base_mode), mask=alpha)
    return out

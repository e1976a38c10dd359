"""What to tell the user about an image that does not open: too large, not an image,
truncated, or valid but of a kind Pillow cannot decode (named, not called damaged)."""

from __future__ import annotations

import re
from typing import BinaryIO

from PIL import Image

# Magic numbers of formats whose header we recognise even when Pillow gives up on the rest,
# so a cut-off file is reported as truncated rather than as "not an image".
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"BM", "BMP"),
)


def bomb_text(pillow_message: str, fp: BinaryIO | None, limit: int | None) -> str:
    m = re.search(r"\((\d+) pixels\) exceeds limit of (\d+)", pillow_message)
    if not m:
        return "it is too large to decode safely (possible decompression bomb)"
    pixels, hard_limit = int(m.group(1)), int(m.group(2))
    shown = limit if limit is not None and pixels > limit else hard_limit
    size = declared_size(fp) if fp is not None else None
    what = f"{size[0]}x{size[1]}" if size else str(pixels)
    return f"it declares {what} pixels, more than the {shown}-pixel safety limit"


def declared_size(fp: BinaryIO) -> tuple[int, int] | None:
    """Header size of an image Pillow refused as a bomb, read without decoding (best effort)."""
    # Image.open raises before returning the image, so ask the format plugins directly, in
    # the order Image.open tries them; constructing one reads only the header.
    try:
        fp.seek(0)
        head = fp.read(16)
        Image.init()
        for fmt in Image.ID:
            factory, accept = Image.OPEN[fmt]
            if accept is not None and not accept(head):
                continue
            fp.seek(0)
            try:
                return tuple(factory(fp, "").size)  # type: ignore[return-value]
            except Exception:  # noqa: BLE001 - any plugin refusal just means "try the next"
                continue
    except Exception:  # noqa: BLE001 - the size only decorates the message
        return None
    return None


def unidentified_text(fp: BinaryIO, prefix: str) -> str:
    try:
        fp.seek(0)
        head = fp.read(16)
    except OSError:
        head = b""
    for magic, fmt in _MAGIC:
        if head.startswith(magic):
            unsupported = unsupported_text(fp, fmt)
            if unsupported:
                return f"{prefix}: {unsupported}"
            return f"{prefix}: it is a truncated or damaged {fmt} file"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return f"{prefix}: it is a truncated or damaged WEBP file"
    return f"{prefix}: it is not an image Pillow can read"


_SAMPLE_FORMATS = {1: "unsigned integer", 2: "signed integer", 3: "floating point",
                   5: "complex integer", 6: "complex floating point"}


_TIFF_COMPRESSIONS = {33003: "Aperio JPEG 2000", 33005: "Aperio JPEG 2000",
                      34661: "JBIG", 34676: "SGILog", 34712: "JPEG 2000", 34887: "LERC",
                      34925: "LZMA", 50000: "Zstandard", 50001: "WebP", 52546: "JPEG XL"}


def _tiff_tags(fp: BinaryIO) -> dict:
    from PIL import TiffImagePlugin

    fp.seek(0)
    ifd = TiffImagePlugin.ImageFileDirectory_v2(fp.read(8))
    fp.seek(ifd.next)
    ifd.load(fp)
    return dict(ifd)


def unsupported_text(fp: BinaryIO, fmt: str) -> str | None:
    """Why Pillow cannot read a file whose header is fine, when that is what happened: a
    TIFF pixel layout or compression it does not support (said as such, not as damage)."""
    if fmt != "TIFF":
        return None
    from PIL import TiffImagePlugin

    try:
        fp.seek(0)
        TiffImagePlugin.TiffImageFile(fp)
    except SyntaxError as exc:
        cause = exc.args[0] if exc.args else None
        if isinstance(cause, KeyError):  # Pillow has no entry for the compression tag
            try:
                code = int(_tiff_tags(fp).get(259, cause.args[0]))
            except Exception:  # noqa: BLE001 - the name only decorates the message
                code = cause.args[0] if cause.args else "?"
            name = _TIFF_COMPRESSIONS.get(code, "an unknown scheme") if isinstance(code, int) \
                else "an unknown scheme"
            return (f"it is a TIFF compressed with {name} (compression {code}), which Pillow "
                    f"does not support (the file itself looks intact)")
        if "unknown pixel mode" not in str(exc):
            return None
    except Exception:  # noqa: BLE001 - anything else: damaged after all
        return None
    else:
        return None
    try:
        tags = _tiff_tags(fp)
        bits = tags.get(258, (1,))
        samples = int(tags.get(277, 1))
        sformat = tags.get(339, (1,))
        kind = _SAMPLE_FORMATS.get(int(sformat[0]), f"sample format {sformat[0]}")
        layout = (f"{samples} sample(s) per pixel of {int(bits[0])}-bit {kind}"
                  if bits else f"{samples} sample(s) per pixel")
    except Exception:  # noqa: BLE001 - the layout only decorates the message
        layout = "its pixel layout"
    return (f"it is a TIFF with {layout}, a pixel layout Pillow does not support "
            f"(the file itself looks intact)")


def damage_text(exc: BaseException, noun: str) -> str:
    text = str(exc).strip()
    low = text.lower()
    if "decompressed data too large" in low or "too large for pngimageplugin" in low:
        return ("it holds a compressed metadata block (an ICC colour profile, text or EXIF) "
                "too large to unpack safely; Pillow refuses such files, the pixels may be "
                "fine")
    if "decoder" in low and "not available" in low or "unknown compression" in low \
            or "compression" in low and "not supported" in low:
        return f"it uses a compression this Pillow cannot decode ({text})"
    if isinstance(exc, EOFError) or "truncated" in low or "end of file" in low:
        return f"the {noun} is truncated"
    return f"the image data is damaged ({text or type(exc).__name__})"

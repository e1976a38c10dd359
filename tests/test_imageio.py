"""Image loading: real photos, hostile files, and bit-identity with the tutorials' ToTensor."""

from __future__ import annotations

import io
import os
import struct
import warnings
import zlib

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile, ImageOps
from torchvision import transforms
from torchvision.transforms import functional as tvf

from layerlab.core.imageio import (
    ImageLoadError,
    LoadedImage,
    downscale_for_preview,
    from_array,
    load_image,
    load_image_bytes,
    to_tensor,
)

skdata = pytest.importorskip("skimage.data")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def camera() -> np.ndarray:
    return skdata.camera()  # 512x512 uint8 grayscale photo


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skdata.astronaut()  # 512x512x3 uint8


@pytest.fixture(scope="module")
def coffee() -> np.ndarray:
    return skdata.coffee()  # 400x600x3 uint8


def _save(path, array_or_image, fmt=None, **kw):
    im = (
        array_or_image
        if isinstance(array_or_image, Image.Image)
        else Image.fromarray(array_or_image)
    )
    im.save(path, fmt, **kw)
    return path


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_bytes(width: int, height: int, bit_depth: int, colour_type: int, raw_rows: bytes) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(raw_rows))
        + _png_chunk(b"IEND", b"")
    )


def _bomb_png(width: int, height: int) -> bytes:
    """A real 8x8 PNG whose IHDR is patched to declare width x height (CRC recomputed)."""
    buf = io.BytesIO()
    Image.new("L", (8, 8), 0).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def tutorial_tensor(path, mode: str) -> torch.Tensor:
    """What the tutorials do: Image.open(p).convert('L' | 'RGB') then ToTensor().unsqueeze(0)."""
    with Image.open(path) as im:
        return transforms.ToTensor()(im.convert("L" if mode == "gray" else "RGB")).unsqueeze(0)


# --------------------------------------------------------------------------- real photos


@pytest.mark.parametrize("mode", ["gray", "rgb"])
@pytest.mark.parametrize(
    ("photo", "fmt"),
    [("camera", "PNG"), ("astronaut", "PNG"), ("coffee", "PNG"), ("coffee", "JPEG"),
     ("astronaut", "JPEG"), ("camera", "BMP")],
)  # fmt: skip
def test_to_tensor_is_bit_identical_to_tutorial_totensor(request, tmp_path, photo, fmt, mode):
    array = request.getfixturevalue(photo)
    path = _save(tmp_path / f"{photo}.{fmt.lower()}", array, fmt)
    loaded = load_image(path)
    got = to_tensor(loaded.image, mode)
    want = tutorial_tensor(path, mode)
    assert got.dtype == torch.float32
    assert got.shape == want.shape == (1, 1 if mode == "gray" else 3, *array.shape[:2])
    assert torch.equal(got, want)
    assert got.is_contiguous()
    assert float(got.min()) >= 0.0 and float(got.max()) <= 1.0


def test_gray_photo_stays_single_channel_with_exact_pixels(tmp_path, camera):
    path = _save(tmp_path / "camera.png", camera)
    loaded = load_image(path)
    assert isinstance(loaded, LoadedImage)
    assert loaded.image.mode == "L"
    assert loaded.original_mode == "L"
    assert loaded.size == (512, 512)
    assert loaded.source_size == (512, 512)
    assert loaded.path == str(path)
    assert loaded.notes == ()
    assert np.array_equal(np.asarray(loaded.image), camera)
    t = to_tensor(loaded.image, "gray")
    assert torch.equal(t[0, 0], torch.from_numpy(camera).float() / 255)


def test_rgb_photo_exact_pixels(tmp_path, coffee):
    loaded = load_image(_save(tmp_path / "coffee.png", coffee))
    assert loaded.image.mode == "RGB"
    assert loaded.size == (600, 400)
    assert np.array_equal(np.asarray(loaded.image), coffee)


@pytest.mark.parametrize("hw", [(32, 32), (100, 37), (600, 800)])
def test_resize_matches_torchvision_resize_after_totensor(tmp_path, astronaut, hw):
    path = _save(tmp_path / "astronaut.png", astronaut)
    got = to_tensor(load_image(path).image, "rgb", resize=hw)
    want = tvf.resize(tutorial_tensor(path, "rgb"), list(hw), antialias=True)
    assert got.shape == (1, 3, *hw)
    assert torch.equal(got, want)


def test_resize_to_own_size_is_identity_and_bad_sizes_fail(tmp_path, camera):
    image = load_image(_save(tmp_path / "c.png", camera)).image
    assert torch.equal(to_tensor(image, "gray", resize=(512, 512)), to_tensor(image, "gray"))
    with pytest.raises(ValueError, match="positive"):
        to_tensor(image, "gray", resize=(0, 10))
    with pytest.raises(ValueError, match="'rgb' or 'gray'"):
        to_tensor(image, "bgr")  # type: ignore[arg-type]


def test_to_tensor_accepts_any_pil_mode_like_convert(astronaut):
    rgba = Image.fromarray(np.dstack([astronaut, np.full(astronaut.shape[:2], 200, np.uint8)]))
    assert torch.equal(
        to_tensor(rgba, "gray"), transforms.ToTensor()(rgba.convert("L")).unsqueeze(0)
    )


# --------------------------------------------------------------------------- hostile files


def test_empty_file(tmp_path):
    path = tmp_path / "x.png"
    path.write_bytes(b"")
    with pytest.raises(
        ImageLoadError, match=r"^cannot open 'x.png': the file is empty \(0 bytes\)$"
    ):
        load_image(path)


def test_missing_file(tmp_path):
    with pytest.raises(ImageLoadError) as info:
        load_image(tmp_path / "nope.jpg")
    assert str(info.value) == "cannot open 'nope.jpg': the file does not exist"


def test_directory(tmp_path):
    d = tmp_path / "folder.png"
    d.mkdir()
    with pytest.raises(ImageLoadError) as info:
        load_image(d)
    assert str(info.value) == "cannot open 'folder.png': it is a directory"


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can read a mode-000 file"
)
def test_unreadable_file(tmp_path, camera):
    path = _save(tmp_path / "locked.png", camera)
    path.chmod(0)
    try:
        with pytest.raises(ImageLoadError) as info:
            load_image(path)
        assert str(info.value) == "cannot open 'locked.png': it cannot be read: permission denied"
    finally:
        path.chmod(0o644)


def test_text_file_named_png(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is not a picture\n" * 20)
    with pytest.raises(ImageLoadError) as info:
        load_image(path)
    assert str(info.value) == "cannot open 'notes.png': it is not an image Pillow can read"


def test_jpeg_named_png_is_read_by_content(tmp_path, coffee):
    path = _save(tmp_path / "really-a-jpeg.png", coffee, "JPEG")
    loaded = load_image(path)
    assert loaded.size == (600, 400)
    assert torch.equal(to_tensor(loaded.image, "rgb"), tutorial_tensor(path, "rgb"))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_in_pixel_data(tmp_path, astronaut, fmt):
    buf = io.BytesIO()
    Image.fromarray(astronaut).save(buf, fmt)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    with pytest.raises(ImageLoadError) as info:
        load_image(path)
    assert str(info.value) == f"cannot open 'cut.{fmt.lower()}': the file is truncated"
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


@pytest.mark.parametrize(
    ("fmt", "reason"),
    [("PNG", "it is a truncated or damaged PNG file"),
     ("GIF", "it is a truncated or damaged GIF file"),
     ("JPEG", "the file is truncated")],
)  # fmt: skip
def test_truncated_in_header(tmp_path, camera, fmt, reason):
    buf = io.BytesIO()
    Image.fromarray(camera).save(buf, fmt)
    path = tmp_path / "head"
    path.write_bytes(buf.getvalue()[:12])
    with pytest.raises(ImageLoadError) as info:
        load_image(path)
    assert str(info.value) == f"cannot open 'head': {reason}"


def test_decompression_bomb_beyond_pillow_hard_limit(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_bomb_png(200_000, 200_000))
    with pytest.raises(ImageLoadError) as info:
        load_image(path)
    assert str(info.value) == (
        f"cannot open 'bomb.png': it declares 200000x200000 pixels, more than the "
        f"{Image.MAX_IMAGE_PIXELS}-pixel safety limit"
    )


def test_decompression_bomb_in_pillow_warning_zone_is_an_error_without_warning(tmp_path):
    # Between MAX_IMAGE_PIXELS and twice it Pillow only warns; LayerLab refuses.
    width = 20_000
    height = (3 * Image.MAX_IMAGE_PIXELS // 2) // width
    assert Image.MAX_IMAGE_PIXELS < width * height < 2 * Image.MAX_IMAGE_PIXELS
    path = tmp_path / "wide.png"
    path.write_bytes(_bomb_png(width, height))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ImageLoadError) as info:
            load_image(path)
    assert str(info.value) == (
        f"cannot open 'wide.png': it declares {width}x{height} pixels, more than the "
        f"{Image.MAX_IMAGE_PIXELS}-pixel safety limit"
    )
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]


def test_custom_pixel_limit_is_checked_before_decoding(tmp_path, camera):
    path = _save(tmp_path / "camera.png", camera)
    with pytest.raises(ImageLoadError) as info:
        load_image(path, max_pixels=100_000)
    assert str(info.value) == (
        "cannot open 'camera.png': it declares 512x512 pixels, more than the "
        "100000-pixel safety limit"
    )
    assert load_image(path, max_pixels=512 * 512).size == (512, 512)


def test_damaged_png_crc(tmp_path, camera):
    buf = io.BytesIO()
    Image.fromarray(camera).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    data[60] ^= 0xFF  # inside the compressed pixel data
    path = tmp_path / "flipped.png"
    path.write_bytes(bytes(data))
    with pytest.raises(ImageLoadError, match=r"^cannot open 'flipped.png': "):
        load_image(path)


# --------------------------------------------------------------------------- modes


def test_16bit_gray_png(tmp_path):
    ramp = (np.arange(256 * 256, dtype=np.uint32).reshape(256, 256) % 65536).astype(np.uint16)
    ramp[0, :4] = [0, 128, 129, 65535]
    im = Image.fromarray(ramp)
    assert im.mode == "I;16"
    loaded = load_image(_save(tmp_path / "deep.png", im))
    assert loaded.original_mode == "I;16"
    assert loaded.image.mode == "L"
    assert loaded.notes == ("16-bit image reduced to 8 bits",)
    got = np.asarray(loaded.image)
    want = np.floor(ramp.astype(np.float64) / 257 + 0.5).astype(np.uint8)  # round(v / 257)
    assert np.array_equal(got, want)
    assert list(got[0, :4]) == [0, 0, 1, 255]


def test_16bit_rgb_png(tmp_path):
    rng = np.random.default_rng(3)
    rgb16 = rng.integers(0, 65536, size=(20, 30, 3), dtype=np.uint16)
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in rgb16)
    path = tmp_path / "rgb16.png"
    path.write_bytes(_png_bytes(30, 20, 16, 2, rows))
    loaded = load_image(path)
    assert loaded.image.mode == "RGB"
    assert loaded.size == (30, 20)
    assert "16-bit image reduced to 8 bits" in loaded.notes
    # Pillow keeps the high byte of each 16-bit sample.
    assert np.array_equal(np.asarray(loaded.image), (rgb16 >> 8).astype(np.uint8))


def test_cmyk_jpeg(tmp_path, astronaut):
    path = _save(tmp_path / "print.jpg", Image.fromarray(astronaut).convert("CMYK"), "JPEG")
    loaded = load_image(path)
    assert loaded.original_mode == "CMYK"
    assert loaded.image.mode == "RGB"
    assert loaded.notes == ("CMYK converted to RGB",)
    with Image.open(path) as ref:
        assert np.array_equal(np.asarray(loaded.image), np.asarray(ref.convert("RGB")))


def test_palette_png_with_transparency_is_composited_on_white(tmp_path):
    pal = Image.new("P", (4, 2))
    pal.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 9))
    pal.putdata([0, 1, 2, 1, 0, 2, 2, 1])
    path = tmp_path / "pal.png"
    pal.save(path, transparency=0)
    loaded = load_image(path)
    assert loaded.original_mode == "P"
    assert loaded.image.mode == "RGB"
    assert loaded.notes == ("alpha channel composited on white",)
    got = np.asarray(loaded.image)
    assert got[0, 0].tolist() == [255, 255, 255]  # transparent index 0 -> white
    assert got[0, 1].tolist() == [255, 0, 0]
    assert got[0, 2].tolist() == [0, 0, 255]


def test_palette_png_with_gray_palette_becomes_L(tmp_path, camera):
    path = _save(tmp_path / "gray.gif", camera, "GIF")
    with Image.open(path) as raw:
        assert raw.mode in ("P", "L")
    loaded = load_image(path)
    assert loaded.image.mode == "L"
    assert np.array_equal(np.asarray(loaded.image), camera)  # gray GIF of <=256 levels is lossless


def test_rgba_alpha_composited_on_white(tmp_path, coffee):
    h, w = coffee.shape[:2]
    alpha = np.zeros((h, w), np.uint8)
    alpha[:, w // 3 : 2 * w // 3] = 128
    alpha[:, 2 * w // 3 :] = 255
    path = _save(tmp_path / "rgba.png", np.dstack([coffee, alpha]))
    loaded = load_image(path)
    assert loaded.original_mode == "RGBA"
    assert loaded.image.mode == "RGB"
    assert loaded.notes == ("alpha channel composited on white",)
    got = np.asarray(loaded.image).astype(np.int32)
    assert (got[:, : w // 3] == 255).all()
    assert np.array_equal(got[:, 2 * w // 3 :], coffee[:, 2 * w // 3 :])
    blend = coffee[:, w // 3 : 2 * w // 3] * (128 / 255) + 255 * (127 / 255)
    assert np.abs(got[:, w // 3 : 2 * w // 3] - blend).max() <= 1.0


def test_opaque_alpha_is_dropped(tmp_path, camera):
    la = np.dstack([camera, np.full_like(camera, 255)])
    loaded = load_image(_save(tmp_path / "la.png", Image.fromarray(la, "LA")))
    assert loaded.image.mode == "L"
    assert loaded.notes == ("alpha channel dropped (fully opaque)",)
    assert np.array_equal(np.asarray(loaded.image), camera)


def test_bilevel_image(tmp_path):
    bits = np.zeros((16, 24), bool)
    bits[4:12, 6:18] = True
    loaded = load_image(_save(tmp_path / "bits.png", Image.fromarray(bits)))
    assert loaded.original_mode == "1"
    assert loaded.image.mode == "L"
    assert np.array_equal(np.asarray(loaded.image), bits.astype(np.uint8) * 255)


def test_float_tiff_in_unit_range(tmp_path):
    values = np.linspace(0, 1, 64 * 32, dtype=np.float32).reshape(32, 64)
    loaded = load_image(_save(tmp_path / "f.tif", Image.fromarray(values, "F")))
    assert loaded.original_mode == "F"
    assert loaded.image.mode == "L"
    assert np.array_equal(
        np.asarray(loaded.image), np.floor(values.astype(np.float64) * 255 + 0.5).astype(np.uint8)
    )


def test_animated_gif_uses_first_frame(tmp_path, coffee):
    frames = [Image.fromarray(np.roll(coffee, 40 * k, axis=1)).quantize(64) for k in range(12)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    loaded = load_image(path)
    assert loaded.notes[0] == "animated GIF: using frame 1 of 12"
    with Image.open(path) as ref:
        assert np.array_equal(np.asarray(loaded.image), np.asarray(ref.convert("RGB")))


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_applied(tmp_path, coffee, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = _save(tmp_path / "phone.jpg", coffee, "JPEG", exif=exif.tobytes(), quality=95)
    loaded = load_image(path)
    assert loaded.notes == (f"rotated upright from EXIF orientation {orientation}",)
    upright = (400, 600) if orientation in (6, 8) else (600, 400)
    assert loaded.size == upright == loaded.source_size
    with Image.open(path) as ref:
        want = ImageOps.exif_transpose(ref).convert("RGB")
    assert np.array_equal(np.asarray(loaded.image), np.asarray(want))


def test_one_pixel_and_long_strip(tmp_path):
    one = load_image(_save(tmp_path / "one.png", np.array([[[10, 20, 30]]], np.uint8)))
    assert one.size == (1, 1)
    t = to_tensor(one.image, "rgb")
    assert t.shape == (1, 3, 1, 1)
    assert torch.equal(t.flatten(), torch.tensor([10.0, 20.0, 30.0]) / 255)

    strip = (np.arange(20 * 20000) % 251).astype(np.uint8).reshape(20, 20000)
    path = _save(tmp_path / "strip.png", strip)
    loaded = load_image(path)
    assert loaded.size == (20000, 20)
    assert torch.equal(to_tensor(loaded.image, "gray"), tutorial_tensor(path, "gray"))
    preview = load_image(path, draft_size=(1024, 1024))
    assert preview.size == (1024, 1)
    assert preview.source_size == (20000, 20)


# --------------------------------------------------------------------------- previews


def test_draft_decodes_large_jpeg_at_reduced_scale(tmp_path, astronaut):
    big = Image.fromarray(astronaut).resize((4000, 3000), Image.Resampling.BILINEAR)
    path = _save(tmp_path / "big.jpg", big, "JPEG", quality=90)
    preview = load_image(path, draft_size=(1024, 1024))
    # libjpeg's 1/4 DCT scale lands at 1000 x 750 <= 1024: no resampling needed at all.
    assert preview.size == (1000, 750)
    assert preview.source_size == (4000, 3000)
    assert preview.notes == (
        "JPEG decoded at 1/4 scale for preview",
        "downscaled from 4000x3000 to 1000x750 for preview",
    )
    full = load_image(path)
    assert full.size == (4000, 3000) and full.notes == ()
    # The preview shows the same picture: compare with a high-quality downscale of the full decode.
    ref = np.asarray(full.image.resize((1000, 750), Image.Resampling.LANCZOS), dtype=np.float64)
    assert np.abs(np.asarray(preview.image, dtype=np.float64) - ref).mean() < 3.0
    # Beyond 1/8 the rest is resampled: 4000 / 8 = 500 > 300.
    small = load_image(path, draft_size=(300, 300))
    assert small.size == (300, 225)
    assert small.notes[0] == "JPEG decoded at 1/8 scale for preview"


def test_draft_on_png_just_downscales(tmp_path, coffee):
    preview = load_image(_save(tmp_path / "c.png", coffee), draft_size=(300, 300))
    assert preview.size == (300, 200)
    assert preview.notes == ("downscaled from 600x400 to 300x200 for preview",)


def test_downscale_for_preview(coffee):
    im = Image.fromarray(coffee)
    assert downscale_for_preview(im, 600) is im
    exact = downscale_for_preview(im, 300)  # factor 2: a plain box reduce
    assert exact.size == (300, 200)
    assert np.array_equal(np.asarray(exact), np.asarray(im.reduce(2)))
    odd = downscale_for_preview(im, 257)
    assert odd.size == (257, 171)
    assert downscale_for_preview(Image.new("L", (5000, 3)), 100).size == (100, 1)
    with pytest.raises(ValueError):
        downscale_for_preview(im, 0)


# --------------------------------------------------------------------------- bytes / arrays


def test_load_image_bytes_matches_file(tmp_path, astronaut):
    path = _save(tmp_path / "a.png", astronaut)
    from_bytes = load_image_bytes(path.read_bytes())
    assert from_bytes.path is None
    assert np.array_equal(np.asarray(from_bytes.image), np.asarray(load_image(path).image))


def test_load_image_bytes_errors_name_the_source(astronaut):
    with pytest.raises(ImageLoadError) as info:
        load_image_bytes(b"")
    assert str(info.value) == "cannot open 'clipboard': the data is empty (0 bytes)"
    with pytest.raises(ImageLoadError) as info:
        load_image_bytes(b"<html>nope</html>", name="drop")
    assert str(info.value) == "cannot open 'drop': it is not an image Pillow can read"
    buf = io.BytesIO()
    Image.fromarray(astronaut).save(buf, "JPEG")
    with pytest.raises(ImageLoadError) as info:
        load_image_bytes(buf.getvalue()[:5000])
    assert str(info.value) == "cannot open 'clipboard': the data is truncated"
    with pytest.raises(ImageLoadError, match="declares 200000x200000 pixels"):
        load_image_bytes(_bomb_png(200_000, 200_000))


def test_from_array(camera, astronaut):
    gray = from_array(camera)
    assert gray.image.mode == "L" and gray.size == (512, 512) and gray.path is None
    assert np.array_equal(np.asarray(gray.image), camera)
    assert from_array(camera[:, :, None]).image.mode == "L"
    rgb = from_array(astronaut)
    assert rgb.image.mode == "RGB" and np.array_equal(np.asarray(rgb.image), astronaut)
    rgba = from_array(np.dstack([astronaut, np.zeros(astronaut.shape[:2], np.uint8)]))
    assert rgba.original_mode == "RGBA"
    assert (np.asarray(rgba.image) == 255).all()  # fully transparent on white
    with pytest.raises(ImageLoadError, match="expected a non-empty uint8 array"):
        from_array(camera.astype(np.float32))
    with pytest.raises(ImageLoadError, match=r"\(4, 4, 2\)"):
        from_array(np.zeros((4, 4, 2), np.uint8))


def test_module_does_not_import_qt():
    import subprocess
    import sys

    code = (
        "import sys, layerlab.core.imageio, layerlab.core.render; print('PySide6' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_permission_denied_message(tmp_path, camera, monkeypatch):
    # Runs even as root (where chmod 000 does not stop reads): the OS error is simulated.
    from layerlab.core import safeio

    path = _save(tmp_path / "locked.png", camera)

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(safeio, "_os_open_read", refuse)
    with pytest.raises(ImageLoadError) as info:
        load_image(path)
    assert str(info.value) == "cannot open 'locked.png': it cannot be read: permission denied"

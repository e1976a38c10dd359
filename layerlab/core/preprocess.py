"""Inputs as real models expect them: torchvision's classification preprocessing.

The pipeline's ``input`` may resize (``[H, W]`` exactly, or an integer N: the shorter side to
N keeping the aspect ratio, as ``transforms.Resize(N)``), then ``center_crop`` ``[H, W]``
(``transforms.CenterCrop``), on the ``ToTensor`` image (antialiased bilinear, as torchvision's
classification presets resize). ``normalize`` (``transforms.Normalize``: ``(x - mean) / std``
per channel) is its own stage after the input: stage 0 stays the photo in [0, 1], stage 1 is
what the first layer receives. The presets are a table a window can list (:data:`PRESETS`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = ["PRESETS", "Normalize", "Preset", "check_normalize", "crop_hw", "normalize",
           "preset_named", "preset_of", "resize_crop", "resized_hw"]

MAX_SIDE = 16384


@dataclass(frozen=True)
class Normalize:
    """``transforms.Normalize(mean, std)``: one value per channel (or one for all)."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": list(self.mean), "std": list(self.std)}

    def text(self) -> str:
        return (f"(x - mean) / std per channel, mean {_floats(self.mean)}, "
                f"std {_floats(self.std)}")


@dataclass(frozen=True)
class Preset:
    name: str  # what a menu shows
    help: str
    mean: tuple[float, ...] | None  # None: no normalisation (values stay in [0, 1])
    std: tuple[float, ...] | None

    def for_channels(self, channels: int) -> Normalize | None:
        """The preset's Normalize for an input of ``channels`` (1 gray, 3 RGB); None for
        "none". A gray input takes the mean of the RGB values."""
        if self.mean is None or self.std is None:
            return None
        if channels == len(self.mean):
            return Normalize(self.mean, self.std)
        return Normalize((sum(self.mean) / len(self.mean),) * channels,
                         (sum(self.std) / len(self.std),) * channels)


PRESETS: tuple[Preset, ...] = (
    Preset("none", "No normalisation: values in [0, 1] as ToTensor gives them.", None, None),
    Preset("ImageNet", "The torchvision classification models: mean (0.485, 0.456, 0.406), "
           "std (0.229, 0.224, 0.225).", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    Preset("[-1, 1]", "Mean 0.5, std 0.5 on every channel: [0, 1] becomes [-1, 1].",
           (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
)


def preset_named(name: str) -> Preset:
    for p in PRESETS:
        if p.name == name:
            return p
    raise KeyError(name)


def preset_of(value: Normalize | None, channels: int) -> str | None:
    """The name of the preset ``value`` is for ``channels``, or None (custom numbers)."""
    for p in PRESETS:
        if p.for_channels(channels) == value:
            return p.name
    return None


def check_normalize(raw: Any, channels: int) -> Normalize:
    """Validate ``{"mean": [...], "std": [...]}`` for an input of ``channels``; ValueError
    with the field at fault."""
    if not isinstance(raw, Mapping) or set(raw) != {"mean", "std"}:
        raise ValueError("must be {\"mean\": [...], \"std\": [...]}")
    values = {}
    for key in ("mean", "std"):
        v = raw[key]
        if not isinstance(v, list | tuple) or len(v) not in (1, channels) or not all(
                isinstance(n, int | float) and not isinstance(n, bool) for n in v):
            raise ValueError(f"{key} must be a list of {channels} number(s), one per channel"
                             + (" (or one for all)" if channels > 1 else "") + f", not {v!r}")
        floats = tuple(float(n) for n in v)
        if not all(math.isfinite(n) and abs(n) <= 1e6 for n in floats):
            raise ValueError(f"{key} values must be finite numbers within ±1e6, not {v!r}")
        if key == "std" and any(n == 0 for n in floats):
            raise ValueError("std must not be zero (Normalize divides by it)")
        values[key] = floats
    return Normalize(values["mean"], values["std"])


def resized_hw(image_hw: tuple[int, int], resize: int | tuple[int, int] | None
               ) -> tuple[int, int]:
    """The size after ``resize``: [H, W] exactly; an integer N puts the shorter side to N
    and the longer to ``int(N * long / short)`` (torchvision's rule)."""
    if resize is None:
        return image_hw
    if not isinstance(resize, int):
        return (resize[0], resize[1])
    h, w = image_hw
    short, long = (w, h) if w <= h else (h, w)
    new_long = int(resize * long / short)
    return (new_long, resize) if w <= h else (resize, new_long)


def crop_hw(hw: tuple[int, int], center_crop: tuple[int, int] | None) -> tuple[int, int]:
    return hw if center_crop is None else (center_crop[0], center_crop[1])


def resize_crop(x: torch.Tensor, resize: int | tuple[int, int] | None,
                center_crop: tuple[int, int] | None) -> torch.Tensor:
    """``transforms.Resize(resize, antialias=True)`` then ``transforms.CenterCrop``, on a
    (1, C, H, W) float tensor (an [H, W] resize to the size it has already is skipped)."""
    if resize is None and center_crop is None:
        return x  # torchvision (about as slow to import as torch) only when it is needed
    from torchvision.transforms import functional as F

    if isinstance(resize, int):
        x = F.resize(x, resize, antialias=True)
    elif resize is not None and tuple(x.shape[-2:]) != tuple(resize):
        x = F.resize(x, list(resize), antialias=True)
    if center_crop is not None:
        x = F.center_crop(x, list(center_crop))
    return x


def normalize(x: torch.Tensor, value: Normalize) -> torch.Tensor:
    """``transforms.Normalize(mean, std)(x)``, on a new tensor."""
    from torchvision.transforms import functional as F

    return F.normalize(x, list(value.mean), list(value.std))


def _floats(values: tuple[float, ...]) -> str:
    return "[" + ", ".join(f"{v:g}" for v in values) + "]"

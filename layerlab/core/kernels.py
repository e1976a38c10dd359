"""Kernel presets as exact tensors, and seeded weight initialisation.

torch is imported by the functions that make tensors, not with the module: the window reads
the preset names and schemes before torch has loaded."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def _t(rows: list[list[float]]) -> torch.Tensor:
    import torch

    return torch.tensor(rows, dtype=torch.float32)


def _seed_sharpen() -> torch.Tensor:
    import torch

    # Exactly the tutorial's construction, so the float32 values match bit for bit.
    kernel = torch.ones(3, 3) / (-9.0)
    kernel[1][1] = 1
    return kernel


def _box(size: int) -> torch.Tensor:
    import torch

    return torch.ones(size, size) / float(size * size)


def _binomial(size: int) -> torch.Tensor:
    import torch

    row = torch.tensor([math.comb(size - 1, i) for i in range(size)], dtype=torch.float64)
    k = torch.outer(row, row)
    return (k / k.sum()).float()


PRESETS: dict[str, Callable[[], torch.Tensor]] = {
    "identity": lambda: _t([[0, 0, 0], [0, 1, 0], [0, 0, 0]]),
    "tutorial sharpen": _seed_sharpen,
    "sharpen": lambda: _t([[0, -1, 0], [-1, 5, -1], [0, -1, 0]]),
    "box blur 3": lambda: _box(3),
    "box blur 5": lambda: _box(5),
    "gaussian 3": lambda: _binomial(3),
    "gaussian 5": lambda: _binomial(5),
    "sobel x": lambda: _t([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]),
    "sobel y": lambda: _t([[-1, -2, -1], [0, 0, 0], [1, 2, 1]]),
    "prewitt x": lambda: _t([[-1, 0, 1], [-1, 0, 1], [-1, 0, 1]]),
    "prewitt y": lambda: _t([[-1, -1, -1], [0, 0, 0], [1, 1, 1]]),
    "laplacian 4": lambda: _t([[0, 1, 0], [1, -4, 1], [0, 1, 0]]),
    "laplacian 8": lambda: _t([[1, 1, 1], [1, -8, 1], [1, 1, 1]]),
    "emboss": lambda: _t([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]]),
    "outline": lambda: _t([[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]]),
}

PRESET_HELP = {
    "identity": "Passes the image through unchanged.",
    "tutorial sharpen": "The tutorials' kernel: ones(3,3) / -9 with the centre set to 1.",
    "sharpen": "Classic 4-neighbour sharpen (sum 1).",
    "box blur 3": "Mean of the 3x3 neighbourhood.",
    "box blur 5": "Mean of the 5x5 neighbourhood.",
    "gaussian 3": "Binomial 3x3 approximation of a Gaussian ([1 2 1] outer [1 2 1] / 16).",
    "gaussian 5": "Binomial 5x5 approximation of a Gaussian ([1 4 6 4 1] outer itself / 256).",
    "sobel x": "Horizontal gradient (responds to vertical edges).",
    "sobel y": "Vertical gradient (responds to horizontal edges).",
    "prewitt x": "Horizontal gradient, unweighted.",
    "prewitt y": "Vertical gradient, unweighted.",
    "laplacian 4": "Second derivative, 4-neighbour.",
    "laplacian 8": "Second derivative, 8-neighbour.",
    "emboss": "Relief effect along the diagonal.",
    "outline": "Edges everywhere (sum 0).",
}


_OLD_NAMES = {"seed sharpen": "tutorial sharpen"}  # what earlier versions called them


def preset(name: str) -> torch.Tensor:
    """A fresh 2-D float32 kernel for ``name``."""
    try:
        return PRESETS[_OLD_NAMES.get(name, name)]()
    except KeyError:
        raise ValueError(f"unknown kernel preset {name!r} "
                         f"(available: {', '.join(PRESETS)})") from None


def fit_kernel(kernel: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Centre ``kernel`` in a zero kernel of ``size`` (or crop its centre if larger)."""
    import torch

    out = torch.zeros(size, dtype=torch.float32)
    kh, kw = kernel.shape
    h, w = size
    # Offsets into source (s) and destination (d) along each axis.
    sy, dy = max(0, (kh - h) // 2), max(0, (h - kh) // 2)
    sx, dx = max(0, (kw - w) // 2), max(0, (w - kw) // 2)
    ch, cw = min(h, kh), min(w, kw)
    out[dy:dy + ch, dx:dx + cw] = kernel[sy:sy + ch, sx:sx + cw]
    return out


# --- initialisation ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Scheme:
    """One init scheme: the ``torch.nn.init`` function and its arguments from the init object.

    The same entry drives the run (:func:`init_tensor`) and the generated script
    (:func:`init_expression`), so the two cannot drift apart. ``function`` None is
    ``torch_default``: the module's own ``reset_parameters`` right after
    ``torch.manual_seed(seed)``.
    """

    function: str | None
    arguments: tuple[tuple[str, str], ...] = ()  # (torch keyword, init field)
    seeded: bool = True  # takes ``generator=``


_GLOBAL_SEED_LOCK = threading.Lock()


@contextmanager
def torch_seeded(seed: int) -> Iterator[None]:
    """torch's global random generator seeded with ``seed`` for the block (torch_default and
    random model weights need it: only the module knows its own sequence), the caller's state
    restored after. One block at a time: the worker and the window both build seeded
    modules, and interleaved, one would take the other's numbers."""
    import torch

    with _GLOBAL_SEED_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


SCHEMES: dict[str, Scheme] = {
    "kaiming_normal": Scheme("kaiming_normal_"),
    "kaiming_uniform": Scheme("kaiming_uniform_"),
    "xavier_normal": Scheme("xavier_normal_"),
    "xavier_uniform": Scheme("xavier_uniform_"),
    "normal": Scheme("normal_", (("mean", "mean"), ("std", "std"))),
    "constant": Scheme("constant_", (("val", "value"),), seeded=False),
    "torch_default": Scheme(None),
}
INIT_SCHEMES = tuple(SCHEMES)
DEFAULT_INIT = {"scheme": "kaiming_normal", "seed": 0}
# Fields of the init object beyond scheme and seed, with their defaults.
_FIELDS = {"mean": 0.0, "std": 0.01, "value": 0.0}


def check_init(init: object) -> dict:
    """Validate an ``init`` object from a pipeline file; returns it completed."""
    if not isinstance(init, dict):
        raise ValueError("init must be an object like {\"scheme\": \"kaiming_normal\", "
                         "\"seed\": 0}")
    unknown = set(init) - {"scheme", "seed", *_FIELDS}
    if unknown:
        raise ValueError(f"unknown init field(s): {', '.join(sorted(unknown))}")
    out = {"scheme": init.get("scheme", "kaiming_normal"), "seed": init.get("seed", 0)}
    if out["scheme"] not in SCHEMES:
        raise ValueError(f"init scheme must be one of {', '.join(INIT_SCHEMES)}, "
                         f"not {out['scheme']!r}")
    seed = out["seed"]
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ValueError(f"init seed must be a non-negative integer, not {seed!r}")
    for _keyword, name in SCHEMES[out["scheme"]].arguments:
        out[name] = _finite(init.get(name, _FIELDS[name]), name)
    if out.get("std", 0.0) < 0:
        raise ValueError("init std must not be negative")
    return out


INIT_VALUE_MAX = 1e6  # |mean|, std and |value| of the normal/constant schemes


def _finite(v: object, name: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ValueError(f"init {name} must be a finite number, not {v!r}")
    if isinstance(v, int) and abs(v) > INIT_VALUE_MAX:  # also integers beyond any float
        digits = len(str(abs(v)))
        raise ValueError(f"init {name} must be a number from {-INIT_VALUE_MAX:g} to "
                         f"{INIT_VALUE_MAX:g}, not an integer of {digits} digits")
    if not math.isfinite(v):
        raise ValueError(f"init {name} must be a finite number, not {v!r}")
    if abs(v) > INIT_VALUE_MAX:
        raise ValueError(f"init {name} must be a number from {-INIT_VALUE_MAX:g} to "
                         f"{INIT_VALUE_MAX:g}, not {v!r}")
    return float(v)


def _call(init: dict) -> tuple[Scheme, dict]:
    scheme = SCHEMES[init["scheme"]]
    if scheme.function is None:
        raise ValueError("torch_default is the module's own reset_parameters, not one call")
    return scheme, {kw: init[name] for kw, name in scheme.arguments}


def init_tensor(tensor: torch.Tensor, init: dict) -> torch.Tensor:
    """Fill ``tensor`` in place with the scheme (a fresh generator seeded with the seed)."""
    import torch
    from torch import nn

    scheme, kwargs = _call(init)
    if scheme.seeded:
        kwargs["generator"] = torch.Generator().manual_seed(init["seed"])
    with torch.no_grad():
        getattr(nn.init, scheme.function)(tensor, **kwargs)
    return tensor


def init_expression(init: dict, target: str, generator: str) -> str:
    """The call :func:`init_tensor` makes, as source text (used by the code export)."""
    scheme, kwargs = _call(init)
    parts = [target] + [f"{kw}={v!r}" for kw, v in kwargs.items()]
    if scheme.seeded:
        parts.append(f"generator={generator}")
    return f"nn.init.{scheme.function}({', '.join(parts)})"

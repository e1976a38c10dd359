"""Kernel presets as exact tensors, and seeded weight initialisation."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn


def _t(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


def _seed_sharpen() -> torch.Tensor:
    # Exactly the tutorial's construction, so the float32 values match bit for bit.
    kernel = torch.ones(3, 3) / (-9.0)
    kernel[1][1] = 1
    return kernel


def _gaussian(size: int, sigma: float) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    k = torch.outer(g, g)
    return (k / k.sum()).float()


def _binomial(size: int) -> torch.Tensor:
    row = torch.tensor([math.comb(size - 1, i) for i in range(size)], dtype=torch.float64)
    k = torch.outer(row, row)
    return (k / k.sum()).float()


PRESETS: dict[str, Callable[[], torch.Tensor]] = {
    "identity": lambda: _t([[0, 0, 0], [0, 1, 0], [0, 0, 0]]),
    "seed sharpen": _seed_sharpen,
    "sharpen": lambda: _t([[0, -1, 0], [-1, 5, -1], [0, -1, 0]]),
    "box blur 3": lambda: torch.ones(3, 3) / 9.0,
    "box blur 5": lambda: torch.ones(5, 5) / 25.0,
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
    "seed sharpen": "The tutorials' kernel: ones(3,3) / -9 with the centre set to 1.",
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


def preset(name: str) -> torch.Tensor:
    """A fresh 2-D float32 kernel for ``name``."""
    try:
        return PRESETS[name]()
    except KeyError:
        raise ValueError(f"unknown kernel preset {name!r} "
                         f"(available: {', '.join(PRESETS)})") from None


def fit_kernel(kernel: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Centre ``kernel`` in a zero kernel of ``size`` (or crop its centre if larger)."""
    out = torch.zeros(size, dtype=torch.float32)
    kh, kw = kernel.shape
    h, w = size
    # Offsets into source (s) and destination (d) along each axis.
    sy, dy = max(0, (kh - h) // 2), max(0, (h - kh) // 2)
    sx, dx = max(0, (kw - w) // 2), max(0, (w - kw) // 2)
    ch, cw = min(h, kh), min(w, kw)
    out[dy:dy + ch, dx:dx + cw] = kernel[sy:sy + ch, sx:sx + cw]
    return out


# --- initialisation --------------------------------------------------------------------------

INIT_SCHEMES = ("kaiming_normal", "kaiming_uniform", "xavier_normal", "xavier_uniform",
                "normal", "constant", "torch_default")
DEFAULT_INIT = {"scheme": "kaiming_normal", "seed": 0}


def check_init(init: object) -> dict:
    """Validate an ``init`` object from a pipeline file; returns it completed."""
    if not isinstance(init, dict):
        raise ValueError("init must be an object like {\"scheme\": \"kaiming_normal\", "
                         "\"seed\": 0}")
    unknown = set(init) - {"scheme", "seed", "mean", "std", "value"}
    if unknown:
        raise ValueError(f"unknown init field(s): {', '.join(sorted(unknown))}")
    out = {"scheme": init.get("scheme", "kaiming_normal"), "seed": init.get("seed", 0)}
    if out["scheme"] not in INIT_SCHEMES:
        raise ValueError(f"init scheme must be one of {', '.join(INIT_SCHEMES)}, "
                         f"not {out['scheme']!r}")
    seed = out["seed"]
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ValueError(f"init seed must be a non-negative integer, not {seed!r}")
    if out["scheme"] == "normal":
        out["mean"] = _finite(init.get("mean", 0.0), "mean")
        out["std"] = _finite(init.get("std", 0.01), "std")
        if out["std"] < 0:
            raise ValueError("init std must not be negative")
    if out["scheme"] == "constant":
        out["value"] = _finite(init.get("value", 0.0), "value")
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


def init_expression(init: dict, target: str, generator: str) -> str:
    """The torch call that ``apply_init`` makes, as source text (used by the code export)."""
    s = init["scheme"]
    if s == "kaiming_normal":
        return f"nn.init.kaiming_normal_({target}, generator={generator})"
    if s == "kaiming_uniform":
        return f"nn.init.kaiming_uniform_({target}, generator={generator})"
    if s == "xavier_normal":
        return f"nn.init.xavier_normal_({target}, generator={generator})"
    if s == "xavier_uniform":
        return f"nn.init.xavier_uniform_({target}, generator={generator})"
    if s == "normal":
        return (f"nn.init.normal_({target}, mean={init['mean']!r}, std={init['std']!r}, "
                f"generator={generator})")
    if s == "constant":
        return f"nn.init.constant_({target}, {init['value']!r})"
    raise ValueError(s)


@torch.no_grad()
def apply_init(module: nn.Module, init: dict) -> None:
    """Deterministically initialise ``module`` on the CPU.

    Conv2d/Linear weights get the scheme (seeded generator), their biases zero;
    ``torch_default`` runs torch's own ``reset_parameters`` under the seed. Other modules (norm
    layers) keep torch's deterministic defaults.
    """
    weight = getattr(module, "weight", None)
    if init["scheme"] == "torch_default":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init["seed"])
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
        return
    if not isinstance(module, nn.Conv2d | nn.Linear) or not isinstance(weight, torch.Tensor):
        return  # norm layers: torch's ones/zeros are already deterministic
    g = torch.Generator().manual_seed(init["seed"])
    s = init["scheme"]
    if s == "kaiming_normal":
        nn.init.kaiming_normal_(weight, generator=g)
    elif s == "kaiming_uniform":
        nn.init.kaiming_uniform_(weight, generator=g)
    elif s == "xavier_normal":
        nn.init.xavier_normal_(weight, generator=g)
    elif s == "xavier_uniform":
        nn.init.xavier_uniform_(weight, generator=g)
    elif s == "normal":
        nn.init.normal_(weight, mean=init["mean"], std=init["std"], generator=g)
    else:
        nn.init.constant_(weight, init["value"])
    bias = getattr(module, "bias", None)
    if isinstance(bias, torch.Tensor):
        bias.zero_()

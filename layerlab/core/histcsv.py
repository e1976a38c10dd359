"""A stage's histogram as CSV: bin edges, the stage's counts and every channel's counts.

One row per bin::

    bin_lo,bin_hi,stage,ch0,ch1,...
    -0.5,-0.4375,12,3,9,...

Bins are numpy's: ``bins`` equal bins over the finite [min, max] of the whole stage, each
``[bin_lo, bin_hi)`` except the last, which includes ``bin_hi``; every channel uses the same
edges. ``stage`` equals ``np.histogram(values, bins)`` on the stage's finite values, ``chK``
the same on channel K (so the channel columns add up to ``stage``); NaN and inf are not
counted. Edges are written with every digit (``repr`` of the float64 edge), so they are the
exact numbers the values were compared with. A vector stage (N,) is one channel.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from . import safeio
from .tensor_stats import histogram

HISTOGRAM_FILE = "histogram.csv"
DEFAULT_BINS = 64
MAX_BINS = 1 << 16


def histogram_table(tensor: torch.Tensor, bins: int = DEFAULT_BINS
                    ) -> tuple[np.ndarray, np.ndarray]:
    """``(edges (bins + 1,) float64, counts (C, bins) int64)`` of a stage (with or without
    its batch dimension of one)."""
    if not 1 <= int(bins) <= MAX_BINS:
        raise ValueError(f"bins must be 1 to {MAX_BINS}, not {bins}")
    t = torch.as_tensor(tensor).detach()
    if t.dim() == 4 or (t.dim() == 2 and t.shape[0] == 1):
        t = t[0]
    if t.dim() == 2:  # a 2-D stage (A, B) is one channel, as its PNG
        t = t.unsqueeze(0)
    counts, edges = histogram(t, int(bins), per_channel=True)
    return edges, counts.reshape(-1, int(bins))


def histogram_csv(tensor: torch.Tensor, bins: int = DEFAULT_BINS) -> str:
    """The CSV text (see the module docstring)."""
    edges, counts = histogram_table(tensor, bins)
    header = ["bin_lo", "bin_hi", "stage"] + [f"ch{k}" for k in range(counts.shape[0])]
    lines = [",".join(header)]
    total = counts.sum(axis=0)
    for i in range(counts.shape[1]):
        cells = [repr(float(edges[i])), repr(float(edges[i + 1])), str(int(total[i]))]
        cells += [str(int(c)) for c in counts[:, i]]
        lines.append(",".join(cells))
    return "\n".join(lines) + "\n"


def write_histogram_csv(tensor: torch.Tensor, path: str | os.PathLike,
                        bins: int = DEFAULT_BINS) -> Path:
    """Write :func:`histogram_csv` to ``path`` atomically (temporary file + rename)."""
    p = Path(path)
    safeio.write_file(p, histogram_csv(tensor, bins).encode("ascii"))
    return p

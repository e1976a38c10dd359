"""The plain script ``layerlab bench`` compares exports with: what a user would write with
torch and Pillow alone, run in a process of its own.

It writes the same files as ``layerlab export`` (every channel and the grid of every stage,
``channel`` normalisation, gray PNGs) one after the other with Pillow's default PNG settings.
``python -m layerlab.bench.plain_export IMAGE|FOLDER PIPELINE OUT`` prints its time and peak
memory as JSON. The stack is rebuilt as the tutorials' NCHW ``nn.Sequential`` and the stage
folder names are taken from LayerLab, outside the timed part.
"""

from __future__ import annotations

import json
import math
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn


def to_u8(t: torch.Tensor) -> np.ndarray:
    """(C, H, W) float -> uint8: each channel's min..max to 0..255, rounded half up."""
    c = t.shape[0]
    flat = t.reshape(c, -1)
    lo = flat.min(dim=1).values.reshape(c, 1, 1)
    span = flat.max(dim=1).values.reshape(c, 1, 1) - lo
    span = torch.where(span == 0, 1.0, span)
    return ((t - lo) / span * 255 + 0.5).clamp(0, 255).to(torch.uint8).numpy()


def grid(u8: np.ndarray, gutter: int = 2) -> np.ndarray:
    c, h, w = u8.shape
    cols = math.ceil(math.sqrt(c))
    rows = math.ceil(c / cols)
    out = np.zeros((rows * (h + gutter) - gutter, cols * (w + gutter) - gutter), np.uint8)
    for k in range(c):
        y, x = (k // cols) * (h + gutter), (k % cols) * (w + gutter)
        out[y:y + h, x:x + w] = u8[k]
    return out


def export_one(image: Path, model: nn.Sequential, mode: str, dirs: list[str], out: Path) -> None:
    img = Image.open(image).convert("RGB" if mode == "rgb" else "L")
    a = np.array(img)  # a writable copy, as ToTensor makes
    x = torch.from_numpy(a.reshape(*a.shape[:2], -1)).permute(2, 0, 1).float().div(255)[None]
    stages = [x]
    with torch.no_grad():
        for layer in model:
            x = layer(x)
            stages.append(x)
    out.mkdir()
    for name, t in zip(dirs, stages, strict=True):
        folder = out / name
        folder.mkdir()
        u8 = to_u8(t[0])
        for k in range(u8.shape[0]):
            Image.fromarray(u8[k]).save(folder / f"ch-{k:03d}.png")
        Image.fromarray(grid(u8)).save(folder / "grid.png")


def main(argv: list[str]) -> int:
    source, pipeline_file, out = (Path(a) for a in argv)
    from ..core.export import stage_dir_name
    from ..core.pipeline import Pipeline
    from . import tutorial_sequential

    pipeline = Pipeline.load(pipeline_file)
    model = tutorial_sequential(pipeline)
    dirs = [stage_dir_name(i, n) for i, n in enumerate(pipeline.stage_names())]
    images = sorted(p for p in source.iterdir() if not p.name.startswith(".")) \
        if source.is_dir() else [source]
    t = time.perf_counter()
    if source.is_dir():
        out.mkdir()
        for p in images:
            export_one(p, model, pipeline.input.mode, dirs, out / p.stem)
    else:
        export_one(source, model, pipeline.input.mode, dirs, out)
    print(json.dumps({"s": time.perf_counter() - t, "images": len(images),
                      "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                      "threads": torch.get_num_threads(), "pid": os.getpid()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

"""The export scenarios of ``layerlab bench``: ``photo-12mp`` and ``batch-50``.

LayerLab's export and the plain script (:mod:`layerlab.bench.plain_export`: torch and
Pillow, one file after the other, Pillow's default PNG settings) each run in a process of
their own, on the same files in the same bench run, so each one's peak memory is its own.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from ..core import resources
from ..core.engine import Engine
from ..core.imageio import load_image, to_tensor
from . import OPTIONS, Scenario, _p95, _r, four_stage_pipeline


def _photo_file(path: Path, size: tuple[int, int], seed: int, sample: str = "astronaut.jpg"
                ) -> Path:
    """A JPEG of ``size`` (W, H) from a bundled sample, with sensor-like noise."""
    src = load_image(resources.sample(sample)).image.convert("RGB")
    rng = np.random.default_rng(seed)
    w, h = src.size
    crop = int(min(w, h) * rng.uniform(0.6, 1.0))
    x0, y0 = int(rng.integers(0, w - crop + 1)), int(rng.integers(0, h - crop + 1))
    big = src.crop((x0, y0, x0 + crop, y0 + crop)).resize(size)
    noise = rng.integers(-12, 12, (size[1], size[0], 3), dtype=np.int16)
    arr = np.clip(np.asarray(big, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
    Image.fromarray(arr).save(path, quality=90)
    return path


def _child(module: str, *args: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", module, *args], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise RuntimeError((proc.stderr.strip().splitlines() or [f"{module} failed"])[-1])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _ours(source: Path, pipe: Path, out: Path) -> dict:
    return _child("layerlab.bench.export_child", str(source), str(pipe), str(out), "1",
                  OPTIONS["device"])


def _plain(source: Path, pipe: Path, out: Path) -> dict:
    return _child("layerlab.bench.plain_export", str(source), str(pipe), str(out))


def bench_photo_12mp(quick: bool) -> Scenario:
    goal = "preview <= 300 ms, ratio_export <= 0.25, peak RSS < 3072 MB"
    with tempfile.TemporaryDirectory() as tmp:
        path = _photo_file(Path(tmp) / "photo-4000x3000.jpg", (4000, 3000), 0)
        pipe_path = Path(tmp) / "four-stage.layerlab.json"
        four_stage_pipeline().save(pipe_path)
        engine = Engine(OPTIONS["device"])
        pipeline = four_stage_pipeline()
        samples = []
        for _ in range(3 if quick else 7):
            t = time.perf_counter()
            preview = load_image(path, draft_size=(1024, 1024))
            engine.forget_outputs()
            results = engine.run_all(pipeline, to_tensor(preview.image, "rgb"))
            samples.append((time.perf_counter() - t) * 1000)
        extra: dict = {"preview_shape": list(results[0].shape)}
        ours: list[float] = []
        plain: list[float] = []
        rss: list[float] = []
        for k in range(1 if quick else 2):  # alternated, each in a process of its own
            o = _ours(path, pipe_path, Path(tmp) / f"export-{k}")
            ours.append(o["s"] * 1000)
            rss.append(o["rss"] / 1024)
            plain.append(_plain(path, pipe_path, Path(tmp) / f"plain-{k}")["s"] * 1000)
        export_ms, plain_ms = statistics.median(ours), statistics.median(plain)
        extra.update({"export_ms": _r(export_ms, 1), "plain_export_ms": _r(plain_ms, 1),
                      "ratio_export": _r(export_ms / plain_ms, 3),
                      "export_peak_rss_mb": _r(max(rss), 1)})
    return Scenario("photo-12mp", statistics.median(samples), None, _p95(samples), goal, extra)


SAMPLES = ("astronaut.jpg", "chelsea.jpg", "camera.png")


def bench_batch(n: int) -> Scenario:
    """``n`` photos of 1024 x 768 through four-stage: the batch export against the plain
    script looping over them; milliseconds for all ``n``."""
    goal = "ratio <= 0.50 (>= 2x the images per second)"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        folder.mkdir()
        for k in range(n):
            _photo_file(folder / f"photo-{k:03d}.jpg", (1024, 768), k,
                        SAMPLES[k % len(SAMPLES)])
        pipe_path = Path(tmp) / "four-stage.layerlab.json"
        four_stage_pipeline().save(pipe_path)
        o = _ours(folder, pipe_path, Path(tmp) / "ours")
        p = _plain(folder, pipe_path, Path(tmp) / "plain")
    ours_ms, plain_ms = o["s"] * 1000, p["s"] * 1000
    return Scenario("batch-50" if n == 50 else f"batch-{n}", ours_ms, plain_ms, None, goal,
                    {"images": n, "images_per_s": _r(n / o["s"]),
                     "plain_images_per_s": _r(n / p["s"]),
                     "peak_rss_mb": _r(o["rss"] / 1024, 1)})

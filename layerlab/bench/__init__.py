"""`layerlab bench`: the performance table, each scenario beside its baseline in one run.

Every timed scenario alternates LayerLab and its baseline after a warm-up, so both see the same
machine state; the table reports medians, LayerLab's p95 and the ratio of the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..core import render, render_cpu, resources
from ..core.engine import Engine
from ..core.imageio import load_image, to_tensor
from ..core.kernels import preset
from ..core.pipeline import InputSpec, Pipeline, new_layer

RESOURCES = resources.root()  # installed package data, or the checkout's resources/


@dataclass
class Scenario:
    name: str
    layerlab_ms: float | None
    baseline_ms: float | None = None
    p95_ms: float | None = None
    goal: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.layerlab_ms is None or not self.baseline_ms:
            return None
        return self.layerlab_ms / self.baseline_ms

    def to_dict(self) -> dict:
        return {"name": self.name, "layerlab_ms": _r(self.layerlab_ms),
                "baseline_ms": _r(self.baseline_ms), "ratio": _r(self.ratio, 3),
                "p95_ms": _r(self.p95_ms), "goal": self.goal, **self.extra}


def _r(v: float | None, digits: int = 2) -> float | None:
    return None if v is None else round(v, digits)


def _p95(samples: list[float]) -> float:
    return float(np.percentile(samples, 95))


def time_pair(layerlab: Callable[[], object], baseline: Callable[[], object] | None,
              repeats: int, warmup: int = 3) -> tuple[list[float], list[float]]:
    """Alternate the two callables; returns per-call milliseconds for each."""
    for _ in range(warmup):
        layerlab()
        if baseline:
            baseline()
    a: list[float] = []
    b: list[float] = []
    for _ in range(repeats):
        t = time.perf_counter()
        layerlab()
        a.append((time.perf_counter() - t) * 1000)
        if baseline:
            t = time.perf_counter()
            baseline()
            b.append((time.perf_counter() - t) * 1000)
    return a, b


def time_many(fns: list[Callable[[], object]], repeats: int, warmup: int = 3
              ) -> list[list[float]]:
    """Alternate the callables, the order rotating each round (none always runs right after
    the same other one); per-call milliseconds for each."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    out: list[list[float]] = [[] for _ in fns]
    for r in range(repeats):
        for j in range(len(fns)):
            k = (j + r) % len(fns)
            t = time.perf_counter()
            fns[k]()
            out[k].append((time.perf_counter() - t) * 1000)
    return out


OPTIONS = {"device": "cpu"}  # set by main(): where the engine scenarios run


def _device() -> torch.device:
    return torch.device(OPTIONS["device"])


def _synced(fn: Callable[[], object]) -> Callable[[], object]:
    """``fn`` that returns only once the device has finished its work."""
    if _device().type != "cuda":
        return fn

    def run() -> object:
        out = fn()
        torch.cuda.synchronize()
        return out
    return run


def _photo(mode: str, size: int) -> torch.Tensor:
    """A real photo (bundled sample) at size x size in the ToTensor convention."""
    name = "camera.png" if mode == "gray" else "astronaut.jpg"
    image = load_image(resources.sample(name)).image
    image = image.resize((size, size)) if image.size != (size, size) else image
    return to_tensor(image, mode)


def seed_sharpen_pipeline() -> Pipeline:
    conv = new_layer("Conv2d", (1, 512, 512), out_channels=1, kernel_size=3, stride=1,
                     padding=1, bias=False)
    conv = conv.with_param("weight", preset("tutorial sharpen").reshape(1, 1, 3, 3).numpy())
    return Pipeline(InputSpec("gray"), (conv,))


def four_stage_pipeline(size: int = 512) -> Pipeline:
    return Pipeline(InputSpec("rgb"), (
        new_layer("Conv2d", (3, size, size), out_channels=16, kernel_size=3, padding=1),
        new_layer("ReLU"),
        new_layer("MaxPool2d", kernel_size=2),
        new_layer("Conv2d", (16, size // 2, size // 2), out_channels=16, kernel_size=3,
                  padding=1)))


def cifar_pipeline() -> Pipeline:
    return Pipeline(InputSpec("rgb", (32, 32)), (
        new_layer("Conv2d", (3, 32, 32), out_channels=32, kernel_size=5, stride=1, padding=2),
        new_layer("MaxPool2d", kernel_size=2),
        new_layer("Conv2d", (32, 16, 16), out_channels=32, kernel_size=5, stride=1, padding=2),
        new_layer("MaxPool2d", kernel_size=2),
        new_layer("Conv2d", (32, 8, 8), out_channels=64, kernel_size=5, stride=1, padding=2),
        new_layer("MaxPool2d", kernel_size=2),
        new_layer("Flatten"),
        new_layer("Linear", (1024,), out_features=64),
        new_layer("Linear", (64,), out_features=10)))


def tutorial_sequential(pipeline: Pipeline, device: str = "cpu") -> nn.Module:
    """The same layers and weights as an NCHW nn.Sequential, the way the tutorials run them."""
    nchw = Engine(device, channels_last=False)
    return nn.Sequential(*[nchw.build_module(layer) for layer in pipeline.layers]).eval()


def best_torch(pipeline: Pipeline, x: torch.Tensor) -> Callable[[], object]:
    """The fastest plain torch form of the same layers that keeps every stage (as the window
    needs them): channels_last modules and input on the CPU, inference mode."""
    cl = _device().type == "cpu"
    modules = [Engine(str(_device()), channels_last=cl).build_module(layer)
               for layer in pipeline.layers]
    x = x.to(_device())
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if cl:
        x = x.contiguous(memory_format=torch.channels_last)

    def run() -> object:
        with torch.inference_mode():
            outs = [x]
            y = x
            for m in modules:
                y = m(y)
                outs.append(y)
            return outs
    return _synced(run)


def _full_run(engine: Engine, pipeline: Pipeline, x: torch.Tensor) -> Callable[[], object]:
    def run() -> object:
        engine.forget_outputs()
        return engine.run_all(pipeline, x)
    return _synced(run)


def _baseline(model: nn.Module, x: torch.Tensor) -> Callable[[], object]:
    def run() -> object:
        with torch.no_grad():
            return model(x)
    return _synced(run)


def bench_engine(name: str, pipeline: Pipeline, x: torch.Tensor, repeats: int,
                 goal: str = "", best: bool = False) -> Scenario:
    """LayerLab's engine against the tutorial NCHW nn.Sequential (the baseline) and, with
    ``best``, also against the best plain torch form (:func:`best_torch`)."""
    engine = Engine(str(_device()))
    model = tutorial_sequential(pipeline, str(_device()))
    x = x.to(_device())
    if pipeline.input.resize:
        from torchvision.transforms.functional import resize
        base_x = resize(x, list(pipeline.input.resize), antialias=True)
    else:
        base_x = x
    ours = engine.run_all(pipeline, x)[-1].output
    ref = _baseline(model, base_x)()
    diff = float((ours.float() - ref).abs().max())
    fns = [_full_run(engine, pipeline, x), _baseline(model, base_x)]
    if best:
        fns.append(best_torch(pipeline, x))
        diff_best = float((ours.float() - fns[2]()[-1].float()).abs().max())
    times = time_many(fns, repeats)
    a, b = times[0], times[1]
    extra: dict = {}
    if best:
        best_ms = statistics.median(times[2])
        extra = {"best_torch_ms": _r(best_ms),
                 "ratio_best_torch": _r(statistics.median(a) / best_ms, 3),
                 "max_abs_diff_best_torch": diff_best}
    return Scenario(name, statistics.median(a), statistics.median(b), _p95(a), goal,
                    {**extra, "max_abs_diff": diff})


def bench_edit_last(x: torch.Tensor, repeats: int) -> Scenario:
    pipeline = four_stage_pipeline()
    engine = Engine(str(_device()))
    x = x.to(_device())
    last = len(pipeline.layers) - 1
    weight = engine.build_module(pipeline.layers[last]).weight.detach().cpu().numpy().copy()
    state = {"v": 0}

    def edit() -> object:
        state["v"] += 1
        w = weight.copy()
        w[0, 0, 1, 1] = 0.001 * state["v"]
        edited = pipeline.replace_layer(last, pipeline.layers[last].with_param("weight", w))
        return engine.run_all(edited, x)

    engine.run_all(pipeline, x)
    full_engine = Engine(str(_device()))
    a, b = time_pair(_synced(edit), _full_run(full_engine, pipeline, x), repeats)
    recomputed = sum(not r.cached for r in engine.run_all(
        pipeline.replace_layer(last, pipeline.layers[last].with_param("weight", weight)), x))
    return Scenario("edit-last-512", statistics.median(a), statistics.median(b), _p95(a),
                    "ratio <= 0.40", {"stages_recomputed": recomputed - 1})


def bench_render(repeats: int) -> Scenario:
    render_cpu.compile_kernels(wait=True)  # as in the window once its first run is done
    x = _photo("rgb", 256)
    layer = new_layer("Conv2d", (3, 256, 256), out_channels=16, kernel_size=3, padding=1)
    pipeline = Pipeline(InputSpec("rgb"), (layer,))
    engine = Engine(str(_device()))
    x = x.to(_device())
    stage = engine.run_all(pipeline, x)[-1].output[0]

    def draw() -> object:  # what an edit waits for: the pictures (numbers follow them)
        return render.render_stage(stage, "channel", "viridis", stats=False)

    def draw_all() -> object:  # pictures, histograms and statistics in one go (an export)
        return render.render_stage(stage, "channel", "viridis")

    a, b, c = time_many([draw, _full_run(engine, pipeline, x), draw_all], repeats)
    return Scenario("render-16x256", statistics.median(a), statistics.median(b), _p95(a),
                    "ratio <= 1", {"with_stats_ms": _r(statistics.median(c)),
                                   "ratio_with_stats": _r(statistics.median(c)
                                                          / statistics.median(b))})


def bench_gui_edit(repeats: int) -> Scenario:
    """The real main window, offscreen: kernel cell edited -> new pixels in the view."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    proc = subprocess.run([sys.executable, "-m", "layerlab.bench.gui", str(repeats)],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        err = (proc.stderr.strip().splitlines() or ["failed"])[-1]
        return Scenario("gui-edit-512", None, goal="ratio <= 2 (median), p95_ratio <= 4",
                        extra={"error": err})
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    samples, floor = out["samples"], statistics.median(out["floor"])
    return Scenario("gui-edit-512", statistics.median(samples), floor, _p95(samples),
                    "ratio <= 2 (median), p95_ratio <= 4",
                    {"p95_ratio": _r(_p95(samples) / floor, 3)})


def bench_startup(repeats: int) -> Scenario:
    """Process start to the window's first paint and to the first feature maps shown
    (offscreen, as a subprocess), beside ``python -c "import torch"`` (the baseline)."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "LAYERLAB_EXIT_AFTER_FIRST_RESULT": "1",
           "LAYERLAB_SETTINGS_DIR": tempfile.mkdtemp(prefix="layerlab-bench-")}
    goal = "first maps <= 1.3x import torch, window <= 0.5x"
    first: list[float] = []
    window: list[float] = []
    imports: list[float] = []
    error = None
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import torch"], check=True, timeout=120)
        imports.append((time.perf_counter() - t) * 1000)
        t = time.time()  # the child reports its marks on the same wall clock
        proc = subprocess.run([sys.executable, "-m", "layerlab"], capture_output=True,
                              text=True, env=env, timeout=120)
        marks = dict(line.split()[:2] for line in proc.stdout.splitlines()
                     if line.startswith(("first-result ", "window-shown ")))
        if proc.returncode != 0 or "first-result" not in marks:
            error = (proc.stderr.strip().splitlines() or ["no result shown"])[-1]
            break
        first.append((float(marks["first-result"]) - t) * 1000)
        if "window-shown" in marks:
            window.append((float(marks["window-shown"]) - t) * 1000)
    if not first:
        return Scenario("startup", None, goal=goal, extra={"error": error})
    base = statistics.median(imports)
    extra: dict = {"window_ms": None, "ratio_window": None}
    if window:
        extra = {"window_ms": _r(statistics.median(window)),
                 "ratio_window": _r(statistics.median(window) / base, 3)}
    return Scenario("startup", statistics.median(first), base, _p95(first), goal, extra)


RESNET18_SELECTED = "layer4.1.conv2"  # the stage the window is taken to show: the last conv


def bench_resnet18(repeats: int) -> Scenario:
    """resnet18's model view as the window's worker draws it with one stage selected (the
    last conv, ``RESNET18_SELECTED``): every stage computed; the stages the window shows
    (``Session.shown_stages``: the selected one, the one before it, the input) and the vector
    stages drawn in full (pictures, exact values, histograms and statistics), every other
    stage as a thumbnail from a downsampled tensor (``core.stage_draw``). Against the plain
    ``model(x)`` forward of the same module on the same preprocessed input."""
    from ..core import stage_draw
    from ..core.models import open_model, preprocess, run_model

    opened = open_model("resnet18")  # seeded random weights: nothing to download
    photo = _photo("rgb", 224)
    device = _device()
    results = run_model(opened, photo, device=device)
    selected = next(r.index for r in results if r.name == RESNET18_SELECTED)
    shown = frozenset({0, selected - 1, selected})

    def layerlab() -> object:
        drawn = []
        for result in run_model(opened, photo, device=device):
            x = stage_draw.stage_tensor(result.output)
            if not stage_draw.needs_full(result.index, x, shown):
                drawn.append(stage_draw.thumbnail(x, "channel", "gray"))
                continue
            rendered, values = stage_draw.full_view(x, "channel", "gray", 64)
            thumb = None if rendered.vector is not None else stage_draw.thumbnail_of(rendered)
            drawn.append((render.add_stats(rendered, x), values, thumb))
        return drawn

    with torch.inference_mode():
        _, x = preprocess(opened, photo.to(device))

    def plain() -> object:
        with torch.inference_mode():
            return opened.module(x)

    full = sum(stage_draw.needs_full(r.index, stage_draw.stage_tensor(r.output), shown)
               for r in results)
    diff = float((results[-1].output - plain()).abs().max())
    a, b = time_pair(_synced(layerlab), _synced(plain), repeats)
    return Scenario("resnet18-224", statistics.median(a), statistics.median(b), _p95(a),
                    "ratio <= 3", {"stages": len(results), "selected": RESNET18_SELECTED,
                                   "full_views": full, "max_abs_diff": diff})


SCENARIOS = ("seed-sharpen-512", "four-stage-512", "cifar-tutorial-32", "edit-last-512",
             "render-16x256", "gui-edit-512", "startup", "photo-12mp", "batch-50",
             "resnet18-224")


def run_all(quick: bool, only: list[str] | None = None) -> list[Scenario]:
    from . import exports

    reps = 15 if quick else 60
    scenarios: list[tuple[str, Callable[[], Scenario]]] = [
        ("seed-sharpen-512", lambda: bench_engine(
            "seed-sharpen-512", seed_sharpen_pipeline(), _photo("gray", 512), reps)),
        ("four-stage-512", lambda: bench_engine(
            "four-stage-512", four_stage_pipeline(), _photo("rgb", 512), reps,
            "ratio <= 0.50, ratio_best_torch <= 1.10", best=True)),
        ("cifar-tutorial-32", lambda: bench_engine(
            "cifar-tutorial-32", cifar_pipeline(), _photo("rgb", 512), reps * 2)),
        ("edit-last-512", lambda: bench_edit_last(_photo("rgb", 512), reps)),
        ("render-16x256", lambda: bench_render(reps)),
        ("gui-edit-512", lambda: bench_gui_edit(20 if quick else 60)),
        ("startup", lambda: bench_startup(2 if quick else 5)),
        ("photo-12mp", lambda: exports.bench_photo_12mp(quick)),
        ("batch-50", lambda: exports.bench_batch(50)),
        ("resnet18-224", lambda: bench_resnet18(10 if quick else 30)),
    ]
    assert tuple(name for name, _ in scenarios) == SCENARIOS
    out = []
    for name, fn in scenarios:
        if only and name not in only:
            continue
        try:
            out.append(fn())
        except Exception as e:  # one broken scenario must not hide the others
            out.append(Scenario(name, None, extra={"error": f"{type(e).__name__}: {e}"}))
    return out


def format_table(scenarios: list[Scenario]) -> str:
    def f(v: float | None, digits: int = 2) -> str:
        return "-" if v is None else f"{v:.{digits}f}"

    rows = [("scenario", "layerlab ms", "baseline ms", "ratio", "p95 ms", "goal", "notes")]
    for s in scenarios:
        notes = ", ".join(f"{k}={v}" for k, v in s.extra.items())
        rows.append((s.name, f(s.layerlab_ms), f(s.baseline_ms), f(s.ratio, 3), f(s.p95_ms),
                     s.goal, notes))
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    lines = []
    for k, r in enumerate(rows):
        lines.append("  ".join(c.ljust(widths[i]) if i < 6 else c for i, c in enumerate(r)))
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _threads(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}") \
            from None
    if not 1 <= n <= 1024:
        raise argparse.ArgumentTypeError(f"must be from 1 to 1024, not {n}")
    return n


def main(argv: list[str] | None = None) -> int:
    from ..console import UsageError, _Parser

    parser = _Parser(prog="layerlab bench", description=(
        "Time LayerLab's scenarios against their baselines, side by side in one run."))
    parser.add_argument("--quick", action="store_true", help="fewer repeats (under a minute)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--only", nargs="+", metavar="NAME",
                        help="run only these scenarios: " + ", ".join(SCENARIOS))
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="where the engine and export scenarios run (default cpu; cuda "
                             "needs a CUDA GPU; the window scenarios pick their own device)")
    parser.add_argument("--threads", type=_threads, metavar="N",
                        help="torch threads (default: torch's; the window uses one less than "
                             "the cores on small machines)")
    args = parser.parse_args(argv)
    unknown = [n for n in args.only or () if n not in SCENARIOS]
    if unknown:
        raise UsageError(f"unknown scenario {unknown[0]!r} for --only (known: "
                         f"{', '.join(SCENARIOS)})")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available here (torch "
                         f"{torch.__version__}); use --device cpu")
    OPTIONS["device"] = args.device
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    scenarios = run_all(args.quick, args.only)
    meta = {"torch": torch.__version__, "device": args.device, "threads": threads,
            "cpu_count": os.cpu_count()}
    if args.device == "cuda":
        meta["gpu"] = torch.cuda.get_device_name()
    from ..console import say

    if args.json:
        say(json.dumps({"scenarios": [s.to_dict() for s in scenarios], **meta}, indent=1))
    else:
        say(f"LayerLab bench: torch {meta['torch']}, device {args.device}"
            + (f" ({meta['gpu']})" if "gpu" in meta else "") + f", {threads} torch threads, "
            f"{meta['cpu_count']} cores")
        say(format_table(scenarios))
    return 0

"""Train the bundled digits network: a tutorial-style CNN on scikit-learn's 8 x 8 digits.

    python -m layerlab.tools.train_digits --out resources/pipelines/

writes ``digits-cnn.layerlab.json``, its tensors ``digits-cnn.safetensors`` and
``digits-cnn.training.json`` (the split, the settings and the held-out accuracy). Seeded: the
same torch and scikit-learn give the same weights. It takes about half a minute of one core.

How a digit becomes an image. ``load_digits`` gives 8 x 8 values 0..16, ink high. The
network is trained on exactly what LayerLab's input stage makes of a PNG of the digit:
dark ink on white paper, ``u8 = round(255 * (1 - v / 16))`` (so a photo of a digit written on
paper looks like the training data), read in gray mode (``ToTensor``: u8 / 255) and resized to
32 x 32 (antialiased bilinear, the pipeline's ``input.resize``). The held-out accuracy is
measured the same way: each test digit is a PNG-equivalent 8-bit image run through
LayerLab's engine, so the accuracy the test suite recomputes from the shipped files is
exactly the reported one.

scikit-learn is needed only here (and in the test): ``pip install scikit-learn``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from layerlab.core.engine import Engine
from layerlab.core.imageio import to_tensor
from layerlab.core.pipeline import InputSpec, Pipeline, new_layer

NAME = "digits-cnn"
SEED = 0
TEST_FRACTION = 0.2
EPOCHS = 30
BATCH = 32
LEARNING_RATE = 2e-3
SIZE = (32, 32)
CLASSES = tuple(str(d) for d in range(10))


def digit_image(values: np.ndarray) -> Image.Image:
    """The 8 x 8 digit (0..16, ink high) as the gray PNG LayerLab would read: dark ink on
    white, ``round(255 * (1 - v / 16))``."""
    u8 = np.rint(255.0 * (1.0 - np.asarray(values, np.float64).reshape(8, 8) / 16.0))
    return Image.fromarray(u8.astype(np.uint8), mode="L")


def split(n: int, seed: int = SEED, test_fraction: float = TEST_FRACTION
          ) -> tuple[np.ndarray, np.ndarray]:
    """The fixed train / held-out split: a seeded permutation, the last 20% held out."""
    order = np.random.default_rng(seed).permutation(n)
    n_test = int(round(n * test_fraction))
    return np.sort(order[:-n_test]), np.sort(order[-n_test:])


def load_digits_data() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise SystemExit("train_digits needs scikit-learn for its bundled digits data set: "
                         "pip install scikit-learn") from None
    data = load_digits()
    return data.images, data.target


def pipeline_skeleton() -> Pipeline:
    """The stack: the tutorials' pattern, Conv-ReLU-Pool twice, then Linear-ReLU-Linear."""
    shape = (1, *SIZE)
    layers = []
    for type_name, name, args in [
        ("Conv2d", "conv1", {"in_channels": 1, "out_channels": 8, "kernel_size": 5,
                             "padding": 2}),
        ("ReLU", "relu1", {}),
        ("MaxPool2d", "pool1", {"kernel_size": 2}),
        ("Conv2d", "conv2", {"in_channels": 8, "out_channels": 16, "kernel_size": 5,
                             "padding": 2}),
        ("ReLU", "relu2", {}),
        ("MaxPool2d", "pool2", {"kernel_size": 2}),
        ("Flatten", "flatten", {}),
        ("Linear", "fc1", {"in_features": 16 * 8 * 8, "out_features": 64}),
        ("ReLU", "relu3", {}),
        ("Linear", "fc2", {"in_features": 64, "out_features": 10}),
    ]:
        layers.append(replace(new_layer(type_name, shape, **args), name=name))
    return Pipeline(InputSpec("gray", SIZE), tuple(layers), CLASSES)


def torch_model(pipeline: Pipeline) -> nn.Sequential:
    """The same stack as torch modules (torch's default init, seeded by the caller)."""
    return nn.Sequential(*(layer.op.build(dict(layer.args)) for layer in pipeline.layers))


def inputs(images: np.ndarray) -> torch.Tensor:
    """(N, 1, 32, 32): each digit as LayerLab's input stage makes it from its PNG."""
    engine = Engine("cpu", channels_last=False)
    pipe = Pipeline(InputSpec("gray", SIZE))
    return torch.cat([engine.prepare_input(pipe, to_tensor(digit_image(v), "gray")).clone()
                      for v in images])


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Digits as people write them: smaller or larger, shifted, slanted, with thinner or
    thicker strokes (on the ink, 1 - x, so the paper stays white). Training only: the
    held-out accuracy is measured on the digits as they are."""
    n = x.shape[0]
    ink = 1.0 - x

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=gen)

    scale, angle = uniform(0.75, 1.25), uniform(-0.2, 0.2)
    shear = uniform(-0.25, 0.25)
    tx, ty = uniform(-0.15, 0.15), uniform(-0.15, 0.15)
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack([torch.stack([cos, -sin + shear, tx], 1),
                         torch.stack([sin, cos, ty], 1)], 1)
    grid = nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    ink = nn.functional.grid_sample(ink, grid, align_corners=False, padding_mode="zeros")
    stroke = torch.randint(0, 3, (n,), generator=gen)  # 0 as is, 1 thicker, 2 thinner
    thick = nn.functional.max_pool2d(ink, 3, 1, 1)
    thin = -nn.functional.max_pool2d(-ink, 3, 1, 1)
    ink = torch.where((stroke == 1)[:, None, None, None], thick,
                      torch.where((stroke == 2)[:, None, None, None], thin, ink))
    keep = (torch.rand(n, generator=gen) < 0.25)[:, None, None, None]  # some stay as they are
    return torch.where(keep, x, 1.0 - ink.clamp(0, 1))


def layerlab_predictions(pipeline: Pipeline, images: np.ndarray) -> np.ndarray:
    """The class LayerLab's engine gives each digit (the last stage's largest value)."""
    engine = Engine("cpu", channels_last=False)
    out = []
    for v in images:
        last = engine.run_all(pipeline, to_tensor(digit_image(v), "gray"), cache=False)[-1]
        out.append(int(torch.argmax(last.output[0])))
    return np.array(out)


def train(seed: int = SEED, epochs: int = EPOCHS, log=print) -> tuple[Pipeline, dict]:
    images, target = load_digits_data()
    train_idx, test_idx = split(len(images), seed)
    x = inputs(images)
    y = torch.from_numpy(target).long()
    skeleton = pipeline_skeleton()
    torch.manual_seed(seed)
    model = torch_model(skeleton)
    opt = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        order = torch.from_numpy(train_idx)[torch.randperm(len(train_idx), generator=gen)]
        total = 0.0
        for start in range(0, len(order), BATCH):
            batch = order[start:start + BATCH]
            loss = nn.functional.cross_entropy(model(augment(x[batch], gen)), y[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(batch)
        log(f"epoch {epoch + 1:2d}/{epochs}: loss {total / len(train_idx):.4f}")
    seconds = time.perf_counter() - t0
    layers = []
    for layer, module in zip(skeleton.layers, model, strict=True):
        for pname, tensor in module.state_dict().items():
            layer = layer.with_param(pname, tensor.detach().numpy())
        layers.append(layer)
    pipeline = Pipeline(skeleton.input, tuple(layers), CLASSES)
    predicted = layerlab_predictions(pipeline, images[test_idx])
    correct = int((predicted == target[test_idx]).sum())
    record = {
        "format": "layerlab.training", "version": 1,
        "pipeline": f"{NAME}.layerlab.json",
        "data": "sklearn.datasets.load_digits (1797 digits, 8 x 8, values 0..16)",
        "image": "u8 = round(255 * (1 - v / 16)), gray, resized to 32 x 32",
        "split": {"seed": seed, "test_fraction": TEST_FRACTION, "train": len(train_idx),
                  "test": len(test_idx)},
        "training": {"epochs": epochs, "batch": BATCH, "optimizer": "Adam",
                     "learning_rate": LEARNING_RATE, "seed": seed,
                     "augmentation": "3 of 4 digits per batch: scale 0.75..1.25, rotation "
                                     "+-0.2 rad, shear +-0.25, shift +-15%, strokes as they "
                                     "are, thicker or thinner (3 x 3 max pool on the ink)",
                     "torch_version": str(torch.__version__)},
        "test_correct": correct,
        "test_accuracy": correct / len(test_idx),
    }
    log(f"trained in {seconds:.1f} s; held-out accuracy {correct}/{len(test_idx)} = "
        f"{100 * correct / len(test_idx):.2f}% (through LayerLab's engine)")
    return pipeline, record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m layerlab.tools.train_digits",
        description="Train the bundled digits CNN and write its pipeline, tensors and record.")
    parser.add_argument("--out", type=Path, required=True, help="the folder to write into")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    args = parser.parse_args(argv)
    if not args.out.is_dir():
        parser.error(f"--out {args.out} is not a folder")
    # One thread: the net is small, so more threads mostly wait on each other (ten times
    # slower on a busy two-core machine), and one thread sums in a fixed order.
    torch.set_num_threads(1)
    pipeline, record = train(args.seed, args.epochs)
    pipeline.save(args.out / f"{NAME}.layerlab.json", tensors="external")
    (args.out / f"{NAME}.training.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {NAME}.layerlab.json, {NAME}.safetensors, {NAME}.training.json in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

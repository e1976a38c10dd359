"""What :func:`~layerlab.core.explain.explain` needs for a stage of a torchvision model.

In a model with branches the previous stage's output is not always a module's input (a
ResNet's ``downsample`` reads the block's input; ``fc`` reads the flattened pool), so the
module's actual input is recomputed: the model runs on the normalised input with a forward
pre-hook on that module, which keeps its input at the stage's call and ends the forward there.

    layer, params = module_layer(opened.module.get_submodule("layer1.0.conv1"))
    stage_input = module_input(opened, "layer1.0.conv1", 1, normalized)   # C x H x W
    explain(layer, params, stage_input, channel, y, x)
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .model_build import ModelError
from .model_edits import module_args
from .pipeline import LayerSpec


class _Caught(Exception):
    """Raised from the pre-hook: the input is kept, the rest of the forward is not needed."""


def module_layer(module: nn.Module) -> tuple[LayerSpec, dict[str, np.ndarray]]:
    """The module as a LayerLab layer spec (its type and constructor arguments) and its
    floating-point tensors (weights, biases, a norm's running statistics) by name.
    ModelError for a module type LayerLab has no spec of."""
    from .specs import OPS

    kind = type(module).__name__
    if kind not in OPS:
        raise ModelError(f"{kind} is not one of LayerLab's layers: its values are not "
                         f"explained")
    layer = LayerSpec(kind, module_args(module))
    params = {name: t.detach().to("cpu", torch.float32).numpy().copy()
              for name, t in module.state_dict().items() if t.is_floating_point()}
    return layer, params


def module_input(opened, path: str, call: int, normalized: np.ndarray | torch.Tensor
                 ) -> np.ndarray:
    """The input (float32, without the batch) of module ``path`` at its ``call``-th call when
    the model runs on ``normalized`` (the normalize stage's C x H x W values)."""
    module = opened.module.get_submodule(path)
    x = torch.as_tensor(np.asarray(normalized, np.float32)).unsqueeze(0)
    seen: list[torch.Tensor] = []
    calls = [0]

    def keep(_module, args):
        calls[0] += 1
        if calls[0] == call:
            seen.append(args[0].detach().clone())  # an in-place op may change it later
            raise _Caught

    handle = module.register_forward_pre_hook(keep)
    try:
        with torch.inference_mode():
            opened.module(x.to(opened.device))
    except _Caught:
        pass
    finally:
        handle.remove()
    if not seen:
        raise ModelError(f"{path} was not called {call} time(s) in the forward")
    return seen[0][0].to("cpu", torch.float32).numpy()

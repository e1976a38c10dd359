"""Pure edit helpers on layer specs: a layer's current weights, and keeping explicit weights
consistent when its arguments change.

Everything here works on immutable specs and returns new ones; nothing touches a window.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from .analysis import parameter_shapes
from .kernels import SCHEMES, init_tensor, torch_seeded
from .pipeline import LayerSpec, Pipeline
from .specs import SpecError

if TYPE_CHECKING:
    import torch

__all__ = ["adapt_in_channels", "fit_params", "follow_input_channels", "initial_state",
           "materialize"]


def initial_state(layer: LayerSpec) -> dict[str, torch.Tensor]:
    """The layer's floating-point tensors as the engine loads them: explicit ``params`` where
    given, else the spec's init rule (fresh CPU float32 tensors, safe to hand to a module).

    Seeded tensors are built alone through the init table (the fan of ``kaiming``/``xavier``
    comes from the tensor's shape, so the values equal the module's bit for bit);
    ``torch_default`` is torch's own ``reset_parameters``, whose exact random sequence only
    the module itself knows, so that one scheme builds the module on the CPU under the seed.
    """
    op = layer.op
    if not op.learnable:
        return {}
    import torch

    with torch.no_grad():
        return _initial_state(layer)


def _initial_state(layer: LayerSpec) -> dict[str, torch.Tensor]:
    import torch

    op = layer.op
    shapes = parameter_shapes(layer, op.normalize_args(layer.args))
    rule, init = op.init, dict(layer.init)
    out: dict[str, torch.Tensor] = {}
    # torch starts seeded layers' weight and bias random; under torch_default both come from
    # the module's reset_parameters (as the generated script does it).
    missing = [n for n in rule.seeded + rule.zeros
               if rule.seeded and n in shapes and n not in layer.params]
    if missing and SCHEMES[init["scheme"]].function is None:
        out = _torch_default_state(layer, shapes)
    for name, shape in shapes.items():
        if name in layer.params:
            out[name] = torch.from_numpy(np.array(layer.params[name], np.float32, copy=True))
        elif name in out:
            continue
        elif name in rule.seeded:
            out[name] = init_tensor(torch.empty(shape), init)
        elif name in rule.ones:
            out[name] = torch.ones(shape)
        elif rule.fill_value(name, layer.args) is not None:
            out[name] = torch.full(shape, rule.fill_value(name, layer.args))
        else:
            out[name] = torch.zeros(shape)
    return out


# torch_default's tensors of small layers, by structure and init: a kernel value typed keeps
# both, and building the module under its seed took about 0.5 ms of every edit's run (and as
# much again for the kernel editor). Copies go out: modules are handed them, and some train.
_DEFAULT_STATES: OrderedDict[str, dict[str, torch.Tensor]] = OrderedDict()
_DEFAULT_STATES_LOCK = threading.Lock()
_DEFAULT_STATE_MAX_VALUES = 1 << 20  # a larger layer is built each time, not kept
_DEFAULT_STATES_MAX_VALUES = 4 << 20  # all kept layers together (16 MB of float32)


def _torch_default_state(layer: LayerSpec, shapes: dict) -> dict[str, torch.Tensor]:
    """The module's own reset_parameters tensors under the layer's seed (fresh copies)."""
    key = layer.structure_key + json.dumps(layer.init, sort_keys=True)
    with _DEFAULT_STATES_LOCK:  # the worker's engine and the window's editors both ask
        kept = _DEFAULT_STATES.get(key)
        if kept is not None:
            _DEFAULT_STATES.move_to_end(key)
    if kept is None:
        with torch_seeded(layer.init["seed"]):
            module = layer.op.build(dict(layer.args))  # constructing runs reset_parameters
        kept = {k: v.detach() for k, v in module.state_dict().items() if k in shapes}
        if _values(kept) > _DEFAULT_STATE_MAX_VALUES:
            return kept
        with _DEFAULT_STATES_LOCK:
            _DEFAULT_STATES[key] = kept
            total = sum(_values(v) for v in _DEFAULT_STATES.values())
            while total > _DEFAULT_STATES_MAX_VALUES:
                total -= _values(_DEFAULT_STATES.popitem(last=False)[1])
    return {k: v.clone() for k, v in kept.items()}


def _values(state: dict[str, torch.Tensor]) -> int:
    return sum(v.numel() for v in state.values())


_MATERIALIZED: OrderedDict[str, dict[str, np.ndarray]] = OrderedDict()
_MATERIALIZED_MAX = 16  # the kernel editor asks on every repaint; keep a few layers


def materialize(layer: LayerSpec) -> dict[str, np.ndarray]:
    """The layer's current parameter values (explicit params or its seeded init), float32
    read-only arrays by name: exactly what the engine runs with."""
    if layer.op.learnable and set(parameter_shapes(layer)) <= set(layer.params):
        # Every tensor is in the spec (float32, read-only): those very arrays, without torch
        # and without a copy (a VGG's 9 MB kernels are shown on every repaint, and a cache of
        # copies would keep old versions alive).
        return {name: layer.params[name] for name in parameter_shapes(layer)}
    key = layer.key
    hit = _MATERIALIZED.get(key)
    if hit is not None:
        _MATERIALIZED.move_to_end(key)
        return hit
    out = {}
    arrays = {name: t.contiguous().numpy() for name, t in initial_state(layer).items()}
    for name, arr in arrays.items():
        arr.setflags(write=False)
        out[name] = arr
    _MATERIALIZED[key] = out
    while len(_MATERIALIZED) > _MATERIALIZED_MAX:
        _MATERIALIZED.popitem(last=False)
    return out


def _overlap_copy(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """``dst`` with the overlapping part of ``src`` copied in.

    For a conv weight (out, in, kh, kw) the kept channels get the old kernels centred in the
    new kernel size, zero-padded or cropped (like ``fit_kernel``); new channels keep ``dst``.
    """
    out = np.array(dst, dtype=np.float32, copy=True)
    lead = min(src.ndim, 2) if src.ndim == 4 else src.ndim
    keep = tuple(slice(0, min(a, b)) for a, b in zip(src.shape[:lead], dst.shape[:lead],
                                                      strict=True))
    if src.ndim != 4:
        out[keep] = src[keep]
        return out
    block = np.zeros(out[keep].shape, np.float32)
    s_idx, d_idx = [], []
    for n_src, n_dst in zip(src.shape[2:], dst.shape[2:], strict=True):
        n = min(n_src, n_dst)
        s0, d0 = (n_src - n) // 2, (n_dst - n) // 2
        s_idx.append(slice(s0, s0 + n))
        d_idx.append(slice(d0, d0 + n))
    block[(..., *d_idx)] = src[keep][(..., *s_idx)]
    out[keep] = block
    return out


def fit_params(layer: LayerSpec) -> tuple[LayerSpec, str | None]:
    """Keep explicit params consistent with the layer's (valid) arguments.

    A param whose shape no longer matches keeps its overlapping part (kernels centred and
    zero-padded, so a 3x3 kernel stays in the middle of a 5x5 one); new channels come from the
    seeded init. Returns the layer and a note for the status bar, or the layer unchanged when
    its arguments are invalid (the error is shown; nothing is thrown away).
    """
    if not layer.params:
        return layer, None
    try:
        shapes = parameter_shapes(layer, layer.op.normalize_args(layer.args))
    except SpecError:
        return layer, None
    wrong = [p for p, a in layer.params.items() if shapes.get(p) != tuple(a.shape)]
    if not wrong:
        return layer, None
    fresh = materialize(replace(layer, params={}))
    params = dict(layer.params)
    for pname in wrong:
        if pname not in shapes:
            del params[pname]
            continue
        arr = _overlap_copy(layer.params[pname], fresh[pname])
        arr.setflags(write=False)
        params[pname] = arr
    note = (f"{', '.join(wrong)} resized to the new shape (existing values kept, new channels "
            f"from the {layer.init.get('scheme', 'default')} init)")
    return replace(layer, params=params), note


def adapt_in_channels(layer: LayerSpec, channels: int) -> tuple[LayerSpec, str]:
    """The layer for ``channels`` input channels (its spec's ``channels`` rule) with the same
    response to gray.

    For a gray image (R = G = B) a kernel summed over the colour channels gives exactly the
    RGB kernel's output, and a gray kernel split into thirds over R, G, B gives the gray
    kernel's output on the image's channel mean. Ops without re-mixable kernels (norm layers)
    get their per-channel params fitted (kept where they overlap).
    """
    rule = layer.op.channels
    if rule is None:
        raise ValueError(f"{layer.type} has no argument that follows the input channels")
    old = layer.args[rule.arg]
    new = layer.with_args(**{rule.arg: channels})
    weight = layer.params.get("weight")
    if rule.weight_axis is None or weight is None:
        fitted, _ = fit_params(new)
        if weight is None and layer.op.init.seeded:
            how = "weights from the seeded init"
        elif layer.params:
            how = "params kept where they overlap"
        else:
            how = "default weights"
        return fitted, f"{rule.arg} {old} → {channels} ({how})"
    axis = rule.weight_axis
    if channels == 1:
        w = weight.sum(axis=axis, keepdims=True)
        how = "kernels summed over the colour channels"
    elif old == 1:
        w = np.repeat(weight, channels, axis=axis) / np.float32(channels)
        how = f"kernel split into {channels} equal parts, one per colour channel"
    else:
        w = np.repeat(weight.mean(axis=axis, keepdims=True), channels, axis=axis)
        how = "kernels averaged over the input channels"
    return new.with_param("weight", w.astype(np.float32)), f"{rule.arg} {old} → {channels}, {how}"


def follow_input_channels(pipeline: Pipeline, old_channels: int, channels: int
                          ) -> tuple[Pipeline, int | None, str | None]:
    """After the input's channel count changed: the first enabled layer, when its spec says
    an argument follows the input channels and it matched ``old_channels``, adapted.

    Returns the pipeline, the index of the adapted layer (or None) and a note.
    """
    for i, layer in pipeline.enabled_layers():
        rule = layer.op.channels
        if (rule is not None and layer.args.get(rule.arg) == old_channels
                and rule.applies(dict(layer.args))):
            adapted, how = adapt_in_channels(layer, channels)
            return pipeline.replace_layer(i, adapted), i, f"{layer.display_name(i)}: {how}"
        break
    return pipeline, None, None

"""Building torchvision classification models for :mod:`layerlab.core.models`: the names,
seeded random weights, the trained weights of torch's hub cache and state_dict files of the
user's (never downloaded). torchvision is imported inside the functions."""

from __future__ import annotations

import difflib
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .kernels import torch_seeded

__all__ = ["QUIET_KEYS", "RANDOM", "TRAINED", "ModelError", "WeightsReport", "check_name",
           "classification_models", "hub_weights_path"]

RANDOM = "random"  # seeded random weights (torch's own init after torch.manual_seed(seed))
TRAINED = "trained"  # the weights enum's DEFAULT file in torch's hub cache
QUIET_KEYS = ("num_batches_tracked",)  # counters evaluation never reads

_BUILD_LOCK = threading.Lock()  # builds patch torchvision's weights loader (see _build_trained)


class ModelError(ValueError):
    """A model that cannot be opened or run as asked; one clear message, nothing changed."""


@dataclass(frozen=True)
class WeightsReport:
    """What a weights file gave the model."""

    source: str  # the file name
    file: str  # the path as given
    applied: tuple[str, ...]  # keys loaded
    missing: tuple[str, ...] = ()  # model tensors the file has none for (kept as built)
    unexpected: tuple[str, ...] = ()  # file keys the model has no tensor for (ignored)
    trained: str | None = None  # the Weights enum when the file is torchvision's own

    def problems(self) -> list[str]:
        lines = []
        if self.unexpected:
            lines.append(f"{len(self.unexpected)} key(s) of {self.source} match no tensor of "
                         f"the model and are ignored: {_few(self.unexpected)}")
        if self.missing:
            lines.append(f"{len(self.missing)} tensor(s) of the model get nothing from "
                         f"{self.source} and keep their seeded random values: "
                         f"{_few(self.missing)}")
        return lines

    def to_manifest(self) -> dict[str, Any]:
        return {"file": self.file, "trained": self.trained, "applied": len(self.applied),
                "missing": list(self.missing), "unexpected": list(self.unexpected)}


def classification_models() -> list[str]:
    """torchvision's classification models (``list_models(module=torchvision.models)``)."""
    from torchvision import models

    return list(models.list_models(module=models))


def check_name(name: str) -> str:
    """``name`` if torchvision has that classification model, else ModelError naming the
    closest ones."""
    names = classification_models()
    if name in names:
        return name
    from torchvision import models

    if isinstance(name, str) and name in models.list_models():
        raise ModelError(f"{name} is a torchvision model but not a classification model; "
                         f"LayerLab opens the classification models (resnet18, vgg16, ...)")
    query = str(name).lower()
    close = [n for n in names if n.startswith(query)] if query else []
    close += [n for n in difflib.get_close_matches(query, names, n=5, cutoff=0.5)
              if n not in close]
    close = close[:5]
    hint = (f"close names: {', '.join(close)}" if close else
            f"known: {', '.join(sorted({n.rstrip('0123456789_').split('_')[0] for n in names}))}"
            " (e.g. resnet18, vgg16, mobilenet_v3_small)")
    raise ModelError(f"unknown model {str(name)[:60]!r}; {hint}")


def _default_weights(name: str):
    from torchvision import models

    return models.get_model_weights(name).DEFAULT


def hub_weights_path(name: str, weights_enum: Any = None) -> Path:
    """Where torchvision keeps the trained weights of ``name`` once downloaded:
    ``torch.hub.get_dir()/checkpoints/<file name of the url>``."""
    w = weights_enum if weights_enum is not None else _default_weights(check_name(name))
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(w.url)


def _enum_for(name: str, weights: str):
    """The Weights enum member ``weights`` names: TRAINED (DEFAULT) or a member name."""
    from torchvision import models

    enum = models.get_model_weights(name)
    if weights in (TRAINED, "DEFAULT"):
        return enum.DEFAULT
    members = {m.name: m for m in enum}
    if weights in members:
        return members[weights]
    raise ModelError(f"{name} has no weights called {weights!r}; it has "
                     f"{', '.join(members)} (or '{TRAINED}' for the default)")


def _is_enum_name(name: str, weights: str) -> bool:
    from torchvision import models

    return weights in (TRAINED, "DEFAULT") or weights in {
        m.name for m in models.get_model_weights(name)}


def _arch_kwargs(name: str, num_classes: int | None = None) -> dict[str, Any]:
    """What torchvision's builders change when they load trained weights, so that random and
    trained models have the same architecture and preprocessing (an input transform for
    GoogLeNet and Inception; the image size for ViT and MaxViT)."""
    w = _default_weights(name)
    kwargs: dict[str, Any] = {"num_classes": num_classes or len(w.meta["categories"])}
    if name in ("googlenet", "inception_v3"):
        kwargs.update(transform_input=True, aux_logits=False, init_weights=True)
    elif name.startswith("vit_"):
        kwargs["image_size"] = w.meta["min_size"][0]
    elif name == "maxvit_t":
        kwargs["input_size"] = w.meta["min_size"]
    return kwargs


def _build_on_meta(name: str, num_classes: int | None = None) -> nn.Module:
    """The architecture with no memory behind its tensors."""
    from torchvision import models

    kwargs = _arch_kwargs(name, num_classes)
    try:
        with torch.device("meta"):
            return models.get_model(name, **kwargs)
    except (NotImplementedError, RuntimeError):
        pass
    # Some builders compute their layout with tensors (RegNet's block widths), which the meta
    # device cannot give back as numbers: build on the CPU but put each new parameter and
    # buffer on the meta device as it is registered (nothing is initialised in memory).
    with _BUILD_LOCK, _tensors_on_meta():
        return models.get_model(name, **kwargs)


class _tensors_on_meta:
    def __enter__(self):
        self._param, self._buffer = nn.Module.register_parameter, nn.Module.register_buffer
        param, buffer = self._param, self._buffer

        def register_parameter(module, pname, p):
            param(module, pname, None if p is None else nn.Parameter(
                p.to("meta"), requires_grad=p.requires_grad))

        def register_buffer(module, bname, b, persistent=True):
            buffer(module, bname, None if b is None else b.to("meta"), persistent)

        nn.Module.register_parameter = register_parameter
        nn.Module.register_buffer = register_buffer
        return self

    def __exit__(self, *exc):
        nn.Module.register_parameter, nn.Module.register_buffer = self._param, self._buffer


def _eval(model: nn.Module) -> nn.Module:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _build_random(name: str, seed: int, num_classes: int | None = None) -> nn.Module:
    from torchvision import models

    with torch_seeded(seed):  # the caller's random state stays as it was
        return _eval(models.get_model(name, **_arch_kwargs(name, num_classes)))


def _enum_by_file(name: str, file_name: str):
    from torchvision import models

    for member in models.get_model_weights(name):
        if os.path.basename(member.url) == file_name:
            return member
    return None


def _read(path: Path) -> dict[str, torch.Tensor]:
    from .weights import WeightsError, read_state_dict

    try:
        state = read_state_dict(path)
    except WeightsError as e:
        raise ModelError(str(e)) from None
    return {k: torch.from_numpy(v) for k, v in state.items()}


def _build_trained(name: str, enum, path: Path, given: str) -> tuple[nn.Module, WeightsReport]:
    """torchvision's own builder with ``weights=enum``, fed the file read here (with
    ``weights_only=True``) instead of its downloader: its key fixes (DenseNet's old names)
    and architecture changes (GoogLeNet's input transform) apply exactly."""
    from torchvision import models

    state = _read(path)
    cls = type(enum)
    with _BUILD_LOCK:
        cls.get_state_dict = lambda self, *a, **k: state
        try:
            model = models.get_model(name, weights=enum)
        except RuntimeError as e:  # load_state_dict(strict=True) found other keys or shapes
            raise ModelError(f"{path.name}: does not fit {name}: "
                             f"{_first_line(e, 2)}") from None
        finally:
            del cls.get_state_dict
    return _eval(model), WeightsReport(path.name, given, tuple(state),
                                       trained=f"{cls.__name__}.{enum.name}")


def head_classes(name: str, state: Mapping[str, torch.Tensor]) -> int | None:
    """N when ``state`` is the model fine-tuned to N classes: the only tensors whose shapes
    differ are the classifier's, and only in their first (class) dimension."""
    own = _build_on_meta(name).state_dict()
    default = len(_default_weights(name).meta["categories"])
    differ = [k for k in state if k in own and tuple(state[k].shape) != tuple(own[k].shape)]
    if not differ or any(own[k].dim() == 0 or own[k].shape[0] != default
                         or tuple(state[k].shape[1:]) != tuple(own[k].shape[1:])
                         for k in differ):
        return None
    sizes = {int(state[k].shape[0]) for k in differ}
    return sizes.pop() if len(sizes) == 1 and min(sizes | {1}) >= 1 else None


def _load_file(name: str, seed: int, path: Path, given: str,
               state: dict[str, torch.Tensor] | None = None, num_classes: int | None = None
               ) -> tuple[nn.Module, WeightsReport]:
    """A state_dict of the user's onto ``name``: a shape that does not fit is an error
    (nothing loaded); keys the model lacks and tensors the file lacks are reported (those
    tensors keep seeded random values)."""
    state = _read(path) if state is None else state
    meta = _build_on_meta(name, num_classes)
    own = meta.state_dict()
    prefix = "module."  # nn.DataParallel's
    if state and all(k.startswith(prefix) for k in state) and not any(k in own for k in state):
        state = {k[len(prefix):]: v for k, v in state.items()}
    matched = [k for k in state if k in own]
    if not [k for k in matched if k.rsplit(".", 1)[-1] not in QUIET_KEYS]:
        raise ModelError(f"{path.name}: none of its {len(state)} key(s) is a tensor of {name} "
                         f"(the file has {_few(list(state), 3)}; {name} has "
                         f"{_few(list(own), 3)}); nothing loaded")
    bad = [k for k in matched if tuple(state[k].shape) != tuple(own[k].shape)]
    if bad:
        k = bad[0]
        more = f" (and {len(bad) - 1} more shape mismatch(es))" if len(bad) > 1 else ""
        raise ModelError(f"{path.name}: {k} has shape {list(state[k].shape)} but {name} needs "
                         f"{list(own[k].shape)}{more}; nothing loaded")
    missing = tuple(k for k in own if k not in state and k.rsplit(".", 1)[-1] not in QUIET_KEYS)
    unexpected = tuple(k for k in state if k not in own)
    tensors = {k: state[k].to(own[k].dtype) for k in matched}
    model = meta
    # A file with every tensor is put straight into the meta-built model (no random init to
    # throw away: seconds for VGG); otherwise the seeded model takes what the file has.
    if missing or len(tensors) < len(own) or not _assign(meta, tensors):
        model = _build_random(name, seed, num_classes)
        with torch.no_grad():
            model.load_state_dict(tensors, strict=False)
    return _eval(model), WeightsReport(path.name, given, tuple(matched), missing, unexpected)


def _assign(model: nn.Module, tensors: dict[str, torch.Tensor]) -> bool:
    """Load ``tensors`` into the meta-built ``model`` by assignment; False when some tensor
    (a buffer outside the state_dict) would stay without memory."""
    model.load_state_dict(tensors, strict=True, assign=True)
    return not any(t.is_meta for t in (*model.parameters(), *model.buffers()))


def _first_line(e: BaseException, lines: int = 1) -> str:
    text = str(e).strip()
    if not text:
        return type(e).__name__
    kept = [ln.strip() for ln in text.splitlines() if ln.strip()][:lines]
    return " ".join(kept)[:300]


def _few(items: Sequence[str] | Mapping, n: int = 5) -> str:
    items = list(items)
    shown = ", ".join(items[:n])
    return shown + (f", ... ({len(items) - n} more)" if len(items) > n else "")

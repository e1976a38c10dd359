"""The export folder: refused targets, the hidden folder an export is built in, and the final
rename (``layerlab export``, single images and batches)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from . import safeio


class ExportError(Exception):
    """The export could not be done; the message is one line, for the user."""


def check_target(out_dir: str | os.PathLike, overwrite: bool,
                 protect: list[str | os.PathLike] = ()) -> Path:
    """The absolute export folder for ``out_dir``, or :class:`ExportError` when it is empty,
    too long a name, the current folder or one above it, the home folder or one above it,
    ``/``, a folder holding one of the ``protect`` files (the image, the pipeline), an
    existing non-empty folder without ``overwrite``, or (with ``overwrite``) a folder that is
    not a LayerLab export."""
    text = os.fspath(out_dir)
    if not str(text).strip():
        raise ExportError("the export folder name (--out) is empty; give the name of a new "
                          "folder")
    try:
        safeio.check_name_length(text)
    except safeio.FileProblem as e:
        raise ExportError(f"cannot use {_shown(text)} as the export folder: {e}") from None
    target = Path(os.path.abspath(text))
    real = Path(os.path.realpath(target))
    danger = _dangerous(real, protect)
    if danger or not target.name:
        raise ExportError(f"refusing to export into {target}: it is {danger or 'the root folder'}"
                          f", which an export (and --overwrite) would replace; choose a new "
                          f"folder")
    parent = target.parent
    try:
        if not parent.exists():
            raise ExportError(f"cannot create {target}: the folder {parent} does not exist")
        if not parent.is_dir():
            raise ExportError(f"cannot create {target}: {parent} is not a folder")
        if target.is_symlink() or (target.exists() and not target.is_dir()):
            raise ExportError(f"{target} exists and is not a folder; choose another --out")
        if target.is_dir() and any(target.iterdir()):
            if not overwrite:
                raise ExportError(f"{target} already exists and is not empty; choose another "
                                  f"--out or pass --overwrite to replace it")
            why = not_an_export(target)
            if why:
                raise ExportError(f"--overwrite replaces only a folder LayerLab exported, and "
                                  f"{target} is not one: {why}")
    except OSError as e:
        raise ExportError(f"cannot use {target} as the export folder: "
                          f"{safeio.reason_for(e)}") from None
    return target


def _shown(text: str | bytes) -> str:
    s = os.fsdecode(text)
    return s if len(s) <= 60 else s[:40] + "..." + s[-12:]


def _dangerous(real: Path, protect) -> str | None:
    """What makes ``real`` (a resolved path) a folder an export must not replace."""
    if real == Path(real.anchor):
        return "the root folder"
    try:
        cwd = Path(os.path.realpath(os.getcwd()))
    except OSError:
        cwd = None
    if cwd is not None:
        if real == cwd:
            return "the current folder"
        if real in cwd.parents:
            return "a folder above the current folder"
    home = Path(os.path.realpath(os.path.expanduser("~")))
    if home != Path(home.anchor):
        if real == home:
            return "the home folder"
        if real in home.parents:
            return "a folder above the home folder"
    for p in protect:
        rp = Path(os.path.realpath(os.fspath(p)))
        if real in rp.parents:
            return f"the folder holding {Path(os.fspath(p)).name}, an input of this export"
    return None


MANIFEST_MAX_BYTES = 1 << 30


def not_an_export(folder: Path) -> str | None:
    """Why ``folder`` is not a complete LayerLab export (None if it is one): its
    ``manifest.json`` must be LayerLab's, and every entry in it must be one the manifest
    lists (a file the user added there would be lost)."""
    try:
        data = json.loads(safeio.read_capped(folder / "manifest.json", MANIFEST_MAX_BYTES))
    except safeio.FileProblem as e:
        return "it has no manifest.json" if e.kind == "missing" else \
            f"its manifest.json cannot be read ({e})"
    except (ValueError, RecursionError):
        return "its manifest.json is not valid JSON"
    if isinstance(data, dict) and data.get("format") == "layerlab.batch":
        return _not_a_batch(folder, data)
    if not (isinstance(data, dict) and isinstance(data.get("pipeline"), dict)
            and data["pipeline"].get("format") == "layerlab.pipeline"
            and isinstance(data.get("stages"), list)):
        return "its manifest.json is not a LayerLab export manifest"
    expected = {"manifest.json"}
    tensors = data["pipeline"].get("tensors")
    if isinstance(tensors, dict) and isinstance(tensors.get("file"), str):
        expected.add(tensors["file"])
    if isinstance(data.get("predictions"), str):
        expected.add(data["predictions"])
    gradcam = data.get("gradcam")
    if isinstance(gradcam, dict):
        expected.update(v for k, v in gradcam.items() if k in ("image", "heatmap")
                        and isinstance(v, str))
    for stage in data["stages"]:
        if not isinstance(stage, dict):
            return "its manifest.json is not a LayerLab export manifest"
        for key in ("grid", "raw"):
            value = stage.get(key)
            if isinstance(value, str) and value:
                expected.add(value.split("/")[0])
    extra = sorted(p.name for p in folder.iterdir() if p.name not in expected)
    if extra:
        return (f"it also holds {extra[0]!r}" + (f" and {len(extra) - 1} more" if len(extra) > 1
                                                 else "") + ", which LayerLab did not write")
    return None


def _not_a_batch(folder: Path, data: dict) -> str | None:
    """Why ``folder`` with a batch manifest ``data`` is not a complete batch export."""
    images = data.get("images")
    if not isinstance(images, list) or not all(
            isinstance(e, dict) and isinstance(e.get("folder"), str) and e["folder"]
            and "/" not in e["folder"] and e["folder"] not in (".", "..") for e in images):
        return "its manifest.json is not a LayerLab batch manifest"
    expected = {"manifest.json"} | {e["folder"] for e in images}
    extra = sorted(p.name for p in folder.iterdir() if p.name not in expected)
    if extra:
        return (f"it also holds {extra[0]!r}" + (f" and {len(extra) - 1} more" if len(extra) > 1
                                                 else "") + ", which LayerLab did not write")
    for e in images:
        sub = folder / e["folder"]
        if sub.is_symlink() or not sub.is_dir():
            return f"{e['folder']!r}, listed in its manifest.json, is not a folder"
        why = not_an_export(sub)
        if why:
            return f"its image folder {e['folder']!r} is not an export: {why}"
    return None


def make_temp_dir(target: Path) -> Path:
    try:
        return safeio.make_temp_dir(target, "export")
    except safeio.FileProblem as e:
        raise ExportError(f"cannot write in {target.parent}: {e}") from None


def commit(tmp: Path, target: Path, overwrite: bool) -> None:
    """Rename the finished temporary folder to ``target`` (replacing it if allowed).

    A terminating signal during the renames is held back until they are done, so the
    folder is either the old one or the new one, and no hidden folder is left behind."""
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise ExportError(f"{target} exists and is not a folder; choose another --out")
    with safeio.critical():
        if target.is_dir():
            if not any(target.iterdir()):
                target.rmdir()
            elif not overwrite:
                raise ExportError(f"{target} already exists and is not empty; choose another "
                                  f"--out or pass --overwrite to replace it")
            else:
                why = not_an_export(target)
                if why:
                    raise ExportError(f"--overwrite replaces only a folder LayerLab exported, "
                                      f"and {target} is not one: {why}")
                old = safeio.make_temp_dir(target, "old")
                os.rename(target, old / "previous")
                try:
                    os.rename(tmp, target)
                except BaseException:
                    os.rename(old / "previous", target)
                    shutil.rmtree(old, ignore_errors=True)
                    raise
                shutil.rmtree(old, ignore_errors=True)
                return
        os.rename(tmp, target)

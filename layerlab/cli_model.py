"""``--model NAME`` on ``layerlab info`` and ``layerlab export``: a torchvision
classification model instead of a stack (see :mod:`layerlab.core.models`)."""

from __future__ import annotations

import time

from .console import UsageError, say, terminal_text, warn


def open_for_cli(args):
    """The model of ``--model`` with ``--weights`` (a file, ``trained`` or a Weights name;
    random with ``--seed`` without it) and ``--size``; problems of the weights file are
    warnings, anything else one error line."""
    from .core.models import ModelError, open_model

    try:
        opened = open_model(args.model, weights=args.weights, seed=args.seed,
                            size=getattr(args, "size", None))
    except ModelError as e:
        raise UsageError(str(e)) from None
    if opened.report is not None:
        for line in opened.report.problems():
            warn(line)
    return opened


def cmd_info(args) -> int:
    """Without --weights only the plan is made (the model built on the meta device): nothing
    is allocated, so even a model over the memory budget can be looked at."""
    if args.image:
        raise UsageError("--image does not apply to --model: the model's preprocessing crops "
                         "every image to the same size (--size HxW changes it)")
    from .core.models import ModelError, plan_model, select_stages
    from .core.pipeline import DEFAULT_MEMORY_BUDGET

    try:
        if args.weights is None:
            plan = plan_model(args.model, size=args.size)
            weights, categories = f"random, seed {args.seed}", None
        else:
            opened = open_for_cli(args)
            plan, weights, categories = opened.plan, opened.weights, len(opened.categories)
        kept = select_stages(plan, args.stages)
    except ModelError as e:
        raise UsageError(str(e)) from None
    say(format_model_info(plan, weights, kept, categories, DEFAULT_MEMORY_BUDGET))
    return 0


def format_model_info(plan, weights: str, stages, categories: int | None = None,
                      budget: int | None = None) -> str:
    """The ``layerlab info --model`` text: a header, one row per stage, totals and memory."""
    from .core.pipeline import format_bytes
    from .core.specs import shape_text

    spec = plan.input_spec
    h, w = spec.center_crop
    modules = plan.stages[2:]
    lines = [f"{plan.name} (torchvision): {len(modules)} stage(s) after the input and "
             f"normalize, weights {terminal_text(weights)}",
             f"input: shorter side resized to {spec.resize} ({plan.interpolation}), center "
             f"crop {h} x {w}",
             f"normalized: {spec.normalize.text()}"]
    headers = ("stage", "name", "type", "output", "params", "module")
    rows = [(str(s.index), s.name, s.type, shape_text(s.shape), f"{s.parameter_count:,}",
             s.text if s.path else "") for s in stages]
    widths = [max(len(r[i]) for r in (*rows, headers)) for i in range(len(headers) - 1)]

    def line(cells):
        parts = [c.rjust(wd) if i in (0, 4) else c.ljust(wd)
                 for i, (c, wd) in enumerate(zip(cells[:-1], widths, strict=True))]
        return ("  ".join(parts) + "  " + cells[-1]).rstrip()

    lines += ["", line(headers)] + [line(r) for r in rows]
    classes = f"; {categories} categories" if categories is not None else ""
    lines += ["", f"output {shape_text(plan.stages[-1].shape)}; "
              f"{plan.parameter_count:,} parameters ({format_bytes(plan.tensor_bytes)} as "
              f"float32){classes}",
              f"memory: {format_bytes(plan.need_bytes)} with every stage kept (weights and "
              f"{format_bytes(plan.outputs_bytes)} of stage outputs)"
              + (f"; more than the memory budget of {format_bytes(budget)}: export and the "
                 f"window refuse it" if budget is not None and plan.need_bytes > budget
                 else "")]
    if len(stages) != len(plan.stages):
        lines.append(f"shown: {len(stages) - 2} of {len(modules)} stages (--stages)")
    return "\n".join(lines)


def cmd_export(args, options: dict, bar) -> int:
    """One image through the model into ``--out`` (the export layout of a stack); ``bar``
    is the export command's progress bar."""
    from .core.export import ExportError
    from .core.model_export import export_model

    if len(args.image) != 1:
        raise UsageError("--model exports one image at a time")
    opened = open_for_cli(args)
    t0 = time.perf_counter()
    try:
        manifest = export_model(args.image[0], opened, args.out, stages=args.stages,
                                progress=bar.stage, file_progress=bar.file,
                                histograms=args.histograms, bins=args.bins, **options)
    except ExportError as e:
        bar.close(keep=False)
        raise UsageError(str(e)) from None
    finally:
        bar.close()
    if not args.quiet:
        files = sum(len(s["images"]) + 1 + (s["raw"] is not None)
                    + (s.get("histogram") is not None) for s in manifest["stages"])
        say(f"wrote {len(manifest['stages'])} stages of {opened.name} ({files} files and "
            f"manifest.json) to {terminal_text(args.out)} on {manifest['device']} in "
            f"{time.perf_counter() - t0:.2f} s")
    return 0


"""``python -m layerlab.bench.export_child IMAGE|FOLDER PIPELINE OUT [PNG_LEVEL]``: one
full-size export (a batch for a folder) in a process of its own; prints its time and peak
memory as JSON for ``layerlab bench``."""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

from ..core.batch import export_batch
from ..core.export import PNG_COMPRESS_LEVEL, export_run
from ..core.pipeline import Pipeline


def main(argv: list[str]) -> int:
    image, pipeline, out = argv[:3]
    level = int(argv[3]) if len(argv) > 3 else PNG_COMPRESS_LEVEL
    device = argv[4] if len(argv) > 4 else "cpu"
    p = Pipeline.load(pipeline)
    t = time.perf_counter()
    if Path(image).is_dir():
        export_batch([image], p, out, device=device, png_level=level)
    else:
        export_run(image, p, out, device=device, raw=False, png_level=level)
    print(json.dumps({"s": time.perf_counter() - t,
                      "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

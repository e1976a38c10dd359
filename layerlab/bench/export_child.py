"""``python -m layerlab.bench.export_child IMAGE PIPELINE OUT``: one full-size export in a
process of its own; prints its time and peak memory as JSON for ``layerlab bench``."""

from __future__ import annotations

import json
import resource
import sys
import time

from ..core.export import export_run
from ..core.pipeline import Pipeline


def main(argv: list[str]) -> int:
    image, pipeline, out = argv
    t = time.perf_counter()
    export_run(image, Pipeline.load(pipeline), out, device="cpu", raw=False)
    print(json.dumps({"s": time.perf_counter() - t,
                      "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

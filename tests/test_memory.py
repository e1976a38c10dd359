"""The allocator tuning (core/memory.py): repeated runs reuse freed pages instead of faulting
new ones in. Counted with the kernel's own page-fault counter, in fresh processes (the tuning
is process-wide and once set stays set)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc")

SCRIPT = """
import json, resource, sys
import torch
torch.set_num_threads(1)
from layerlab.core import engine as engine_module
from layerlab.bench import four_stage_pipeline
if sys.argv[1] == "untuned":
    engine_module.keep_freed_memory = lambda: False
pipeline = four_stage_pipeline(256)
x = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(0))
outputs = []
def faults_per_run(runs):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for k in range(runs):
        # A fresh engine each time: nothing is served from its cache.
        outputs.append(engine_module.Engine("cpu").run_all(pipeline, x)[-1].output.sum().item())
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / runs
faults_per_run(3)  # warm up: the first runs fault their pages in either way
print(json.dumps({"faults": faults_per_run(5), "outputs": outputs}))
"""


def _run(mode: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True,
                          text=True, timeout=300, check=True)
    return json.loads(proc.stdout.splitlines()[-1])


def test_runs_reuse_freed_pages_and_give_the_same_numbers():
    from layerlab.core.memory import keep_freed_memory

    if not keep_freed_memory():
        pytest.skip("this C library has no mallopt")
    tuned, untuned = _run("tuned"), _run("untuned")
    # Four stages of 16 x 256 x 256 float32 outputs are ~1.4k pages of 4 KB each per run;
    # untuned, glibc's own heuristics keep some of them (2,500 faults one run, 961 another).
    assert untuned["faults"] > 500
    assert tuned["faults"] < untuned["faults"] / 10
    assert tuned["outputs"] == untuned["outputs"]

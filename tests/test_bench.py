"""`layerlab bench`: the further baselines and the --device flag (no timing is asserted)."""

from __future__ import annotations

import pytest
import torch

from layerlab import bench, cli


def test_four_stage_reports_the_best_plain_torch_form():
    s = bench.bench_engine("four-stage-512", bench.four_stage_pipeline(64),
                           bench._photo("rgb", 64), repeats=2, best=True).to_dict()
    for key in ("name", "layerlab_ms", "baseline_ms", "ratio", "p95_ms", "best_torch_ms",
                "ratio_best_torch"):
        assert s[key] is not None, key
    assert s["max_abs_diff_best_torch"] == 0.0  # the same numbers as the engine's
    assert s["max_abs_diff"] < 1e-5


def test_time_many_alternates_every_callable():
    calls = []
    out = bench.time_many([lambda: calls.append("a"), lambda: calls.append("b")], 3, warmup=1)
    assert [len(x) for x in out] == [3, 3] and calls.count("a") == calls.count("b") == 4


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is available")
def test_bench_device_cuda_without_a_gpu_is_one_line(capsys):
    assert cli.main(["bench", "--device", "cuda", "--only", "seed-sharpen-512"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("layerlab: error: --device cuda: no CUDA device") and err.count("\n") == 1


def test_batch_is_a_scenario():
    assert "batch-50" in bench.SCENARIOS

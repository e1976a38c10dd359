"""The job runner: long jobs (fits, visualisations) run off the GUI thread and stop within
one step."""

from __future__ import annotations

import threading

import pytest
import torch

from layerlab.worker import JobRunner


def _counting_job(steps: int, seen_threads: list, stepped: list):
    def job(cancelled):
        total = 0
        for i in range(steps):
            seen_threads.append(threading.current_thread().name)
            total += i
            stepped.append(i)
            yield {"step": i, "total": total}
        return total
    return job


def test_job_runs_off_the_gui_thread_and_returns_its_result(qtbot):
    runner = JobRunner()
    threads, stepped, events, outcomes = [], [], [], []
    runner.progress.connect(events.append)
    runner.finished.connect(outcomes.append)
    with qtbot.waitSignal(runner.finished, timeout=5000):
        runner.start(_counting_job(10, threads, stepped))
    assert outcomes[0].result == sum(range(10))
    assert not outcomes[0].cancelled and outcomes[0].error is None
    assert [e["step"] for e in events] == list(range(10))
    assert threading.current_thread().name not in set(threads)
    assert not runner.busy
    runner.shutdown()


def test_stop_takes_effect_within_one_step(qtbot):
    runner = JobRunner()
    release = threading.Event()
    stepped = []

    def job(cancelled):
        for i in range(1000):
            stepped.append(i)
            if i == 3:
                release.set()
                # the GUI thread calls stop() while this step runs
                while not cancelled():
                    threading.Event().wait(0.001)
            yield i
        return "ran to the end"

    outcomes = []
    runner.finished.connect(outcomes.append)
    runner.start(job)
    assert release.wait(5)
    with qtbot.waitSignal(runner.finished, timeout=5000):
        runner.stop()
    assert outcomes[0].cancelled and outcomes[0].result is None
    assert stepped == [0, 1, 2, 3]  # no step after the one during which stop() came
    runner.shutdown()


def test_a_failing_job_reports_its_error_and_the_runner_goes_on(qtbot):
    runner = JobRunner()

    def broken(cancelled):
        yield 1
        torch.zeros(2) @ torch.zeros(3)  # a real torch error

    outcomes = []
    runner.finished.connect(outcomes.append)
    with qtbot.waitSignal(runner.finished, timeout=5000):
        runner.start(broken)
    assert outcomes[0].error.startswith("RuntimeError:") and "size" in outcomes[0].error
    with qtbot.waitSignal(runner.finished, timeout=5000):
        runner.start(_counting_job(3, [], []))
    assert outcomes[1].result == 3 and outcomes[1].error is None
    runner.shutdown()


def test_a_new_job_replaces_the_running_one(qtbot):
    runner = JobRunner()
    first_started = threading.Event()

    def endless(cancelled):
        first_started.set()
        while True:
            yield "tick"

    outcomes = []
    runner.finished.connect(outcomes.append)
    runner.start(endless)
    assert first_started.wait(5)
    with qtbot.waitSignal(runner.finished, timeout=5000):
        runner.start(_counting_job(4, [], []))
    assert len(outcomes) == 1 and outcomes[0].result == 6  # only the newest job reports
    runner.shutdown()


@pytest.mark.parametrize("steps", [0, 5])
def test_synchronous_runner_for_tests(qtbot, steps):
    runner = JobRunner(synchronous=True)
    outcomes = []
    runner.finished.connect(outcomes.append)
    runner.start(_counting_job(steps, [], []))
    assert outcomes[0].result == sum(range(steps))


def test_steps_without_news_yield_none_and_are_not_reported(qtbot):
    runner = JobRunner(synchronous=True)

    def job(cancelled):
        for i in range(9):
            yield i if i % 3 == 2 else None
        return "done"

    events, outcomes = [], []
    runner.progress.connect(events.append)
    runner.finished.connect(outcomes.append)
    runner.start(job)
    assert events == [2, 5, 8] and outcomes[0].result == "done"


def test_closing_waits_for_a_step_longer_than_the_timeout(qtbot, monkeypatch, capfd):
    """torch's import (or one long layer) cannot be interrupted; shutting down during it must
    not leave the thread running (a QThread destroyed while running aborts the process)."""
    import time

    from layerlab import worker

    def slow_load(set_threads: bool = False):
        time.sleep(1.0)
        return worker.TorchInfo(False, None, 1)

    monkeypatch.setattr(worker, "load_torch", slow_load)
    runner = worker.RunController()
    runner.load_torch()
    qtbot.wait(100)  # the worker thread is inside the slow load now
    runner.shutdown(timeout_ms=50)
    assert not runner._thread.isRunning()
    assert "waiting for the step under way to finish" in capfd.readouterr().err

from tests import helpers
from thunder_dagster.documents.isolation import WorkerFailure, WorkerLimits, run_isolated

LIMITS = WorkerLimits(workers=2, timeout_seconds=3, memory_mb=512)


def run(function, tasks):
    return dict(run_isolated(function, tasks, LIMITS, preload=("tests.helpers",)))


def test_results_come_back_for_every_task():
    assert run(helpers.echo, [(i, (i * 10,)) for i in range(5)]) == {i: i * 10 for i in range(5)}


def test_a_crashing_task_costs_only_itself():
    results = run(helpers.segfault, [("crash", (None,))])
    assert isinstance(results["crash"], WorkerFailure)
    assert results["crash"].reason.startswith("parser crashed")
    # The pool replaced the dead worker: other work still runs.
    assert run(helpers.echo, [("after", ("fine",))]) == {"after": "fine"}


def test_a_process_exit_is_reported_as_a_crash():
    results = run(helpers.hard_exit, [("exit", (None,))])
    assert "exit code 3" in results["exit"].reason


def test_a_hanging_task_times_out_and_the_others_finish():
    results = run(helpers.hang, [("slow", (30,)), ("quick", (0,))])
    assert results["quick"] == "woke up"
    assert isinstance(results["slow"], WorkerFailure)
    assert results["slow"].reason == "timed out after 3 s"


def test_a_task_past_the_memory_limit_is_refused():
    results = run(helpers.allocate, [("big", (2048,)), ("small", (8,))])
    assert results["small"] == 8 * 1024 * 1024
    assert results["big"].reason.startswith("too large")

"""Parsers run in worker processes with a time and a memory limit, as Apache Tika runs them.

A parser that crashes its process, hangs, or allocates past the limit costs one file, not the
run: the pool replaces the worker and the other files go on.
"""

import multiprocessing
import resource
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, wait
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

from pebble import ProcessExpired, ProcessPool


@dataclass(frozen=True)
class WorkerLimits:
    workers: int = 2
    timeout_seconds: float = 60.0
    memory_mb: int = 2048


@dataclass(frozen=True)
class WorkerFailure:
    """Why a task produced no result: its worker crashed, timed out or ran out of memory."""

    reason: str


def _limit_memory(memory_mb: int) -> None:
    limit = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _failure(error: Exception, limits: WorkerLimits) -> WorkerFailure:
    if isinstance(error, FutureTimeout):
        return WorkerFailure(f"timed out after {limits.timeout_seconds:g} s")
    if isinstance(error, MemoryError) or "memory" in str(error).lower():
        return WorkerFailure(f"too large: parsing needed more than {limits.memory_mb} MB of memory")
    if isinstance(error, ProcessExpired):
        return WorkerFailure(f"parser crashed (worker exit code {error.exitcode})")
    return WorkerFailure(f"parser crashed: {type(error).__name__}: {error}")


def run_isolated(
    function: Callable[..., Any],
    tasks: Iterable[tuple[Any, tuple]],
    limits: WorkerLimits,
    preload: Iterable[str] = (),
) -> Iterator[tuple[Any, Any]]:
    """Run function(*args) for each (key, args) in a worker; yield (key, result or WorkerFailure).

    Results come back in completion order. Workers start from a fork server that has already
    imported `preload`, so a new worker costs a fork, not an interpreter start-up.
    """
    tasks = list(tasks)
    if not tasks:
        return
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(preload))
    with ProcessPool(
        max_workers=max(1, min(limits.workers, len(tasks))),
        initializer=_limit_memory,
        initargs=(limits.memory_mb,),
        context=context,
    ) as pool:
        pending = {
            pool.schedule(function, args=args, timeout=limits.timeout_seconds): key
            for key, args in tasks
        }
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                key = pending.pop(future)
                try:
                    yield key, future.result()
                except Exception as error:
                    yield key, _failure(error, limits)

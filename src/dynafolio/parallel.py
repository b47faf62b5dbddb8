"""A generic task runner: a graph of tasks executed in this process, in a local process
pool, or on Ray.

It knows only the :class:`Task` protocol (an id, the ids it depends on, a weight) and a
:class:`TaskContext` whose ``run(task, dep_results)`` executes one task; nothing here knows
what a task computes. An experiment's tasks are :class:`dynafolio.experiments.tasks.Task`
run by its :class:`~dynafolio.experiments.tasks.RunContext`; ``dynafolio tune`` has its own.
All three executors return the results keyed by task id, and callers assemble them in their
own fixed order, so the output does not depend on the executor or the number of workers
(tested byte for byte).

* ``serial`` — one task after another in this process.
* ``local`` (the default) — a pool of worker processes, one torch thread each; a task starts
  as soon as the tasks it depends on are done, longest first. A run with fewer than two
  training tasks (only classical rules) runs in this process: starting workers would cost
  more than it saves.
* ``ray`` — the same tasks as Ray tasks, on a local Ray instance or an existing cluster
  (``address``); needs the optional extra ``pip install 'dynafolio[ray]'``.

Progress bars opened inside a task (training, backtest decisions) are forwarded to the
display of the main process. Ctrl-C or SIGTERM stops every worker.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from dynafolio.errors import ConfigError
from dynafolio.progress import ProgressFactory, reporting_progress


class Task(Protocol):
    """What the executors need of a task: ``id``, ``deps`` (ids whose results it receives,
    in order, as ``dep_results``) and ``weight`` (a rough cost: bigger starts first)."""

    @property
    def id(self) -> str: ...

    @property
    def deps(self) -> tuple[str, ...]: ...

    @property
    def weight(self) -> int: ...


class TaskContext(Protocol):
    """Executes one task; picklable, sent to each worker once."""

    def run(self, task: Any, dep_results: list[Any]) -> Any: ...


ExecutorKind = Literal["serial", "local", "ray"]
EXECUTORS: tuple[str, ...] = ("serial", "local", "ray")


def available_cores() -> int:
    """CPU cores this process may use (the affinity mask, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class ExecutorSettings:
    """How to run the tasks: ``kind``, ``jobs`` (workers; default all cores), Ray address."""

    kind: ExecutorKind = "local"
    jobs: int | None = None
    ray_address: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in EXECUTORS:
            raise ConfigError(f"--executor {self.kind!r}: choose one of {', '.join(EXECUTORS)}")
        if self.jobs is not None and self.jobs < 1:
            raise ConfigError(f"--jobs {self.jobs}: need at least 1 worker")
        if self.ray_address is not None and self.kind != "ray":
            raise ConfigError("--ray-address needs --executor ray")

    @property
    def workers(self) -> int:
        return self.jobs or available_cores()


def execute(
    tasks: list[Task],
    context: TaskContext,
    settings: ExecutorSettings | None = None,
    progress: ProgressFactory | None = None,
    done: Mapping[str, Any] | None = None,
    on_result: Callable[[str, Any], None] | None = None,
) -> dict[str, Any]:
    """Run ``tasks`` (dependencies first) and return ``{task id: result}``.

    ``context`` is a picklable object whose ``run(task, dep_results)`` executes one task —
    :class:`~dynafolio.experiments.tasks.RunContext` for an experiment, the tuning context for
    ``dynafolio tune``; workers receive it once. A task has ``id``, ``deps`` (ids whose
    results it receives, in order) and ``weight`` (bigger starts first).

    ``done`` holds results of tasks already finished (a resumed run): they are not run
    again and are handed to the tasks that depend on them. ``on_result(task id, result)`` is
    called in this process as each task finishes (to store it).
    """
    settings = settings or ExecutorSettings(kind="serial")
    finished = {task.id: done[task.id] for task in tasks if done and task.id in done}
    todo = [task for task in tasks if task.id not in finished]
    report = _Report(finished, on_result)
    if not todo:
        return finished
    if settings.kind == "ray":
        return _execute_ray(todo, context, settings, progress, report)
    # Worker processes take seconds to start (torch imports); a run of cheap tasks only
    # (classical rules) finishes sooner in this process.
    heavy = sum(task.weight > 1 for task in todo)
    if settings.kind == "serial" or settings.workers == 1 or heavy < 2:
        return _execute_serial(todo, context, progress, report)
    return _execute_local(todo, context, settings.workers, progress, report)


class _Report:
    """The results so far (those of a resumed run's finished tasks first), and the caller's
    hook for each new one."""

    def __init__(self, finished: dict[str, Any], on_result) -> None:
        self.results = dict(finished)
        self.on_result = on_result

    def __call__(self, task_id: str, result: Any) -> None:
        self.results[task_id] = result
        if self.on_result is not None:
            self.on_result(task_id, result)


def _execute_serial(tasks, context, progress, report: _Report) -> dict[str, Any]:
    results = report.results
    overall = _overall(progress, len(tasks))
    with _maybe_reporting(progress):
        for task in tasks:  # build_tasks orders dependencies first
            report(task.id, context.run(task, [results[d] for d in task.deps]))
            overall(1)
    return results


def _overall(progress: ProgressFactory | None, total: int) -> Callable[[int], None]:
    if progress is None:
        return lambda n: None
    return progress(f"tasks ({total} in all)", total)


@contextmanager
def _maybe_reporting(progress: ProgressFactory | None) -> Iterator[None]:
    if progress is None:
        yield
        return
    with reporting_progress(progress):
        yield


# --------------------------------------------------------------------------------- local
_WORKER: dict[str, Any] = {}


def _init_worker(context, events, threads: int) -> None:
    """Set up one worker process: the run's context, one torch thread and one BLAS thread,
    progress forwarding."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process handles Ctrl-C
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    # numpy's and scipy's BLAS (the optimisers' covariances, skfolio's solvers) start a
    # thread per core in every worker: with one worker per core they spin against each other
    # (measured: a 300-asset rolling minimum variance ran on 1.8 CPU seconds per wall
    # second, so two workers asked for 3.6 cores of 2). The limit holds for the worker's life.
    threadpool_limits(threads)
    _WORKER["context"] = context
    _WORKER["events"] = events


def _forwarding_factory(events) -> ProgressFactory:
    # A random id per factory, not the process id: on a Ray cluster two nodes can run workers
    # with the same pid, whose bars would otherwise share an id.
    prefix = uuid.uuid4().hex
    counter = iter(range(1 << 62))

    def factory(description: str, total: int) -> Callable[[int], None]:
        bar = f"{prefix}-{next(counter)}"
        events.put(("open", bar, description, total))
        return lambda n: events.put(("advance", bar, n))

    return factory


def _worker_run(task: Task, dep_results: list[Any]) -> Any:
    events = _WORKER["events"]
    with reporting_progress(_forwarding_factory(events)):
        return _WORKER["context"].run(task, dep_results)


#: Imported once by the fork server, so that every worker starts with them loaded.
_PRELOAD = ["dynafolio.experiments.tasks", "dynafolio.strategies.kinds", "torch"]


def _pool_context() -> multiprocessing.context.BaseContext:
    """Workers forked from a server that imported the heavy modules once (torch, SB3,
    skfolio: seconds per process), or spawned where fork servers do not exist. Workers of
    later pools in the same process fork from the same server at no import cost. Never a
    plain fork of this process: its threads (progress display, torch) must not be copied."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)
    return ctx


def _execute_local(tasks, context, workers, progress, report: _Report) -> dict[str, Any]:
    ctx = _pool_context()
    events = ctx.Queue()  # progress events, handed to each worker as it starts
    pump = _EventPump(events, progress)
    pool = ProcessPoolExecutor(
        max_workers=min(workers, len(tasks)),
        mp_context=ctx,
        initializer=_init_worker,
        initargs=(context, events, 1),
    )
    results = report.results
    overall = _overall(progress, len(tasks))
    pending = sorted(tasks, key=lambda t: -t.weight)  # stable: ties keep graph order
    running: dict[Future, Task] = {}
    pump.start()
    try:
        while pending or running:
            ready = [t for t in pending if all(d in results for d in t.deps)]
            for task in ready[: max(0, workers - len(running))]:
                pending.remove(task)
                future = pool.submit(_worker_run, task, [results[d] for d in task.deps])
                running[future] = task
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                task = running.pop(future)
                report(task.id, future.result())
                overall(1)
    except BaseException:
        _stop_pool(pool)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        pump.stop()
        events.close()
    return results


def _stop_pool(pool: ProcessPoolExecutor) -> None:
    """Terminate every worker at once (a running task cannot be cancelled otherwise)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for process in processes:
        process.terminate()
    for process in processes:
        process.join(timeout=10)
    pool.shutdown(wait=False, cancel_futures=True)


class _EventPump:
    """Drains progress events from the workers into the main process's bars."""

    def __init__(self, events, progress: ProgressFactory | None) -> None:
        self.events = events
        self.progress = progress
        self.bars: dict[str, Callable[[int], None]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                event = self.events.get(timeout=0.1)
            except queue.Empty:
                continue
            except (EOFError, OSError, BrokenPipeError):
                return
            self.handle(event)

    def handle(self, event) -> None:
        if self.progress is None:
            return
        if event[0] == "open":
            _, bar, description, total = event
            self.bars[bar] = self.progress(description, total)
        elif event[0] == "advance" and event[1] in self.bars:
            self.bars[event[1]](event[2])


# ----------------------------------------------------------------------------------- ray
def _execute_ray(
    tasks, context, settings: ExecutorSettings, progress, report: _Report
) -> dict[str, Any]:
    try:
        import ray
        from ray.util.queue import Queue as RayQueue
    except ImportError as error:
        raise ConfigError(
            "--executor ray needs Ray, which is not installed; install it with "
            "pip install 'dynafolio[ray]'"
        ) from error
    started_here = not ray.is_initialized()
    if started_here:
        options: dict[str, Any] = {"log_to_driver": False, "include_dashboard": False}
        if settings.ray_address is not None:
            options["address"] = settings.ray_address
        else:
            # A new local instance of our own: without an address, Ray would join whatever
            # cluster this machine ran last (/tmp/ray/ray_current_cluster, RAY_ADDRESS), where
            # num_cpus is refused, and share it with its other users.
            options["address"] = "local"
            options["num_cpus"] = settings.workers
        ray.init(**options)
    try:
        events = RayQueue()
        pump = _EventPump(events, progress)
        pump.start()
        remote = ray.remote(num_cpus=1)(_ray_run)
        shared = ray.put(context)
        refs: dict[str, Any] = {}
        # Ray schedules a task once the object refs it is given (its dependencies) exist.
        for task in tasks:
            deps = [refs[d] if d in refs else report.results[d] for d in task.deps]
            refs[task.id] = remote.remote(shared, events, task, *deps)
        overall = _overall(progress, len(tasks))
        ids = {ref: task_id for task_id, ref in refs.items()}
        remaining = list(refs.values())
        try:
            while remaining:
                done, remaining = ray.wait(remaining, num_returns=1)
                report(ids[done[0]], ray.get(done[0]))
                overall(1)
        except BaseException:
            for ref in remaining:
                ray.cancel(ref, force=True)
            raise
        finally:
            pump.stop()
        return report.results
    finally:
        if started_here:
            ray.shutdown()


def _ray_run(context, events, task: Task, *dep_results: Any) -> Any:
    import torch

    torch.set_num_threads(1)
    with reporting_progress(_forwarding_factory(events)):
        return context.run(task, list(dep_results))


__all__ = ["EXECUTORS", "ExecutorSettings", "available_cores", "execute"]

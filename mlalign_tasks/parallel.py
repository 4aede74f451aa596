"""Work in other processes: a function beside this process (`Background`), or over many inputs (`process_map`)."""

from __future__ import annotations

import ctypes
import gc
import multiprocessing
import os
import signal
import sys
import traceback
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from threadpoolctl import threadpool_limits

PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent dies


def _die_with(parent: int) -> None:
    """Have this (forked) process killed when `parent` dies: a parent killed outright must not leave it running,
    holding what it inherited (the board folder's lock). Linux only; elsewhere it ends when its work does."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # died before that took effect
        os._exit(1)


def _child(connection: Any, parent: int, function: Callable[..., Any], args: tuple[Any, ...]) -> None:
    _die_with(parent)
    try:
        with threadpool_limits(limits=1):  # beside the parent on the other core: BLAS threads would only contend
            outcome = (True, function(*args))
    except BaseException as e:  # noqa: BLE001 - every failure goes back to the parent, which raises it
        outcome = (False, e)
    try:
        connection.send(outcome)
    except Exception:  # noqa: BLE001 - an exception that does not pickle goes back as text
        connection.send((False, RuntimeError("".join(traceback.format_exception(outcome[1])))))
    finally:
        connection.close()


class Background:
    """`function(*args)` in a forked process (the arguments are not copied, the result is pickled back); where the
    platform does not fork, run here at once. `result()` waits for it and returns what it returned or raises
    what it raised. Used as a context manager, it is ended at the block's end if its result was not taken."""

    def __init__(self, function: Callable[..., Any], *args: Any) -> None:
        self.name = function.__name__
        if "fork" not in multiprocessing.get_all_start_methods():
            self.process, self.outcome = None, (True, function(*args))
            return
        context = multiprocessing.get_context("fork")
        self.receive, send = context.Pipe(duplex=False)
        self.process = context.Process(target=_child, args=(send, os.getpid(), function, args), daemon=True)
        gc.freeze()  # the child's garbage collections leave the objects it inherits alone: fewer pages copied
        try:
            self.process.start()
        finally:
            gc.unfreeze()
        send.close()

    def __enter__(self) -> Background:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """End the process now if its result was not taken."""
        self._end(kill=True)

    def result(self) -> Any:
        if self.process is not None:
            try:
                self.outcome = self.receive.recv()
            except EOFError:
                code = self.process.exitcode
                self.outcome = (False, RuntimeError(f"the process running {self.name} ended (exit code {code})"))
            finally:
                self._end(kill=False)
        done, value = self.outcome
        if not done:
            raise value
        return value

    def _end(self, kill: bool) -> None:
        if self.process is not None:
            if kill:
                self.process.kill()
            self.process.join()
            self.receive.close()
            self.process = None


def process_map(function: Callable[[Any], Any], items: list[Any], at_least: int) -> list[Any]:
    """`[function(x) for x in items]`, spread over the CPU cores (forked workers, up to 8, killed with this process)
    when there are at least `at_least` items and more than one core; in order, and what a call raises is raised here."""
    workers = min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1, 8)
    if len(items) < at_least or workers < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return [function(x) for x in items]
    size = -(-len(items) // (workers * 2))
    chunks = [items[i : i + size] for i in range(0, len(items), size)]
    context, parent = multiprocessing.get_context("fork"), os.getpid()
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=_die_with, initargs=(parent,)
    ) as pool:
        return [y for chunk in pool.map(_apply, [function] * len(chunks), chunks) for y in chunk]


def _apply(function: Callable[[Any], Any], chunk: list[Any]) -> list[Any]:
    return [function(x) for x in chunk]

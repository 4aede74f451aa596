"""Work in forked processes killed with this process: a function over many inputs (`process_map`), or one call
while this process does something else (`alongside`)."""

from __future__ import annotations

import ctypes
import functools
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from typing import Any

PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent dies


def _die_with(parent: int) -> None:
    """Have this (forked) process killed when `parent` dies: a parent killed outright must not leave it running,
    holding what it inherited (a folder lock of the parent's). Linux only; elsewhere it ends when its work does."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # died before that took effect
        os._exit(1)


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def process_map(function: Callable[[Any], Any], items: list[Any], at_least: int) -> list[Any]:
    """`[function(x) for x in items]`, spread over the CPU cores (forked workers, up to 8, killed with this process)
    when there are at least `at_least` items and more than one core; in order, and what a call raises is raised here."""
    workers = min(_cores(), 8)
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


@contextmanager
def alongside(function: Callable[..., Any], *args: Any) -> Iterator[Callable[[], Any]]:
    """`function(*args)` in a forked process while the block runs. The block gets `result()`, which waits for the
    call and returns its value or raises what it raised; the end of the block waits too, and a block that raises
    kills the call. With one core or no fork, the call runs when `result()` is first asked for, or after the block."""
    if _cores() < 2 or "fork" not in multiprocessing.get_all_start_methods():
        outcome = _Outcome(functools.partial(_call, function, args))
        yield outcome.result
        outcome.result()
        return
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_send_call, args=(os.getpid(), send, function, args))
    child.start()
    send.close()
    outcome = _Outcome(functools.partial(_receive, receive, function))
    with receive:
        try:
            yield outcome.result
        except BaseException:
            child.kill()
            raise
        else:
            outcome.result()
        finally:
            child.join()


class _Outcome:
    """A call's outcome, (returned, its value or what it raised), fetched once by `fetch`."""

    def __init__(self, fetch: Callable[[], tuple[bool, Any]]) -> None:
        self._fetch, self._known = fetch, None

    def result(self) -> Any:
        if self._known is None:
            self._known = self._fetch()
        returned, value = self._known
        if not returned:
            raise value
        return value


def _call(function: Callable[..., Any], args: tuple[Any, ...]) -> tuple[bool, Any]:
    try:
        return True, function(*args)
    except Exception as e:
        return False, e


def _send_call(parent: int, send: Any, function: Callable[..., Any], args: tuple[Any, ...]) -> None:
    _die_with(parent)
    send.send(_call(function, args))


def _receive(receive: Any, function: Callable[..., Any]) -> tuple[bool, Any]:
    try:
        return receive.recv()
    except EOFError:  # it died without a word: killed, or what it gave could not be pickled
        return False, RuntimeError(f"{function.__qualname__} died in a forked process")

"""Work in forked processes killed with this process: a function over many inputs (`process_map`), or one call
while this process does something else (`alongside`)."""

from __future__ import annotations

import ctypes
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
def alongside(function: Callable[..., Any], *args: Any) -> Iterator[None]:
    """`function(*args)` in a forked process while the block runs, awaited at its end, where what the call raised
    is raised; killed if the block raises. With one core or no fork, it runs after the block instead."""
    if _cores() < 2 or "fork" not in multiprocessing.get_all_start_methods():
        yield
        function(*args)
        return
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_call, args=(os.getpid(), send, function, args))
    child.start()
    send.close()
    with receive:
        try:
            yield
        except BaseException:
            child.kill()
            raise
        else:
            try:
                error = receive.recv()
            except EOFError:  # it died without a word: killed, or what it raised could not be pickled
                error = RuntimeError(f"{function.__qualname__} died in a forked process")
        finally:
            child.join()
    if error is not None:
        raise error


def _call(parent: int, send: Any, function: Callable[..., Any], args: tuple[Any, ...]) -> None:
    _die_with(parent)
    try:
        function(*args)
    except BaseException as e:
        send.send(e)
    else:
        send.send(None)

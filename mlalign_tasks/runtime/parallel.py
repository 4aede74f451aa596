"""A function over many inputs in worker processes (`process_map`), killed with this process."""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent dies


def _die_with(parent: int) -> None:
    """Have this (forked) process killed when `parent` dies: a parent killed outright must not leave it running,
    holding what it inherited (a folder lock of the parent's). Linux only; elsewhere it ends when its work does."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # died before that took effect
        os._exit(1)


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

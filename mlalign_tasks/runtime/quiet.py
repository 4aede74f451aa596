"""Quiet: drop one known-harmless bitsandbytes notice and git's complaint under lm-eval, and nothing else.

On CPUs with AVX512-BF16, importing bitsandbytes (which TRL and PEFT do, even for ``mlalign train --help``) tries
``from kernels import get_kernel`` to fetch an optional CPU 4-bit kernel from the Hugging Face Hub, and when the
optional ``kernels`` package is not installed it logs a warning on every start. bitsandbytes then uses the kernel
it ships, so nothing is lost; and ``kernels`` would not help here: it downloads the kernel at run time, which an
offline machine cannot do. Only that record, for exactly that missing module, is dropped: any other failure to load
the kernel (``kernels`` installed but broken, a download error) and every other bitsandbytes message still shows.

lm-eval records the working directory's git commit in its results by running ``git describe``, whose
``fatal: not a git repository`` reaches the terminal whenever mlalign runs outside a repository.
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

BNB_CPU_LOGGER = "bitsandbytes.backends.cpu.ops"
KERNELS_NOTICE = "Failed to load CPU gemm_4bit_forward from kernels-community"


class MissingKernelsPackageFilter(logging.Filter):
    """Drops bitsandbytes' notice that the optional ``kernels`` package is not installed."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(KERNELS_NOTICE):
            return True
        error = record.args[0] if isinstance(record.args, tuple) and record.args else None
        return not (isinstance(error, ModuleNotFoundError) and error.name == "kernels")


def quiet_bitsandbytes_import() -> None:
    """Install the filter on bitsandbytes' CPU-backend logger (idempotent; before bitsandbytes is imported)."""
    logger = logging.getLogger(BNB_CPU_LOGGER)
    if not any(isinstance(f, MissingKernelsPackageFilter) for f in logger.filters):
        logger.addFilter(MissingKernelsPackageFilter())


def git_hash_quietly() -> str | None:
    """lm-eval's `get_git_commit_hash` (the working directory's commit, or None) with git's stderr captured."""
    from lm_eval.loggers.utils import get_commit_from_path

    try:
        done = subprocess.run(["git", "describe", "--always"], capture_output=True, check=True)
    except (subprocess.CalledProcessError, FileNotFoundError):
        return get_commit_from_path(os.getcwd())
    return done.stdout.strip().decode()


@contextmanager
def quiet_lm_eval_git() -> Iterator[None]:
    """Within the block, lm-eval's evaluator records the git commit through `git_hash_quietly`."""
    import lm_eval.evaluator

    saved = lm_eval.evaluator.get_git_commit_hash
    lm_eval.evaluator.get_git_commit_hash = git_hash_quietly
    try:
        yield
    finally:
        lm_eval.evaluator.get_git_commit_hash = saved

"""Start-up quiet: drop one known-harmless bitsandbytes notice, and nothing else.

On CPUs with AVX512-BF16, importing bitsandbytes (which TRL and PEFT do, even for ``mlalign train --help``) tries
``from kernels import get_kernel`` to fetch an optional CPU 4-bit kernel from the Hugging Face Hub, and when the
optional ``kernels`` package is not installed it logs a warning on every start. bitsandbytes then uses the kernel
it ships, so nothing is lost; and ``kernels`` would not help here: it downloads the kernel at run time, which an
offline machine cannot do. Only that record, for exactly that missing module, is dropped: any other failure to load
the kernel (``kernels`` installed but broken, a download error) and every other bitsandbytes message still shows.
"""

from __future__ import annotations

import logging

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

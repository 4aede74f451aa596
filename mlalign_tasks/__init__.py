"""mlalign: question-alignment for multilingual LLMs — evaluation tasks, data, leaderboards, analyses."""

from mlalign_tasks.quiet import quiet_bitsandbytes_import

__version__ = "0.1.0"

quiet_bitsandbytes_import()  # every entry point imports this package before TRL / PEFT import bitsandbytes

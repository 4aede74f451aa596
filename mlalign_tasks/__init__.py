"""mlalign: question-alignment for multilingual LLMs — evaluation tasks, data, leaderboards, analyses."""

from mlalign_tasks.quiet import quiet_bitsandbytes_import
from mlalign_tasks.versions import package_versions

__version__ = package_versions("mlalign")["mlalign"]  # pyproject.toml's, the one place it is set

quiet_bitsandbytes_import()  # every entry point imports this package before TRL / PEFT import bitsandbytes

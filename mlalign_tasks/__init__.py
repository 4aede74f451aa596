"""mlalign: question-alignment for multilingual LLMs — evaluation tasks, data, leaderboards, analyses."""

from mlalign_tasks.files.versions import package_versions
from mlalign_tasks.runtime.quiet import quiet_bitsandbytes_import

__version__ = package_versions("mlalign")["mlalign"]  # pyproject.toml's, the one place it is set

quiet_bitsandbytes_import()  # every entry point imports this package before TRL / PEFT import bitsandbytes

"""`python -m mlalign_tasks.cli`, as the `mlalign` command."""

from mlalign_tasks.cli import main

main()
